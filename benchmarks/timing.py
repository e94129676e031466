"""Timings: the median of several repetitions after a warm-up, with the spread, and targets on ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max of `repeat` calls made after `warmup` untimed ones."""

    median: float
    min: float
    max: float
    repeat: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fns: dict[str, Callable[[], Any]], *, repeat: int, device: torch.device, warmup: int = 1
) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Time each of `fns` `repeat` times after `warmup` untimed calls of each (kernels, allocator, caches).

    The repetitions go round-robin (a, b, c, a, b, c, ...), so a drift in the machine's speed during
    the run touches every implementation alike instead of biasing their ratio. Returns the timings and
    each function's last result.
    """
    results: dict[str, Any] = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            results[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    timings = {name: Timing(statistics.median(t), min(t), max(t), repeat) for name, t in times.items()}
    return timings, results


@dataclass(frozen=True)
class Target:
    """`value` (a ratio) must be `op` `bound`: e.g. torchattacks/ours ≥ 2.5."""

    label: str
    value: float
    op: str  # ">=" or "<="
    bound: float

    @property
    def met(self) -> bool:
        return self.value >= self.bound if self.op == ">=" else self.value <= self.bound

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Result:
    """One benchmark on one setup: a timing per implementation, the targets, and what agreed."""

    benchmark: str
    setup: str
    timings: dict[str, Timing] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # items/s of an implementation, where meaningful
    targets: list[Target] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def ratio(self, slow: str, fast: str) -> float:
        return self.timings[slow].median / self.timings[fast].median

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "setup": self.setup,
            "timings": {k: asdict(v) for k, v in self.timings.items()},
            "rates": self.rates,
            "targets": [t.to_dict() for t in self.targets],
            "notes": self.notes,
        }
