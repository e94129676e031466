"""The probe of a trained run: Figure 2 for each of its methods (`erm`, `mixup`, ...), on the same pairs.

Pairs of training examples (by default of different classes) are drawn from the run's seed, so both
models are probed at the very same points and a repeated call probes the same pairs again. Per λ it
reports the miss rate with a 95% Wilson interval and the mean input-gradient norm with a 95%
percentile-bootstrap interval over pairs (seeded), stores them, and draws the two curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_mixup.learning import seeding
from robustbench_mixup.measures.interpolation import (
    bootstrap_mean_interval,
    count_pairs,
    lambda_grid,
    probe_points,
    sample_pairs,
)
from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import ProbeConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.progress import Meter
from robustbench_mixup.store.codec import pack_outcomes, pack_values
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.runs import open_run


@dataclass
class ProbeResult:
    run: str
    spec: ProbeConfig
    seed: int
    dataset: str
    lambdas: list[float]
    curves: dict[str, dict[str, list[float]]]  # model -> miss_rate, miss_lo, miss_hi, grad_norm, norm_lo, norm_hi


def probe_run(
    spec: ProbeConfig,
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    progress: Meter | None = None,
) -> ProbeResult:
    """Probe `run` (default: the latest) under `out`; rows go to the database (figures: `report.figures.draw_probe`)."""
    spec.validate()
    layout = Layout(out)
    opened = open_run(out, run, device=device, data_root=data_root)
    run, data, models = opened.name, opened.data, opened.models
    images, labels = (
        (data.train_images, data.train_labels) if spec.split == "train" else (data.test_images, data.test_labels)
    )
    if len(labels) == 0:
        raise UsageError(f"run {run!r}: its dataset has no {spec.split} images, so there are no pairs to probe (for a "
                         "test set brought as npz:PATH, add train_images and train_labels to it)")  # fmt: skip
    include = spec.same_class == "include"
    available = count_pairs(labels, same_class=include)
    if spec.pairs > available:
        kind = "pairs" if include else "pairs of different classes"
        raise UsageError(
            f"--pairs {spec.pairs} exceeds the {available} distinct {kind} the {spec.split} split supplies"
        )
    seed = opened.seed
    i, j = sample_pairs(
        labels, spec.pairs, same_class=include, generator=seeding.generator(seed, "probe-pairs", spec.split)
    )
    lam = lambda_grid(spec.lambdas)
    curves: dict[str, dict[str, list[float]]] = {}
    per_pair: dict[str, tuple[Any, Any]] = {}  # per model: (missed, norms), each (λ, pairs)
    if progress is not None:
        progress.start(len(models) * spec.pairs)
    tick = None if progress is None else progress.update
    for name, model in models.items():
        miss, norms = probe_points(model, images[i], labels[i], images[j], labels[j], lam, progress=tick)
        assert norms is not None
        if not bool(norms.isfinite().all()):  # refused here, before anything is written: never stored
            raise UsageError(f"the input-gradient norms of {name!r} in run {run!r} are not finite (a diverged model?): "
                             "nothing was stored; check its training curves")  # fmt: skip
        per_pair[name] = (miss.cpu(), norms.cpu())
        hits = miss.sum(dim=1).tolist()
        wilson = [wilson_interval(int(h), spec.pairs) for h in hits]
        lo, hi = bootstrap_mean_interval(
            # The same resamples for every model: their intervals come from the same pairs.
            norms,
            generator=seeding.generator(seed, "probe-bootstrap", spec.split),
            resamples=spec.resamples,
        )
        curves[name] = {
            "miss_rate": [h / spec.pairs for h in hits],
            "miss_lo": [w[0] for w in wilson],
            "miss_hi": [w[1] for w in wilson],
            "grad_norm": norms.double().mean(dim=1).tolist(),
            "norm_lo": lo.tolist(),
            "norm_hi": hi.tolist(),
        }
    lambdas = lam.tolist()
    rows = [
        {"run": run, "model": m, "split": spec.split, "same_class": spec.same_class, "pairs": spec.pairs, "seed": seed,
         "lam": lam_t, **{k: v[t] for k, v in c.items()},
         "missed": pack_outcomes(per_pair[m][0][t]), "norms": pack_values(per_pair[m][1][t])}
        for m, c in curves.items() for t, lam_t in enumerate(lambdas)
    ]  # fmt: skip
    with ResultsDB(layout.database) as db:
        db.record_probe(rows)
    return ProbeResult(run, spec, seed, opened.config["dataset"], lambdas, curves)


def summary(result: ProbeResult) -> dict[str, Any]:
    """A JSON-able view of the result (for --json and the report)."""
    return {"run": result.run, "seed": result.seed, "dataset": result.dataset, "pairs": result.spec.pairs,
            "split": result.spec.split, "same_class": result.spec.same_class, "lambdas": result.lambdas,
            "curves": result.curves}  # fmt: skip
