"""The HTML report of one run: built from the results database and the run's files alone.

Rendering never recomputes a measurement: numbers come from the database, figures are drawn from those
numbers (or read from the PNGs the stages wrote) and inlined as base64, so `reports/RUN/index.html` is
one self-contained file that opens offline. The Jinja2 template autoescapes every string.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from . import paper
from .claims import RULE, assess
from .fsutil import atomic_write_text
from .results import ResultsDB, database_path
from .runs import resolve_run
from .train import PAIR, run_dir

STAGE_COMMANDS = {
    "attacks": "robust-eval fgsm --eps 0 0.01 0.03 0.1 --run {run}  and  robust-eval ifgsm --eps 0.03 0.1 --run {run}",
    "probe": "robust-eval probe --run {run}",
    "sweep": "robust-eval sweep corrupt --dataset {dataset} --noise 0.5 --alpha 0 8 --epochs 60 --name {run}",
}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_png(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt


def training_figure(epochs: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
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
    plt = _plt()
    panels = [
        (a, m)
        for a in ("fgsm", "ifgsm")
        for m in ("white", "black")
        if any(r["attack"] == a and r["mode"] == m for r in rows)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3), squeeze=False)
    for ax, (attack, mode) in zip(axes[0], panels, strict=True):
        for model in PAIR:
            key = (attack, mode, model, "native")
            sel = sorted(
                (r for r in rows if (r["attack"], r["mode"], r["model"], r["backend"]) == key), key=lambda r: r["eps"]
            )
            if not sel:
                continue
            eps = [r["eps"] for r in sel]
            ax.plot(eps, [100 * r["top1"] for r in sel], marker="o", label=model)
            ax.fill_between(eps, [100 * r["top1_lo"] for r in sel], [100 * r["top1_hi"] for r in sel], alpha=0.25)
        ax.set_title(f"{'I-FGSM' if attack == 'ifgsm' else 'FGSM'}, {mode} box")
        ax.set_xlabel("ε")
        ax.set_ylabel("top-1 accuracy %")
        ax.set_ylim(0, 100)
        ax.legend()
    fig.tight_layout()
    return _png(fig)


def collect(out: Path, run: str) -> dict[str, Any]:
    """Everything the report shows, read from the database and the run's files."""
    with ResultsDB(database_path(out)) as db:
        record = db.get_run(run)
        epochs = db.epochs(run)
        attack_rows = db.attack_rows(run)
        flags = db.attack_flags(run)
        probe_rows = db.probe_rows(run)
        sweep = db.get_sweep(run)
        sweep_jobs = db.sweep_jobs(run) if sweep else []
    assert record is not None
    run_json = run_dir(out, run) / "run.json"
    described = json.loads(run_json.read_text())["dataset"] if run_json.is_file() else {}
    final = {}
    for e in epochs:
        final[e["model"]] = e  # rows come ordered by model, epoch: the last one stays
    return {
        "record": record, "epochs": epochs, "attack_rows": attack_rows, "flags": flags, "probe_rows": probe_rows,
        "sweep": sweep, "sweep_jobs": sweep_jobs, "dataset": described, "final": final,
    }  # fmt: skip


def _sweep_table(data: dict[str, Any]) -> list[dict[str, Any]]:
    from .sweep import Job, table2

    for j in data["sweep_jobs"]:
        j["method"] = Job(j["noise"], j["alpha"], j["dropout"], j["seed"]).method
    return table2(data["sweep_jobs"]) if data["sweep_jobs"] else []


def _claims(data: dict[str, Any], run: str) -> list[Any]:
    cfg = data["record"]["config"]
    same_data = data["sweep"] is not None and data["sweep"]["config"].get("dataset") == cfg["dataset"]
    claims = assess(
        final_test_acc={m: e["test_acc"] for m, e in data["final"].items()},
        n_test=int(data["dataset"].get("n_test") or 0),
        attack_rows=data["attack_rows"],
        probe_rows=data["probe_rows"],
        sweep_jobs=data["sweep_jobs"] if same_data else [],
        n_train=data["dataset"].get("n_train"),
    )
    for c in claims:
        c.command = c.command.replace("RUN", run)
    return claims


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("robustbench_mixup", "templates"), autoescape=select_autoescape(["html", "j2"])
    )


def build(out: str | Path = ".", run: str | None = None) -> Path:
    """Write `reports/RUN/index.html` for `run` (default: the latest); returns its path."""
    out = Path(out)
    run, _ = resolve_run(out, run)
    data = collect(out, run)
    cfg = data["record"]["config"]
    sweep_rows, claims = _sweep_table(data), _claims(data, run)
    commands = {k: v.format(run=run, dataset=cfg["dataset"]) for k, v in STAGE_COMMANDS.items()}
    figures = {
        "training": training_figure(data["epochs"]) if data["epochs"] else None,
        "robustness": robustness_figure(data["attack_rows"]) if data["attack_rows"] else None,
        "probe": _file_png(out / "reports" / run / "probe-train-exclude.png"),
        "sweep": _file_png(out / "reports" / "sweeps" / run / "curves.png"),
    }  # fmt: skip
    html = _env().get_template("report.html.j2").render(
        run=run, cfg=cfg, data=data, claims=claims, rule=RULE, figures=figures, commands=commands,
        sweep_rows=sweep_rows, paper=paper, environment=data["record"]["environment"],
    )  # fmt: skip
    path = out / "reports" / run / "index.html"
    atomic_write_text(path, html)
    return path


# --- comparison of several runs -------------------------------------------------------------------


def overlay_figure(datas: dict[str, dict[str, Any]]) -> str | None:
    """White-box FGSM accuracy against ε and the probe's miss rate against λ, every run overlaid."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
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
    axes[0].set(title="FGSM, white box", xlabel="ε", ylabel="top-1 accuracy %", ylim=(0, 100))
    axes[1].set(title="between training pairs", xlabel="λ", ylabel="% miss")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig) if drew else None


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
    from .errors import UsageError

    out = Path(out)
    if len(runs) < 2 or len(set(runs)) != len(runs):
        raise UsageError(f"--compare needs at least two different runs, got {runs}")
    names = [resolve_run(out, r)[0] for r in runs]
    datas = {name: collect(out, name) for name in names}
    claims = {name: _claims(datas[name], name) for name in names}
    datasets = sorted({d["record"]["config"]["dataset"] for d in datas.values()})
    html = _env().get_template("compare.html.j2").render(
        runs=names, datas=datas, claims=claims, rule=RULE, paper=paper, datasets=datasets,
        overlay=overlay_figure(datas), groups=seed_groups(datas),
        sweeps={n: _sweep_table(datas[n]) for n in names},
    )  # fmt: skip
    tag = "-vs-".join(names)
    if len(tag) > 80:
        import hashlib

        tag = f"{names[0]}-and-{len(names) - 1}-more-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    path = out / "reports" / f"compare-{tag}" / "index.html"
    atomic_write_text(path, html)
    return path
