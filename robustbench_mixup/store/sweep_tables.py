"""The sweeps' tables of the results database: a memorization sweep's jobs and epochs, a robustness sweep's cells
and their per-example outcomes.

`SweepTables` is a part of `database.ResultsDB`, which opens and checks the file at its one boundary; a sweep's
name is registered once, as one kind of sweep, so neither sweep command can take the other's.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from robustbench_mixup.settings.config import ATTACKS, METHODS
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.store.codec import is_int as _int
from robustbench_mixup.store.codec import now as _now
from robustbench_mixup.store.codec import unpack_outcomes

SWEEP_KINDS = {"corrupt": "a memorization sweep", "robust": "a robustness sweep"}


def _register_sweep(c: sqlite3.Connection, name: str, kind: str, config: dict, now: str) -> None:
    """The sweep's row (created once; a resume only touches `updated`)."""
    c.execute(
        "INSERT INTO sweeps (name, kind, config, created, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET updated=excluded.updated",
        (name, kind, json.dumps(config, sort_keys=True), now, now),
    )


class SweepTables:
    """The sweep methods of `ResultsDB` (which provides the connection, transactions and the damage checks)."""

    conn: sqlite3.Connection
    transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _json: Callable[[str, str, str, Any], dict[str, Any]]
    _unusable: Callable[..., UsageError]
    _unpacked: Callable[[str, Callable[[Any, int], Any], Any, int], Any]

    # --- sweeps ------------------------------------------------------------------------------------

    def get_sweep(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM sweeps WHERE name=?", (name,)).fetchone()
        return None if row is None else {**dict(row), "config": self._json("sweeps", name, "config", row["config"])}

    def start_sweep(self, name: str, config: dict, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        """Register the sweep and its grid (existing rows are kept: this is also the resume path)."""
        now = _now()
        with self.transaction() as c:
            _register_sweep(c, name, "corrupt", config, now)
            c.executemany(
                """INSERT OR IGNORE INTO sweep_jobs (sweep, key, noise, alpha, dropout, seed, mixing, status, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)""",
                [
                    (name, key, j["noise"], j["alpha"], j["dropout"], j["seed"], j.get("mixing", "mixup"), now)
                    for key, j in jobs
                ],
            )

    def finished_jobs(self, name: str) -> set[str]:
        """Keys of the jobs that are done and carry their per-example outcomes (a job finished before v6 is
        handed out again: its checkpoint is read back, nothing is retrained, and the outcomes are stored)."""
        rows = self.conn.execute(
            "SELECT key FROM sweep_jobs WHERE sweep=? AND status='done' AND corrupted_fit IS NOT NULL", (name,)
        )
        return {r[0] for r in rows}

    # --- robustness sweeps ---------------------------------------------------------------------------

    def start_robust_sweep(self, name: str, config: dict, cells: list[dict[str, Any]]) -> set[str]:
        """Register the sweep and its cells (existing rows kept: the resume path); returns the finished cells'
        keys, and marks the others as started."""
        now = _now()
        with self.transaction() as c:
            _register_sweep(c, name, "robust", config, now)
            c.executemany(
                "INSERT OR IGNORE INTO robust_cells (sweep, key, alpha, epochs, seed, status, updated) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(name, x["key"], x["alpha"], x["epochs"], x["seed"], now) for x in cells],
            )
            done = {r[0] for r in c.execute("SELECT key FROM robust_cells WHERE sweep=? AND status='done'", (name,))}
            c.executemany(
                "UPDATE robust_cells SET status='running', starts=starts+1, updated=? WHERE sweep=? AND key=?",
                [(now, name, x["key"]) for x in cells if x["key"] not in done],
            )
        return done

    def record_robust_cell(self, name: str, key: str, rows: list[dict[str, Any]]) -> None:
        """A finished cell: per method, its clean and attacked outcomes (`correct` packed), in one transaction."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO robust_results (sweep, key, model, attack, eps, n, top1, correct) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(name, key, r["model"], r["attack"], r["eps"], r["n"], r["top1"], r["correct"]) for r in rows],
            )
            c.execute("UPDATE robust_cells SET status='done', updated=? WHERE sweep=? AND key=?", (_now(), name, key))

    def robust_rows(self, name: str) -> list[dict[str, Any]]:
        """Every stored outcome of the sweep's finished cells, with the cell's α, epochs and seed and `correct`
        as a numpy bool array. Every column is checked (a known method and attack, finite numbers in range, one
        n per cell, a blob of its size); anything else is refused as damage."""
        rows = [dict(r) for r in self.conn.execute(
            "SELECT r.*, c.alpha, c.epochs, c.seed FROM robust_results r JOIN robust_cells c "
            "ON r.sweep = c.sweep AND r.key = c.key WHERE r.sweep=? AND c.status='done' "
            "ORDER BY c.epochs, c.alpha, c.seed, r.model, r.attack, r.eps", (name,))]  # fmt: skip

        def real(v: Any, lo: float, hi: float) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi

        n_of: dict[str, int] = {}
        for r in rows:
            ok = (r["model"] in METHODS and (r["attack"] == "clean" or r["attack"] in ATTACKS) and real(r["eps"], 0, 1)
                  and real(r["top1"], 0, 1) and real(r["alpha"], 1e-300, math.inf) and _int(r["epochs"])
                  and r["epochs"] >= 1 and _int(r["seed"]) and r["seed"] >= 0 and _int(r["n"]) and r["n"] >= 1
                  and n_of.setdefault(r["key"], r["n"]) == r["n"])  # fmt: skip
            if not ok:
                what = {k: r[k] for k in ("key", "model", "attack", "eps", "n", "top1", "alpha", "epochs", "seed")}
                raise self._unusable(f"is damaged (a robust_results row of {name!r} is not valid: {what})")
            r["correct"] = self._unpacked(f"robust_results.correct of {name!r}", unpack_outcomes, r["correct"], r["n"])
        return rows

    def mark_started(self, name: str, keys: list[str]) -> None:
        with self.transaction() as c:
            c.executemany(
                "UPDATE sweep_jobs SET status='running', starts=starts+1, updated=? WHERE sweep=? AND key=?",
                [(_now(), name, k) for k in keys],
            )

    def record_sweep_job(
        self, name: str, key: str, history: list[dict[str, Any]], corrupted_fit: bytes | None = None,
        n_corrupted: int | None = None,
    ) -> None:  # fmt: skip
        """A finished job: every epoch and its summary (with, per corrupted example, whether the last epoch's
        model predicts its corrupted label, packed), in one transaction."""
        cols = ("train_loss", "test_err", "train_real_err", "train_corrupted_err", "train_corrupted_true_err")
        last = history[-1]
        with self.transaction() as c:
            c.executemany(
                f"INSERT OR REPLACE INTO sweep_epochs (sweep, key, epoch, {', '.join(cols)}) "
                f"VALUES (?, ?, ?{', ?' * len(cols)})",
                [(name, key, h["epoch"], *(h[k] for k in cols)) for h in history],
            )
            c.execute(
                """UPDATE sweep_jobs SET status='done', epochs=?, best_test_err=?, last_test_err=?, train_real_err=?,
                   train_corrupted_err=?, train_corrupted_true_err=?, corrupted_fit=?, n_corrupted=?, updated=?
                   WHERE sweep=? AND key=?""",
                (
                    last["epoch"], min(h["test_err"] for h in history), last["test_err"], last["train_real_err"],
                    last["train_corrupted_err"], last["train_corrupted_true_err"], corrupted_fit, n_corrupted, _now(),
                    name, key,
                ),
            )  # fmt: skip

    def sweep_jobs(self, name: str) -> list[dict[str, Any]]:
        """Finished jobs of sweep `name` with their summaries, per-epoch `history` and `corrupted_fit` (a numpy
        bool array per corrupted example; None for jobs stored before v6)."""
        rows = self.conn.execute("SELECT * FROM sweep_jobs WHERE sweep=? AND status='done' ORDER BY key", (name,))
        jobs = [dict(r) for r in rows]
        for job in jobs:
            if job["mixing"] not in METHODS or job["mixing"] == "erm":
                raise self._unusable(f"is damaged (sweep_jobs.mixing of {name!r} is {job['mixing']!r}, not a method)")
            n = job.get("n_corrupted")
            where = f"sweep_jobs.corrupted_fit of {name!r}"
            blob = job.get("corrupted_fit")
            job["corrupted_fit"] = None if n is None else self._unpacked(where, unpack_outcomes, blob, n)
            rows = self.conn.execute(
                "SELECT * FROM sweep_epochs WHERE sweep=? AND key=? ORDER BY epoch", (name, job["key"])
            )
            job["history"] = [dict(r) for r in rows]
        return jobs
