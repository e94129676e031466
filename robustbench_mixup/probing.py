"""The probe of a trained run: Figure 2 for its `erm` and `mixup` models, on the same pairs.

Pairs of training examples (by default of different classes) are drawn from the run's seed, so both
models are probed at the very same points and a repeated call probes the same pairs again. Per λ it
reports the miss rate with a 95% Wilson interval and the mean input-gradient norm with a 95%
percentile-bootstrap interval over pairs (seeded), stores them, and draws the two curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import seeding
from .data import load_dataset
from .errors import UsageError
from .fsutil import atomic_path
from .probes import bootstrap_mean_interval, count_pairs, lambda_grid, probe_points, sample_pairs
from .results import ResultsDB, database_path
from .runs import load_members, resolve_run
from .stats import wilson_interval
from .train import PAIR, resolve_device

MODELS = PAIR


@dataclass(frozen=True)
class ProbeSpec:
    pairs: int = 2000
    lambdas: int = 21  # λ = linspace(0, 1, lambdas)
    same_class: str = "exclude"  # 'exclude': only pairs of different classes; 'include': any pair
    split: str = "train"
    resamples: int = 1000  # bootstrap resamples for the gradient-norm interval

    def validate(self) -> ProbeSpec:
        if self.pairs < 1:
            raise UsageError(f"--pairs must be ≥ 1, got {self.pairs}")
        if self.lambdas < 2:
            raise UsageError(f"--lambdas must be ≥ 2 (λ = 0 and 1 at least), got {self.lambdas}")
        if self.same_class not in ("exclude", "include"):
            raise UsageError(f"--same-class must be exclude or include, got {self.same_class!r}")
        if self.split not in ("train", "test"):
            raise UsageError(f"--split must be train or test, got {self.split!r}")
        return self


@dataclass
class ProbeResult:
    run: str
    spec: ProbeSpec
    seed: int
    dataset: str
    lambdas: list[float]
    curves: dict[str, dict[str, list[float]]]  # model -> miss_rate, miss_lo, miss_hi, grad_norm, norm_lo, norm_hi
    figure: Path


def probe_run(
    spec: ProbeSpec,
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Probe `run` (default: the latest) under `out`; rows go to the database, the figure to reports/RUN/."""
    spec.validate()
    out = Path(out)
    run, cfg = resolve_run(out, run)
    dev = resolve_device(device)
    data = load_dataset(cfg["dataset"], root=data_root, split_seed=cfg.get("split_seed", 0))
    images, labels = (
        (data.train_images, data.train_labels) if spec.split == "train" else (data.test_images, data.test_labels)
    )
    include = spec.same_class == "include"
    available = count_pairs(labels, same_class=include)
    if spec.pairs > available:
        kind = "pairs" if include else "pairs of different classes"
        raise UsageError(
            f"--pairs {spec.pairs} exceeds the {available} distinct {kind} the {spec.split} split supplies"
        )
    models, _ = load_members(out, run, MODELS, dev)

    seed = int(cfg["seed"])
    i, j = sample_pairs(
        labels, spec.pairs, same_class=include, generator=seeding.generator(seed, "probe-pairs", spec.split)
    )
    lam = lambda_grid(spec.lambdas)
    curves: dict[str, dict[str, list[float]]] = {}
    for name, model in models.items():
        miss, norms = probe_points(model, images[i], labels[i], images[j], labels[j], lam, progress=progress)
        assert norms is not None
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
         "lam": lam_t, **{k: v[t] for k, v in c.items()}}
        for m, c in curves.items() for t, lam_t in enumerate(lambdas)
    ]  # fmt: skip
    figure = out / "reports" / run / f"probe-{spec.split}-{spec.same_class}.png"
    plot_probe(lambdas, curves, figure, title=f"{run}: {spec.pairs} {spec.split} pairs ({spec.same_class} same class)")
    with ResultsDB(database_path(out)) as db:
        db.record_probe(rows)
    return ProbeResult(run, spec, seed, cfg["dataset"], lambdas, curves, figure)


def plot_probe(lambdas: list[float], curves: dict[str, dict[str, list[float]]], path: Path, *, title: str) -> None:
    """Miss rate and gradient norm against λ, one line per model, intervals as bands (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    panels = (("miss_rate", "miss_lo", "miss_hi", "% miss (neither y_i nor y_j)", 100.0),
              ("grad_norm", "norm_lo", "norm_hi", "‖∇ₓ loss‖₂", 1.0))  # fmt: skip
    palette = dict(zip(curves, sns.color_palette("colorblind", len(curves)), strict=False))
    for ax, (mid, lo, hi, label, scale) in zip(axes, panels, strict=True):
        for model, c in curves.items():
            ax.plot(lambdas, [v * scale for v in c[mid]], label=model, color=palette[model])
            ax.fill_between(lambdas, [v * scale for v in c[lo]], [v * scale for v in c[hi]], alpha=0.25,
                            color=palette[model], linewidth=0)  # fmt: skip
        ax.set_xlabel("λ  (x = λ·x_i + (1−λ)·x_j)")
        ax.set_ylabel(label)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
    axes[0].legend(title="model")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def table_lambdas(lambdas: list[float]) -> list[int]:
    """Indices of the grid points nearest to λ = 0, .25, .5, .75 and 1 (no repeats)."""
    picks: list[int] = []
    for target in (0.0, 0.25, 0.5, 0.75, 1.0):
        k = min(range(len(lambdas)), key=lambda t: abs(lambdas[t] - target))
        if k not in picks:
            picks.append(k)
    return picks


def summary(result: ProbeResult) -> dict[str, Any]:
    """A JSON-able view of the result (for --json and the report)."""
    return {"run": result.run, "seed": result.seed, "dataset": result.dataset, "pairs": result.spec.pairs,
            "split": result.spec.split, "same_class": result.spec.same_class, "lambdas": result.lambdas,
            "curves": result.curves, "figure": str(result.figure)}  # fmt: skip
