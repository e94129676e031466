"""The rule that turns a measurement into a verdict on one of the paper's claims.

Each claim compares mixup with ERM on one quantity, each measured with a 95% interval:

- a claim that mixup makes a quantity LOWER (or HIGHER) is *reproduced* when mixup's interval lies
  entirely on the claimed side of ERM's, *not reproduced* when it lies entirely on the other side, and
  *inconclusive* when the two intervals overlap;
- a claim that mixup is NO WORSE (clean accuracy) is *not reproduced* only when mixup's interval lies
  entirely on the worse side of ERM's, and *reproduced* otherwise.

Nothing is tuned to fit: the verdict follows from the numbers alone, and `RULE` states it in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher", "no_worse_higher"]

RULE = (
    "A claim that mixup lowers (raises) a quantity is reproduced when mixup's 95% interval lies entirely below "
    "(above) ERM's, not reproduced when it lies entirely on the other side, and inconclusive when the intervals "
    "overlap. A claim that mixup is no worse (clean accuracy) is not reproduced only when mixup's interval lies "
    "entirely below ERM's."
)


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.value <= self.hi:
            raise ValueError(f"an estimate must lie in its interval: {self.lo} ≤ {self.value} ≤ {self.hi}")


def verdict(erm: Estimate, mixup: Estimate, direction: Direction) -> str:
    """'reproduced', 'not reproduced' or 'inconclusive' for the claim that mixup moves the quantity `direction`."""
    below = mixup.hi < erm.lo  # mixup entirely below ERM
    above = mixup.lo > erm.hi  # mixup entirely above ERM
    if direction == "lower":
        return "reproduced" if below else "not reproduced" if above else "inconclusive"
    if direction == "higher":
        return "reproduced" if above else "not reproduced" if below else "inconclusive"
    if direction == "no_worse_higher":
        return "not reproduced" if below else "reproduced"
    raise ValueError(f"direction must be lower, higher or no_worse_higher, got {direction!r}")
