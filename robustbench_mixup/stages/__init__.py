"""Stages: one module per command verb, each over a stored run: load it, run the primitives, store.

`train`, `attack` (fgsm, ifgsm, pgd, apgd), `probe`, `diagnose`, `sweep_corrupt`, `sweep_robust`;
`executors` (where a sweep's jobs run: here, local workers or Ray) and `progress` (what they show).
"""
