"""The results database: one SQLite file, `reports/results.sqlite` under the output root.

Stdlib `sqlite3` in WAL mode, so a report can read while a run writes. The schema is created and
versioned here (`PRAGMA user_version`); every write is one explicit transaction, so an interruption
leaves no partial rows. Plain tables with JSON text columns: `pandas.read_sql("select * from epochs", con)`
reads it directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UsageError

SCHEMA_VERSION = 1

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            name TEXT PRIMARY KEY,          -- the --run NAME; safe as a path component
            kind TEXT NOT NULL,             -- 'train' (later: 'sweep', ...)
            status TEXT NOT NULL,           -- 'running' | 'done'
            created TEXT NOT NULL,          -- ISO 8601, UTC
            updated TEXT NOT NULL,
            seed INTEGER,
            dataset TEXT,
            config TEXT NOT NULL,           -- JSON: the resolved configuration
            environment TEXT NOT NULL,      -- JSON: versions, device, git commit, command line
            timings TEXT NOT NULL DEFAULT '{}'  -- JSON: seconds per stage
        )""",
        """CREATE TABLE epochs (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- 'erm' | 'mixup' | 'surrogate'
            epoch INTEGER NOT NULL,         -- 1-based
            lr REAL, train_loss REAL, train_acc REAL, test_acc REAL,
            seconds REAL, images_per_s REAL,
            PRIMARY KEY (run, model, epoch)
        )""",
    ],
]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def database_path(out: str | os.PathLike[str]) -> Path:
    return Path(out) / "reports" / "results.sqlite"


class ResultsDB:
    """A connection to the results database; creates or migrates the schema on open."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so DDL is transactional too.
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(
                    f"{self.path} has schema version {version}; this robust-eval ({__version__}) reads up to "
                    f"{SCHEMA_VERSION}: upgrade robust-eval"
                )
            for steps in MIGRATIONS[version:]:
                for sql in steps:
                    c.execute(sql)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- runs -------------------------------------------------------------------------------------

    def start_run(self, name: str, *, kind: str, config: dict, seed: int, dataset: str, environment: dict) -> None:
        """Register a run (or mark an existing one running again, on resume)."""
        now = _now()
        with self.transaction() as c:
            c.execute(
                """INSERT INTO runs (name, kind, status, created, updated, seed, dataset, config, environment)
                   VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET status='running', updated=excluded.updated""",
                (name, kind, now, now, seed, dataset, json.dumps(config, sort_keys=True), json.dumps(environment)),
            )

    def finish_run(self, name: str, *, timings: dict[str, float]) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status='done', updated=?, timings=? WHERE name=?",
                (_now(), json.dumps(timings, sort_keys=True), name),
            )

    def get_run(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        run = dict(row)
        for key in ("config", "environment", "timings"):
            run[key] = json.loads(run[key])
        return run

    def latest_run(self, kind: str = "train") -> str | None:
        row = self.conn.execute(
            "SELECT name FROM runs WHERE kind=? ORDER BY created DESC, rowid DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else row[0]

    # --- per-epoch metrics ------------------------------------------------------------------------

    def record_epoch(self, run: str, model: str, epoch: int, metrics: dict[str, float]) -> None:
        """Write one epoch's metrics; a resumed epoch replaces its earlier row (same values)."""
        cols = ("lr", "train_loss", "train_acc", "test_acc", "seconds", "images_per_s")
        with self.transaction() as c:
            c.execute(
                f"INSERT OR REPLACE INTO epochs (run, model, epoch, {', '.join(cols)}) "
                f"VALUES (?, ?, ?{', ?' * len(cols)})",
                (run, model, epoch, *(metrics.get(k) for k in cols)),
            )

    def epochs(self, run: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM epochs WHERE run=? ORDER BY model, epoch", (run,)).fetchall()
        return [dict(r) for r in rows]


def environment(device: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Provenance recorded with every run: versions, device, git commit (when available), command."""
    import torch

    env: dict[str, Any] = {
        "package_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "argv": list(argv) if argv is not None else None,
    }
    if device.startswith("cuda"):
        env["device_name"] = torch.cuda.get_device_name()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        env["git_commit"] = out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env
