"""Every figure the suite draws, as `matplotlib.figure.Figure` objects inside `theme.theme()`."""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_mixup.settings.config import (
    ATTACKS,
    METHODS,
    PAPER_METHOD,
    SURROGATE,
)
from robustbench_mixup.verdicts.claims import (
    MARGIN,
    Claim,
)
from robustbench_mixup.verdicts.strong import WORST
from robustbench_mixup.verdicts.sweep_effects import SweepEffect
from robustbench_mixup.verdicts.tables import method_order

if TYPE_CHECKING:
    from robustbench_mixup.settings.layout import Layout


DPI = 90  # inline figures: at 90 dpi a font of 8 pt is 10 px, the smallest a page shows (`theme.MIN_TEXT_PX`)
SMALL = 8  # pt: the smallest font any figure uses
COLUMNS = 3  # panels per row of a figure that wraps: 3 panels of 3.4 in at DPI fit a 1,058-px page column


def _png(fig: Any) -> Any:
    from robustbench_mixup.report import theme as figures

    return figures.png_data_uri(fig, dpi=DPI)


def _file_png(path: Path) -> Any:
    from robustbench_mixup.report import theme

    return theme.read_png(path) if path.is_file() else None


def _grid(n: int) -> tuple[int, int]:
    """(rows, columns) of `n` panels wrapped at COLUMNS per row."""
    cols = min(n, COLUMNS)
    return -(-n // cols), cols


def training_figure(epochs: list[dict[str, Any]], members: Sequence[str] = ("erm", "mixup", SURROGATE)) -> str:
    from robustbench_mixup.report import theme as figures

    with figures.theme():
        fig, axes = figures.new_figure(1, 3, figsize=(10, 3))
        for model in members:
            rows = [e for e in epochs if e["model"] == model]
            x = [e["epoch"] for e in rows]
            panels = (("train_loss", "train loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy"))
            for ax, (col, label) in zip(axes, panels, strict=True):
                ax.plot(x, [e[col] for e in rows], label=model)
                ax.set_title(label)
                ax.set_xlabel("epoch")
        axes[0].legend()
        fig.tight_layout()
        return _png(fig)


def robustness_figure(
    rows: list[dict[str, Any]], worst: Sequence[Mapping[str, Any]] = (), methods: Sequence[str] = ("erm", "mixup")
) -> str:
    """Top-1 accuracy against ε of each method: one panel per attack and mode (native backend), then the worst
    case."""
    from robustbench_mixup.report import theme as figures

    panels = [
        (a, m)
        for a in ATTACKS  # the registry's order and labels
        for m in ("white", "black")
        if any(r["attack"] == a and r["mode"] == m for r in rows)
    ]
    if worst:
        panels.append((WORST, "white"))
        worst = [w for w in worst if w["n"] == max(x["n"] for x in worst)]  # one curve per model
    nrows, ncols = _grid(len(panels))
    with figures.theme():
        fig, axes = figures.new_figure(nrows, ncols, figsize=(3.4 * ncols, 3 * nrows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, (attack, mode) in zip(axes.flat, panels, strict=False):
            for model in methods:
                key = (attack, mode, model, "native")
                if attack == WORST:
                    found = [w for w in worst if w["model"] == model]
                else:
                    found = [r for r in rows if (r["attack"], r["mode"], r["model"], r["backend"]) == key]
                sel = sorted(found, key=lambda r: r["eps"])
                if not sel:
                    continue
                eps = [r["eps"] for r in sel]
                ax.plot(eps, [100 * r["top1"] for r in sel], marker="o", label=model)
                ax.fill_between(eps, [100 * r["top1_lo"] for r in sel], [100 * r["top1_hi"] for r in sel], alpha=0.25)
            ax.set_title("worst case, white box" if attack == WORST else f"{ATTACKS[attack].label}, {mode} box")
            ax.set_xlabel("ε")
            ax.set_ylabel("top-1 accuracy %")
            ax.set_ylim(0, 100)
            ax.legend()
        fig.tight_layout()
        return _png(fig)


def _paper_setting(c: Claim) -> str:
    """The paper's dataset and ε of a claim, from its wording of the paper's figure: "(ImageNet, ε = 4/255)"."""
    match = re.search(r"\(([^()]*)\)\s*$", c.paper or "")
    return match.group(1) if match else ""


def forest_figure(claims: Sequence[Claim]) -> str | None:
    """One row per measured claim: method − ERM with its 95% interval, 0 marked, the margin of "no worse"
    dashed. Points for % claims; the gradient norm, in its own unit, on a panel of its own. The paper's
    difference (where it gives one) is not drawn on this run's axis: it was measured on other data at another
    ε, so it stands in a column of its own at the right, in words, with its dataset and ε."""
    from robustbench_mixup.report import theme as figures

    shown = [c for c in claims if c.effect is not None]
    if not shown:
        return None
    who = PAPER_METHOD if {c.method for c in shown} == {PAPER_METHOD} else "method"
    panels = [("%", f"{who} − ERM, points (this run)"), ("", f"{who} − ERM, gradient norm (this run)")]
    panels = [(u, label) for u, label in panels if any(c.unit == u for c in shown)]
    colours = {"reproduced": "#029e73", "contradicted": "#d55e00", "inconclusive": "#949494"}
    with figures.theme():
        heights = [sum(1 for c in shown if c.unit == u) for u, _ in panels]
        width = 10.5 if who == PAPER_METHOD else 11.5  # room for the methods' names and the paper's column
        fig, axes = figures.new_figure(len(panels), 2, figsize=(width, 1.1 + 0.45 * len(shown)), squeeze=False,
                                       gridspec_kw={"height_ratios": heights, "width_ratios": [3, 1.6]})  # fmt: skip
        for (ax, side), (unit, label) in zip(axes, panels, strict=True):
            mine = [c for c in shown if c.unit == unit]
            scale = 100 if unit == "%" else 1
            ends = [scale * v for c in mine for v in (c.effect.lo, c.effect.hi)] + [0.0]
            pad = 0.08 * (max(ends) - min(ends) or 1.0)
            for y, c in enumerate(reversed(mine)):
                e = c.effect
                if c.direction == "no_worse":
                    ax.plot([-100 * MARGIN] * 2, [y - 0.35, y + 0.35], linestyle="--", color="#de8f05", linewidth=1)
                ax.errorbar([scale * e.diff], [y], xerr=[[scale * (e.diff - e.lo)], [scale * (e.hi - e.diff)]],
                            fmt="o", color=colours.get(c.verdict, "#949494"), capsize=3)  # fmt: skip
                if c.paper_diff is not None:
                    side.text(0.02, y, f"{c.paper_diff:+.1f} · {_paper_setting(c)}", va="center", fontsize=SMALL,
                              color="#0173b2")  # fmt: skip
            ax.set_xlim(min(ends) - pad, max(ends) + pad)
            ax.axvline(0, color=".3", linewidth=1)
            ax.set_yticks(range(len(mine)))
            ax.set_yticklabels([_short(c, who != PAPER_METHOD) for c in reversed(mine)], fontsize=SMALL)
            ax.set_xlabel(label)
            ax.set_ylim(-0.6, len(mine) - 0.4)
            side.set_ylim(-0.6, len(mine) - 0.4)
            side.set_xlim(0, 1)
            side.set_xticks([])
            side.set_yticks([])
            side.grid(False)
            if ax is axes[0][0]:
                side.set_title("the paper's mixup − ERM\n(other data and ε)", fontsize=SMALL, color="#0173b2")
        fig.tight_layout()
        return _png(fig)


SHORT = {
    "fgsm_white": "FGSM error, white", "fgsm_black": "FGSM error, black", "ifgsm_black": "I-FGSM error, black",
    "probe_miss_rate": "miss rate", "probe_grad_norm": "gradient norm", "memorization": "corrupted-label error",
    "clean_accuracy": "clean accuracy",
}  # fmt: skip  # a claim's name in the forest plot


def _short(c: Claim, named: bool = False) -> str:
    where = {"ε": f" (ε {c.at:.3g})", "λ": f" (λ {c.at:.2f})"}.get(c.axis, "") if c.at is not None else ""
    who = f"{METHODS[c.method].label}: " if named or c.method != PAPER_METHOD else ""
    return who + SHORT.get(c.key, c.key) + where


def compare_figure(runs: Sequence[str], claims: Mapping[str, Sequence[Claim]]) -> str | None:
    """Each %-claim's effect per run, side by side (one marker per run, offset vertically), 0 marked: where a
    claim holds and where it flips."""
    from robustbench_mixup.report import theme as figures

    labels = {c.ident: c for r in runs for c in claims[r] if c.unit == "%" and c.effect is not None}
    keys = list(labels)
    if not keys:
        return None
    colours = figures.palette(len(runs))
    with figures.theme():
        fig, ax = figures.new_figure(1, 1, figsize=(7.5, 1.0 + 0.5 * len(keys)))
        for k, run in enumerate(runs):
            offset = 0.3 * (k - (len(runs) - 1) / 2) / max(len(runs) - 1, 1)
            for y, key in enumerate(reversed(keys)):
                c = _by_key(claims[run], key)  # by ident
                if c is None:
                    continue
                e = c.effect
                ax.errorbar([100 * e.diff], [y + offset], xerr=[[100 * (e.diff - e.lo)], [100 * (e.hi - e.diff)]],
                            fmt="o", color=colours[k], capsize=2, label=run)  # fmt: skip
        ax.axvline(0, color=".3", linewidth=1)
        ax.set_yticks(range(len(keys)))
        ax.set_yticklabels([_short(dataclasses.replace(labels[k], at=None)) for k in reversed(keys)], fontsize=SMALL)
        ax.set_xlabel("method − ERM, points")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=SMALL)
        fig.tight_layout()
        return _png(fig)


def _by_key(claims: Sequence[Claim], key: str) -> Claim | None:
    return next((c for c in claims if c.ident == key and c.effect is not None), None)


def curve_figure(c: Claim, *, full: bool = False) -> str | None:
    """A claim's effect across its ε or λ grid: the difference with its 95% band, 0 marked, the point the
    verdict reads ringed. A thumbnail for the claims table, or with `full` a readable figure with axis
    labels, which the thumbnail opens to."""
    from robustbench_mixup.report import theme as figures

    if len(c.points) < 2:
        return None
    scale = 100 if c.unit == "%" else 1
    xs = [x for x, _ in c.points]
    with figures.theme():
        fig, axes = figures.new_figure(1, 1, figsize=(6.5, 3.0) if full else (2.6, 1.5))
        ax = axes if not hasattr(axes, "__len__") else axes[0]
        ax.fill_between(xs, [scale * e.lo for _, e in c.points], [scale * e.hi for _, e in c.points], alpha=0.3,
                        linewidth=0)  # fmt: skip
        ax.plot(xs, [scale * e.diff for _, e in c.points], marker=".")
        ax.axhline(0, color=".3", linewidth=0.8)
        if c.at is not None:
            e = dict(c.points)[c.at]
            ax.plot([c.at], [scale * e.diff], marker="o", mfc="none", color="#d55e00", markersize=8)
        if full:
            ax.set_xlabel(c.axis)
            unit = "points" if c.unit == "%" else "as measured"
            ax.set_ylabel(f"{METHODS[c.method].label} − ERM, {unit}")
            ax.set_title(f"{_short(c, c.method != PAPER_METHOD)}: 95% band; ringed, the point the verdict reads",
                         fontsize=SMALL)  # fmt: skip
            fig.tight_layout()
        else:
            ax.set_xlabel(c.axis, fontsize=SMALL)
            ax.tick_params(labelsize=6)
            fig.tight_layout(pad=0.3)
        return _png(fig)


def overlay_figure(datas: dict[str, dict[str, Any]]) -> str | None:
    """White-box FGSM accuracy against ε and the probe's miss rate against λ, every run overlaid."""
    from robustbench_mixup.report import theme as figures

    with figures.theme():
        fig, axes = figures.new_figure(1, 2, figsize=(10, 3.4))
        drew = False
        for run, data in datas.items():
            for model, style in zip(data["methods"], ("-", "--", ":", "-.", (0, (5, 1))), strict=False):
                rows = sorted((r for r in data["attack_rows"] if (r["attack"], r["mode"], r["model"], r["backend"])
                               == ("fgsm", "white", model, "native")), key=lambda r: r["eps"])  # fmt: skip
                if rows:
                    axes[0].plot([r["eps"] for r in rows], [100 * r["top1"] for r in rows], style, marker="o",
                                 label=f"{run} {model}")  # fmt: skip
                    drew = True
                probe = [r for r in data["probe_rows"] if r["model"] == model]
                if probe:
                    top = max(r["pairs"] for r in probe)
                    probe = sorted((r for r in probe if r["pairs"] == top), key=lambda r: r["lam"])
                    axes[1].plot([r["lam"] for r in probe], [100 * r["miss_rate"] for r in probe], style,
                                 label=f"{run} {model}")  # fmt: skip
                    drew = True
        if not drew:
            return None
        axes[0].set(title="FGSM, white box", xlabel="ε", ylabel="top-1 accuracy %", ylim=(0, 100))
        axes[1].set(title="between training pairs", xlabel="λ", ylabel="% miss")
        for ax in axes:
            if ax.lines:
                ax.legend(fontsize=SMALL)
        fig.tight_layout()
        return _png(fig)


def sweep_effects_figure(effects: Sequence[SweepEffect]) -> str | None:
    """method − ERM against α (log scale) with 95% intervals over seeds: a panel per (attack, ε), a line per
    (method, epochs); 0 marked."""
    from robustbench_mixup.report import theme as figures

    panels = list(dict.fromkeys((x.attack, x.eps) for x in effects))
    if not panels:
        return None
    lines = list(dict.fromkeys((x.method, x.epochs) for x in effects))
    colours = dict(zip(lines, figures.palette(len(lines)), strict=False))
    nrows, ncols = _grid(len(panels))
    with figures.theme():
        fig, axes = figures.new_figure(nrows, ncols, figsize=(3.4 * ncols, 3.2 * nrows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, (attack, eps) in zip(axes.flat, panels, strict=False):
            for method, epochs in lines:
                xs = sorted((x for x in effects if (x.attack, x.eps, x.method, x.epochs) == (attack, eps, method,
                                                                                              epochs)
                             and x.alpha is not None), key=lambda x: x.alpha)  # fmt: skip
                if not xs:
                    continue
                a = [x.alpha for x in xs]
                mid = [100 * x.effect.diff for x in xs]
                ax.errorbar(a, mid, yerr=[[100 * (x.effect.diff - x.effect.lo) for x in xs],
                                          [100 * (x.effect.hi - x.effect.diff) for x in xs]],
                            marker="o", capsize=3, color=colours[(method, epochs)],
                            label=f"{METHODS[method].label}, {epochs} epochs")  # fmt: skip
            ax.axhline(0, color=".3", linewidth=1)
            ax.set_xscale("log")
            ticks = sorted({x.alpha for x in effects if x.alpha is not None})
            ax.set_xticks(ticks, [f"{a:g}" for a in ticks])
            ax.minorticks_off()
            ax.set_xlabel("α")
            what = "clean error" if attack == "clean" else f"{ATTACKS[attack].label} error, ε {eps:.3g}"
            ax.set_title(what if attack != "clean" else "clean accuracy", fontsize=9)
            ax.set_ylabel("method − ERM, points" + (" (accuracy)" if attack == "clean" else " (error)"))
        axes[0][0].legend(fontsize=SMALL)
        fig.tight_layout()
        return _png(fig)


def plot_probe(lambdas: list[float], curves: dict[str, dict[str, list[float]]], path: Path, *, title: str) -> None:
    """Miss rate and gradient norm against λ, one line per model, intervals as bands (PNG, atomic)."""
    from robustbench_mixup.report import theme  # matplotlib only when a figure is drawn

    with theme.theme():
        fig, axes = theme.new_figure(1, 2, figsize=(9, 3.4))
        panels = (("miss_rate", "miss_lo", "miss_hi", "% miss (neither y_i nor y_j)", 100.0),
                  ("grad_norm", "norm_lo", "norm_hi", "‖∇ₓ loss‖₂", 1.0))  # fmt: skip
        palette = dict(zip(curves, theme.palette(len(curves)), strict=False))
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
        theme.save_png(fig, path, dpi=110)


def plot_sweep(name: str, summaries: list[dict[str, Any]], path: Path) -> Path:
    """Per noise level: test error and training error on corrupted labels against epochs, per method; a PNG
    at `path` (atomic)."""
    from robustbench_mixup.report import theme  # matplotlib only when a figure is drawn

    noises = sorted({s["noise"] for s in summaries})
    methods = list(dict.fromkeys(s["method"] for s in sorted(summaries, key=method_order)))
    colors = dict(zip(methods, theme.palette(len(methods)), strict=False))
    with theme.theme():
        fig, axes = theme.new_figure(2, len(noises), figsize=(3.4 * len(noises), 5.4), squeeze=False, sharex=True)
        for c, noise in enumerate(noises):
            for method in methods:
                runs = [s["history"] for s in summaries if s["noise"] == noise and s["method"] == method]
                if not runs:
                    continue
                epochs = [h["epoch"] for h in runs[0]]
                for r, (col, label) in enumerate(
                    (("test_err", "test error %"), ("train_corrupted_err", "train error on corrupted labels %"))
                ):
                    series = [[h[col] for h in run] for run in runs]
                    if any(v is None for s in series for v in s):
                        continue
                    mean = [100 * statistics.fmean(vals) for vals in zip(*series, strict=True)]
                    axes[r][c].plot(epochs, mean, label=method, color=colors[method])
                    axes[r][c].set_ylabel(label)
            axes[0][c].set_title(f"{noise:.0%} corrupted labels")
            axes[1][c].set_xlabel("epoch")
        axes[0][0].legend(fontsize=SMALL)
        fig.suptitle(f"sweep {name}: mean over seeds", fontsize=9)
        fig.tight_layout()
        return theme.save_png(fig, path, dpi=100)


def draw_probe(layout: Layout, result: Any) -> Path:
    """The figure of a probe stage's result (`stages.probe.ProbeResult`), where the run's report reads it."""
    spec = result.spec
    path = layout.probe_figure(result.run, spec.split, spec.same_class, spec.pairs)
    title = f"{result.run}: {spec.pairs} {spec.split} pairs ({spec.same_class} same class)"
    plot_probe(result.lambdas, result.curves, path, title=title)
    return path


def draw_sweep(layout: Layout, result: Any) -> Path | None:
    """The curves of a memorization sweep's result (`stages.sweep_corrupt.SweepResult`); None when no job ran."""
    return plot_sweep(result.name, result.jobs, layout.sweep_figure(result.name)) if result.jobs else None
