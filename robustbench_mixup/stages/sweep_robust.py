"""Where does a claim hold? The robustness sweep over methods × α × epochs × seeds × attack × ε.

Each cell (α, epochs, seed) is one training run of every method (`TrainConfig.methods`, each mixing
method at the cell's α) followed by white-box attacks at every ε, exactly as `robust-eval train` and
`robust-eval fgsm` do, under an output root of its own (`Layout.cell_root`): so a cell resumes like a run
(from its last epoch, skipping attacks already stored) and can run anywhere. Cells run through the same
executor as the memorization sweep (`executors.execute`: this process, local workers or Ray); each sends
back its per-example outcomes, and this process alone records them (`robust_results`). The effects,
method − ERM pooled over seeds with the claims' statistics, and the sentences saying where the paper's
claim holds and where it flips, come from `verdicts.sweep_effects`; the report is
`report.pages.build_robust_sweep`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.learning.devices import resolve_device
from robustbench_mixup.learning.loop import check_data
from robustbench_mixup.settings.config import AttackConfig, AttackSetting
from robustbench_mixup.settings.fsutil import ensure_writable_dir, exclusive
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.sweeps import Cell, RobustSweepConfig
from robustbench_mixup.stages.attack import build_attack, evaluate_run
from robustbench_mixup.stages.executors import check_executor, die_with, run_all
from robustbench_mixup.stages.progress import Meter
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.codec import pack_outcomes
from robustbench_mixup.store.database import ResultsDB, refuse_other_sweep

CELL_RUN = "cell"  # the run's name inside a cell's own output root


def run_cell(
    cfg: RobustSweepConfig, cell: Cell, out: str, sweep: str, device: str, data_root: str | None,
    threads: int | None = None, on_epoch: Callable[[Cell, int], None] | None = None, parent: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train (or finish) one cell's run and attack it; returns its per-example outcomes, packed.

    Runs in this process, a worker process or a Ray task, so it takes plain arguments (see `executors`)."""
    if parent is not None:
        die_with(parent)
    if threads:
        torch.set_num_threads(threads)
    root = Layout(out).cell_root(sweep, cell.key)
    tick = None if on_epoch is None else (lambda member, epoch, metrics: on_epoch(cell, 1))
    train_run(cfg.cell_config(cell), run=CELL_RUN, out=root, device=device, resume=True, data_root=data_root,
              members=cfg.methods, on_epoch=tick)  # fmt: skip
    with ResultsDB(Layout(root).database) as db:
        clean = {r["model"]: r for r in db.clean_rows(CELL_RUN) if r["split"] == "test"}
    n = next(iter(clean.values()))["n"] if cfg.n is None else min(cfg.n, next(iter(clean.values()))["n"])
    rows = [{"model": m, "attack": "clean", "eps": 0.0, "n": r["n"], "top1": r["top1"],
             "correct": pack_outcomes(r["correct"])} for m, r in clean.items()]  # fmt: skip
    for acfg in cfg.attack_configs():
        found = _attack_rows(root, acfg, n, cell.seed)
        if len(found) < len(cfg.methods) * len(acfg.eps):
            evaluate_run(acfg, out=root, run=CELL_RUN, device=device, data_root=data_root)
            found = _attack_rows(root, acfg, n, cell.seed)
        rows += [{"model": m, "attack": acfg.attack, "eps": e, "n": r["n"], "top1": r["top1"],
                  "correct": pack_outcomes(r["correct"])} for (m, e), r in found.items()]  # fmt: skip
    wanted = len(cfg.methods) * (1 + sum(len(a.eps) for a in cfg.attack_configs()))
    if len(rows) != wanted or set(clean) != set(cfg.methods):  # never recorded as done when incomplete
        raise RuntimeError(f"cell {cell.key} holds {len(rows)} of its {wanted} results")
    return {"key": cell.key, "cell": dataclasses.asdict(cell), "rows": rows}


def _attack_rows(root: Path, acfg: AttackConfig, n: int, seed: int) -> dict[tuple[str, float], dict[str, Any]]:
    """(method, ε) -> the cell's stored white-box row of exactly this attack setting (random starts from the
    cell's `seed`, as the evaluation drew them) on the first n examples."""
    atk = build_attack(acfg, seed)
    with ResultsDB(Layout(root).database) as db:
        rows = db.attack_rows(CELL_RUN, outcomes=True, attack=acfg.attack, mode="white", backend="native", n=n)
    return {(r["model"], r["eps"]): r for r in rows
            if r["eps"] in acfg.eps and r["correct"] is not None
            and AttackSetting.of(r) == atk.setting(r["eps"])}  # fmt: skip


@dataclass
class RobustSweepResult:
    name: str
    config: RobustSweepConfig


def run_robust_sweep(
    cfg: RobustSweepConfig,
    *,
    name: str,
    out: str | Path = ".",
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    progress: Meter | None = None,
) -> RobustSweepResult:
    """Run (or resume) robustness sweep `name` under `out`, finished cells are kept (its report:
    `report.pages.build_robust_sweep`).

    `on_cell(result)` is called as each cell finishes; `progress` counts member-epochs of training."""
    cfg = cfg.validate()
    layout = Layout(out)
    layout.sweep_dir(name)  # checks the name
    check_executor(executor, jobs, address)
    resolve_device(device)
    refuse_other_sweep(layout.database, name, "robust", cfg.to_dict(), where=str(layout.root))
    # a missing dataset (or a subset larger than it) stops here, before anything is written
    data = load_dataset(cfg.dataset, root=data_root, train_n=cfg.train_n)
    check_data(cfg.cell_config(cfg.cells()[0]), len(data.train_labels))
    ensure_writable_dir(layout.root)
    cells = cfg.cells()
    with exclusive(layout.sweep_lock(name), f"sweep {name!r}"), ResultsDB(layout.database) as db:
        done = db.start_robust_sweep(name, cfg.to_dict(), [{"key": c.key, **dataclasses.asdict(c)} for c in cells])
        root = str(layout.root.resolve())  # a Ray worker elsewhere resolves no relative path against ours
        args = (cfg, root, name, device, None if data_root is None else str(Path(data_root).resolve()))
        for cell, result in run_all(run_cell, [c for c in cells if c.key not in done], args, key=lambda c: c.key,
                                    epochs=lambda c: c.epochs * len(cfg.methods), progress=progress,
                                    executor=executor, workers=jobs, address=address):  # fmt: skip
            db.record_robust_cell(name, cell.key, result["rows"])
            if on_cell is not None:
                on_cell(result)
    return RobustSweepResult(name, cfg)
