"""Verdicts: what the stored measurements say about the paper's claims, with no torch.

`paper` (the paper's figures), `claims` (the claims and the paired rule, Holm over them), `strong` (does
the FGSM gain survive a strong attack?), `sweep_effects` (where a claim holds over a sweep), `tables`
(Table-2 style summaries), `evidence` (one run's stored rows, judged once: what the console and the
report both read).
"""
