"""The HTML report of one run: built from the results database and the run's files alone.

Rendering never recomputes a measurement: numbers come from the database, figures are drawn from those
numbers (or read from the PNGs the stages wrote) and inlined as base64, so `reports/RUN/index.html` is
one self-contained file that opens offline. The Jinja2 template autoescapes every string.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from . import paper
from .claims import RULE, Claim, RunResults, assess
from .commands import stage_commands
from .config import ATTACKS, PAIR, ProbeConfig, preset_of
from .errors import UsageError
from .fsutil import atomic_write_text
from .layout import Layout
from .results import ResultsDB
from .runs import read_run_json, resolve_run
from .tables import table2, with_methods


def _png(fig: Any) -> str:
    from . import figures

    return figures.png_data_uri(fig, dpi=90)


def _file_png(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def training_figure(epochs: list[dict[str, Any]]) -> str:
    from . import figures

    with figures.theme():
        fig, axes = figures.new_figure(1, 3, figsize=(10, 3))
        for model in ("erm", "mixup", "surrogate"):
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


def robustness_figure(rows: list[dict[str, Any]]) -> str:
    from . import figures

    panels = [
        (a, m)
        for a in ATTACKS  # the registry's order and labels
        for m in ("white", "black")
        if any(r["attack"] == a and r["mode"] == m for r in rows)
    ]
    with figures.theme():
        fig, axes = figures.new_figure(1, len(panels), figsize=(3.4 * len(panels), 3), squeeze=False)
        for ax, (attack, mode) in zip(axes[0], panels, strict=True):
            for model in PAIR:
                key = (attack, mode, model, "native")
                sel = sorted(
                    (r for r in rows if (r["attack"], r["mode"], r["model"], r["backend"]) == key),
                    key=lambda r: r["eps"],
                )
                if not sel:
                    continue
                eps = [r["eps"] for r in sel]
                ax.plot(eps, [100 * r["top1"] for r in sel], marker="o", label=model)
                ax.fill_between(eps, [100 * r["top1_lo"] for r in sel], [100 * r["top1_hi"] for r in sel], alpha=0.25)
            ax.set_title(f"{ATTACKS[attack].label}, {mode} box")
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
        attack_rows = db.attack_rows(run)
        flags = db.attack_flags(run)
        probe_rows = db.probe_rows(run)
        sweep = db.get_sweep(run)
        sweep_jobs = db.sweep_jobs(run) if sweep else []
    assert record is not None
    stored = read_run_json(layout, run)
    described = stored["dataset"] if stored is not None else {}
    final = {}
    for e in epochs:
        final[e["model"]] = e  # rows come ordered by model, epoch: the last one stays
    return {
        "record": record, "epochs": epochs, "attack_rows": attack_rows, "flags": flags, "probe_rows": probe_rows,
        "sweep": sweep, "sweep_jobs": with_methods(sweep_jobs), "dataset": described, "final": final,
        "commands": stage_commands(layout.root, run, record["config"], preset_of(record["environment"].get("argv"))),
    }  # fmt: skip


def _sweep_table(data: dict[str, Any]) -> list[dict[str, Any]]:
    return table2(data["sweep_jobs"]) if data["sweep_jobs"] else []


def run_claims(data: dict[str, Any]) -> list[Claim]:
    """The paper's claims judged on one run's collected results (`collect`)."""
    cfg = data["record"]["config"]
    same_data = data["sweep"] is not None and data["sweep"]["config"].get("dataset") == cfg["dataset"]
    results = RunResults(
        final_test_acc={m: e["test_acc"] for m, e in data["final"].items()},
        n_test=int(data["dataset"].get("n_test") or 0),
        attack_rows=data["attack_rows"],
        probe_rows=data["probe_rows"],
        sweep_jobs=data["sweep_jobs"] if same_data else [],
        n_train=data["dataset"].get("n_train"),
    )
    return assess(results, commands=data["commands"])


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("robustbench_mixup", "templates"), autoescape=select_autoescape(["html", "j2"])
    )


def build(out: str | Path = ".", run: str | None = None) -> Path:
    """Write `reports/RUN/index.html` for `run` (default: the latest); returns its path."""
    layout = Layout(out)
    run, _ = resolve_run(out, run)
    data = collect(out, run)
    cfg = data["record"]["config"]
    figures = {
        "training": training_figure(data["epochs"]) if data["epochs"] else None,
        "robustness": robustness_figure(data["attack_rows"]) if data["attack_rows"] else None,
        "probe": _file_png(layout.probe_figure(run, ProbeConfig.split, ProbeConfig.same_class)),  # the default probe
        "sweep": _file_png(layout.sweep_figure(run)),
    }  # fmt: skip
    html = _env().get_template("report.html.j2").render(
        run=run, cfg=cfg, data=data, claims=run_claims(data), rule=RULE, figures=figures, commands=data["commands"],
        attacks=list(ATTACKS),
        sweep_rows=_sweep_table(data), paper=paper, environment=data["record"]["environment"],
    )  # fmt: skip
    path = layout.report(run)
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
            for model, style in (("erm", "-"), ("mixup", "--")):
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
        for model in ("erm", "mixup", "surrogate"):
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
    claims = {name: run_claims(datas[name]) for name in names}
    datasets = sorted({d["record"]["config"]["dataset"] for d in datas.values()})
    html = _env().get_template("compare.html.j2").render(
        runs=names, datas=datas, claims=claims, rule=RULE, paper=paper, datasets=datasets,
        overlay=overlay_figure(datas), groups=seed_groups(datas),
        sweeps={n: _sweep_table(datas[n]) for n in names},
    )  # fmt: skip
    tag = "-vs-".join(names)
    if len(tag) > 80:
        tag = f"{names[0]}-and-{len(names) - 1}-more-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    path = layout.comparison(tag)
    atomic_write_text(path, html)
    return path
