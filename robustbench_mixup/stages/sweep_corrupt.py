"""The corrupted-label memorization sweep: the paper's Table 2, over noise × α × dropout × seed.

Each point of the grid is one training job with the same loop as `robust-eval train` (α = 0 is ERM) on
training labels of which a fraction has been replaced by wrong ones; test labels stay clean. For each
(noise, seed) ONE corrupted label set is drawn and shared by every method, so methods are compared on
the same labels. Per epoch a job measures test error, training error on the examples whose labels were
kept, and training error on the corrupted examples against their CORRUPTED labels (memorization: near
0 means the net learned the noise) and against their true labels.

Jobs run in worker processes (`--executor local --jobs N`) or as tasks on a Ray cluster (`--executor
ray`). Each job checkpoints every epoch (weights, momentum, per-epoch history) under
`checkpoints/sweeps/NAME/`; the one parent process writes the database as results come back. Running
the same command again skips finished jobs and resumes unfinished ones from their last epoch, with
exactly the results of an uninterrupted sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustbench_mixup.learning import seeding
from robustbench_mixup.learning.data import Dataset, corrupt_labels, load_dataset
from robustbench_mixup.learning.devices import accuracy, predict, resolve_device
from robustbench_mixup.learning.loop import check_data, fit, load_trainable, new_trainable, save_trainable
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import ensure_writable_dir, exclusive, remove_stale_temporaries
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.settings.sweeps import Job, SweepConfig, with_methods
from robustbench_mixup.stages.executors import check_executor, die_with, run_all
from robustbench_mixup.stages.progress import Meter
from robustbench_mixup.store.codec import pack_outcomes
from robustbench_mixup.store.database import ResultsDB, refuse_other_sweep

# --- one job (runs in a worker process or a Ray task) ---------------------------------------------


def memorization_errors(
    pred: torch.Tensor, true: torch.Tensor, noisy: torch.Tensor, mask: torch.Tensor
) -> dict[str, float | None]:
    """Training errors of predictions `pred` on kept and on corrupted examples (None where there are none)."""

    def err(sel: torch.Tensor, labels: torch.Tensor) -> float | None:
        return float((pred[sel] != labels[sel]).float().mean()) if bool(sel.any()) else None

    return {
        "train_real_err": err(~mask, true),  # examples whose labels were kept
        "train_corrupted_err": err(mask, noisy),  # corrupted examples vs their corrupted labels: memorization
        "train_corrupted_true_err": err(mask, true),  # ... and vs their true labels
    }


def job_labels(data: Dataset, job: Job) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy training labels, corrupted mask) of `job`: one set per (noise, seed), whatever α and dropout."""
    gen = seeding.generator(job.seed, "corrupt", job.noise)
    return corrupt_labels(data.train_labels, job.noise, data.num_classes, generator=gen)


HISTORY_KEYS = ("epoch", "train_loss", "test_err", "train_real_err", "train_corrupted_err", "train_corrupted_true_err")


def _checked_history(history: object, epochs: int, path: Path) -> list[dict[str, Any]]:
    """A job checkpoint's per-epoch history: `epochs` rows of numbers (None where a subset is empty)."""
    ok = isinstance(history, list) and len(history) == epochs
    for i, row in enumerate(history if ok else []):  # type: ignore[arg-type]
        ok = ok and isinstance(row, dict) and set(row) == set(HISTORY_KEYS) and row["epoch"] == i + 1
        ok = ok and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row.values())
    if not ok:
        raise UsageError(
            f"checkpoint {str(path)!r} holds no valid history of its {epochs} epochs: delete it to redo it"
        )
    return list(history)  # type: ignore[arg-type]


def run_job(
    cfg: SweepConfig, job: Job, out: str, sweep: str, device: str, data_root: str | None, threads: int | None = None,
    on_epoch: Callable[[Job, int], None] | None = None, parent: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train one grid point to the end (resuming from its checkpoint); returns its per-epoch history.

    Runs in a worker process or a Ray task, so it takes plain arguments; `on_epoch(job, epoch)` only
    where it runs in the calling process (progress); `parent`, in a local worker process: the sweep's
    pid, whose death ends the worker."""
    if parent is not None:
        die_with(parent)
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    tcfg = cfg.job_config(job)
    data = load_dataset(cfg.dataset, root=data_root, train_n=cfg.train_n)
    noisy, mask = job_labels(data, job)
    path = Layout(out).sweep_checkpoint(sweep, job.key)
    if path.exists():
        model, opt, meta = load_trainable(path, tcfg, dev)
        done, history = meta["epoch"], _checked_history(meta.get("history"), meta["epoch"], path)
    else:
        (model, opt), done, history = new_trainable(tcfg, data, job.seed, dev), 0, []
    x_tr, y_noisy, y_true, m = (t.to(dev) for t in (data.train_images, noisy, data.train_labels, mask))
    x_te, y_te = data.test_images.to(dev), data.test_labels.to(dev)

    def errors(model: torch.nn.Module) -> dict[str, float | None]:
        test_err = 1 - accuracy(model, x_te, y_te)
        return {"test_err": test_err, **memorization_errors(predict(model, x_tr), y_true, y_noisy, m)}

    epochs = fit(model, opt, tcfg, x_tr, y_noisy, method=job.mixing, param=job.alpha, seed=job.seed,
                 num_classes=data.num_classes, augment=data.augment, evaluate=errors, start_epoch=done)  # fmt: skip
    for epoch, metrics in epochs:
        history.append({"epoch": epoch, "train_loss": metrics["train_loss"], "test_err": metrics["test_err"],
                        **{k: metrics[k] for k in ("train_real_err", "train_corrupted_err",
                                                   "train_corrupted_true_err")}})  # fmt: skip
        save_trainable(path, model, opt, {"train": tcfg.to_dict(), "job": dataclasses.asdict(job), "epoch": epoch,
                                          "history": history, "noise": job.noise})  # fmt: skip
        if on_epoch is not None:
            on_epoch(job, epoch)
    fits = predict(model, x_tr)[m] == y_noisy[m]  # per corrupted example: memorized at the last epoch
    return {"key": job.key, "job": dataclasses.asdict(job), "history": history, "n_corrupted": int(mask.sum()),
            "corrupted_fit": pack_outcomes(fits)}  # fmt: skip


# --- the parent: schedule, collect, record ----------------------------------------------------------


@dataclass
class SweepResult:
    name: str
    config: SweepConfig
    jobs: list[dict[str, Any]]  # per job: its grid point, method, summary metrics


def run_sweep(
    cfg: SweepConfig,
    *,
    name: str,
    out: str | Path = ".",
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    on_job: Callable[[dict[str, Any]], None] | None = None,
    progress: Meter | None = None,
) -> SweepResult:
    """Run (or resume) sweep `name` under `out`; returns every job's summary, finished ones included.

    `on_job(result)` is called as each job finishes; `progress` counts epochs (each epoch as it ends
    where jobs run in this process, a job's epochs when it comes back from a worker)."""
    cfg.validate()
    layout = Layout(out)
    ckdir = layout.sweep_dir(name)  # checks the name
    check_executor(executor, jobs, address)
    resolve_device(device)
    refuse_other_sweep(layout.database, name, "corrupt", cfg.to_dict(), where=str(layout.root))
    # a missing dataset (or a subset larger than it) stops here, before anything is written
    data = load_dataset(cfg.dataset, root=data_root, train_n=cfg.train_n)
    check_data(cfg.job_config(cfg.jobs()[0]), len(data.train_labels))
    ensure_writable_dir(layout.root)
    with exclusive(layout.sweep_lock(name), f"sweep {name!r}"), ResultsDB(layout.database) as db:
        remove_stale_temporaries(ckdir)  # under the lock: no other process is writing here
        db.start_sweep(name, cfg.to_dict(), [(j.key, dataclasses.asdict(j)) for j in cfg.jobs()])
        finished = db.finished_jobs(name)
        todo = [j for j in cfg.jobs() if j.key not in finished]
        db.mark_started(name, [j.key for j in todo])
        submit = (cfg, str(layout.root.resolve()), name, device, None if data_root is None else str(data_root))
        for job, result in run_all(run_job, todo, submit, key=lambda j: j.key, epochs=lambda j: cfg.epochs,
                                   progress=progress, executor=executor, workers=jobs, address=address):  # fmt: skip
            db.record_sweep_job(name, job.key, result["history"], result["corrupted_fit"], result["n_corrupted"])
            if on_job is not None:
                on_job(result)
        summaries = db.sweep_jobs(name)
    summaries = with_methods(summaries)
    return SweepResult(name, cfg, summaries)
