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
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import seeding
from .config import Executor, Job, SweepConfig
from .data import Dataset, corrupt_labels, load_dataset
from .devices import accuracy, predict, resolve_device
from .errors import UsageError
from .fsutil import ensure_writable_dir, exclusive, remove_stale_temporaries
from .layout import Layout
from .progress import Meter
from .results import ResultsDB, pack_outcomes, read_stored
from .tables import method_order, table2, with_methods
from .train import check_data, fit, load_trainable, new_trainable, save_trainable

__all__ = ["Job", "SweepConfig", "run_job", "run_sweep", "table2"]


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


def die_with(parent: int, every: float = 1.0) -> None:
    """In a worker process: exit at once when `parent` is gone (a kill -9 of the sweep leaves no orphans
    training on, and a re-run of the sweep does not race them)."""

    try:  # Linux: the kernel kills this process the moment its parent dies (PR_SET_PDEATHSIG = 1)
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the watchdog below does it, within `every` seconds

    def watch() -> None:
        while os.getppid() == parent:  # also covers a parent that died before prctl took effect
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


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
    data = load_dataset(cfg.dataset, root=data_root)
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
    return {"job": dataclasses.asdict(job), "history": history, "n_corrupted": int(mask.sum()),
            "corrupted_fit": pack_outcomes(fits)}  # fmt: skip


# --- the parent: schedule, collect, record ----------------------------------------------------------


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail within `timeout` seconds, with one clear line, when nothing listens at a Ray address."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address must look like HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}): start one with 'ray start --head' "
            "or check --address"
        ) from None


def _local(jobs: list[Job], submit: tuple, workers: int, on_epoch: Callable[[Job, int], None] | None) -> Iterator[dict]:
    cfg, rest = submit[0], submit[1:]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(cfg, job, *rest, on_epoch=on_epoch)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)  # workers share the cores rather than fight
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, cfg, job, *rest, threads, parent=os.getpid()) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()


RAY_ANSWER_SECONDS = 10.0


def check_ray(address: str | None, timeout: float = RAY_ANSWER_SECONDS) -> None:
    """Before anything is written: Ray importable, and either already initialized in this process or a
    cluster that answers at `address` as Ray within `timeout` seconds (tried in a child process, killed
    at the deadline, since ray.init can retry an endpoint that is not Ray forever)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray: pip install 'robust-eval[distributed]'")
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    if address is None:
        raise UsageError("--executor ray needs --address HOST:PORT of a running cluster")
    check_ray_address(address)
    probe = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); ray.shutdown()"
    try:
        answer = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"{address} accepts connections but no Ray cluster answered there within {timeout:g} s: "
            "check --address (a Ray head's GCS port, 6379 by default)"
        ) from None
    if answer.returncode != 0:
        last = (answer.stderr.strip().splitlines() or ["no message"])[-1][:160]
        raise UsageError(f"no Ray cluster answers at {address} ({last}): check --address")


def _ray(jobs: list[Job], submit_args: tuple, address: str | None) -> Iterator[dict]:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)  # check_ray found a cluster there
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0  # one GPU per task where there are GPUs
    task = ray.remote(num_gpus=gpus)(run_job)
    pending = [task.remote(submit_args[0], job, *submit_args[1:]) for job in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


@dataclass
class SweepResult:
    name: str
    config: SweepConfig
    jobs: list[dict[str, Any]]  # per job: its grid point, method, summary metrics
    figure: Path | None


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
    Executor.check(executor, "--executor")
    if jobs < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {jobs}")
    if executor == "ray":
        check_ray(address)
    resolve_device(device)
    previous = read_stored(layout.database, lambda db: db.get_sweep(name))
    if previous is not None and previous["config"] != cfg.to_dict():
        raise UsageError(
            f"sweep {name!r} already exists under {str(layout.root)!r} with other settings; "
            "give the new settings another name"
        )
    data = load_dataset(cfg.dataset, root=data_root)  # a missing dataset stops here, before anything is written
    check_data(cfg.job_config(cfg.jobs()[0]), len(data.train_labels))
    ensure_writable_dir(layout.root)
    with exclusive(layout.sweep_lock(name), f"sweep {name!r}"), ResultsDB(layout.database) as db:
        remove_stale_temporaries(ckdir)  # under the lock: no other process is writing here
        db.start_sweep(name, cfg.to_dict(), [(j.key, dataclasses.asdict(j)) for j in cfg.jobs()])
        finished = db.finished_jobs(name)
        todo = [j for j in cfg.jobs() if j.key not in finished]
        db.mark_started(name, [j.key for j in todo])
        counted: dict[str, int] = {}

        def epoch_done(job: Job, epoch: int) -> None:
            counted[job.key] = counted.get(job.key, 0) + 1
            if progress is not None:
                progress.update(1)

        if progress is not None:
            progress.start(len(todo) * cfg.epochs)  # a resumed job finishes early: its done epochs are not redone
        submit = (cfg, str(layout.root), name, device, None if data_root is None else str(data_root))
        results = _local(todo, submit, jobs, epoch_done) if executor == "local" else _ray(todo, submit, address)
        for result in results:
            job = Job(**result["job"])
            db.record_sweep_job(name, job.key, result["history"], result["corrupted_fit"], result["n_corrupted"])
            if progress is not None and not counted.get(job.key):  # from a worker: its epochs at once
                progress.update(cfg.epochs)
            if on_job is not None:
                on_job(result)
        summaries = db.sweep_jobs(name)
    summaries = with_methods(summaries)
    figure = plot_sweep(name, summaries, layout.sweep_figure(name)) if summaries else None
    return SweepResult(name, cfg, summaries, figure)


# --- the table and the curves ----------------------------------------------------------------------


def plot_sweep(name: str, summaries: list[dict[str, Any]], path: Path) -> Path:
    """Per noise level: test error and training error on corrupted labels against epochs, per method; a PNG
    at `path` (atomic)."""
    from . import figures  # matplotlib only when a figure is drawn

    noises = sorted({s["noise"] for s in summaries})
    methods = list(dict.fromkeys(s["method"] for s in sorted(summaries, key=method_order)))
    colors = dict(zip(methods, figures.palette(len(methods)), strict=False))
    with figures.theme():
        fig, axes = figures.new_figure(2, len(noises), figsize=(3.6 * len(noises), 5.4), squeeze=False, sharex=True)
        for c, noise in enumerate(noises):
            for method in methods:
                runs = [s["history"] for s in summaries if s["noise"] == noise and s["method"] == method]
                if not runs:
                    continue
                epochs = [h["epoch"] for h in runs[0]]
                for r, (col, label) in enumerate(
                    (("test_err", "test error %"), ("train_corrupted_err", "train error on corrupted labels %"))
                ):
                    series = [[h[col] for h in run] for run in runs]
                    if any(v is None for s in series for v in s):
                        continue
                    mean = [100 * statistics.fmean(vals) for vals in zip(*series, strict=True)]
                    axes[r][c].plot(epochs, mean, label=method, color=colors[method])
                    axes[r][c].set_ylabel(label)
            axes[0][c].set_title(f"{noise:.0%} corrupted labels")
            axes[1][c].set_xlabel("epoch")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"sweep {name}: mean over seeds", fontsize=9)
        fig.tight_layout()
        return figures.save_png(fig, path, dpi=100)
