"""The HTML report of one run: built from the results database and the run's files alone.

Rendering never recomputes a measurement: numbers come from the database, figures are drawn from those
numbers (or read from the PNGs the stages wrote) and inlined as base64, so `reports/RUN/index.html` is
one self-contained file that opens offline. The Jinja2 template autoescapes every string.

Beside the paper's claims the report asks whether mixup's FGSM gain survives a strong attack
(`claims.strong_attack_verdicts`, paired on the stored per-example outcomes), splits the ordering checks
into failures and differences within sampling noise, and tabulates the attack-failure indicators
(`indicators.INDICATORS`) per attack and model.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import paper
from .claims import (
    ALPHA,
    MARGIN,
    RULE,
    STRONG,
    STRONG_RULE,
    WORST,
    Claim,
    Gain,
    RunResults,
    StrongVerdict,
    SweepEffect,
    assess,
    format_p,
    paired_rows,
    seeds_statement,
    strong_attack_verdicts,
    sweep_effects,
    where_it_holds,
)
from .commands import attack_command, stage_commands
from .config import (
    ATTACKS,
    CLAIM_EPS,
    METHODS,
    PAPER_METHOD,
    SURROGATE,
    ProbeConfig,
    TrainConfig,
    preset_of,
    surrogate_seed,
)
from .errors import UsageError
from .fsutil import atomic_write_text
from .layout import Layout, check_run_name
from .results import ResultsDB, read_stored
from .runs import read_run_json, resolve_run
from .tables import table2, with_methods


def _png(fig: Any) -> str:
    from . import figures

    return figures.png_data_uri(fig, dpi=90)


def _file_png(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def training_figure(epochs: list[dict[str, Any]], members: Sequence[str] = ("erm", "mixup", SURROGATE)) -> str:
    from . import figures

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
    from . import figures

    panels = [
        (a, m)
        for a in ATTACKS  # the registry's order and labels
        for m in ("white", "black")
        if any(r["attack"] == a and r["mode"] == m for r in rows)
    ]
    if worst:
        panels.append((WORST, "white"))
        worst = [w for w in worst if w["n"] == max(x["n"] for x in worst)]  # one curve per model
    with figures.theme():
        fig, axes = figures.new_figure(1, len(panels), figsize=(3.4 * len(panels), 3), squeeze=False)
        for ax, (attack, mode) in zip(axes[0], panels, strict=True):
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


def collect(out: str | Path, run: str) -> dict[str, Any]:
    """Everything the report shows, read from the database and the run's files."""
    layout = Layout(out)
    with ResultsDB(layout.database) as db:
        record = db.get_run(run)
        epochs = db.epochs(run)
        attack_rows = db.attack_rows(run, outcomes=True)  # `correct`: per-example outcomes, None before v5
        worst = db.worst_case(run)
        indicators = db.indicators(run)
        flags = db.attack_flags(run)
        probe_rows = db.probe_rows(run, outcomes=True)  # `missed`, `norms` per pair: None before v6
        clean_rows = db.clean_rows(run)
        diagnostics = db.diagnostics(run)
        sweep = db.get_sweep(run)
        sweep = sweep if sweep is not None and sweep["kind"] == "corrupt" else None  # memorization only
        sweep_jobs = db.sweep_jobs(run) if sweep else []
    assert record is not None
    made_by = preset_of(record["environment"].get("argv"))
    if made_by is not None:  # a run of a group carries its own seed (the preset's sweep seed follows it)
        made_by = dataclasses.replace(made_by, seed=record["config"]["seed"], train_n=record["config"].get("train_n"))
    trained = TrainConfig(**record["config"])
    stored = read_run_json(layout, run)
    described = stored["dataset"] if stored is not None else {}
    final = {}
    for e in epochs:
        final[e["model"]] = e  # rows come ordered by model, epoch: the last one stays
    return {
        "run": run, "root": layout.root, "record": record, "epochs": epochs, "attack_rows": attack_rows,
        "worst_case": worst, "indicators": indicators, "flags": flags, "probe_rows": probe_rows,
        "clean_rows": clean_rows, "sweep": sweep, "sweep_jobs": with_methods(sweep_jobs), "dataset": described,
        "final": final, "commands": stage_commands(layout.root, run, record["config"], made_by),
        "claim_eps": made_by.claim_eps if made_by is not None else CLAIM_EPS.get(record["config"]["dataset"]),
        "surrogate_seed": surrogate_seed(record["config"]["seed"]),
        "diagnostics": diagnostics, "methods": trained.methods, "compared": trained.compared,
        "settings": {m: trained.describe(m) for m in trained.methods},
        "subset": subset_sentence(trained.train_n, described.get("train_of")),
    }  # fmt: skip


def subset_sentence(train_n: object, train_of: object) -> str | None:
    """What a report says of a run trained on part of its training split (None when on all of it)."""
    if train_n is None:
        return None

    def count(v: object) -> str:  # the stored values are read back from files: shown, never trusted
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    of = "" if train_of is None else f" of the {count(train_of)}"
    return (f"Trained on a stratified subset of {count(train_n)}{of} training images (each class in its share, "
            "drawn by the split seed: the same images for every method and seed); the test images are all used. "
            "Numbers from the whole training set may differ.")  # fmt: skip


def _sweep_table(data: dict[str, Any]) -> list[dict[str, Any]]:
    return table2(data["sweep_jobs"]) if data["sweep_jobs"] else []


def run_results(data: dict[str, Any]) -> RunResults:
    """What the claims read of one run's collected results (`collect`)."""
    cfg = data["record"]["config"]
    return RunResults(
        dataset=cfg["dataset"], model=cfg["model"], train_n=cfg.get("train_n"), methods=data["methods"],
        claim_eps=data["claim_eps"], clean_rows=data["clean_rows"],
        attack_rows=data["attack_rows"], probe_rows=data["probe_rows"],
        sweep_config=None if data["sweep"] is None else data["sweep"]["config"], sweep_jobs=data["sweep_jobs"],
    )  # fmt: skip


def run_claims(data: dict[str, Any]) -> list[Claim]:
    """The paper's claims judged on one run's collected results (`collect`): a group of one seed."""
    return assess([run_results(data)], commands=data["commands"])


def group_claims(datas: Sequence[dict[str, Any]]) -> list[Claim]:
    """The paper's claims judged on a group of runs that differ only in their seed, pooled."""
    return assess([run_results(d) for d in datas], commands=datas[0]["commands"])


def forest_figure(claims: Sequence[Claim]) -> str | None:
    """One row per measured claim: method − ERM with its 95% interval, 0 marked, the margin of "no worse"
    dashed, the paper's difference (where it gives one) as a hollow diamond. Points for % claims; the gradient
    norm, in its own unit, on a panel of its own."""
    from . import figures

    shown = [c for c in claims if c.effect is not None]
    if not shown:
        return None
    who = PAPER_METHOD if {c.method for c in shown} == {PAPER_METHOD} else "method"
    panels = [("%", f"{who} − ERM, points"), ("", f"{who} − ERM, gradient norm")]
    panels = [(u, label) for u, label in panels if any(c.unit == u for c in shown)]
    colours = {"reproduced": "#029e73", "contradicted": "#d55e00", "inconclusive": "#949494"}
    with figures.theme():
        heights = [sum(1 for c in shown if c.unit == u) for u, _ in panels]
        width = 7.5 if who == PAPER_METHOD else 8.5  # room for the methods' names
        fig, axes = figures.new_figure(len(panels), 1, figsize=(width, 0.9 + 0.45 * len(shown)), squeeze=False,
                                       gridspec_kw={"height_ratios": heights})  # fmt: skip
        for ax, (unit, label) in zip(axes[:, 0], panels, strict=True):
            mine = [c for c in shown if c.unit == unit]
            scale = 100 if unit == "%" else 1
            ends = [scale * v for c in mine for v in (c.effect.lo, c.effect.hi)] + [0.0]
            pad = 0.08 * (max(ends) - min(ends) or 1.0)
            left, right = min(ends) - pad, max(ends) + pad
            for y, c in enumerate(reversed(mine)):
                e = c.effect
                if c.direction == "no_worse":
                    ax.plot([-100 * MARGIN] * 2, [y - 0.35, y + 0.35], linestyle="--", color="#de8f05", linewidth=1)
                ax.errorbar([scale * e.diff], [y], xerr=[[scale * (e.diff - e.lo)], [scale * (e.hi - e.diff)]],
                            fmt="o", color=colours.get(c.verdict, "#949494"), capsize=3)  # fmt: skip
                if c.paper_diff is None:
                    continue
                # the paper's difference, where it falls inside the data's range; else at the edge, in words
                x = min(max(c.paper_diff, left + pad / 2), right - pad / 2)
                ax.plot([x], [y], marker="D", mfc="none", color="#0173b2", linestyle="none",
                        label="paper" if not ax.get_legend_handles_labels()[1] else None)  # fmt: skip
                if x != c.paper_diff:
                    ax.annotate(f"paper {c.paper_diff:+.1f}", (x, y), xytext=(0, 7), textcoords="offset points",
                                ha="right" if x > 0 else "left", fontsize=6, color="#0173b2")  # fmt: skip
            ax.set_xlim(left, right)
            ax.axvline(0, color=".3", linewidth=1)
            ax.set_yticks(range(len(mine)))
            ax.set_yticklabels([_short(c, who != PAPER_METHOD) for c in reversed(mine)], fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylim(-0.6, len(mine) - 0.4)
            if any(c.paper_diff is not None for c in mine):
                ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.subplots_adjust(left=fig.subplotpars.left + 0.015)  # tight_layout clips the longest labels by a glyph
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
    from . import figures

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
        ax.set_yticklabels([_short(dataclasses.replace(labels[k], at=None)) for k in reversed(keys)], fontsize=7)
        ax.set_xlabel("method − ERM, points")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
        fig.tight_layout()
        return _png(fig)


def _by_key(claims: Sequence[Claim], key: str) -> Claim | None:
    return next((c for c in claims if c.ident == key and c.effect is not None), None)


def curve_figure(c: Claim) -> str | None:
    """A claim's effect across its ε or λ grid: the difference with its 95% band, 0 marked, the point the
    verdict reads ringed."""
    from . import figures

    if len(c.points) < 2:
        return None
    scale = 100 if c.unit == "%" else 1
    xs = [x for x, _ in c.points]
    with figures.theme():
        fig, axes = figures.new_figure(1, 1, figsize=(2.6, 1.5))
        ax = axes if not hasattr(axes, "__len__") else axes[0]
        ax.fill_between(xs, [scale * e.lo for _, e in c.points], [scale * e.hi for _, e in c.points], alpha=0.3,
                        linewidth=0)  # fmt: skip
        ax.plot(xs, [scale * e.diff for _, e in c.points], marker=".")
        ax.axhline(0, color=".3", linewidth=0.8)
        if c.at is not None:
            e = dict(c.points)[c.at]
            ax.plot([c.at], [scale * e.diff], marker="o", mfc="none", color="#d55e00", markersize=8)
        ax.set_xlabel(c.axis, fontsize=7)
        ax.tick_params(labelsize=6)
        fig.tight_layout(pad=0.3)
        return _png(fig)


# --- does the FGSM gain survive a strong attack? ------------------------------------------------------------


@dataclasses.dataclass
class StrongSection:
    """One `StrongVerdict` laid out for the report: a column per strong attack (and the worst case) it
    met, a row per ε, and the commands that would decide it."""

    verdict: StrongVerdict
    columns: list[str]  # labels
    rows: list[dict[str, Any]]  # eps, n, fgsm (Gain), cells (Gain | None per column), headline (bool)
    commands: list[str]


def strong_sections(data: dict[str, Any]) -> list[StrongSection]:
    """`claims.strong_attack_verdicts` on one run's collected results, with the commands its `needs` name."""
    n_test = data["dataset"].get("n_test")
    out = []
    for v in strong_attack_verdicts(data["attack_rows"], data["worst_case"], data["claim_eps"], data["compared"]):
        met = {g.attack: g.label for at in v.table for g in at.strong}
        columns = [met[a] for a in (*STRONG, WORST) if a in met]  # the registry's order, the worst case last
        rows = []
        for at in v.table:
            by_label: dict[str, Gain] = {g.label: g for g in at.strong}
            rows.append({"eps": at.eps, "n": at.n, "fgsm": at.fgsm, "cells": [by_label.get(c) for c in columns],
                         "headline": at.eps == v.eps})  # fmt: skip
        commands = [
            attack_command(data["root"], data["run"], dataclasses.replace(c, n=None) if c.n == n_test else c)
            for c in v.needs
        ]
        out.append(StrongSection(v, columns, rows, commands))
    return out


# --- sanity checks and indicators of attack failure -------------------------------------------------------


# How each indicator's value compares with its threshold when it fires (indicators.measure); the paired ones
# fire only when the difference is also significant.
def _indicator_value(name: str, value: float) -> str:
    """Accuracy differences in points, the other indicators as shares in %."""
    from .indicators import INDICATORS

    info = INDICATORS.get(name)
    return f"{100 * value:+.1f} pts" if info is not None and info.difference else f"{100 * value:.1f}%"


def indicator_tables(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored `attack_indicators` rows as one table per (attack, model, setting): a row per indicator with
    its label, meaning, threshold and, when it fired anywhere, its advice; a cell per ε."""
    from .indicators import INDICATORS  # torch: only once there are indicators to show

    def setting(r: Mapping[str, Any]) -> tuple:
        return (r["backend"], r["n"], r["steps"], r["restarts"], r["precision"])

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["model"], setting(r)), []).append(r)
    order = {a: i for i, a in enumerate(ATTACKS)}
    tables = []
    for (attack, model, (backend, n, steps, restarts, precision)), group in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1], repr(kv[0][2]))
    ):
        eps = sorted({r["eps"] for r in group})
        lines = []
        for name, info in INDICATORS.items():
            mine = {r["eps"]: r for r in group if r["indicator"] == name}
            if not mine:
                continue
            cells = []
            for e in eps:
                r = mine.get(e)
                cells.append(None if r is None else {"value": _indicator_value(name, r["value"]), "status": r["status"],
                                                     "p_value": r["p_value"], "detail": r["detail"]})  # fmt: skip
            threshold = next(iter(mine.values()))["threshold"]
            fires = f"fires at {info.fires} {_indicator_value(name, threshold).lstrip('+')}"
            if info.difference:
                fires += ", if significant"
            fired = any(r["status"] == "fired" for r in mine.values())
            lines.append({"name": name, "label": info.label, "meaning": info.meaning, "fires": fires,
                          "advice": info.advice if fired else "", "cells": cells})  # fmt: skip
        words = [f"{steps} steps" if ATTACKS.get(attack) and ATTACKS[attack].iterative else "",
                 f"{restarts} restarts" if restarts != 1 else "", precision, backend, f"n = {n}"]  # fmt: skip
        label = ATTACKS[attack].label if attack in ATTACKS else attack
        tables.append({"attack": label, "model": model, "setting": ", ".join(w for w in words if w), "eps": eps,
                       "rows": lines, "fired": sum(1 for r in group if r["status"] == "fired")})  # fmt: skip
    return tables


def robustness_rows(rows: Sequence[Mapping[str, Any]], worst: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Attack rows in the registry's order (then mode, model, ε), each white-box row with the worst case of
    its (model, ε, n) beside it."""
    at = {(w["model"], w["eps"], w["n"]): w for w in worst}
    order = {a: i for i, a in enumerate(ATTACKS)}
    out = []
    for r in sorted(rows, key=lambda r: (order.get(r["attack"], len(order)), r["mode"], r["model"], r["eps"],
                                         r["backend"], r["steps"])):  # fmt: skip
        info = ATTACKS.get(r["attack"])
        setting = [f"{r['steps']} steps"] if info is not None and info.iterative else []
        if r.get("restarts", 1) != 1:
            setting.append(f"{r['restarts']} restarts")
        if r.get("precision", "fp32") != "fp32":
            setting.append(r["precision"])
        w = at.get((r["model"], r["eps"], r["n"])) if r["mode"] == "white" else None
        out.append({**r, "label": info.label if info else r["attack"], "setting": ", ".join(setting), "worst": w})
    return out


DIAGNOSTICS_READING = (
    "How to read it: tiny gradients at confident points make single-step attacks optimistic. A large margin and a "
    "small median ‖∇‖ (many below 1e-6) mean the loss is flat where FGSM starts, so its one linear step is a poor "
    "guide to the loss ε away and an iterative attack (PGD) finds much more; a gradient that is exactly 0 gives a "
    "sign attack no direction at all, and there only an attack whose loss does not saturate (APGD-DLR) or a "
    "transfer attack can tell. Random sign noise of the same ε should hurt far less than any attack; an attack no "
    "stronger than random noise has failed."
)


def diagnostics_rows(data: dict[str, Any]) -> tuple[list[float], list[dict[str, Any]]]:
    """The diagnostics table of one run: its noise levels, and a row per method (in the run's order) with its
    setting, its stored diagnostics and, at each noise ε, its white-box FGSM and PGD accuracy where stored on
    the same n test examples."""
    stored = data["diagnostics"]
    if not stored:
        return [], []
    eps = sorted({float(k.split("@", 1)[1]) for r in stored.values() for k in r if k.startswith("noise_acc@")})
    rows = []
    for model in [m for m in data["methods"] if m in stored]:
        d = stored[model]
        attacks: dict[str, list[float | None]] = {}
        for attack in ("fgsm", "pgd"):
            evaluated = {r["eps"] for r in data["attack_rows"] if r["attack"] == attack and r["n"] == d["n"]}
            cells = []
            for e in eps:  # the strongest exact setting stored at that ε (claims.paired_rows' choice)
                x = next((x for x in evaluated if abs(x - e) < 1e-9), None)
                at = None if x is None else paired_rows(data["attack_rows"], attack, "white", x, d["n"], method=model)
                cells.append(None if at is None else at[model]["top1"])
            attacks[attack] = cells
        rows.append({"model": model, "setting": data["settings"][model], **d,
                     "noise": [d.get(f"noise_acc@{e:g}") for e in eps], **attacks})  # fmt: skip
    return eps, rows


def split_flags(flags: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Ordering checks that failed (significant, or exact checks), those within sampling noise, and those
    stored by an older version without a significance test (until the attack is run again)."""
    return {
        "failed": [f for f in flags if f.get("status", "failed") == "failed"],
        "noise": [f for f in flags if f.get("status") == "noise"],
        "unchecked": [f for f in flags if f.get("status") == "unchecked"],
    }


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("robustbench_mixup", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    env.filters["pvalue"] = format_p
    return env


def claim_curves(claims: Sequence[Claim]) -> dict[str, str]:
    """Each claim's effect-across-the-grid figure, by key (claims measured at one setting have none)."""
    return {c.ident: fig for c in claims if c.effect is not None and (fig := curve_figure(c)) is not None}


def build(out: str | Path = ".", run: str | None = None) -> Path:
    """Write `reports/RUN/index.html` for `run` (default: the latest), or, when `run` names a group of seeds,
    the group's pooled report (`build_group`); returns its path."""
    layout = Layout(out)
    if run is not None:
        check_run_name(run)
        group = read_stored(layout.database, lambda db: db.get_group(run))
        if group is not None:
            return build_group(out, run, group)
    run, _ = resolve_run(out, run)
    return _write_run_report(layout, collect(out, run))[0]


def _write_run_report(layout: Layout, data: dict[str, Any]) -> tuple[Path, list[Claim]]:
    """Render one run's collected results (`collect`) to `reports/RUN/index.html`; returns the path and the
    run's claims (a group report reuses them)."""
    run, cfg = data["run"], data["record"]["config"]
    claims = run_claims(data)
    figures = {
        "training": training_figure(data["epochs"], (*data["methods"], SURROGATE)) if data["epochs"] else None,
        "robustness": robustness_figure(data["attack_rows"], data["worst_case"], data["methods"])
        if data["attack_rows"] else None,
        "probe": _file_png(layout.probe_figure(run, ProbeConfig.split, ProbeConfig.same_class)),  # the default probe
        "sweep": _file_png(layout.sweep_figure(run)),
    }  # fmt: skip
    html = _env().get_template("report.html.j2").render(
        run=run, cfg=cfg, data=data, claims=claims, rule=RULE, figures=figures, commands=data["commands"],
        claim_curves=claim_curves(claims), forest=forest_figure(claims), seeds_statement=seeds_statement(claims),
        alpha=ALPHA, attacks=ATTACKS, strong=strong_sections(data), strong_rule=STRONG_RULE,
        flags=split_flags(data["flags"]),
        indicators=indicator_tables(data["indicators"]) if data["indicators"] else [],
        robustness=robustness_rows(data["attack_rows"], data["worst_case"]),
        diagnostics=diagnostics_rows(data), diagnostics_reading=DIAGNOSTICS_READING,
        sweep_rows=_sweep_table(data), paper=paper, environment=data["record"]["environment"],
    )  # fmt: skip
    path = layout.report(run)
    atomic_write_text(path, html)
    return path, claims


def build_group(out: str | Path, group: str, runs: Sequence[str]) -> Path:
    """Write `reports/GROUP/index.html`: the claims pooled over the group's seeds (a run whose training has not
    finished is left out, and the report says which), each seed's effects, and each seed's strong-attack verdicts."""
    layout = Layout(out)
    records = read_stored(layout.database, lambda db: {r: db.get_run(r) for r in runs}) or {}
    # a run still training (or never trained) is not pooled: its numbers may change
    trained = [r for r in runs if records.get(r) is not None and records[r]["status"] == "done"]
    if not trained:
        raise UsageError(f"group {group!r} has no trained run yet ({', '.join(runs)}): run it with its --seeds")
    datas = [collect(out, resolve_run(out, r)[0]) for r in trained]
    # the group report links to each run's own report: (re)built from the same collected results
    per_seed = {d["run"]: {c.ident: c for c in _write_run_report(layout, d)[1]} for d in datas}
    claims = group_claims(datas)
    html = _env().get_template("group.html.j2").render(
        group=group, runs=list(runs), trained=trained, datas=datas, claims=claims, per_seed=per_seed, rule=RULE,
        claim_curves=claim_curves(claims), forest=forest_figure(claims), seeds_statement=seeds_statement(claims),
        alpha=ALPHA, strong={d["run"]: strong_sections(d) for d in datas}, strong_rule=STRONG_RULE, paper=paper,
        cfg=datas[0]["record"]["config"], members=[*datas[0]["methods"], SURROGATE],
    )  # fmt: skip
    path = layout.report(group)
    atomic_write_text(path, html)
    return path


# --- comparison of several runs -------------------------------------------------------------------


def overlay_figure(datas: dict[str, dict[str, Any]]) -> str | None:
    """White-box FGSM accuracy against ε and the probe's miss rate against λ, every run overlaid."""
    from . import figures

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
                ax.legend(fontsize=7)
        fig.tight_layout()
        return _png(fig)


def seed_groups(datas: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose settings differ only in the seed: mean and spread of their clean accuracies."""
    import statistics

    groups: dict[str, list[str]] = {}
    for run, data in datas.items():
        setting = {k: v for k, v in data["record"]["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(setting, sort_keys=True), []).append(run)
    out = []
    for setting, runs in groups.items():
        if len(runs) < 2:
            continue
        row: dict[str, Any] = {"runs": runs, "setting": json.loads(setting)}
        for model in (*METHODS, SURROGATE):
            accs = [100 * datas[r]["final"][model]["test_acc"] for r in runs if model in datas[r]["final"]]
            row[model] = (statistics.fmean(accs), statistics.stdev(accs)) if len(accs) > 1 else None
        out.append(row)
    return out


def build_comparison(out: str | Path, runs: list[str]) -> Path:
    """Write one report comparing `runs` side by side; returns its path."""
    layout = Layout(out)
    if len(runs) < 2 or len(set(runs)) != len(runs):
        raise UsageError(f"--compare needs at least two different runs, got {runs}")
    names = [resolve_run(out, r)[0] for r in runs]
    datas = {name: collect(out, name) for name in names}
    judged = {name: run_claims(datas[name]) for name in names}
    claims = {name: {c.ident: c for c in judged[name]} for name in names}
    claim_rows = list({c.ident: c.claim for name in names for c in judged[name]}.items())
    strong = {name: {f"{s.verdict.key}-{s.verdict.method}": s for s in strong_sections(datas[name])} for name in names}
    strong_rows = list({k: s.verdict.claim for name in names for k, s in strong[name].items()}.items())
    members = [m for m in (*METHODS, SURROGATE) if any(m in d["final"] for d in datas.values())]
    datasets = sorted({d["record"]["config"]["dataset"] for d in datas.values()})
    configs = [datas[n]["record"]["config"] for n in names]
    differs = sorted({k for c in configs for k in c if any(o.get(k) != c.get(k) for o in configs)})
    html = _env().get_template("compare.html.j2").render(
        runs=names, datas=datas, claims=claims, rule=RULE, paper=paper, datasets=datasets, differs=differs,
        claim_rows=claim_rows, strong_rows=strong_rows, members=members, forest=compare_figure(names, judged),
        strong=strong, strong_rule=STRONG_RULE,
        flags={name: split_flags(datas[name]["flags"]) for name in names},
        overlay=overlay_figure(datas), groups=seed_groups(datas),
        sweeps={n: _sweep_table(datas[n]) for n in names},
    )  # fmt: skip
    tag = "-vs-".join(names)
    if len(tag) > 80:
        tag = f"{names[0]}-and-{len(names) - 1}-more-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    path = layout.comparison(tag)
    atomic_write_text(path, html)
    return path


# --- the robustness sweep -------------------------------------------------------------------------


def sweep_effects_figure(effects: Sequence[SweepEffect]) -> str | None:
    """method − ERM against α (log scale) with 95% intervals over seeds: a panel per (attack, ε), a line per
    (method, epochs); 0 marked."""
    from . import figures

    panels = list(dict.fromkeys((x.attack, x.eps) for x in effects))
    if not panels:
        return None
    lines = list(dict.fromkeys((x.method, x.epochs) for x in effects))
    colours = dict(zip(lines, figures.palette(len(lines)), strict=False))
    with figures.theme():
        fig, axes = figures.new_figure(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
        for ax, (attack, eps) in zip(axes[0], panels, strict=True):
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
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        return _png(fig)


def build_robust_sweep(out: str | Path, name: str) -> tuple[Path, list[str]]:
    """Write `reports/sweeps/NAME/index.html` for robustness sweep `name` from the database alone: the
    sentences saying where the claim holds and where it flips, the effects against α, and every cell.
    Returns its path and the sentences."""
    layout = Layout(out)
    stored = read_stored(layout.database, lambda db: (db.get_sweep(name), db.robust_rows(name)))
    if stored is None or stored[0] is None or stored[0]["kind"] != "robust":
        raise UsageError(f"no robustness sweep named {name!r} under {str(layout.root)!r}")
    sweep, rows = stored
    effects = sweep_effects(rows)
    sentences = where_it_holds(effects)
    cells = sorted({(r["alpha"], r["epochs"], r["seed"]) for r in rows})
    html = _env().get_template("robust.html.j2").render(
        name=name, cfg=sweep["config"], effects=effects, sentences=sentences, cells=len(cells),
        figure=sweep_effects_figure(effects), alpha=ALPHA, margin=MARGIN, attacks=ATTACKS, methods=METHODS,
    )  # fmt: skip
    path = layout.sweep_report(name)
    atomic_write_text(path, html)
    return path, sentences
