import sqlite3

import pandas as pd
import pytest

from robustbench_mixup.errors import UsageError
from robustbench_mixup.results import SCHEMA_VERSION, ResultsDB


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
