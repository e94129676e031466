"""The train stage: a named run of every method of its settings (plus the black-box surrogate), from the
same initial weights and batches; resume, provenance, checkpoints."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustbench_mixup.learning.data import Dataset, load_dataset
from robustbench_mixup.learning.devices import accuracy, place, predict, resolve_device
from robustbench_mixup.learning.loop import check_data, fit, init_model, load_trainable, make_optimizer, save_trainable
from robustbench_mixup.settings.config import SURROGATE, TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import (
    atomic_write_json,
    ensure_writable_dir,
    exclusive,
    remove_stale_temporaries,
)
from robustbench_mixup.settings.layout import Layout, check_run_name
from robustbench_mixup.store.database import ResultsDB, read_stored
from robustbench_mixup.store.provenance import environment
from robustbench_mixup.store.runs import read_run_json


@dataclass
class Member:
    name: str
    method: str
    param: float
    seed: int
    model: nn.Module
    optimizer: torch.optim.SGD
    epochs_done: int


@dataclass
class RunResult:
    run: str
    out: Path
    final: dict[str, dict[str, float]]  # member -> last epoch's metrics
    seconds: float


def train_run(
    cfg: TrainConfig,
    *,
    run: str,
    out: str | Path = ".",
    device: str = "auto",
    resume: bool = False,
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
    members: tuple[str, ...] | None = None,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Train a paired run `run` under `out` (checkpoints/RUN/, reports/results.sqlite): every member of
    `cfg.members` (its methods and the surrogate) unless `members` names some of them.

    Everything is validated, and the dataset loaded, before anything is written. An existing run is
    continued only with `resume=True` and the same configuration; a finished one is left as it is.
    `on_start(epochs)` is told how many member-epochs are left to train, `on_epoch(member, epoch,
    metrics)` is called after each (progress display).
    """
    cfg.validate()
    check_run_name(run)
    members = cfg.members if members is None else members
    if set(members) - set(cfg.members) or not members:
        raise UsageError(f"members must be a non-empty subset of {cfg.members}, got {members}")
    dev = resolve_device(device)
    layout = Layout(out)
    ckdir = layout.run_dir(run)
    if not resume and (ckdir.exists() or read_stored(layout.database, lambda db: db.get_run(run)) is not None):
        raise UsageError(
            f"run {run!r} already exists under {str(layout.root)!r}: pass --resume to continue it, "
            "or choose another --run"
        )
    dataset = load_dataset(
        cfg.dataset, root=data_root, download=download, split_seed=cfg.split_seed, train_n=cfg.train_n
    )
    check_data(cfg, len(dataset.train_labels))

    ensure_writable_dir(layout.root)
    if read_stored(layout.database, lambda db: db.get_group(run)) is not None:
        raise UsageError(f"{run!r} names a group of seeds under {str(layout.root)!r}: choose another --run")
    with exclusive(layout.run_lock(run), f"run {run!r}"), contextlib.ExitStack() as stack:
        # Under the lock, so no other process on this name writes between these checks and our writes.
        previous = read_stored(layout.database, lambda db: db.get_run(run))
        if previous is not None and previous["config"] != cfg.to_dict():
            raise UsageError(f"run {run!r} was started with other settings ({previous['config']}); use another --run")
        state = _prepare_members(cfg, dataset, layout, run, dev, members)  # every checkpoint read and checked
        read_run_json(layout, run)  # a damaged run.json is refused with one line, not silently written over
        db = stack.enter_context(ResultsDB(layout.database))  # the first write
        db.start_run(
            run,
            kind="train",
            config=cfg.to_dict(),
            seed=cfg.seed,
            dataset=cfg.dataset,
            environment=environment(str(dev), argv),
        )
        remove_stale_temporaries(ckdir)  # a kill -9 mid-write leaves its temporary behind
        atomic_write_json(layout.run_json(run), {"run": run, "config": cfg.to_dict(), "dataset": dataset.describe()})
        started = time.perf_counter()
        x_tr, y_tr, x_te, y_te = (
            t.to(dev) for t in (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
        )

        def test_accuracy(model: nn.Module) -> dict[str, float]:
            return {"test_acc": accuracy(model, x_te, y_te)}

        drivers = {
            m.name: fit(m.model, m.optimizer, cfg, x_tr, y_tr, method=m.method, param=m.param, seed=m.seed,
                        num_classes=dataset.num_classes, augment=dataset.augment, evaluate=test_accuracy,
                        start_epoch=m.epochs_done)
            for m in state
        }  # fmt: skip
        final: dict[str, dict[str, float]] = {}
        if on_start is not None:
            on_start(sum(cfg.epochs - m.epochs_done for m in state))
        for epoch in range(cfg.epochs):  # the members take turns, epoch by epoch
            for m in state:
                if m.epochs_done > epoch:
                    continue
                m.epochs_done, metrics = next(drivers[m.name])
                # Metrics first, then the checkpoint: a kill in between re-runs this epoch on resume
                # and replaces the row with the same numbers.
                db.record_epoch(run, m.name, m.epochs_done, metrics)
                _save_member(m, layout, cfg, dataset, run, metrics)
                final[m.name] = metrics
                if on_epoch is not None:
                    on_epoch(m.name, m.epochs_done, metrics)
        for m in state:  # per test example, for paired comparisons (the same numbers as the last test_acc)
            db.record_clean(run, m.name, "test", (predict(m.model, x_te) == y_te).cpu())
        seconds = time.perf_counter() - started
        db.finish_run(run, timings={"train": seconds})  # added to earlier calls' (a killed call records none)
        for m in state:
            if m.name not in final:  # finished before this call (a resume of a done run)
                final[m.name] = _last_metrics(db, run, m.name)
    return RunResult(run, layout.root, final, seconds)


def record_group(
    cfg: TrainConfig,
    group: str,
    runs: list[str],
    *,
    out: str | Path = ".",
    data_root: str | Path | None = None,
    download: bool = False,
) -> None:
    """Record `group` of `runs` (one per seed of `cfg`) under `out`, once `cfg`'s dataset is known to load:
    a dataset that cannot be read is one line before anything is written."""
    load_dataset(cfg.dataset, root=data_root, download=download, split_seed=cfg.split_seed, train_n=cfg.train_n)
    layout = Layout(out)
    layout.root.mkdir(parents=True, exist_ok=True)
    with ResultsDB(layout.database) as db:
        db.record_group(group, runs)


def _last_metrics(db: ResultsDB, run: str, member: str) -> dict[str, float]:
    rows = [r for r in db.epochs(run) if r["model"] == member]
    return dict(rows[-1]) if rows else {}


def _prepare_members(
    cfg: TrainConfig, dataset: Dataset, layout: Layout, run: str, device: torch.device, names: tuple[str, ...]
) -> list[Member]:
    members: list[Member] = []
    fresh: dict[int, nn.Module] = {}
    for name in names:
        path = layout.checkpoint(run, name)
        method, param, seed = cfg.member_setting(name)
        if path.exists():
            model, opt, meta = load_trainable(path, cfg, device)
            if meta.get("member") != name:
                raise UsageError(f"checkpoint {str(path)!r} holds {meta.get('member')!r}, not {name!r}")
            stored = meta.get("seed")
            if name == SURROGATE and isinstance(stored, int) and not isinstance(stored, bool):
                seed = stored  # one started before it had a seed stream of its own (seed + 1) goes on as it began
            elif stored != seed:
                raise UsageError(f"checkpoint {str(path)!r} was trained with seed {stored!r}, not the run's {seed}: "
                                 "restore the run's own checkpoints, or train it again under another name")  # fmt: skip
            members.append(Member(name, method, param, seed, model, opt, meta["epoch"]))
            continue
        if seed not in fresh:
            fresh[seed] = init_model(cfg, dataset, seed)
        model = place(copy.deepcopy(fresh[seed]), device)  # every method: the very same initial weights
        members.append(Member(name, method, param, seed, model, make_optimizer(model, cfg), 0))
    return members


def _save_member(m: Member, layout: Layout, cfg: TrainConfig, dataset: Dataset, run: str, metrics: dict) -> None:
    save_trainable(
        layout.checkpoint(run, m.name),
        m.model,
        m.optimizer,
        {
            "run": run, "member": m.name, "method": m.method, "param": m.param, "seed": m.seed,
            "epoch": m.epochs_done,
            "epochs": cfg.epochs, "train": cfg.to_dict(), "dataset": dataset.describe(), "metrics": metrics,
            "rng": "every stream is seeded from (seed, stream, epoch): the epoch number is the RNG state",
        },
    )  # fmt: skip
