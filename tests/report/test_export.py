"""`robust-eval export`: a RobustBench-shaped entry, a CSV of every outcome, JSON; derived from the stored rows."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.report.export import _eps_text
from robustbench_mixup.settings.config import AttackConfig, TrainConfig
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.attack import evaluate_run
from robustbench_mixup.stages.train import train_run
from robustbench_mixup.store.database import ResultsDB


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64, seed=2), run="r", out=root,
              device="cpu")  # fmt: skip
    evaluate_run(AttackConfig("fgsm", (0.05, 0.1), mode="white"), out=root, run="r", device="cpu")
    evaluate_run(AttackConfig("pgd", (0.1,), steps=3, mode="white"), out=root, run="r", device="cpu")
    return root


def _stored(out):
    with ResultsDB(Layout(out).database) as db:
        return db.attack_rows("r", outcomes=True), {c["model"]: c["correct"] for c in db.clean_rows("r")}


def test_robustbench_entries_are_the_worst_case_of_the_stored_outcomes(out, capsys):
    code, stdout, err = run_cli(capsys, "export", "--run", "r", "--out", str(out))
    assert code == 0, err
    entries = json.loads(Path(stdout.strip()).read_text())
    rows, clean = _stored(out)
    assert [(e["name"], e["eps"]) for e in entries] == [("r/erm", "0.05"), ("r/erm", "0.1"), ("r/mixup", "0.05"),
                                                        ("r/mixup", "0.1")]  # fmt: skip
    for e in entries:
        model, eps = e["name"].split("/")[1], float(e["eps"])
        at = [r for r in rows if r["model"] == model and r["eps"] == eps]
        robust = np.logical_and.reduce([r["correct"] for r in at])  # an example is robust only if every attack failed
        assert e["robust_acc"] == f"{100 * robust.mean():.2f}" and e["n"] == len(robust) == 359
        assert e["clean_acc"] == f"{100 * clean[model].mean():.2f}"
        assert sorted(a["attack"] for a in e["attacks"]) == sorted(r["attack"] for r in at)
        assert e["autoattack_acc"] is None and e["threat_model"] == "Linf" and e["dataset"] == "digits"
        assert e["seed"] == 2 and e["robust_acc_95ci"][0] <= float(e["robust_acc"]) <= e["robust_acc_95ci"][1]
    assert _eps_text(8 / 255) == "8/255" and _eps_text(0.1) == "0.1"


def test_the_csv_holds_every_stored_outcome_and_the_json_every_evaluation(out, capsys, tmp_path):
    code, stdout, err = run_cli(capsys, "export", "--run", "r", "--format", "csv", "--output", str(tmp_path / "o.csv"),
                                "--out", str(out))  # fmt: skip
    assert code == 0 and stdout.strip() == str(tmp_path / "o.csv"), err
    table = list(csv.DictReader((tmp_path / "o.csv").read_text().splitlines()))
    rows, clean = _stored(out)
    assert len(table) == sum(r["n"] for r in rows) + len(clean["erm"]) * 2  # erm and mixup clean; no surrogate
    for r in rows:
        mine = [int(t["correct"]) for t in table if (t["model"], t["attack"], float(t["eps"])) ==
                (r["model"], r["attack"], r["eps"])]  # fmt: skip
        assert mine == r["correct"].astype(int).tolist()
    code, stdout, err = run_cli(capsys, "export", "--run", "r", "--format", "json", "--out", str(out))
    assert code == 0, err
    doc = json.loads(Path(stdout.strip()).read_text())
    assert doc["config"]["seed"] == 2 and len(doc["attacks"]) == len(rows) and len(doc["robustbench"]) == 4
    assert {tuple(a["correct"]) for a in doc["attacks"]} == {tuple(r["correct"].astype(int)) for r in rows}


def test_what_cannot_be_exported_is_one_line(out, capsys, tmp_path):
    taken = tmp_path / "taken.json"
    taken.write_text("mine")
    code, _, err = run_cli(capsys, "export", "--run", "r", "--output", str(taken), "--out", str(out))
    assert_one_line_error(code, err, "exists: choose a new file")
    assert taken.read_text() == "mine"
    code, _, err = run_cli(capsys, "export", "--run", "nope", "--out", str(out))
    assert_one_line_error(code, err, "unknown run 'nope'")
    bare = tmp_path / "bare"
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="b", out=bare, device="cpu",
              members=("erm", "mixup"))  # fmt: skip
    code, _, err = run_cli(capsys, "export", "--run", "b", "--out", str(bare))
    assert_one_line_error(code, err, "has no stored white-box attack to export")
