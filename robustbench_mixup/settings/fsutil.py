"""Small file-system helpers: atomic writes, one naming scheme for temporaries, exclusive locks.

Everything the suite writes goes through `atomic_path`, so a crash or kill -9 never leaves a
half-written file under its final name (the temporary sits beside the target, then `os.replace`).
Every temporary file is named `.NAME.RANDOM.tmp` (`temporary`), so one pattern finds what a kill left
behind; only the process holding the folder's lock (`exclusive`) removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robustbench_mixup.settings.errors import UsageError


def temporary(target: Path) -> Path:
    """A new empty file `.TARGETNAME.RANDOM.tmp` beside `target`: the one scheme for temporaries."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on file `lock` for the duration, or raise UsageError naming the process that
    holds it. The operating system releases it when the holder exits, however it exits (kill -9 too)."""
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock, "a+")  # noqa: SIM115 (held open for the duration: the lock lives with the descriptor)
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise UsageError(f"{what} is in use by pid {holder}: wait for it to finish, or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(target)
    try:
        yield tmp
        # mkstemp makes the file private (0600); the final file gets the usual mode under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        # The rename itself is only durable once the directory entry is on disk.
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries that a killed `atomic_path` left in `directory`; returns what went.

    Only for a directory that no other process is writing: the caller owns the run it belongs to.
    """
    d = Path(directory)
    # `.*.tmp`: our own scheme; `.tmp*`: what safetensors' own writer left before files were written here.
    stale = sorted({*d.glob(".*.tmp"), *d.glob(".tmp*")}) if d.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def ensure_writable_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Create `path` if needed and prove we can write there; raise UsageError otherwise."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        temporary(p / "write-test").unlink()
    except OSError as exc:
        raise UsageError(f"{what} {str(p)!r} is not a writable directory ({exc.strerror})") from None
    return p
