"""The diagnostics of a trained run: why each of its models is (or is not) robust, on the same test points.

For every method of the run (`erm`, `mixup`, ...) on the first n test examples: clean accuracy, the
expected calibration error (15 bins), the median logit margin, the median and 90th percentile of the
input-gradient norm, the share of gradients that underflow (< 1e-6), and the accuracy under uniform random
sign noise at each ε (`pointwise.test_point_diagnostics`). The noise is drawn from the run's seed, so
every model meets the same noise and a repeated call gives the same numbers. A model whose gradients
vanish at confident points is one a single-step attack cannot move: its FGSM accuracy is optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robustbench_mixup.measures.pointwise import test_point_diagnostics
from robustbench_mixup.settings.config import DiagnoseConfig, diagnose_eps
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.progress import Meter
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.runs import open_run


@dataclass
class DiagnoseResult:
    run: str
    n: int
    seed: int
    eps: tuple[float, ...]
    rows: dict[str, dict[str, float]]  # model -> `Diagnostics.summary()`


def diagnose_run(
    cfg: DiagnoseConfig,
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    progress: Meter | None = None,
) -> DiagnoseResult:
    """Diagnose every method of `run` (default: the latest) under `out`; the summaries go to the database."""
    cfg = cfg.validate()
    opened = open_run(out, run, device=device, data_root=data_root)
    run, models, data, seed = opened.name, opened.models, opened.data, opened.seed
    eps = cfg.eps if cfg.eps is not None else diagnose_eps(opened.config["dataset"])
    n = len(data.test_labels) if cfg.n is None else min(cfg.n, len(data.test_labels))
    x, y = data.test_images[:n], data.test_labels[:n]
    if progress is not None:
        progress.start(n * len(models))
    rows = {}
    for name, model in models.items():
        rows[name] = test_point_diagnostics(model, x, y, eps=eps, seed=seed, batch_size=cfg.batch_size).summary()
        if progress is not None:
            progress.update(n)
    with ResultsDB(Layout(out).database) as db:
        db.record_diagnostics(run, n, seed, rows)
    return DiagnoseResult(run, n, seed, tuple(eps), rows)
