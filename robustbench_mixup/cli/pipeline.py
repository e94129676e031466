"""`robust-eval run`: a preset's stages, in order, as a list.

    train (each method, surrogate) → diagnose → FGSM → I-FGSM → PGD → probe → memorization sweep → report

A stage is a small object: its `name`, `done(ctx)` (are the results of THIS preset's settings already
stored?) and `run(ctx)`. A stage whose results are stored is skipped; an interrupted one resumes
(training and the sweep from their last epoch checkpoints, attacks from their saved transfer sets); a
changed attack or probe setting re-runs exactly the stages whose stored results no longer match it.
Training and the sweep are never redone under another setting with the same name (that would replace
stored results): they refuse with one line. Each stage's wall time is added to the run's timings for the
report. To add a stage: write its class and put an instance in `stages_for`; a new attack of a preset
becomes a stage by itself.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.learning.devices import resolve_device
from robustbench_mixup.measures.interpolation import lambda_grid
from robustbench_mixup.report.figures import draw_probe, draw_sweep
from robustbench_mixup.report.pages import Rendered, render, render_group
from robustbench_mixup.settings.config import SURROGATE, AttackSetting, training_images
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import ensure_writable_dir
from robustbench_mixup.settings.imported import is_imported
from robustbench_mixup.settings.layout import Layout, check_run_name
from robustbench_mixup.settings.presets import Preset
from robustbench_mixup.settings.sweeps import Job
from robustbench_mixup.stages.attack import build_attack, evaluate_run
from robustbench_mixup.stages.diagnose import diagnose_run
from robustbench_mixup.stages.probe import probe_run
from robustbench_mixup.stages.progress import EpochProgress, Progress
from robustbench_mixup.stages.sweep_corrupt import run_sweep
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB, read_stored
from robustbench_mixup.store.runs import read_run_json


@dataclass(frozen=True)
class Context:
    """What every stage of one `robust-eval run` shares."""

    preset: Preset
    layout: Layout
    run: str
    device: str = "auto"
    data_root: str | Path | None = None
    download: bool = False
    argv: list[str] | None = None
    sweep_workers: int | None = None  # local worker processes of the sweep (None: a core each on the CPU)

    def stored(self) -> ResultsDB | None:
        """The results database, or None before anything was stored."""
        return ResultsDB(self.layout.database) if self.layout.database.is_file() else None

    def n_train(self) -> int | None:
        """The run's number of training images, from its run.json (None before training)."""
        stored = read_run_json(self.layout, self.run)
        return stored["dataset"]["n_train"] if stored is not None else None

    def n_test(self) -> int | None:
        """The run's number of test examples, from its run.json (None before training)."""
        stored = read_run_json(self.layout, self.run)
        return stored["dataset"]["n_test"] if stored is not None else None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Stage(Protocol):
    name: str
    records_own_time: bool  # training adds its own time (resumes included); the pipeline times the rest

    def done(self, ctx: Context) -> bool: ...

    def run(self, ctx: Context) -> Rendered | None: ...


@dataclass(frozen=True)
class Train:
    name: ClassVar[str] = "train"
    records_own_time: ClassVar[bool] = True

    def done(self, ctx: Context) -> bool:
        db = ctx.stored()
        if db is None:
            return False
        with db:
            record = db.get_run(ctx.run)
        return record is not None and record["status"] == "done" and record["config"] == ctx.preset.train().to_dict()

    def run(self, ctx: Context) -> None:
        cfg = ctx.preset.train()
        with EpochProgress(total=cfg.epochs * len(cfg.members), desc=f"train {ctx.run}") as bar:
            train_run(cfg, run=ctx.run, out=ctx.layout.root, device=ctx.device, resume=True, data_root=ctx.data_root,
                      download=ctx.download, argv=ctx.argv, on_epoch=bar.update, on_start=bar.start)  # fmt: skip


@dataclass(frozen=True)
class Diagnose:
    """Each method's diagnostics on every test example, at the preset's noise levels."""

    name: ClassVar[str] = "diagnose"
    records_own_time: ClassVar[bool] = False

    def done(self, ctx: Context) -> bool:
        n_test, db = ctx.n_test(), ctx.stored()
        if n_test is None or db is None:
            return False
        with db:
            rows = db.diagnostics(ctx.run)
        wanted = {f"noise_acc@{e:g}" for e in ctx.preset.diagnose().eps or ()}
        return all(m in rows and rows[m]["n"] == n_test and wanted <= set(rows[m]) for m in ctx.preset.methods)

    def run(self, ctx: Context) -> None:
        with Progress("diagnose", "images") as bar:
            diagnose_run(ctx.preset.diagnose(), out=ctx.layout.root, run=ctx.run, device=ctx.device,
                         data_root=ctx.data_root, progress=bar)  # fmt: skip


@dataclass(frozen=True)
class Attack:
    """One attack of the preset in its mode (white and black box unless it says otherwise), on its ε grid."""

    attack: str
    records_own_time: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.attack

    def done(self, ctx: Context) -> bool:
        cfg = ctx.preset.attack(self.attack).validate()
        n_test, db = ctx.n_test(), ctx.stored()
        if n_test is None or db is None:
            return False
        n = n_test if cfg.n is None else min(cfg.n, n_test)
        atk = build_attack(cfg, ctx.preset.seed)  # the run's seed seeds its random starts, as it did when stored
        with db:
            rows = db.attack_rows(ctx.run, attack=self.attack, backend=cfg.backend, n=n)
        have = {(r["model"], r["mode"], r["eps"], AttackSetting.of(r)) for r in rows}
        modes = ("white", "black") if cfg.mode == "both" else (cfg.mode,)
        return all((m, mode, e, atk.setting(e, mode)) in have
                   for m in ctx.preset.methods for mode in modes for e in cfg.eps)  # fmt: skip

    def run(self, ctx: Context) -> None:
        with Progress(self.attack, "images") as bar:
            evaluate_run(ctx.preset.attack(self.attack), out=ctx.layout.root, run=ctx.run, device=ctx.device,
                         data_root=ctx.data_root, progress=bar)  # fmt: skip


@dataclass(frozen=True)
class Probe:
    name: ClassVar[str] = "probe"
    records_own_time: ClassVar[bool] = False

    def done(self, ctx: Context) -> bool:
        cfg, db = ctx.preset.probe(), ctx.stored()
        if db is None:
            return False
        with db:
            rows = db.probe_rows(ctx.run)
        grid = set(lambda_grid(cfg.lambdas).tolist())
        for model in ctx.preset.methods:
            lams = {r["lam"] for r in rows if (r["model"], r["pairs"], r["split"], r["same_class"])
                    == (model, cfg.pairs, cfg.split, cfg.same_class)}  # fmt: skip
            if not grid <= lams:  # rows of a finer grid hold these λ too, with the same numbers
                return False
        return True

    def run(self, ctx: Context) -> None:
        with Progress("probe", "pairs") as bar:
            result = probe_run(ctx.preset.probe(), out=ctx.layout.root, run=ctx.run, device=ctx.device,
                               data_root=ctx.data_root, progress=bar)  # fmt: skip
        draw_probe(ctx.layout, result)


@dataclass(frozen=True)
class Sweep:
    """The memorization sweep named like the run."""

    name: ClassVar[str] = "sweep"
    records_own_time: ClassVar[bool] = False

    def done(self, ctx: Context) -> bool:
        cfg, db = ctx.preset.sweep(), ctx.stored()
        if db is None:
            return False
        with db:
            sweep = db.get_sweep(ctx.run)
            finished = db.finished_jobs(ctx.run) if sweep is not None else set()
        return sweep is not None and sweep["config"] == cfg.to_dict() and finished == {j.key for j in cfg.jobs()}

    def run(self, ctx: Context) -> None:
        cfg = ctx.preset.sweep()
        with Progress("sweep", "epochs") as bar:

            def one(result: dict) -> None:
                last = result["history"][-1]
                bar.log(f"  sweep job done: {Job(**result['job']).describe()}, test error {last['test_err']:.1%}")

            # On the CPU its jobs run side by side, a core each: small models use two threads poorly (two
            # 4-epoch mnist-5k jobs: 43 s in two processes against 53 s one after the other on 2 cores).
            cpu = resolve_device(ctx.device).type == "cpu"
            workers = min(len(cfg.jobs()), os.cpu_count() or 1) if cpu else 1
            workers = workers if ctx.sweep_workers is None else ctx.sweep_workers
            result = run_sweep(cfg, name=ctx.run, out=ctx.layout.root, device=ctx.device, data_root=ctx.data_root,
                               on_job=one, progress=bar, jobs=workers)  # fmt: skip
        draw_sweep(ctx.layout, result)


@dataclass(frozen=True)
class Report:
    """The HTML report, at `Layout.report(run)`."""

    name: ClassVar[str] = "report"
    records_own_time: ClassVar[bool] = False

    def done(self, ctx: Context) -> bool:
        return False  # always rebuilt: it is cheap and shows everything stored so far

    def run(self, ctx: Context) -> Rendered:
        return render(out=ctx.layout.root, run=ctx.run)


def stages_for(p: Preset) -> tuple[Stage, ...]:
    """The stages of preset `p`: training, the diagnostics, one per attack of the preset, the probe, the sweep,
    the report."""
    return (Train(), Diagnose(), *(Attack(a.attack) for a in p.attacks), Probe(), Sweep(), Report())


def for_imported(p: Preset, config: dict[str, Any]) -> Preset:
    """Preset `p` as it applies to an imported run (`config`, its stored record): its dataset and its methods, the
    attacks in the white box alone where the import brought no black-box source."""
    attacks = p.attacks
    if SURROGATE not in config["members"]:
        attacks = tuple(dataclasses.replace(a, mode="white") for a in attacks if a.mode != "black")
    return dataclasses.replace(p, dataset=config["dataset"], methods=tuple(config["methods"]), attacks=attacks,
                               train_n=None)  # fmt: skip


def check_subset(p: Preset, layout: Layout, run: str) -> None:
    """Before anything is written: a stored run trained on other images than `p` would train on (started on
    another device, or with another --train-n) is refused with one line saying how to finish it."""
    record = read_stored(layout.database, lambda db: db.get_run(run))
    config = None if record is None else record["config"]
    if not isinstance(config, dict):
        return

    def others(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "train_n"}

    stored = config.get("train_n")
    if stored == p.train_n or others(config) != others(p.train().to_dict()):
        return  # the same images; or other settings as well, which training refuses with its own line
    raise UsageError(f"run {run!r} was trained on {training_images(stored)}, and here the preset trains on "
                     f"{training_images(p.train_n)}: pass --train-n {'all' if stored is None else stored} to finish "
                     "it as it started, or choose another --run")  # fmt: skip


def run_name(p: Preset, run: str | None) -> str:
    """The run's name: `run`, else the preset's name."""
    return check_run_name(p.name if run is None else run)


def run_pipeline(
    p: Preset,
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
    sweep_workers: int | None = None,
) -> Rendered:
    """Run (or finish) every stage of preset `p` as run `run` (default: the preset's name); returns the
    report (its path and the verdicts it judged, for the console to print as they are). `sweep_workers`:
    local processes of the memorization sweep (None: a core each on the CPU)."""
    p = p.on(resolve_device(device).type)
    if sweep_workers is not None and sweep_workers < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {sweep_workers}")
    ctx = Context(p, Layout(out), run_name(p, run), device, data_root, download, argv, sweep_workers)
    record = read_stored(ctx.layout.database, lambda db: db.get_run(ctx.run))
    if record is not None and is_imported(record["config"]):  # models from files: evaluate them, train nothing
        p = for_imported(p, record["config"])
        ctx = dataclasses.replace(ctx, preset=p)
        dropped: tuple[type, ...] = (Train, Sweep) if ctx.n_train() else (Train, Sweep, Probe)  # no pairs to probe
        stages: tuple[Stage, ...] = tuple(s for s in stages_for(p) if not isinstance(s, dropped))
        say(f"run {ctx.run!r} was imported: its models are evaluated as they are (no training, no memorization "
            "sweep, which trains models of its own)")  # fmt: skip
    else:
        stages = stages_for(p)
        p.train().validate()
        check_subset(p, ctx.layout, ctx.run)
    load_dataset(p.dataset, root=data_root, download=download, train_n=p.train_n)  # one line, nothing written
    stored = ctx.stored()
    if stored is not None:
        with stored as db:
            if db.get_group(ctx.run) is not None:
                raise UsageError(f"{ctx.run!r} names a group of seeds under {str(ctx.layout.root)!r}: run it with "
                                 "its --seeds, or choose another --run")  # fmt: skip
    ensure_writable_dir(ctx.layout.root)  # before the first stage says anything
    for i, stage in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {stage.name}"
        if stage.done(ctx):
            say(f"{tag}: done before, skipped")
            continue
        say(f"{tag} ...")
        t0 = time.perf_counter()
        rendered = stage.run(ctx)
        seconds = time.perf_counter() - t0
        if not stage.records_own_time:
            with ResultsDB(ctx.layout.database) as db:
                db.add_timing(ctx.run, stage.name, seconds)
        say(f"{tag}: {seconds:.0f} s")
    assert isinstance(rendered, Rendered)  # the report is the last stage and is never skipped
    return rendered


def seed_run_name(group: str, seed: int) -> str:
    """The run of `seed` in group `group`: 'quick-s0'."""
    return check_run_name(f"{group}-s{seed}")


def check_group(layout: Layout, group: str, seeds: Sequence[int]) -> list[str]:
    """The runs of a group of `seeds` named `group` (checked, before anything is written): no seed twice,
    and neither the group's name nor a member's may already name the other kind of thing."""
    check_run_name(group)
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if not seeds or twice:
        raise UsageError(f"--seeds must list each seed once, got {list(seeds)}")
    runs = [seed_run_name(group, s) for s in seeds]
    if layout.database.is_file():
        with ResultsDB(layout.database) as db:
            if db.get_run(group) is not None:
                raise UsageError(f"{group!r} is already a run under {str(layout.root)!r}, so it cannot name a group "
                                 "of seeds: choose another --run")  # fmt: skip
            clash = [r for r in runs if db.get_group(r) is not None]
            stored = db.get_group(group)
        if clash:
            raise UsageError(f"{clash[0]!r} already names a group of seeds: choose another --run")
        if stored is not None and stored != runs:
            raise UsageError(f"group {group!r} already holds runs {', '.join(stored)}; give the same --seeds to "
                             "continue it, or choose another --run")  # fmt: skip
    return runs


def run_group(
    p: Preset,
    seeds: Sequence[int],
    *,
    out: str | Path = ".",
    run: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
    sweep_workers: int | None = None,
) -> tuple[str, list[str], Rendered]:
    """`run_pipeline` once per seed (runs GROUP-sS, each its own pair, surrogate and sweep seed), then the
    group's report, which pools the seeds; returns (group, runs, the group report and its verdicts). A re-run skips
    what is stored, as `run_pipeline` does."""
    layout = Layout(out)
    group = run_name(p, run)
    runs = check_group(layout, group, seeds)
    p = p.on(resolve_device(device).type)
    if sweep_workers is not None and sweep_workers < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {sweep_workers}")
    for seed in seeds:  # every seed's settings, before anything is written
        dataclasses.replace(p, seed=seed).train().validate()
    load_dataset(p.dataset, root=data_root, download=download, train_n=p.train_n)  # one line, nothing written
    ensure_writable_dir(layout.root)
    with ResultsDB(layout.database) as db:
        db.record_group(group, runs)
    judged = {}
    for i, (seed, name) in enumerate(zip(seeds, runs, strict=True), 1):
        say(f"== seed {seed} ({i}/{len(seeds)}): run {name}")
        judged[name] = run_pipeline(dataclasses.replace(p, seed=seed), out=out, run=name, device=device,
                                    data_root=data_root, download=download, argv=argv,
                                    sweep_workers=sweep_workers).verdicts  # fmt: skip
    return group, runs, render_group(out, group, runs, judged)  # each seed judged once, by its own report stage
