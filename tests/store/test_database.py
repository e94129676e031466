import re
import shutil
import sqlite3
import subprocess

import pandas as pd
import pytest

from robustbench_mixup.attacks.methods import FGSM
from robustbench_mixup.settings.config import AttackConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.stages.attack import Evaluation, Row
from robustbench_mixup.store import provenance
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.provenance import environment
from robustbench_mixup.store.schema import SCHEMA_VERSION


def _start(db, name="r1"):
    db.start_run(name, kind="train", config={"alpha": 1.0}, seed=0, dataset="digits", environment={"device": "cpu"})


def test_schema_is_created_versioned_and_in_wal_mode(tmp_path):
    path = tmp_path / "reports" / "results.sqlite"
    with ResultsDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        _start(db)
    with ResultsDB(path) as db:  # reopening keeps the data and does not migrate again
        assert db.get_run("r1")["config"] == {"alpha": 1.0}


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(UsageError, match="upgrade robust-eval"):
        ResultsDB(path)


def test_an_interrupted_transaction_leaves_no_rows(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        _start(db)
        with pytest.raises(KeyboardInterrupt), db.transaction() as c:
            c.execute("INSERT INTO epochs (run, model, epoch, test_acc) VALUES ('r1', 'erm', 1, 0.5)")
            raise KeyboardInterrupt
        assert db.epochs("r1") == []


def test_epochs_replace_on_resume_and_pandas_reads_them(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsDB(path) as db:
        _start(db)
        db.record_epoch("r1", "erm", 1, {"test_acc": 0.5, "train_loss": 1.0})
        db.record_epoch("r1", "erm", 1, {"test_acc": 0.6, "train_loss": 0.9})
        db.record_epoch("r1", "mixup", 1, {"test_acc": 0.4})
        db.finish_run("r1", timings={"train": 2.0})
        run = db.get_run("r1")
        assert run["status"] == "done" and run["timings"] == {"train": 2.0}
    with sqlite3.connect(path) as con:
        df = pd.read_sql("SELECT * FROM epochs ORDER BY model", con)
    assert df["model"].tolist() == ["erm", "mixup"] and df["test_acc"].tolist() == [0.6, 0.4]


def test_latest_run(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        assert db.latest_run() is None
        _start(db, "a")
        _start(db, "b")
        assert db.latest_run() == "b"
        with pytest.raises(sqlite3.IntegrityError):  # epochs belong to a known run
            db.record_epoch("nope", "erm", 1, {})


def test_inserts_name_their_columns_so_an_added_column_does_not_break_them(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        for table in ("attack_results", "attack_flags", "sweeps"):
            db.conn.execute(f"ALTER TABLE {table} ADD COLUMN extra TEXT")
        _start(db)
        # A real evaluation.Evaluation: its config, attack object, rows and flags.
        spec = AttackConfig("fgsm", (0.1,))
        row = Row(model="erm", mode="white", eps=0.1, n=10, top1=0.7, top5=0.9, top1_ci=(0.6, 0.8), top5_ci=(0.8, 0.95))
        flag = {"check": "monotone_in_eps", "model": "erm", "mode": "white", "eps": 0.1, "detail": "x"}
        ev = Evaluation("r1", spec, FGSM(), "surrogate", "digits", {"erm": {"top1": 0.8}}, [row], [flag])
        db.record_attack(ev)
        (result,) = db.attack_rows("r1")
        assert result["source"] == "erm" and result["top1_err"] == pytest.approx(0.3) and result["extra"] is None
        assert (result["top1_lo"], result["top5_hi"], result["clean_top1"]) == (0.6, 0.95, 0.8)
        (stored,) = db.attack_flags("r1")
        assert (stored["check_name"], stored["n"], stored["detail"], stored["extra"]) == (
            "monotone_in_eps",
            10,
            "x",
            None,
        )
        db.start_sweep("s", {"grid": []}, [])
        assert db.get_sweep("s")["kind"] == "corrupt" and db.get_sweep("s")["extra"] is None


def _git(cwd, *args):
    # the identity and signing settings a commit needs, whatever the user's or CI's git configuration says
    config = ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *config, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: the provenance then records None")
def test_environment_records_whether_the_tree_is_dirty(tmp_path, monkeypatch):
    """`environment` asks git about the tree that holds the package (the folder of provenance.py, whatever the
    current directory): set in turn in a clean repository, one with a changed file, one with a new file, and
    outside any repository, it records exactly what each is."""
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):  # as inside a git hook: they would point git elsewhere
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git never looks above tmp_path

    def recorded(root):
        (root / "store").mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(provenance, "__file__", str(root / "store" / "provenance.py"))
        env = environment("cpu")
        return env["git_commit"], env["git_dirty"]

    repo = tmp_path / "repo"
    (repo / "store").mkdir(parents=True)
    (repo / "store" / "provenance.py").write_text("# committed\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one commit")
    head = _git(repo, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert recorded(repo) == (head, False)  # everything committed
    (repo / "store" / "provenance.py").write_text("# changed\n")
    assert recorded(repo) == (head, True)  # a committed file changed
    _git(repo, "checkout", "-q", "--", ".")
    assert recorded(repo) == (head, False)
    (repo / "new.txt").write_text("untracked\n")
    assert recorded(repo) == (head, True)  # a file git does not know yet
    assert recorded(tmp_path / "not-a-repo") == (None, None)  # no repository: git fails, nothing is guessed
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    assert recorded(repo) == (None, None)  # no git at all


def test_a_version_5_database_is_migrated_and_its_rows_are_read_without_outcomes(tmp_path):
    """Rows stored before per-example outcomes were kept read back as None, and the claims then say to re-run."""
    from robustbench_mixup.store import database as results
    from robustbench_mixup.verdicts import claims

    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    for steps in results.MIGRATIONS[:5]:
        for sql in steps:
            con.execute(sql)
    con.execute("PRAGMA user_version = 5")
    con.execute("INSERT INTO runs (name, kind, status, created, updated, config, environment) "
                "VALUES ('r', 'train', 'done', 'now', 'now', '{}', '{}')")  # fmt: skip
    for model in ("erm", "mixup"):
        con.execute("INSERT INTO probe_results (run, model, split, same_class, pairs, seed, lam, miss_rate, miss_lo, "
                    f"miss_hi, grad_norm, norm_lo, norm_hi, created) VALUES ('r', '{model}', 'train', 'exclude', 10, "
                    "0, 0.5, 0.1, 0, 0.3, 1, 0.9, 1.1, 'now')")  # fmt: skip
    con.close()
    with ResultsDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        rows = db.probe_rows("r", outcomes=True)
        assert [(r["missed"], r["norms"]) for r in rows] == [(None, None)] * 2
        assert db.clean_rows("r") == [] and db.get_group("r") is None
    measured = claims.probe_points(claims.RunResults(probe_rows=rows), "mixup", column="missed")
    assert measured == "stored without per-pair outcomes (by an older robust-eval): run the probe again"


def test_a_version_7_database_gains_the_robustness_sweep_tables(tmp_path):
    from robustbench_mixup.store.schema import MIGRATIONS

    path = tmp_path / "v7.sqlite"
    con = sqlite3.connect(path)
    for steps in MIGRATIONS[:7]:
        for sql in steps:
            con.execute(sql)
    con.execute("PRAGMA user_version = 7")
    con.commit()
    con.close()
    with ResultsDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        assert db.robust_rows("none") == [] and db.get_sweep("none") is None


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("UPDATE diagnostics SET value='nan?' WHERE metric='ece'", "'ece' of 'erm' is 'nan?', not a finite number"),
        ("UPDATE diagnostics SET metric='noise_acc@x' WHERE metric='noise_acc@0.1'", "unknown metric 'noise_acc@x'"),
        ("DELETE FROM diagnostics WHERE metric='grad_zero'", "'erm' lacks grad_zero"),
        ("UPDATE diagnostics SET seed=-3", "seed -3"),
        ("UPDATE diagnostics SET metric='n' WHERE metric='ece'", "unknown metric 'n'"),
    ],
)
def test_damaged_diagnostics_are_refused_where_they_are_read(tmp_path, sql, needle):
    summary = {"clean_acc": 0.9, "ece": 0.05, "median_margin": 4.0, "grad_norm_median": 0.1, "grad_norm_p90": 0.3,
               "grad_underflow": 0.0, "grad_zero": 0.0, "noise_acc@0.1": 0.85}  # fmt: skip
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.start_run("r", kind="train", config={}, seed=0, dataset="digits", environment={})
        db.record_diagnostics("r", 100, 0, {"erm": summary})
        assert db.diagnostics("r") == {"erm": {"n": 100, "seed": 0, **summary}}
        db.conn.execute(sql)
        with pytest.raises(UsageError, match=re.escape(needle)):
            db.diagnostics("r")
