import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.learning import data

TINY = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--device", "cpu"]


def _entries(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_help_shows_examples_without_importing_torch():
    code = (
        "import sys; from robustbench_mixup.cli import main\n"
        "try: main(['train', '--help'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "examples:" in out and "robust-eval train --dataset digits" in out
    assert out.strip().endswith("False")


def test_console_script_trains_and_prints_the_table(tmp_path):
    exe = Path(sys.executable).parent / "robust-eval"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "robustbench_mixup"]
    res = subprocess.run([*cmd, "train", *TINY, "--run", "t", "--out", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].split() == ["model", "test", "acc", "train", "loss", "images/s"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["erm", "mixup", "surrogate"]
    assert (tmp_path / "checkpoints" / "t" / "mixup.safetensors").is_file()
    assert (tmp_path / "reports" / "results.sqlite").is_file()


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--dataset", "svhn"], ["--dataset", "invalid choice: 'svhn'", "mnist-5k"]),
        (["--model", "vit"], ["--model", "invalid choice: 'vit'", "smallcnn"]),
        (["--epochs", "0"], ["--epochs must be ≥ 1"]),
        (["--epochs", "two"], ["--epochs", "invalid int value"]),
        (["--alpha", "-1"], ["--alpha must be ≥ 0"]),
        (["--alpha", "nan"], ["--alpha must be ≥ 0"]),
        (["--lr", "0"], ["--lr must be > 0"]),
        (["--batch-size", "0"], ["--batch-size must be ≥ 1"]),
        (["--batch-size", "100000"], ["exceeds the 1438 training examples"]),
        (["--dropout", "1"], ["--dropout must be in [0, 1)"]),
        (["--width", "8"], ["--width applies to preact-resnet18 only"]),
        (["--run", "../escape"], ["invalid run name"]),
        (["--device", "tpu"], ["--device", "invalid choice"]),
        (["--seeds", "0", "0"], ["--seeds must list each seed once"]),
        (["--seed", "1", "--seeds", "0", "1"], ["either --seed or --seeds"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, extra, needles):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(out), *extra)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(blocker / "sub"))
    assert_one_line_error(code, err, "is not a writable directory")


def test_missing_dataset_names_paths_and_remedy(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", tmp_path / "nowhere")
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "fashion-mnist",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--data-root",
        str(tmp_path / "d"),
    )
    assert_one_line_error(
        code, err, "dataset 'fashion-mnist' not found", "apt-get install dataset-fashion-mnist", "--download"
    )
    assert not out.exists()


def test_existing_run_is_never_overwritten(capsys, tmp_path):
    assert run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path))[0] == 0
    ck = tmp_path / "checkpoints" / "r" / "erm.safetensors"
    before, listing = ck.read_bytes(), _entries(tmp_path)
    code, _, err = run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path))
    assert_one_line_error(code, err, "run 'r' already exists", "--resume")
    assert ck.read_bytes() == before and _entries(tmp_path) == listing


def test_resume_with_other_settings_is_refused(capsys, tmp_path):
    assert run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path))[0] == 0
    code, _, err = run_cli(capsys, "train", *TINY, "--alpha", "2", "--run", "r", "--out", str(tmp_path), "--resume")
    assert_one_line_error(code, err, "run 'r' was started with other settings")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_checkpoint_on_resume(capsys, tmp_path, damage):
    assert run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path))[0] == 0
    ck = tmp_path / "checkpoints" / "r" / "mixup.safetensors"
    raw = bytearray(ck.read_bytes())
    if damage == "flip":
        raw[-1] ^= 0x01
    else:
        raw = raw[: len(raw) // 2]
    ck.write_bytes(bytes(raw))
    # A longer schedule is another config, so resume the very same one: the damaged file is read first.
    code, _, err = run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path), "--resume")
    assert_one_line_error(code, err, "mixup.safetensors", "checksum" if damage == "flip" else "unreadable")


def test_checkpoint_whose_metadata_was_edited_is_refused_on_resume(capsys, tmp_path):
    import json
    import struct

    assert run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path))[0] == 0
    ck = tmp_path / "checkpoints" / "r" / "erm.safetensors"
    raw = ck.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["robust_eval"])
    meta["model"]["name"] = "mystery-net"  # the digest covers the metadata too: the edit is caught
    header["__metadata__"]["robust_eval"] = json.dumps(meta)
    blob = json.dumps(header).encode()
    ck.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    code, _, err = run_cli(capsys, "train", *TINY, "--run", "r", "--out", str(tmp_path), "--resume")
    assert_one_line_error(code, err, "erm.safetensors", "fails its checksum")


def test_cuda_asked_for_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--device cuda", "no CUDA device")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, commands",
    [
        ([], "train, import, fgsm, ifgsm, pgd, apgd, square, probe, diagnose, sweep, report, export, run"),
        (["sweep"], "corrupt"),
    ],
)
def test_a_missing_command_is_one_line_naming_the_choices(capsys, argv, commands):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "a command is required", commands)


def test_train_seeds_trains_one_run_per_seed_and_records_the_group(capsys, tmp_path):
    from robustbench_mixup.settings.layout import Layout
    from robustbench_mixup.store.database import ResultsDB

    code, stdout, err = run_cli(capsys, "train", *TINY, "--seeds", "3", "4", "--run", "g", "--out", str(tmp_path))
    assert code == 0, err
    assert "run g-s3: digits, mlp" in stdout and "seed 4" in stdout
    assert "group g: runs g-s3, g-s4; pooled report: robust-eval report --run g" in stdout
    with ResultsDB(Layout(tmp_path).database) as db:
        assert db.get_group("g") == ["g-s3", "g-s4"]
        assert [db.get_run(r)["config"]["seed"] for r in ("g-s3", "g-s4")] == [3, 4]
    code, stdout, err = run_cli(capsys, "report", "--run", "g", "--out", str(tmp_path))
    assert code == 0 and stdout.strip().endswith("reports/g/index.html"), err
    with ResultsDB(Layout(tmp_path).database) as db:
        before = db.conn.execute("SELECT * FROM run_groups").fetchall()
    code, _, err = run_cli(capsys, "train", *TINY, "--seeds", "3", "4", "--run", "g", "--out", str(tmp_path))
    assert_one_line_error(code, err, "run 'g-s3' already exists", "--resume")  # refused: the group untouched
    with ResultsDB(Layout(tmp_path).database) as db:
        assert db.conn.execute("SELECT * FROM run_groups").fetchall() == before


def test_a_group_name_is_neither_trained_as_a_run_nor_evaluated_and_options_are_not_abbreviated(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", *TINY, "--seeds", "0", "1", "--run", "g", "--out", str(tmp_path))
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", *TINY, "--run", "g", "--out", str(tmp_path))
    assert_one_line_error(code, err, "'g' names a group of seeds")
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--run", "g", "--out", str(tmp_path), "--device", "cpu")
    assert_one_line_error(code, err, "'g' is a group of seeds (g-s0, g-s1)", "--run g-s0")
    code, _, err = run_cli(capsys, "run", "--seed", "1", "--out", str(tmp_path / "o"))  # not '--seeds 1'
    assert_one_line_error(code, err, "unrecognized arguments: --seed 1")
    assert not (tmp_path / "o").exists()
