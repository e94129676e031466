"""Where the jobs of a sweep run: in this process, in local worker processes, or as tasks on a Ray cluster.

Both sweeps (`sweep_corrupt.py`, memorization; `sweep_robust.py`, robustness) hand their jobs to `execute`, which
yields each job's result as it comes back; the calling process alone writes the database. A job is a plain
function `task(cfg, job, *args, threads=None, on_epoch=None, parent=None) -> dict`: `threads` caps torch's
threads in a worker (workers share the cores rather than fight), `on_epoch(job, epoch)` reports progress
where the task runs in this process, `parent` is the sweep's pid, whose death ends a local worker
(`die_with`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from robustbench_mixup.settings.config import Executor
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.stages.progress import Meter

Task = Callable[..., dict[str, Any]]


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


def check_executor(executor: str, workers: int, address: str | None) -> None:
    """Before anything is written: a known executor, at least one worker, and a Ray cluster that answers."""
    Executor.check(executor, "--executor")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--jobs must be ≥ 1, got {workers}")
    if executor == "ray":
        check_ray(address)


def execute(
    task: Task, jobs: Sequence[Any], args: tuple, *, executor: str = "local", workers: int = 1,
    address: str | None = None, on_epoch: Callable[[Any, int], None] | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """`task(args[0], job, *args[1:])` for every job, yielding each result as it finishes: in this process
    (one worker), in `workers` local processes, or on the Ray cluster at `address` (one GPU per task where
    the cluster has GPUs)."""
    cfg, rest = args[0], args[1:]
    if executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)  # check_ray found a cluster there
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_gpus=gpus)(task)
        pending = [remote.remote(cfg, job, *rest) for job in jobs]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:  # a failed task, Ctrl-C or a consumer that stopped: nothing keeps running on the cluster
            for ref in pending:
                ray.cancel(ref, force=True)
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield task(cfg, job, *rest, on_epoch=on_epoch)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(task, cfg, job, *rest, threads=threads, parent=os.getpid()) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()
    finally:  # on a failure the queued jobs are dropped, not run to the end before the error shows
        pool.shutdown(wait=True, cancel_futures=True)


def run_all(
    task: Task, jobs: Sequence[Any], args: tuple, *, key: Callable[[Any], str], epochs: Callable[[Any], int],
    progress: Meter | None = None, executor: str = "local", workers: int = 1, address: str | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:  # fmt: skip
    """`execute`, yielding (job, its result) as each finishes (a result names its job by `result["key"]`),
    with `progress` counted in epochs (`epochs(job)` each): one by one where a job runs in this process,
    all of a job's at once when it comes back from a worker. A resumed job ends early: its done epochs
    are never counted, so the bar may stop short of its total."""
    by_key = {key(job): job for job in jobs}
    ticked: set[str] = set()

    def tick(job: Any, _epoch: int) -> None:
        ticked.add(key(job))
        if progress is not None:
            progress.update(1)

    if progress is not None:
        progress.start(sum(epochs(job) for job in jobs))
    for result in execute(task, jobs, args, executor=executor, workers=workers, address=address, on_epoch=tick):
        job = by_key[result["key"]]
        if progress is not None and key(job) not in ticked:
            progress.update(epochs(job))
        yield job, result
