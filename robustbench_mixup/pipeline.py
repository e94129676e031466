"""`robust-eval run`: every stage of a preset, in order, then the report.

train (erm, mixup, surrogate) → FGSM → I-FGSM → probe → memorization sweep → report. A stage whose
results are already in the database is skipped; an interrupted one resumes (training and the sweep
from their last epoch checkpoints, attacks from their saved transfer sets). Each stage's wall time is
added to the run's timings for the report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from .data import load_dataset
from .evaluation import AttackSpec, evaluate_run
from .fsutil import check_name, ensure_writable_dir
from .presets import Preset
from .probing import ProbeSpec, probe_run
from .progress import EpochProgress
from .report import build
from .results import ResultsDB, database_path
from .sweep import SweepConfig, run_sweep
from .train import MEMBERS, PAIR, TrainConfig, resolve_device, train_run

STAGES = ("train", "fgsm", "ifgsm", "probe", "sweep", "report")


def _bar(desc: str, unit: str) -> tqdm:
    """A live count with its rate (the stage's own units), on a terminal only."""
    return tqdm(desc=f"  {desc}", unit=f" {unit}", unit_scale=True, disable=not sys.stderr.isatty(), leave=False)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_pipeline(
    p: Preset,
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
) -> Path:
    """Run (or finish) every stage of preset `p` as run `run` (default: the preset's name)."""
    out, run = Path(out), check_name(run or p.name)
    cfg = TrainConfig(dataset=p.dataset, model=p.model, epochs=p.epochs, alpha=p.alpha).validate()
    resolve_device(device)
    load_dataset(p.dataset, root=data_root, download=download)  # a missing dataset: one line, nothing written
    ensure_writable_dir(out)  # before the first stage says anything

    def stage(i: int, name: str, done: Callable[[], bool], work: Callable[[], object]) -> None:
        if done():
            _say(f"[{i}/{len(STAGES)}] {name}: done before, skipped")
            return
        _say(f"[{i}/{len(STAGES)}] {name} ...")
        t0 = time.perf_counter()
        work()
        seconds = time.perf_counter() - t0
        if name != "train":  # training records its own time, resumes included
            with ResultsDB(database_path(out)) as db:
                db.add_timing(run, name, seconds)
        _say(f"[{i}/{len(STAGES)}] {name}: {seconds:.0f} s")

    def trained() -> bool:
        if not database_path(out).is_file():
            return False
        with ResultsDB(database_path(out)) as db:
            record = db.get_run(run)
        return record is not None and record["status"] == "done" and record["config"] == cfg.to_dict()

    def train() -> None:
        with EpochProgress(total=cfg.epochs * len(MEMBERS), desc=f"train {run}") as bar:
            train_run(cfg, run=run, out=out, device=device, resume=True, data_root=data_root, download=download,
                      argv=argv, on_epoch=bar.update)  # fmt: skip

    def attacked(attack: str, eps: tuple[float, ...]) -> Callable[[], bool]:
        def check() -> bool:
            with ResultsDB(database_path(out)) as db:
                rows = db.attack_rows(run, attack=attack, backend="native")
            have = {(r["model"], r["mode"], r["eps"]) for r in rows}
            return all((m, mode, e) in have for m in PAIR for mode in ("white", "black") for e in eps)

        return check

    def attack(name: str, eps: tuple[float, ...]) -> Callable[[], object]:
        spec = AttackSpec(attack=name, eps=eps, steps=p.ifgsm_steps, n=p.attack_n)

        def work() -> None:
            with _bar(name, "images") as bar:
                evaluate_run(spec, out=out, run=run, device=device, data_root=data_root, progress=bar.update)

        return work

    probe_spec = ProbeSpec(pairs=p.probe_pairs, lambdas=p.probe_lambdas)

    def probed() -> bool:
        with ResultsDB(database_path(out)) as db:
            return any(r["pairs"] == p.probe_pairs for r in db.probe_rows(run))

    sweep_cfg = SweepConfig(dataset=p.dataset, model=p.model, noise=p.sweep_noise, alpha=p.sweep_alpha,
                            epochs=p.sweep_epochs)  # fmt: skip

    def swept() -> bool:
        with ResultsDB(database_path(out)) as db:
            return db.get_sweep(run) is not None and len(db.finished_jobs(run)) == len(sweep_cfg.jobs())

    def sweep() -> None:
        total = len(sweep_cfg.jobs())
        count = [0]

        def one(result: dict) -> None:
            count[0] += 1
            _say(f"  sweep job {count[0]}/{total} done: {result['job']}")

        run_sweep(sweep_cfg, name=run, out=out, device=device, data_root=data_root, on_job=one)

    stage(1, "train", trained, train)
    stage(2, "fgsm", attacked("fgsm", p.fgsm_eps), attack("fgsm", p.fgsm_eps))
    stage(3, "ifgsm", attacked("ifgsm", p.ifgsm_eps), attack("ifgsm", p.ifgsm_eps))

    def probe() -> None:
        with _bar("probe", "pairs") as bar:
            probe_run(probe_spec, out=out, run=run, device=device, data_root=data_root, progress=bar.update)

    stage(4, "probe", probed, probe)
    stage(5, "sweep", swept, sweep)
    path: list[Path] = []
    stage(6, "report", lambda: False, lambda: path.append(build(out=out, run=run)))
    return path[0]
