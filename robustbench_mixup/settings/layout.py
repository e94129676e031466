"""Where everything lives under the output root (`--out`): the one place that spells a path.

    OUT/
      checkpoints/RUN/{erm,mixup,surrogate}.safetensors, run.json   a training run
      checkpoints/sweeps/SWEEP/JOB.safetensors                       a sweep's jobs
      checkpoints/sweeps/SWEEP/CELL/                                 a robustness sweep's cell (an OUT of its own)
      attacks/RUN/*.safetensors                                      saved transfer (black-box) sets
      reports/results.sqlite                                         the results database
      reports/RUN/index.html, probe-SPLIT-SAMECLASS.png              a run's report and probe figure
      reports/sweeps/SWEEP/curves.png                                a sweep's figure
      reports/sweeps/SWEEP/index.html, effects.png                   a robustness sweep's report
      reports/compare-TAG/index.html                                 a comparison of runs

Every name that becomes a path component is checked here, whatever its source (the command line, the
database, a preset), so no name can reach outside `OUT` or land on a path the layout uses for
something else: `sweeps` (the folder of every sweep), the database's files, and `compare-*` are
reserved as run names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from robustbench_mixup.settings.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DATABASE = "results.sqlite"
# Folders and files beside the runs' folders; SQLite adds -wal/-shm (WAL mode) or -journal beside the database.
RESERVED_RUN_NAMES = frozenset(
    {"sweeps", DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", "readme.md"}
)


def check_name(name: object, what: str = "run name") -> str:
    """Return `name` if it is safe as one path component, else raise UsageError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid {what} {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_run_name(name: object) -> str:
    """A run name: safe as a path component, and not one of the names the layout itself uses."""
    check_name(name, "run name")
    assert isinstance(name, str)
    folded = name.casefold()  # case-insensitive file systems (macOS, Windows) would collide too
    if folded in RESERVED_RUN_NAMES or folded.startswith("compare-"):
        raise UsageError(
            f"run name {name!r} is reserved (the output folders use it): choose another --run; "
            f"reserved are {', '.join(sorted(RESERVED_RUN_NAMES))} and compare-*"
        )
    return name


def _file_label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:40]


class Layout:
    """The paths under one output root. Building a path checks the name that goes into it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # --- the results database ---------------------------------------------------------------------
    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def database(self) -> Path:
        return self.reports / DATABASE

    # --- a training run ---------------------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        return self.root / "checkpoints" / check_run_name(run)

    def checkpoint(self, run: str, member: str) -> Path:
        return self.run_dir(run) / f"{check_name(member, 'model name')}.safetensors"

    def run_lock(self, run: str) -> Path:
        """Held by the process training `run` (a second one on the same name is refused). Beside the run's
        folder, not in it: taking the lock must not create the folder whose existence means "a run"."""
        return self.root / "checkpoints" / f".{check_run_name(run)}.lock"

    def run_json(self, run: str) -> Path:
        return self.run_dir(run) / "run.json"

    def attacks_dir(self, run: str) -> Path:
        return self.root / "attacks" / check_run_name(run)

    def attacks_lock(self, run: str) -> Path:
        return self.attacks_dir(run) / ".lock"

    def transfer_set(self, run: str, attack: str, backend: str, source_label: str, eps: float, digest: str) -> Path:
        name = f"{attack}-{backend}-{_file_label(source_label)}-eps{eps:.6g}-{digest}.safetensors"
        return self.attacks_dir(run) / name

    def report_dir(self, run: str) -> Path:
        return self.reports / check_run_name(run)

    def report(self, run: str) -> Path:
        return self.report_dir(run) / "index.html"

    def probe_figure(self, run: str, split: str, same_class: str, pairs: int) -> Path:
        """One file per probe setting, pairs included: a probe of other settings never replaces the figure of
        the setting the claims read."""
        return self.report_dir(run) / f"probe-{split}-{same_class}-{int(pairs)}.png"

    # --- sweeps -----------------------------------------------------------------------------------
    def sweep_dir(self, sweep: str) -> Path:
        return self.root / "checkpoints" / "sweeps" / check_name(sweep, "sweep name")

    def sweep_lock(self, sweep: str) -> Path:
        return self.root / "checkpoints" / "sweeps" / f".{check_name(sweep, 'sweep name')}.lock"

    def sweep_checkpoint(self, sweep: str, job_key: str) -> Path:
        return self.sweep_dir(sweep) / f"{check_name(job_key, 'job key')}.safetensors"

    def sweep_figure(self, sweep: str) -> Path:
        return self.reports / "sweeps" / check_name(sweep, "sweep name") / "curves.png"

    def cell_root(self, sweep: str, cell_key: str) -> Path:
        """A robustness sweep's cell: the output root its run is trained and attacked under."""
        return self.sweep_dir(sweep) / check_name(cell_key, "cell key")

    def sweep_report(self, sweep: str) -> Path:
        return self.reports / "sweeps" / check_name(sweep, "sweep name") / "index.html"

    # --- comparisons ------------------------------------------------------------------------------
    def comparison(self, tag: str) -> Path:
        return self.reports / f"compare-{check_name(tag, 'comparison name')}" / "index.html"
