import importlib.util
import json
import sqlite3

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.stages import attack as evaluation
from robustbench_mixup.stages.train import train_run


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack-cli")
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=3, batch_size=64), run="d", out=root, device="cpu")
    return root


def _attack_rows(out) -> int:
    with sqlite3.connect(out / "reports" / "results.sqlite") as con:
        return con.execute("SELECT count(*) FROM attack_results").fetchone()[0]


def test_fgsm_table_has_a_row_per_model_and_a_column_per_mode_and_eps(capsys, out):
    code, stdout, err = run_cli(capsys, "fgsm", "--eps", "0", "0.05", "8/255", "--out", str(out), "--device", "cpu")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("FGSM on run d (digits test, n=359")
    assert lines[1].split() == ["model", "clean", "white", "0", "white", "0.05", "white", "0.03137",
                                "black", "0", "black", "0.05", "black", "0.03137"]  # fmt: skip
    assert [ln.split()[0] for ln in lines[2:4]] == ["erm", "mixup"]
    erm = lines[2].split()
    assert erm[1] == erm[2] == erm[5]  # clean = white ε=0 = black ε=0
    assert "sanity checks: none failed" in stdout and "attack-failure indicators: none fired" in stdout
    with sqlite3.connect(out / "reports" / "results.sqlite") as con:
        rows = con.execute("SELECT model, mode, source FROM attack_results WHERE attack='fgsm' AND eps=0.05").fetchall()
    assert sorted(rows) == [("erm", "black", "surrogate"), ("erm", "white", "erm"),
                            ("mixup", "black", "surrogate"), ("mixup", "white", "mixup")]  # fmt: skip


def test_ifgsm_json_is_one_object_per_model(capsys, out):
    code, stdout, err = run_cli(
        capsys, "ifgsm", "--eps", "0.05", "0.1", "--steps", "5", "--out", str(out), "--device", "cpu", "--json"
    )
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["model"] for r in records] == ["erm", "mixup"]
    for r in records:
        assert {(x["mode"], x["eps"]) for x in r["results"]} == {
            ("white", 0.05),
            ("white", 0.1),
            ("black", 0.05),
            ("black", 0.1),
        }
        for x in r["results"]:
            assert x["top1_ci"][0] <= x["top1"] <= x["top1_ci"][1] and x["top1_err"] == pytest.approx(1 - x["top1"])
            assert x["top5"] >= x["top1"] and x["n"] == 359


def test_transfer_sets_are_saved_and_reused(capsys, out, monkeypatch):
    args = ("fgsm", "--eps", "0.07", "--mode", "black", "--out", str(out), "--device", "cpu", "--json")
    assert run_cli(capsys, *args)[0] == 0
    saved = list((out / "attacks" / "d").glob("fgsm-native-surrogate-eps0.07-*.safetensors"))
    assert len(saved) == 1
    first = saved[0].read_bytes()

    def no_crafting(*a, **k):
        raise AssertionError("the saved set should have been reused")

    monkeypatch.setattr(evaluation, "craft_sets", no_crafting)
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert saved[0].read_bytes() == first


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["fgsm", "--eps", "-0.1"], ["--eps values must lie in [0, 1]"]),
        (["fgsm", "--eps", "1.5"], ["--eps values must lie in [0, 1]"]),
        (["fgsm", "--eps", "abc"], ["invalid ε 'abc'"]),
        (["fgsm", "--eps", "1/0"], ["invalid ε '1/0'"]),
        (["ifgsm", "--eps", "0.1", "--steps", "0"], ["--steps must be ≥ 1"]),
        (["ifgsm", "--eps", "0.1", "--step-size", "0"], ["--step-size must be > 0"]),
        (["fgsm", "--eps", "0.1", "--run", "nope"], ["unknown run 'nope'", "known runs are d"]),
        (["fgsm", "--eps", "0.1", "--backend", "cleverhans"], ["--backend", "invalid choice: 'cleverhans'"]),
        (["fgsm", "--eps", "0.1", "--n", "0"], ["--n must be ≥ 1"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, out, argv, needles):
    before = _attack_rows(out)
    listing = sorted(p.name for p in (out / "attacks").rglob("*")) if (out / "attacks").exists() else []
    code, _, err = run_cli(capsys, *argv, "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, *needles)
    assert _attack_rows(out) == before
    after = sorted(p.name for p in (out / "attacks").rglob("*")) if (out / "attacks").exists() else []
    assert after == listing


def test_backend_without_its_extra_names_the_extra(capsys, out, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torchattacks" else real(n, *a))
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--backend", "torchattacks", "--out", str(out))
    assert_one_line_error(code, err, "backend 'torchattacks' is not installed", "robust-eval[backends]")


def test_source_from_another_dataset_is_refused(capsys, out, tmp_path):
    train_run(TrainConfig(dataset="mnist-5k", model="mlp", epochs=1), run="m", out=tmp_path, device="cpu")
    other = tmp_path / "checkpoints" / "m" / "surrogate.safetensors"
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--source", str(other), "--out", str(out))
    assert_one_line_error(code, err, "was trained on mnist-5k [1, 28, 28]", "digits [1, 8, 8]")


def test_no_trained_run_says_how_to_make_one(capsys, tmp_path):
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.03", "--out", str(tmp_path))
    assert_one_line_error(code, err, "no trained run", "robust-eval train", "robust-eval run")
    assert list(tmp_path.iterdir()) == []


def test_help_shows_examples(capsys):
    for cmd in ("fgsm", "ifgsm"):
        code, stdout, _ = run_cli(capsys, cmd, "--help")
        assert code == 0 and "examples:" in stdout and f"robust-eval {cmd} --eps" in stdout


def test_any_compatible_checkpoint_can_be_the_transfer_source(capsys, out):
    # The white-box rows compared against below are made here, so the test does not depend on order.
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.05", "--mode", "white", "--out", str(out), "--json")
    assert code == 0, err
    source = out / "checkpoints" / "d" / "erm.safetensors"
    code, stdout, err = run_cli(
        capsys, "fgsm", "--eps", "0.05", "--mode", "black", "--source", str(source), "--out", str(out), "--json"
    )
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert all(r["source"] == str(source) for r in records)
    # Crafted on erm itself, the erm row of this "black box" is erm's white-box FGSM.
    with sqlite3.connect(out / "reports" / "results.sqlite") as con:
        white = con.execute(
            "SELECT top1 FROM attack_results WHERE attack='fgsm' AND mode='white' AND model='erm' AND eps=0.05"
        ).fetchone()
    assert white is not None
    assert records[0]["model"] == "erm"
    assert records[0]["results"][0]["top1"] == pytest.approx(white[0])
