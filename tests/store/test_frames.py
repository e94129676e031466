"""`robustbench_mixup.results.open(out).frame(table)`: the database as DataFrames, per-example blobs decoded."""

import sqlite3

import numpy as np
import pytest

from robustbench_mixup import results
from robustbench_mixup.settings.config import AttackConfig, TrainConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.attack import evaluate_run
from robustbench_mixup.stages.train import train_run


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="d", out=root, device="cpu")
    evaluate_run(AttackConfig("fgsm", (0.05, 0.1), mode="white"), out=root, run="d", device="cpu")
    return root


def test_every_table_reads_back_with_its_outcomes_decoded(out):
    stored = results.open(out)
    assert {"runs", "epochs", "attack_results", "clean_results", "probe_results"} <= set(stored.tables)
    attacks = stored.frame("attack_results")
    assert len(attacks) == 2 * 2  # erm and mixup, white box, two ε
    for _, row in attacks.iterrows():
        assert row["correct"].dtype == bool and row["correct"].shape == (row["n"],)
        assert row["correct"].mean() == pytest.approx(row["top1"])
    clean = stored.frame("clean_results")
    assert set(clean["model"]) == {"erm", "mixup", "surrogate"}
    assert all(len(c) == n for c, n in zip(clean["correct"], clean["n"], strict=True))
    epochs = stored.frame("epochs")
    assert list(epochs.columns[:3]) == ["run", "model", "epoch"] and len(epochs) == 3  # erm, mixup, surrogate
    assert stored.frame("sweeps").empty and "name" in stored.frame("sweeps").columns  # an empty table keeps its columns


def test_what_cannot_be_read_is_one_error(out, tmp_path):
    with pytest.raises(ValueError, match=r"table must be one of .*got 'passwords'"):
        results.open(out).frame("passwords")
    with pytest.raises(UsageError, match="no results database under"):
        results.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()  # nothing created
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "reports").mkdir()
    db = Layout(damaged).database
    db.write_bytes(Layout(out).database.read_bytes())
    with sqlite3.connect(db) as con:
        con.execute("UPDATE attack_results SET correct = ? WHERE rowid = 1", (np.packbits([True] * 8).tobytes(),))
    with pytest.raises(UsageError, match=r"is damaged \(attack_results.correct of 'd'"):
        results.open(damaged).frame("attack_results")
