"""`robust-eval export`: a run's results in other tools' shapes, from the results database alone.

- `robustbench`: one entry per member and ε, shaped like a RobustBench leaderboard entry (dataset, threat model,
  ε, architecture, clean and robust accuracy as percent strings), plus what those entries lack: the number of
  examples, 95% intervals, the attacks (with steps, restarts and seeds) whose worst case the robust accuracy is,
  the run's seed and the indicators of attack failure that fired. The robust accuracy is the worst case over the
  white-box attacks this run stored at that ε: it is not AutoAttack's, so `autoattack_acc` stays empty.
- `csv`: every stored per-example outcome (clean and under each attack), one row per example.
- `json`: the run's configuration and every stored evaluation with its per-example outcomes.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import SURROGATE, AttackSetting
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import atomic_write_text
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.store.runs import resolve_run
from robustbench_mixup.verdicts.evidence import collect

FORMATS = ("robustbench", "csv", "json")


def _eps_text(eps: float) -> str:
    """ε as the leaderboards write it: '8/255' where it is a whole number of grey levels."""
    levels = eps * 255
    return f"{round(levels)}/255" if abs(levels - round(levels)) < 1e-6 else f"{eps:g}"


def _percent(hits: int, n: int) -> tuple[str, list[float]]:
    lo, hi = wilson_interval(hits, n)
    return f"{100 * hits / n:.2f}", [round(100 * lo, 2), round(100 * hi, 2)]


def robustbench_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per member and ε of the white box: the worst case over the stored native attacks on the most examples."""
    cfg, run = data["record"]["config"], data["run"]
    clean = {r["model"]: r["correct"] for r in data["clean_rows"] if r["split"] == "test"}
    fired = {}
    for i in data["indicators"]:
        if i["status"] == "fired":
            fired.setdefault((i["model"], i["eps"]), set()).add(f"{i['attack']}: {i['indicator']}")
    entries = []
    for member in data["methods"]:
        rows = [r for r in data["attack_rows"] if r["model"] == member and r["mode"] == "white"
                and r["backend"] == "native" and r["eps"] > 0 and r["correct"] is not None]  # fmt: skip
        for eps in sorted({r["eps"] for r in rows}):
            at = [r for r in rows if r["eps"] == eps]
            n = max(r["n"] for r in at)
            at = [r for r in at if r["n"] == n]
            robust = np.logical_and.reduce([r["correct"] for r in at])
            base = clean.get(member)
            clean_hits = None if base is None else int(np.asarray(base)[:n].sum())
            clean_acc, clean_ci = (None, None) if clean_hits is None else _percent(clean_hits, n)
            robust_acc, robust_ci = _percent(int(robust.sum()), n)
            imported = bool(cfg.get("imported"))  # trained elsewhere: what its training used is not known here
            entries.append({
                "name": f"{run}/{member}", "link": "", "authors": "", "venue": "",
                "additional_data": None if imported else False, "number_forward_passes": None if imported else 1,
                "dataset": cfg["dataset"], "threat_model": "Linf",
                "architecture": cfg.get("arch", cfg.get("model")), "eps": _eps_text(eps), "clean_acc": clean_acc,
                "reported": "", "autoattack_acc": None, "robust_acc": robust_acc,
                # what a leaderboard entry lacks
                "n": n, "clean_acc_95ci": clean_ci, "robust_acc_95ci": robust_ci,
                "robust_acc_is": "the worst case over the attacks below, per example (not AutoAttack)",
                "attacks": [{"attack": r["attack"], **AttackSetting.of(r)._asdict()} for r in at],
                "seed": None if imported else cfg["seed"], "imported": imported,
                "indicators_fired": sorted(fired.get((member, eps), ())),
            })  # fmt: skip
    return entries


def outcomes_csv(data: dict[str, Any]) -> str:
    """Every stored per-example outcome: clean (attack 'clean') and under each attack, one row per example."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["run", "model", "attack", "mode", "source", "eps", "steps", "restarts", "seed", "backend", "n",
                "example", "correct"])  # fmt: skip
    for r in data["clean_rows"]:
        if r["split"] == "test" and r["model"] != SURROGATE:
            w.writerows([data["run"], r["model"], "clean", "", "", 0, "", "", "", "", r["n"], i, int(c)]
                        for i, c in enumerate(r["correct"]))  # fmt: skip
    for r in data["attack_rows"]:
        if r["correct"] is None:
            continue
        s = AttackSetting.of(r)
        w.writerows([data["run"], r["model"], r["attack"], r["mode"], r["source"], r["eps"], s.steps, s.restarts,
                     s.seed, r["backend"], r["n"], i, int(c)] for i, c in enumerate(r["correct"]))  # fmt: skip
    return out.getvalue()


def everything_json(data: dict[str, Any]) -> str:
    """The run's configuration and every stored evaluation, per-example outcomes as lists of 0/1."""

    def row(r: dict[str, Any]) -> dict[str, Any]:
        return {k: ([int(c) for c in v] if k == "correct" and v is not None else v) for k, v in r.items()}

    doc = {
        "run": data["run"], "config": data["record"]["config"], "dataset": data["dataset"],
        "clean": [row(r) for r in data["clean_rows"]], "attacks": [row(r) for r in data["attack_rows"]],
        "indicators": data["indicators"], "robustbench": robustbench_entries(data),
    }  # fmt: skip
    return json.dumps(doc, indent=1, sort_keys=True, default=str)


def export(out: str | Path, run: str | None, fmt: str, output: str | Path | None = None) -> Path:
    """Write `run`'s results (default: the latest run) in format `fmt`; returns the file written. The default
    file is `reports/RUN/export-FMT.json|csv` (written anew); an `output` path that exists is refused."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    name, _ = resolve_run(out, run)
    layout = Layout(out)
    ext = "csv" if fmt == "csv" else "json"
    path = Path(output) if output is not None else layout.report_dir(name) / f"export-{fmt}.{ext}"
    if output is not None and path.exists():
        raise UsageError(f"--output {str(path)!r} exists: choose a new file (nothing is overwritten)")
    data = collect(out, name)
    if fmt == "robustbench":
        entries = robustbench_entries(data)
        if not entries:
            raise UsageError(f"run {name!r} has no stored white-box attack to export: run one first, e.g. "
                             f"'robust-eval pgd --run {name} --eps 8/255 --mode white'")  # fmt: skip
        text = json.dumps(entries, indent=1)
    else:
        text = outcomes_csv(data) if fmt == "csv" else everything_json(data)
    atomic_write_text(path, text)
    return path
