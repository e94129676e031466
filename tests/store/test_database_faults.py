"""Faults in the results database (issue 12, items 3, 12 and 13's database half).

Every way `reports/results.sqlite` can be unusable (garbage, truncated, empty, tables or columns
missing, JSON columns that are not JSON, not writable) is refused by every command that opens it with
exit status 2 and one line naming the file, before anything is written. A full disk in a transaction
becomes one line too, and keeps what was committed before. A narrower evaluation never removes the
sanity flags that a wider one stored.
"""

import errno
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.attacks.indicators import ordering_flags
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages import attack as evaluation
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store import database as results
from robustbench_mixup.store.database import WRITABLE, ResultsDB


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("db-faults")
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="d", out=root, device="cpu")
    with ResultsDB(Layout(root).database) as db:  # a stored sweep, so that `sweep --name s` reads its config
        db.start_sweep("s", {"kind": "stored by the fixture"}, [])
    return root


@pytest.fixture
def copy(trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    return out


def _db(out: Path) -> Path:
    return Layout(out).database


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_untouched(root: Path, before: dict[str, str]) -> None:
    """Every file as it was; new files only as empty SQLite side files (-wal, -shm)."""
    after = _hashes(root)
    assert {k: v for k, v in after.items() if k in before} == before
    for name in set(after) - set(before):
        assert name.endswith(("-wal", "-shm")) and (root / name).stat().st_size == 0, name


def _sql(out: Path, *statements: str) -> None:
    con = sqlite3.connect(_db(out), isolation_level=None)
    for s in statements:
        con.execute(s)
    con.close()


def _garbage(out: Path) -> None:
    _db(out).write_bytes(random.Random(0).randbytes(8192))


def _truncated(out: Path) -> None:
    data = _db(out).read_bytes()
    _db(out).write_bytes(data[: len(data) // 2])


def _empty(out: Path) -> None:
    _db(out).write_bytes(b"")


CORRUPTIONS = {
    "garbage": (_garbage, "is not an SQLite database"),
    "truncated": (_truncated, "is damaged"),
    "empty": (_empty, "is empty"),
    "table-dropped": (lambda out: _sql(out, "DROP TABLE attack_results"), "table 'attack_results' is missing"),
    "column-dropped": (lambda out: _sql(out, "ALTER TABLE runs DROP COLUMN seed"), "lacks column(s) seed"),
    "config-not-json": (
        lambda out: _sql(out, "UPDATE runs SET config='{\"alpha\": '", "UPDATE sweeps SET config='[1, 2'"),
        "is not a JSON object",
    ),
    "environment-not-json": (lambda out: _sql(out, "UPDATE runs SET environment='nan]'"), "is not a JSON object"),
    "timings-not-json": (lambda out: _sql(out, "UPDATE runs SET timings='\"text\"'"), "is not a JSON object"),
}

COMMANDS = {
    "train": ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--batch-size", "64", "--run", "d",
              "--resume", "--device", "cpu"],
    "fgsm": ["fgsm", "--eps", "0.05", "--device", "cpu"],
    "probe": ["probe", "--pairs", "50", "--lambdas", "3", "--device", "cpu"],
    "sweep": ["sweep", "corrupt", "--dataset", "digits", "--model", "mlp", "--noise", "0.5", "--alpha", "0",
              "--epochs", "1", "--batch-size", "64", "--name", "s", "--device", "cpu"],
    "report": ["report"],
}  # fmt: skip

# A sweep reads its own row, never the runs' environment or timings: those stay usable for it.
CASES = [
    (command, corruption)
    for command in COMMANDS
    for corruption in CORRUPTIONS
    if not (command == "sweep" and corruption in ("environment-not-json", "timings-not-json"))
]


@pytest.mark.parametrize("command, corruption", CASES)
def test_an_unusable_database_is_refused_with_one_line_and_nothing_written(capsys, copy, command, corruption):
    corrupt, needle = CORRUPTIONS[corruption]
    corrupt(copy)
    before = _hashes(copy)
    code, _, err = run_cli(capsys, *COMMANDS[command], "--out", str(copy))
    assert_one_line_error(code, err, str(_db(copy)), needle)
    _assert_untouched(copy, before)


def _cannot_write(monkeypatch, db: Path) -> None:
    """What SQLite says when the database or its folder is read-only (simulated: CI runs as root)."""
    connect = sqlite3.connect

    def read_only(path, *args, **kwargs):
        if Path(path) == db:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(results.sqlite3, "connect", read_only)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_that_cannot_be_written_is_refused(capsys, copy, monkeypatch, command):
    before = _hashes(copy)
    _cannot_write(monkeypatch, _db(copy))
    code, _, err = run_cli(capsys, *COMMANDS[command], "--out", str(copy))
    assert_one_line_error(code, err, str(_db(copy)), "attempt to write a readonly database", "writable")
    _assert_untouched(copy, before)


# The child's first statements, as root: CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2), root's way past file
# permissions, leave its capability bounding set (prctl PR_CAPBSET_DROP = 24), and exec then grants no capability
# outside that set; so the command that it execs obeys a folder's mode bits as any other user does.
_WITHOUT_ROOTS_BYPASS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):
    if libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.stderr.write(f"UNPRIVILEGED: cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
        sys.exit(77)
libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL: nothing comes back through the ambient set
status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Cap"))
if int(status["CapInh"], 16) & 0b110:  # kept in the inheritable set, exec would grant them again
    sys.stderr.write("UNPRIVILEGED: CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH is inheritable here")
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _run_unprivileged(*argv: str) -> tuple[int, str]:
    """The real command line in a child process that file permissions bind (as root too); (exit status, stderr).

    Skips only where root's bypass cannot be dropped (no CAP_SETPCAP), saying so."""
    command = [sys.executable, "-m", "robustbench_mixup", *argv]
    if os.geteuid() == 0:
        command = [sys.executable, "-c", _WITHOUT_ROOTS_BYPASS, *command[1:]]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode == 77 and proc.stderr.startswith("UNPRIVILEGED: "):
        pytest.skip(f"root cannot give up its permission bypass here: {proc.stderr}")
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_out_is_refused(copy, command):
    folders = [copy, *(p for p in copy.rglob("*") if p.is_dir())]
    for p in copy.rglob("*"):
        if p.is_file():
            p.chmod(0o444)
    for d in folders:
        d.chmod(0o555)
    try:
        before = _hashes(copy)
        code, err = _run_unprivileged(*COMMANDS[command], "--out", str(copy))
        if command == "train":  # with --resume it reads no database before it proves --out writable
            expected = f"--out {str(copy)!r} is not a writable directory ({os.strerror(errno.EACCES)})"
        else:  # every other command opens the database first: a WAL database, whose -shm file the folder refuses
            reason = "attempt to write a readonly database"  # SQLite's words for SQLITE_READONLY(_DIRECTORY)
            expected = f"results database {str(_db(copy))!r} cannot be opened for writing ({reason}): {WRITABLE}"
        assert_one_line_error(code, err, expected)
        _assert_untouched(copy, before)
        assert _hashes(copy) == before  # not even an empty side file: the folders refuse every new file
    finally:
        for d in folders:
            d.chmod(0o755)


def test_a_missing_database_is_still_created_complete(tmp_path):
    path = tmp_path / "new" / "reports" / "results.sqlite"
    with ResultsDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == results.SCHEMA_VERSION
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.sqlite"]  # no temporary left behind
    with ResultsDB(path):  # and it opens again
        pass


def test_a_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(UsageError, match="not a robust-eval database"):
        ResultsDB(path)
    assert path.read_bytes() == before


# --- a full disk ------------------------------------------------------------------------------------


def test_a_full_disk_in_a_transaction_is_one_line_and_keeps_committed_work(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultsDB(path) as db:
        db.start_run("r", kind="train", config={}, seed=0, dataset="digits", environment={})
        db.record_epoch("r", "erm", 1, {"test_acc": 0.5})
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL once it must grow
        rows = [{"run": "r", "model": "erm", "split": "train", "same_class": "exclude", "pairs": 10, "seed": 0,
                 "lam": i / 1000, "miss_rate": 0.0, "miss_lo": 0.0, "miss_hi": 0.0, "grad_norm": 1.0, "norm_lo": 1.0,
                 "norm_hi": 1.0} for i in range(1000)]  # fmt: skip
        with pytest.raises(UsageError, match="the disk is full") as info:
            db.record_probe(rows)
        assert str(path) in str(info.value) and "kept" in str(info.value) and "\n" not in str(info.value)
        assert not db.conn.in_transaction
        assert db.probe_rows("r") == [] and len(db.epochs("r")) == 1  # rolled back; earlier work kept


class _FullConnection(sqlite3.Connection):
    """A connection on a disk that is full: every write statement fails as SQLite reports it."""

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)

    def executemany(self, sql, *args):
        raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--batch-size", "64", "--run", "e",
         "--device", "cpu"],
        ["fgsm", "--eps", "0.05", "--mode", "white", "--device", "cpu"],
    ],
    ids=["train", "fgsm"],
)  # fmt: skip
def test_a_full_disk_through_the_cli_is_one_line(capsys, copy, monkeypatch, argv):
    connect, db = sqlite3.connect, _db(copy)

    def full(path, *args, **kwargs):
        return connect(path, *args, **({"factory": _FullConnection} if Path(path) == db else {}), **kwargs)

    before = _hashes(copy)
    monkeypatch.setattr(results.sqlite3, "connect", full)
    code, _, err = run_cli(capsys, *argv, "--out", str(copy))
    # fgsm's progress display may have printed its summary line before the write failed
    lines = err.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("robust-eval:")] == lines[-1:], err
    assert "Traceback" not in err
    assert_one_line_error(code, lines[-1], str(db), "the disk is full", "kept")
    monkeypatch.undo()
    after = _hashes(copy)
    assert {k: after[k] for k in before if not k.startswith("reports/results.sqlite")} == {
        k: v for k, v in before.items() if not k.startswith("reports/results.sqlite")
    }
    with ResultsDB(db) as stored:  # nothing of the failed command reached the database
        assert stored.get_run("e") is None and stored.attack_rows("d") == []


# --- item 12: a narrower evaluation keeps the findings of a wider one --------------------------------

CLEAN = 0.9
RISING = {0.0: CLEAN, 0.02: 0.8, 0.03: 0.75, 0.05: 0.6, 0.1: 0.7, 0.2: 0.3, 0.3: 0.4}  # rises at 0.1 and 0.3


def _forced(monkeypatch) -> None:
    """The real evaluation, with accuracies replaced by a fixed curve that rises twice (a masked model)."""
    real = evaluation.evaluate_models

    def rising(models, images, labels, cfg, **kwargs):
        clean, rows = real(models, images, labels, cfg, **kwargs)
        for r in rows:
            r.top1, r.correct = RISING[r.eps], None  # counts only: judged by the least discordance they allow
        return {m: {**c, "top1": CLEAN} for m, c in clean.items()}, rows

    monkeypatch.setattr(evaluation, "evaluate_models", rising)


def _stored_flags(out: Path) -> list[tuple]:
    with sqlite3.connect(_db(out)) as con:
        return sorted(con.execute("SELECT check_name, model, mode, eps, detail, attack, backend, n FROM attack_flags"))


def test_a_narrower_evaluation_keeps_the_flags_of_a_wider_one(capsys, copy, monkeypatch):
    _forced(monkeypatch)
    wide = ("fgsm", "--eps", "0", "0.05", "0.1", "0.2", "0.3", "--out", str(copy), "--device", "cpu")
    code, stdout, err = run_cli(capsys, *wide)
    assert code == 0, err
    first = _stored_flags(copy)
    assert {(f[0], f[1], f[2], f[3]) for f in first} == {
        ("monotone_in_eps", m, mode, e) for m in ("erm", "mixup") for mode in ("white", "black") for e in (0.1, 0.3)
    }
    assert "WARNING: 8 sanity check(s) failed, significantly" in stdout

    code, stdout, err = run_cli(capsys, "fgsm", "--eps", "0.03", "--out", str(copy), "--device", "cpu")
    assert code == 0, err
    assert set(first) <= set(_stored_flags(copy))  # the wide grid's findings are all still there
    assert "WARNING: 8 sanity check(s)" in stdout  # and the command reports the run's flags

    code, _, err = run_cli(capsys, *wide)  # the same wide evaluation again: the same flags, once each
    assert code == 0, err
    assert _stored_flags(copy) == first


def test_ordering_flags_check_each_setting_and_transfer_source_apart():
    def row(mode, eps, top1, source="erm", steps=10, step_size=None):
        size = eps / steps if step_size is None else step_size
        return {"model": "erm", "mode": mode, "eps": eps, "n": 100, "top1": top1, "top5": 1.0, "attack": "ifgsm",
                "backend": "native", "restarts": 1, "source": source, "steps": steps, "step_size": size,
                "correct": None}  # fmt: skip

    # Two step settings and two transfer sources, each curve falling: no flag, although mixed they would rise.
    stored = [row("white", 0.1, 0.5), row("white", 0.2, 0.3), row("white", 0.1, 0.4, steps=20),
              row("white", 0.2, 0.2, steps=20), row("black", 0.1, 0.6, "surrogate"),
              row("black", 0.2, 0.5, "surrogate"), row("black", 0.1, 0.8, "other.safetensors"),
              row("black", 0.2, 0.7, "other.safetensors")]  # fmt: skip
    assert ordering_flags(stored, {"erm": 0.9}) == []
    # A rise within the 10-step curve only: 5 examples in 100 could be chance (p = 2/32), 30 cannot.
    small = ordering_flags([*stored, row("white", 0.3, 0.35)], {"erm": 0.9})
    assert [(f["check"], f["eps"], f["status"]) for f in small] == [("monotone_in_eps", 0.3, "noise")]
    large = ordering_flags([*stored, row("white", 0.3, 0.6)], {"erm": 0.9})
    assert [(f["check"], f["eps"], f["status"]) for f in large] == [("monotone_in_eps", 0.3, "failed")]


_PROBE = ("INSERT INTO probe_results (run, model, split, same_class, pairs, seed, lam, miss_rate, miss_lo, miss_hi, "
          "grad_norm, norm_lo, norm_hi, created, missed, norms) VALUES ('d', 'erm', 'train', 'exclude', 2, 0, 0.5, "
          "0, 0, 1, 1, 0, 2, 'now', {missed}, {norms})")  # fmt: skip
_SWEEP = ("INSERT INTO sweeps (name, kind, config, created, updated) VALUES ('d', 'corrupt', '{}', 'now', 'now')",
          "INSERT INTO sweep_jobs (sweep, key, noise, alpha, dropout, seed, status, updated, train_corrupted_err, "
          "n_corrupted, corrupted_fit) VALUES ('d', 'k', 0.5, 0, 0, 0, 'done', 'now', 0.5, 10, x'00')")  # fmt: skip


@pytest.mark.parametrize(
    "statements, argv, needle",
    [
        (["UPDATE clean_results SET correct = x'00'"], [], "clean_results.correct of run 'd'"),
        ([_PROBE.format(missed="x'00'", norms="x'0000'")], [], "probe_results of run 'd': 2 bytes for 2 values"),
        ([_PROBE.format(missed="x'00'", norms="x'0000c07f0000803f'")], [], "a value is not finite"),  # NaN
        (list(_SWEEP), [], "sweep_jobs.corrupted_fit of 'd': 1 bytes for 10 examples"),
        (["INSERT INTO run_groups VALUES ('g', '[1, 2]', 'now', 'now')"], ["--run", "g"], "run_groups.runs of 'g'"),
    ],
)
def test_a_damaged_outcome_blob_or_group_is_refused_with_one_line(capsys, copy, statements, argv, needle):
    """The per-example outcomes the claims read (schema 6) are checked where they are read: a blob of the wrong
    size, a non-finite gradient norm or a group that is not a list of run names is one line, exit 2."""
    _sql(copy, *statements)
    before = _hashes(copy)
    code, _, err = run_cli(capsys, "report", *argv, "--out", str(copy))
    assert_one_line_error(code, err, "is damaged", needle)
    _assert_untouched(copy, before)
