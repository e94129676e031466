"""Tables built from stored rows: pure Python, no torch, shared by the command line and the report."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from robustbench_mixup.settings.config import METHODS


def method_order(s: dict[str, Any]) -> tuple:
    """The paper's row order: by noise, then ERM, ERM + dropout, mixup, mixup + dropout, by α and p (then the
    other methods, in `METHODS` order)."""
    mixing = s.get("mixing", "mixup")
    rank = list(METHODS).index(mixing) if s["alpha"] > 0 and mixing in METHODS else 0
    return (s["noise"], s["alpha"] > 0, rank, s["dropout"] > 0, s["alpha"], s["dropout"])


def table2(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows shaped like the paper's Table 2: per (noise, method), mean and std over seeds, in %."""
    rows = []
    for (noise, method), group in itertools.groupby(
        sorted(summaries, key=method_order), key=lambda s: (s["noise"], s["method"])
    ):
        group = list(group)
        row: dict[str, Any] = {"noise": noise, "method": method, "seeds": len(group)}
        for col in ("best_test_err", "last_test_err", "train_real_err", "train_corrupted_err"):
            values = [100 * g[col] for g in group if g[col] is not None]
            row[col] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            )
        rows.append(row)
    return rows


def table_lambdas(lambdas: list[float]) -> list[int]:
    """Indices of the grid points nearest to λ = 0, .25, .5, .75 and 1 (no repeats)."""
    picks: list[int] = []
    for target in (0.0, 0.25, 0.5, 0.75, 1.0):
        k = min(range(len(lambdas)), key=lambda t: abs(lambdas[t] - target))
        if k not in picks:
            picks.append(k)
    return picks
