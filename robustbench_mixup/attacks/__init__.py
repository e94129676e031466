"""Attacks: the one descent loop, the attacks as step rules in it, and how their outcomes are scored.

`descent` (`descend`: projection, step rules, the per-example trace), `methods` (FGSM, I-FGSM, PGD, APGD and
the gradient-free Square as small frozen dataclasses, and the functional API), `engine` (`craft`, `score`,
`evaluate_attack`: batches through the loop, outcomes per example), `indicators` (signs that an attack failed),
`backends` (the same attacks through torchattacks and foolbox, for cross-checks).

The functional API is importable from here: `from robustbench_mixup.attacks import fgsm, pgd`.
"""

from robustbench_mixup.attacks.engine import craft, evaluate_attack, robust_accuracy, score
from robustbench_mixup.attacks.methods import ATTACK_TYPES, apgd, fgsm, ifgsm, make_attack, pgd, square

__all__ = ["ATTACK_TYPES", "apgd", "craft", "evaluate_attack", "fgsm", "ifgsm", "make_attack", "pgd",
           "robust_accuracy", "score", "square"]  # fmt: skip
