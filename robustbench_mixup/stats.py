"""Confidence intervals for the suite's measurements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion (sound at 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairedDifference:
    """mean(b) − mean(a) for two per-example outcomes on the SAME examples, with its interval and the
    exact McNemar test on the discordant examples."""

    diff: float
    lo: float
    hi: float
    p_value: float
    n: int
    n01: int  # a wrong, b right
    n10: int  # a right, b wrong


def mcnemar_p(n01: int, n10: int) -> float:
    """Two-sided exact McNemar test: under "no difference" each discordant example is a fair coin, so
    the smaller count is Binomial(n01 + n10, 1/2); 1.0 when there are no discordant examples."""
    m, k = n01 + n10, min(n01, n10)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1))  # exact integers: no underflow for large m
    return min(1.0, 2 * tail / 2**m)


def paired_difference(correct_a: Any, correct_b: Any, *, confidence: float = 0.95) -> PairedDifference:
    """The difference of two proportions measured on the same examples (Newcombe 1998, method 10: the
    two Wilson intervals combined with the correlation of the pairs), and the exact McNemar p-value.

    Pairing is what makes a small difference detectable: the examples both models get right or both
    get wrong carry no information about which is better, and only the discordant ones are tested.
    """
    import torch  # here: `stats` stays importable without torch for the report's readers

    a, b = (torch.as_tensor(c) for c in (correct_a, correct_b))
    if a.dtype != torch.bool or b.dtype != torch.bool or a.ndim != 1 or a.shape != b.shape:
        raise TypeError("correct_a and correct_b must be bool tensors of the same shape (N,)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = len(a)
    n11, n10 = int((a & b).sum()), int((a & ~b).sum())
    n01, n00 = int((~a & b).sum()), n - n11 - n10 - int((~a & b).sum())
    if n == 0:
        return PairedDifference(0.0, -1.0, 1.0, 1.0, 0, 0, 0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    pa, pb = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = wilson_interval(n11 + n10, n, z)
    l2, u2 = wilson_interval(n11 + n01, n, z)
    denominator = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = (n11 * n00 - n10 * n01) / math.sqrt(denominator) if denominator else 0.0
    below = math.sqrt(max(0.0, (pb - l2) ** 2 - 2 * phi * (pb - l2) * (u1 - pa) + (u1 - pa) ** 2))
    above = math.sqrt(max(0.0, (u2 - pb) ** 2 - 2 * phi * (u2 - pb) * (pa - l1) + (pa - l1) ** 2))
    diff = pb - pa
    return PairedDifference(diff, max(-1.0, diff - below), min(1.0, diff + above), mcnemar_p(n01, n10), n, n01, n10)
