"""The results database: one SQLite file, `reports/results.sqlite` under the output root.

Stdlib `sqlite3` in WAL mode, so a report can read while a run writes. The schema is created and
versioned here (`PRAGMA user_version`); every write is one explicit transaction, so an interruption
leaves no partial rows. Plain tables with JSON text columns: `pandas.read_sql("select * from epochs", con)`
reads it directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robustbench_mixup import __version__
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.store.codec import is_int as _int
from robustbench_mixup.store.codec import now as _now
from robustbench_mixup.store.codec import pack_outcomes, unpack_outcomes, unpack_values
from robustbench_mixup.store.schema import MIGRATIONS, SCHEMA_VERSION, SQLITE_HEADER, expected_schema
from robustbench_mixup.store.sweep_tables import SWEEP_KINDS, SweepTables

DIAGNOSTICS = ("clean_acc", "ece", "median_margin", "grad_norm_median", "grad_norm_p90", "grad_underflow",
               "grad_zero")  # fmt: skip  # every model's; then noise_acc@EPS per noise level


def _noise_level(metric: str) -> float | None:
    """The ε of a `noise_acc@EPS` metric, None for any other name."""
    if not metric.startswith("noise_acc@"):
        return None
    try:
        eps = float(metric.split("@", 1)[1])
    except ValueError:
        return None
    return eps if math.isfinite(eps) and 0 <= eps <= 1 else None


MOVE_ASIDE = "move it aside (or restore it from a backup) and run again, or use another --out"
WRITABLE = "make it and its folder writable, or use another --out"


def _code(exc: sqlite3.Error) -> int | None:
    return getattr(exc, "sqlite_errorcode", None)


def _disk_full(exc: sqlite3.Error) -> bool:
    code = _code(exc)
    return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "database or disk is full" in str(exc)


def _cannot_write(exc: sqlite3.Error) -> bool:
    code = _code(exc)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return True
    return any(s in str(exc) for s in ("readonly database", "unable to open database file"))


class ResultsDB(SweepTables):
    """A connection to the results database; creates or migrates the schema on open.

    Opening is the one place the file is checked: it must be an SQLite file (header), pass SQLite's
    `PRAGMA quick_check`, have a schema version this robust-eval reads and every table and column of that
    version. Anything else, and a file that cannot be written, raises `UsageError` naming the file
    before anything is written. A database that does not exist yet is created complete (built beside
    it, then linked into place), so an empty file is never one of ours.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self._create()
        self._check_header()
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so DDL is transactional too.
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise self._refusal(exc) from None
        try:
            self.conn.row_factory = sqlite3.Row
            self._check_contents()
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise self._refusal(exc) from None
        except BaseException:
            self.conn.close()
            raise

    def _unusable(self, why: str, advice: str = MOVE_ASIDE) -> UsageError:
        return UsageError(f"results database {str(self.path)!r} {why}: {advice}")

    def _disk_full(self) -> UsageError:
        return UsageError(
            f"results database {str(self.path)!r}: the disk is full, so this write was rolled back and the work "
            "finished before it is kept: free some space and run the command again (train: add --resume)"
        )

    def _refusal(self, exc: sqlite3.Error) -> UsageError:
        """The one line for an SQLite error met while opening the database."""
        if _disk_full(exc):
            return self._disk_full()
        if _cannot_write(exc):
            return self._unusable(f"cannot be opened for writing ({exc})", WRITABLE)
        if "locked" in str(exc) or "busy" in str(exc):
            return self._unusable(f"stayed locked by another process ({exc})", "wait for it to finish and run again")
        return self._unusable(f"is damaged ({exc})")

    def _create(self) -> None:
        """Build a fresh database beside `path` and link it into place (a concurrent creator's copy wins)."""
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            tmp = Path(name)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("BEGIN IMMEDIATE")
                for steps in MIGRATIONS:
                    for sql in steps:
                        con.execute(sql)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            finally:
                con.close()  # checkpoints the WAL into the file and removes it
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: theirs is used
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except OSError as exc:
            raise self._unusable(f"cannot be created ({exc.strerror or exc})", WRITABLE) from None
        except sqlite3.DatabaseError as exc:
            raise self._refusal(exc) from None
        finally:
            if tmp is not None:
                for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                    p.unlink(missing_ok=True)

    def _check_header(self) -> None:
        try:
            if not self.path.is_file():
                raise self._unusable("is not a file")
            with open(self.path, "rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise self._unusable(f"cannot be read ({exc.strerror or exc})", WRITABLE) from None
        if not header:
            raise self._unusable("is empty (0 bytes), not a robust-eval database")
        if header != SQLITE_HEADER:
            raise self._unusable("is not an SQLite database (file is not a database)")

    def _check_contents(self) -> None:
        """Integrity and schema, read only: nothing is written to a database that fails them."""
        problems = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise self._unusable(f"fails SQLite's integrity check ({problems[0] if problems else 'no answer'})")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"{self.path} has schema version {version}; this robust-eval ({__version__}) reads up to "
                f"{SCHEMA_VERSION}: upgrade robust-eval"
            )
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and tables:
            raise self._unusable(f"is not a robust-eval database (it holds tables {', '.join(sorted(tables))})")
        for table, columns in expected_schema(version).items():
            if table not in tables:
                raise self._unusable(f"is damaged (table {table!r} is missing)")
            lacking = columns - {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if lacking:
                raise self._unusable(f"is damaged (table {table!r} lacks column(s) {', '.join(sorted(lacking))})")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all; a full disk becomes one UsageError line."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if _disk_full(exc):
                raise self._disk_full() from None
            raise

    def _migrate(self) -> None:
        with self.transaction() as c:  # BEGIN IMMEDIATE: a database we cannot write is refused here
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            for steps in MIGRATIONS[version:]:
                for sql in steps:
                    c.execute(sql)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _json(self, table: str, name: str, column: str, text: Any) -> dict[str, Any]:
        """A JSON object column read back; anything else is refused naming the file and the row."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            raise self._unusable(f"is damaged ({table}.{column} of {name!r} is not a JSON object)")
        return value

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

    def finish_run(self, name: str, *, timings: dict[str, float] | None = None) -> None:
        """Mark the run done, adding `timings` (seconds per stage) to those already recorded."""
        with self.transaction() as c:
            self._add_timings(c, name, timings or {})
            c.execute("UPDATE runs SET status='done', updated=? WHERE name=?", (_now(), name))

    def add_timing(self, name: str, stage: str, seconds: float) -> None:
        """Add `seconds` to the run's time for `stage` (stages resumed several times add up)."""
        with self.transaction() as c:
            self._add_timings(c, name, {stage: seconds})

    def _add_timings(self, c: sqlite3.Connection, name: str, timings: dict[str, float]) -> None:
        row = c.execute("SELECT timings FROM runs WHERE name=?", (name,)).fetchone()
        merged = self._json("runs", name, "timings", row[0]) if row else {}
        for stage, seconds in timings.items():
            merged[stage] = merged.get(stage, 0.0) + seconds
        c.execute("UPDATE runs SET timings=? WHERE name=?", (json.dumps(merged, sort_keys=True), name))

    def get_run(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        run = dict(row)
        for key in ("config", "environment", "timings"):
            run[key] = self._json("runs", name, key, run[key])
        return run

    def latest_run(self, kinds: tuple[str, ...] = ("train",)) -> str | None:
        """The run of one of `kinds` ("train", "import") recorded last."""
        marks = ", ".join("?" * len(kinds))
        row = self.conn.execute(
            f"SELECT name FROM runs WHERE kind IN ({marks}) ORDER BY created DESC, rowid DESC LIMIT 1", kinds
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

    # --- attack evaluations ------------------------------------------------------------------------

    def record_attack(
        self, ev: Any, flags_of: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    ) -> list[dict[str, Any]]:
        """Write one `stages.attack.Evaluation` in a single transaction; returns the flags now stored for its
        (run, n).

        A new evaluation adds to what is stored: its rows (with their per-example outcomes) and
        indicators replace only earlier ones of the same key (the same numbers). Then, from EVERY stored
        row of the run on the same n examples, the worst case over attacks is recomputed, and the flags
        by `flags_of` (`indicators.ordering_flags`), so a narrower evaluation never removes another's
        findings; without `flags_of`, the evaluation's own flags are added to those stored.
        """
        attack, backend, now = ev.attack, ev.spec.backend, _now()
        n = ev.rows[0].n if ev.rows else 0
        with self.transaction() as c:
            for r in ev.rows:
                c.execute(
                    """INSERT OR REPLACE INTO attack_results
                       (run, model, attack, mode, source, eps, steps, step_size, restarts, seed, precision,
                        early_stop, backend, split, n, top1, top1_err, top1_lo, top1_hi, top5, top5_err, top5_lo,
                        top5_hi, clean_top1, created, correct)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'test', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        ev.run, r.model, attack.name, r.mode, r.model if r.mode == "white" else ev.source, r.eps,
                        *attack.setting(r.eps, r.mode), backend, r.n,
                        r.top1, 1 - r.top1, *r.top1_ci, r.top5, 1 - r.top5, *r.top5_ci, ev.clean[r.model]["top1"], now,
                        None if r.correct is None else pack_outcomes(r.correct),
                    ),
                )  # fmt: skip
            for i in getattr(ev, "indicators", []):
                s = attack.setting(i.eps)  # an indicator's row names no seed: its evaluation's rows do
                c.execute(
                    """INSERT OR REPLACE INTO attack_indicators (run, model, attack, backend, n, steps, step_size,
                       restarts, precision, early_stop, eps, indicator, value, threshold, status, p_value, detail,
                       created)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (ev.run, i.model, attack.name, backend, n, s.steps, s.step_size, s.restarts, s.precision,
                     int(s.early_stop), i.eps,
                     i.name, i.value, i.threshold, i.status, i.p_value, i.detail, now),
                )  # fmt: skip
            stored = [self._decoded(dict(r)) for r in c.execute("SELECT * FROM attack_results WHERE run=? AND n=?",
                                                                  (ev.run, n))]  # fmt: skip
            self._record_worst_case(c, ev.run, n, stored, now)
            if flags_of is not None:
                flags = flags_of(stored)
            else:
                flags = [
                    {"check": r["check_name"], "model": r["model"], "mode": r["mode"], "eps": r["eps"],
                     "attack": r["attack"], "backend": r["backend"], "status": r["status"], "p_value": r["p_value"],
                     "detail": r["detail"]}
                    for r in c.execute("SELECT * FROM attack_flags WHERE run=? AND n=? ORDER BY rowid", (ev.run, n))
                ]  # fmt: skip
                flags += [f for f in ev.flags if f not in flags]
            c.execute("DELETE FROM attack_flags WHERE run=? AND n=?", (ev.run, n))
            for f in flags:
                c.execute(
                    "INSERT INTO attack_flags (run, attack, backend, n, check_name, model, mode, eps, detail, created, "
                    "status, p_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.run, f.get("attack", attack.name), f.get("backend", backend), n, f["check"], f["model"],
                     f["mode"], f["eps"], f["detail"], now, f.get("status", "failed"), f.get("p_value")),
                )  # fmt: skip
        return flags

    def _unpacked(self, where: str, unpack: Callable[[Any, int], Any], blob: Any, n: int) -> Any:
        """`unpack(blob, n)`, a stored blob read back; one of the wrong size (or holding a non-finite value) is
        refused as damage, naming `where` it was found."""
        try:
            return unpack(blob, n)
        except ValueError as exc:
            raise self._unusable(f"is damaged ({where}: {exc})") from None

    def _decoded(self, row: dict[str, Any]) -> dict[str, Any]:
        """A stored attack row with `correct` as a bool array (None where not stored); a blob of the wrong
        size is refused as damage."""
        row["correct"] = self._unpacked(f"attack_results.correct of run {row['run']!r}", unpack_outcomes,
                                        row.get("correct"), row["n"])  # fmt: skip
        return row

    def _record_worst_case(self, c: sqlite3.Connection, run: str, n: int, stored: list[dict[str, Any]],
                           now: str) -> None:  # fmt: skip
        """Per (model, ε) of the white box: correct only where every attack run at that ε left it correct
        (AutoAttack's way of reporting), where at least two different attacks were run."""
        from robustbench_mixup.measures.stats import wilson_interval

        groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for r in stored:
            if r["mode"] == "white" and r["eps"] > 0:
                groups.setdefault((r["model"], r["eps"]), []).append(r)
        for (model, eps), rows in groups.items():
            names = sorted({r["attack"] for r in rows})
            if len(names) < 2 or any(r["correct"] is None for r in rows):  # a row of before v5: no outcomes
                continue
            both = rows[0]["correct"].copy()
            for r in rows[1:]:
                both &= r["correct"]
            hits = int(both.sum())
            c.execute(
                "INSERT OR REPLACE INTO worst_case (run, model, eps, n, attacks, top1, top1_lo, top1_hi, correct, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run, model, eps, n, json.dumps(names), hits / n, *wilson_interval(hits, n), pack_outcomes(both), now),
            )

    def attack_rows(self, run: str, *, outcomes: bool = False, **where: Any) -> list[dict[str, Any]]:
        """Rows of `attack_results` for `run`, filtered by column equality (e.g. attack='fgsm'); with
        `outcomes`, `correct` decoded to a numpy bool array (else dropped)."""
        unknown = set(where) - {"model", "attack", "mode", "source", "eps", "backend", "split", "n"}
        if unknown:
            raise ValueError(f"cannot filter attack rows by {sorted(unknown)}")
        cols = "".join(f" AND {k}=?" for k in where)
        rows = self.conn.execute(f"SELECT * FROM attack_results WHERE run=?{cols}", (run, *where.values()))
        found = [dict(r) for r in rows.fetchall()]
        if outcomes:
            return [self._decoded(r) for r in found]
        for r in found:
            r.pop("correct", None)
        return found

    def worst_case(self, run: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM worst_case WHERE run=? ORDER BY model, eps", (run,)).fetchall()
        out = []
        for r in map(dict, rows):
            out.append(self._decoded(r))
            r["attacks"] = self._json_list(r["attacks"])
        return out

    def _json_list(self, text: Any) -> list[str]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._unusable("is damaged (worst_case.attacks is not a JSON list of names)")
        return value

    def indicators(self, run: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM attack_indicators WHERE run=? ORDER BY attack, model, indicator, eps", (run,)
        )
        return [dict(r) for r in rows.fetchall()]

    # --- clean accuracy, per example ------------------------------------------------------------------

    def record_clean(self, run: str, model: str, split: str, correct: Any) -> None:
        """A model's per-example top-1 outcomes on a split (after its last epoch); replaces an earlier row."""
        n = len(correct)
        hits = int(correct.sum())
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO clean_results (run, model, split, n, top1, correct, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run, model, split, n, hits / n if n else 0.0, pack_outcomes(correct), _now()),
            )

    def clean_rows(self, run: str) -> list[dict[str, Any]]:
        """The run's `clean_results` rows, `correct` decoded to a numpy bool array."""
        rows = [dict(r) for r in self.conn.execute("SELECT * FROM clean_results WHERE run=? ORDER BY model", (run,))]
        for r in rows:
            where = f"clean_results.correct of run {run!r}"
            r["correct"] = self._unpacked(where, unpack_outcomes, r["correct"], r["n"])
        return rows

    # --- diagnostics ------------------------------------------------------------------------------

    def record_diagnostics(self, run: str, n: int, seed: int, summaries: dict[str, dict[str, float]]) -> None:
        """Each model's diagnostics summary on the first `n` test examples, replacing that (run, model, n)'s
        earlier rows, in one transaction."""
        now = _now()
        with self.transaction() as c:
            for model, summary in summaries.items():
                c.execute("DELETE FROM diagnostics WHERE run=? AND model=? AND n=?", (run, model, n))
                c.executemany(
                    "INSERT INTO diagnostics (run, model, n, seed, metric, value, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(run, model, n, seed, metric, float(value), now) for metric, value in summary.items()],
                )

    def diagnostics(self, run: str) -> dict[str, dict[str, float]]:
        """model -> metric -> value of the run's diagnostics on the largest n stored (with "n" and "seed").
        Every row is checked: a positive n, a seed ≥ 0, a known metric with a finite value, and every metric
        of `DIAGNOSTICS` there for each model; anything else is refused as damage."""
        top = self.conn.execute("SELECT MAX(n) FROM diagnostics WHERE run=?", (run,)).fetchone()[0]
        out: dict[str, dict[str, float]] = {}

        def damaged(what: str) -> UsageError:
            return self._unusable(f"is damaged (diagnostics of run {run!r}: {what})")

        for r in self.conn.execute("SELECT * FROM diagnostics WHERE run=? AND n=? ORDER BY rowid", (run, top)):
            n, seed, metric, value = r["n"], r["seed"], r["metric"], r["value"]
            if not (_int(n) and n >= 1 and _int(seed) and seed >= 0):
                raise damaged(f"n {n!r} and seed {seed!r} of {r['model']!r}")
            if not (isinstance(metric, str) and (metric in DIAGNOSTICS or _noise_level(metric) is not None)):
                raise damaged(f"unknown metric {metric!r}")
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise damaged(f"{metric!r} of {r['model']!r} is {value!r}, not a finite number")
            out.setdefault(r["model"], {"n": n, "seed": seed})[metric] = float(value)
        for model, row in out.items():
            missing = [m for m in DIAGNOSTICS if m not in row]
            if missing:
                raise damaged(f"{model!r} lacks {', '.join(missing)}")
        return out

    # --- probes ------------------------------------------------------------------------------------

    def record_probe(self, rows: list[dict[str, Any]]) -> None:
        """Write one probe's rows (every model and λ, with the per-pair `missed` and `norms` as packed
        bytes) in a single transaction."""
        cols = ("run", "model", "split", "same_class", "pairs", "seed", "lam", "miss_rate", "miss_lo", "miss_hi",
                "grad_norm", "norm_lo", "norm_hi", "missed", "norms")  # fmt: skip
        now = _now()
        with self.transaction() as c:
            c.executemany(
                f"INSERT OR REPLACE INTO probe_results ({', '.join(cols)}, created) "
                f"VALUES ({', '.join('?' * len(cols))}, ?)",
                [(*(r.get(k) for k in cols), now) for r in rows],
            )

    def attack_flags(self, run: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM attack_flags WHERE run=? ORDER BY attack, model, mode, eps", (run,))
        return [dict(r) for r in rows.fetchall()]

    def probe_rows(self, run: str, *, outcomes: bool = False) -> list[dict[str, Any]]:
        """The run's probe rows; with `outcomes`, `missed` (bool) and `norms` (float) per pair decoded to
        numpy arrays (None for rows stored before v6), else dropped."""
        rows = self.conn.execute("SELECT * FROM probe_results WHERE run=? ORDER BY model, lam", (run,))
        found = [dict(r) for r in rows.fetchall()]
        for r in found:
            if not outcomes:
                r.pop("missed", None), r.pop("norms", None)
                continue
            r["missed"] = self._unpacked(f"probe_results of run {run!r}", unpack_outcomes, r["missed"], r["pairs"])
            r["norms"] = self._unpacked(f"probe_results of run {run!r}", unpack_values, r["norms"], r["pairs"])
        return found

    # --- groups of runs that differ only in their seed -----------------------------------------------

    def record_group(self, name: str, runs: list[str]) -> None:
        """Register group `name` of `runs`, one per seed (a group stored with these runs is left as it is)."""
        if self.get_group(name) == runs:
            return
        now = _now()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO run_groups (name, runs, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET runs=excluded.runs, updated=excluded.updated",
                (name, json.dumps(runs), now, now),
            )

    def get_group(self, name: str) -> list[str] | None:
        """The runs of group `name`, or None when there is no such group."""
        row = self.conn.execute("SELECT runs FROM run_groups WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        try:
            runs = json.loads(row[0])
        except (TypeError, ValueError):
            runs = None
        if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
            raise self._unusable(f"is damaged (run_groups.runs of {name!r} is not a JSON list of run names)")
        return runs

    def epochs(self, run: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM epochs WHERE run=? ORDER BY model, epoch", (run,)).fetchall()
        return [dict(r) for r in rows]


def read_stored(path: str | os.PathLike[str], read: Callable[[ResultsDB], Any]) -> Any:
    """`read(db)` on the database at `path`, or None when there is none yet (nothing is created)."""
    if not Path(path).is_file():
        return None
    with ResultsDB(path) as db:
        return read(db)


def refuse_other_sweep(
    path: str | os.PathLike[str], name: str, kind: str, config: dict[str, Any], *, where: str
) -> None:
    """Before anything is written: UsageError when sweep `name` is stored in the database at `path` (of
    output root `where`) as another kind of sweep, or with other settings (a resume must not mix two grids
    under one name)."""
    previous = read_stored(path, lambda db: db.get_sweep(name))
    if previous is None or (previous["kind"] == kind and previous["config"] == config):
        return
    if previous["kind"] != kind:
        what = SWEEP_KINDS.get(previous["kind"], "another kind of sweep")
        raise UsageError(f"sweep {name!r} already exists under {where!r} as {what}: give this one another name")
    raise UsageError(f"sweep {name!r} already exists under {where!r} with other settings: give the new settings "
                     "another name")  # fmt: skip
