"""One run's stored rows, read once for the verdicts: what the console summary and the report both read."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_mixup.settings.commands import stage_commands
from robustbench_mixup.settings.config import (
    BASELINE,
    METHODS,
    TrainConfig,
    claim_eps,
    surrogate_seed,
)
from robustbench_mixup.settings.imported import is_imported
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.presets import preset_of
from robustbench_mixup.settings.sweeps import with_methods
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.runs import read_run_json
from robustbench_mixup.verdicts.claims import (
    Claim,
    RunResults,
    assess,
)
from robustbench_mixup.verdicts.strong import StrongVerdict, strong_attack_verdicts
from robustbench_mixup.verdicts.tables import table2


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
    imported = is_imported(record["config"])
    stored = read_run_json(layout, run)
    described = stored["dataset"] if stored is not None else {}
    if imported:  # models from files: their roles, no training settings, no subset
        methods = tuple(record["config"]["methods"])
        settings, subset = {m: METHODS[m].label for m in methods}, None
    else:
        trained = TrainConfig(**record["config"])
        methods = trained.methods
        settings = {m: trained.describe(m) for m in methods}
        subset = subset_sentence(trained.train_n, described.get("train_of"))
    final = {}
    for e in epochs:
        final[e["model"]] = e  # rows come ordered by model, epoch: the last one stays
    return {
        "run": run, "root": layout.root, "record": record, "epochs": epochs, "attack_rows": attack_rows,
        "worst_case": worst, "indicators": indicators, "flags": flags, "probe_rows": probe_rows,
        "clean_rows": clean_rows, "sweep": sweep, "sweep_jobs": with_methods(sweep_jobs), "dataset": described,
        "final": final, "commands": stage_commands(layout.root, run, record["config"], made_by),
        "claim_eps": made_by.claim_eps if made_by is not None else claim_eps(record["config"]["dataset"]),
        "surrogate_seed": surrogate_seed(record["config"]["seed"]),
        "diagnostics": diagnostics, "methods": methods, "compared": tuple(m for m in methods if m != BASELINE),
        "settings": settings, "subset": subset, "imported": record["config"] if imported else None,
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
        dataset=cfg["dataset"], model=cfg.get("model", cfg.get("arch")), train_n=cfg.get("train_n"),
        methods=data["methods"],
        claim_eps=data["claim_eps"], clean_rows=data["clean_rows"],
        attack_rows=data["attack_rows"], probe_rows=data["probe_rows"],
        sweep_config=None if data["sweep"] is None else data["sweep"]["config"], sweep_jobs=data["sweep_jobs"],
        imported=data["imported"] is not None,
    )  # fmt: skip


def run_claims(data: dict[str, Any]) -> list[Claim]:
    """The paper's claims judged on one run's collected results (`collect`): a group of one seed."""
    return assess([run_results(data)], commands=data["commands"])


def group_claims(datas: Sequence[dict[str, Any]]) -> list[Claim]:
    """The paper's claims judged on a group of runs that differ only in their seed, pooled."""
    return assess([run_results(d) for d in datas], commands=datas[0]["commands"])


@dataclass(frozen=True)
class Verdicts:
    """What a report judged, judged once: the pages render these objects and `robust-eval run` prints them.

    `claims`: the paper's claims on the run, or pooled over a group's seeds; `strong`: per run, whether its
    FGSM gains survive a strong attack (paired on the same examples)."""

    name: str
    claims: list[Claim]
    strong: dict[str, list[StrongVerdict]]


def strong_verdicts(data: dict[str, Any]) -> list[StrongVerdict]:
    """`strong.strong_attack_verdicts` on one run's collected results (`collect`)."""
    return strong_attack_verdicts(data["attack_rows"], data["worst_case"], data["claim_eps"], data["compared"],
                                  data["indicators"])  # fmt: skip


def judge_run(data: dict[str, Any]) -> Verdicts:
    """One run's verdicts, from its collected results."""
    return Verdicts(data["run"], run_claims(data), {data["run"]: strong_verdicts(data)})


def judge_group(group: str, datas: Sequence[dict[str, Any]], runs: Sequence[Verdicts]) -> Verdicts:
    """A group's verdicts: the claims pooled over its seeds, and each seed's own strong-attack verdicts (`runs`,
    already judged for the seeds' reports)."""
    return Verdicts(group, group_claims(datas), {v.name: v.strong[v.name] for v in runs})
