"""Faults and hostile files: every bad input exits 2 with one line, nothing stored is changed.

Fault injection for the files the tool writes and reads back itself (checkpoints, saved transfer sets),
the run and sweep locks, temporaries, workers that must die with their parent, Ray addresses that are
not Ray, seeds too large to store, names read back from the database, and a full disk. The results
database has its own file (test_database_faults.py), and so do datasets and run.json
(test_dataset_faults.py).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.attacks.engine import robust_accuracy
from robustbench_mixup.attacks.methods import fgsm, ifgsm
from robustbench_mixup.learning import checkpoints
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.settings.fsutil import exclusive
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.stages.train import train_run

TRAIN = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--run", "d"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (lock files aside: the OS rewrites them) and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A digits run with its transfer sets saved: the pristine copy every test starts from."""
    root = tmp_path_factory.mktemp("faults")
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64)
    train_run(cfg, run="d", out=root, device="cpu")
    from robustbench_mixup.settings.config import AttackConfig
    from robustbench_mixup.stages.attack import evaluate_run

    evaluate_run(AttackConfig("fgsm", (0.05,)), out=root, run="d", device="cpu")
    return root


@pytest.fixture
def out(trained, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(trained, copy)
    return copy


# --- checkpoints and transfer sets: every corrupt variant -------------------------------------------


def _flip_data(raw: bytes) -> bytes:
    return raw[:-3] + bytes([raw[-3] ^ 0xFF]) + raw[-2:]


def _flip_metadata(raw: bytes) -> bytes:
    at = raw.index(b"sha256") - 20  # a byte of the JSON metadata, inside the header
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


def _foreign(raw: bytes) -> bytes:
    from safetensors.torch import save

    return save({"w": torch.zeros(3)})


VARIANTS = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "flipped data byte": _flip_data,
    "flipped metadata byte": _flip_metadata,
    "foreign safetensors": _foreign,
    "empty": lambda raw: b"",
    "garbage": lambda raw: os.urandom(4096),
    "a pickle": lambda raw: b"\x80\x04\x95" + os.urandom(64),
}


def _transfer_set(out: Path) -> Path:
    (path,) = Layout(out).attacks_dir("d").glob("*.safetensors")
    return path


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "target, argv",
    [
        ("erm", ["fgsm", "--eps", "0.05"]),
        ("surrogate", ["fgsm", "--eps", "0.05"]),
        ("mixup", ["probe", "--pairs", "20", "--lambdas", "3"]),
        ("mixup", ["train", *TRAIN, "--resume"]),
        ("transfer set", ["fgsm", "--eps", "0.05"]),
    ],
)
def test_a_corrupt_stored_file_is_one_line_and_changes_nothing(capsys, out, variant, target, argv):
    path = _transfer_set(out) if target == "transfer set" else Layout(out).checkpoint("d", target)
    path.write_bytes(VARIANTS[variant](path.read_bytes()))
    before = snapshot(out)
    code, _, err = run_cli(capsys, *argv, "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, path.name)
    assert snapshot(out) == before


def test_a_flipped_epoch_in_a_checkpoint_cannot_skip_an_epoch_on_resume(capsys, out):
    path = Layout(out).checkpoint("d", "mixup")
    raw = path.read_bytes()
    key = b'epoch\\": '  # inside the header the metadata is a JSON string: its quotes are escaped
    at = raw.index(key) + len(key)
    assert raw[at : at + 1] == b"2", raw[at - 10 : at + 5]
    path.write_bytes(raw[:at] + b"1" + raw[at + 1 :])
    code, _, err = run_cli(capsys, "train", *TRAIN, "--resume", "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, "fails its checksum")


def test_a_transfer_set_renamed_to_another_eps_is_refused(capsys, out):
    """Consistent, signed, but not the set its name promises: its own metadata says so."""
    path = _transfer_set(out)
    tensors, meta = checkpoints.read_file(path, "transfer set")
    checkpoints.save_file(path, tensors, {**meta, "eps": 0.5})
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.05", "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, "does not hold what its name says", "eps")


def test_a_consistent_checkpoint_whose_tensors_do_not_fit_its_model_is_refused_unbuilt(capsys, out):
    """A signed file that names a far larger model than its tensors hold: shapes are compared on the meta
    device, so nothing of that size is ever allocated."""
    path = Layout(out).checkpoint("d", "erm")
    tensors, meta = checkpoints.read(path)
    meta["model"]["kwargs"]["num_classes"] = 100_000
    checkpoints.save_file(path, tensors, {k: v for k, v in meta.items() if k not in ("sha256", "format")})
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.05", "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, "erm.safetensors", "do not have the shapes")


def test_a_damaged_stored_run_configuration_is_one_line(capsys, out):
    con = sqlite3.connect(Layout(out).database)
    with con:
        con.execute("UPDATE runs SET config='{}' WHERE name='d'")
    con.close()
    before = snapshot(out)
    for argv in (["fgsm", "--eps", "0.05", "--device", "cpu"], ["probe", "--device", "cpu"], ["report"]):
        code, _, err = run_cli(capsys, *argv, "--out", str(out))
        assert_one_line_error(code, err, "stored configuration of run 'd'", "is damaged")
    assert snapshot(out) == before


# --- locks and temporaries ---------------------------------------------------------------------------------


def test_a_second_process_on_the_same_run_or_sweep_is_refused_naming_the_first(capsys, out):
    layout = Layout(out)
    with exclusive(layout.run_lock("d"), "run 'd'"):  # another holder: a separate open file, as in another process
        code, _, err = run_cli(capsys, "train", *TRAIN, "--resume", "--out", str(out), "--device", "cpu")
    assert_one_line_error(code, err, "run 'd' is in use by pid", str(os.getpid()))
    sweep = ["sweep", "corrupt", "--dataset", "digits", "--model", "mlp", "--noise", "0.5", "--alpha", "0",
             "--epochs", "1", "--batch-size", "64", "--name", "s", "--out", str(out), "--device", "cpu"]  # fmt: skip
    with exclusive(layout.sweep_lock("s"), "sweep 's'"):
        code, _, err = run_cli(capsys, *sweep)
    assert_one_line_error(code, err, "sweep 's' is in use by pid")
    assert run_cli(capsys, *sweep)[0] == 0  # released: the same command now runs


def test_temporaries_have_one_name_and_the_lock_holder_sweeps_them(capsys, out):
    ckdir = Layout(out).run_dir("d")
    ours, legacy = ckdir / ".erm.safetensors.k3j2.tmp", ckdir / ".tmp6gwjZ3"
    ours.write_bytes(b"half")
    legacy.write_bytes(b"half")
    assert run_cli(capsys, "train", *TRAIN, "--resume", "--out", str(out), "--device", "cpu")[0] == 0
    assert not ours.exists() and not legacy.exists()
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


# --- sweeps: workers, Ray, seeds, grids --------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sweep_workers_die_with_a_killed_parent(tmp_path):
    argv = [sys.executable, "-m", "robustbench_mixup", "sweep", "corrupt", "--dataset", "digits", "--model", "mlp",
            "--noise", "0.5", "--alpha", "0", "1", "--epochs", "200", "--batch-size", "16", "--jobs", "2",
            "--name", "k", "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(
            (tmp_path / "checkpoints" / "sweeps" / "k").glob("*.safetensors")
        ):
            time.sleep(0.5)  # both workers are training once a job checkpoint appears
        workers = _children(parent.pid)
        assert len(workers) >= 2, workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), [w for w in workers if _alive(w)]
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


@pytest.fixture
def not_ray():
    """An HTTP server on a loopback port: it accepts connections, but it is not Ray."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


SWEEP = ["sweep", "corrupt", "--dataset", "digits", "--model", "mlp", "--noise", "0.5", "--alpha", "0", "--epochs",
         "1", "--name", "r", "--device", "cpu"]  # fmt: skip


@pytest.mark.slow
def test_an_address_that_answers_but_is_not_ray_is_one_line_within_seconds(capsys, tmp_path, not_ray):
    pytest.importorskip("ray")
    started = time.monotonic()
    code, _, err = run_cli(capsys, *SWEEP, "--executor", "ray", "--address", not_ray, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, not_ray)
    assert time.monotonic() - started < 30 and not (tmp_path / "o").exists()


def test_ray_settings_are_checked_before_anything_is_written(capsys, tmp_path, monkeypatch):
    import importlib.util

    code, _, err = run_cli(capsys, *SWEEP, "--executor", "ray", "--out", str(tmp_path / "o"))
    if importlib.util.find_spec("ray") is not None:
        assert_one_line_error(code, err, "needs --address")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a))
    code, _, err = run_cli(
        capsys, *SWEEP, "--executor", "ray", "--address", "127.0.0.1:9", "--out", str(tmp_path / "o")
    )
    assert_one_line_error(code, err, "needs Ray", "robust-eval[distributed]")
    assert not (tmp_path / "o").exists()
    # the same name with its real settings afterwards is not refused as "already exists"
    assert run_cli(capsys, *SWEEP, "--out", str(tmp_path / "o"))[0] == 0


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "--dataset", "digits", "--seed", "18446744073709551616"], ["--seed must be in [0, "]),
        (["train", "--dataset", "digits", "--seed", "-1"], ["--seed must be in [0, "]),
        ([*SWEEP, "--seeds", "0", "18446744073709551616"], ["--seed must be in [0, "]),
        ([*SWEEP[:-4], "--alpha", "0", "0", "--name", "r"], ["--alpha lists 0 more than once"]),
        ([*SWEEP[:7], "0.5", *SWEEP[7:]], ["--noise lists 0.5 more than once"]),
        (["train", "--dataset", "digits", "--run", ""], ["invalid run name ''"]),
        (["train", "--dataset", "cifar10", "--model", "preact-resnet18", "--width", "2000"], ["--width must be in"]),
        (["run", "--run", ""], ["invalid run name ''"]),
        (["report", "--run", ""], ["invalid run name ''"]),
    ],
)
def test_bad_values_are_one_line_before_anything_is_written(capsys, tmp_path, argv, needles):
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, *argv, "--out", str(out))
    assert_one_line_error(code, err, *needles)
    assert not (out / "checkpoints").exists() and not (out / "reports").exists()


# --- names read back from the database, missing checkpoints ---------------------------------------


def test_a_hostile_run_name_in_the_database_never_becomes_a_path(capsys, out, tmp_path):
    con = sqlite3.connect(Layout(out).database)
    with con:
        con.execute(
            "INSERT INTO runs (name, kind, status, created, updated, config, environment) "
            "VALUES ('../../escape_target', 'train', 'done', '2099-01-01', '2099-01-01', '{}', '{}')"
        )
    con.close()
    before = snapshot(out)
    for argv in (["report", "--run", "../../escape_target"], ["report"], ["fgsm", "--eps", "0.1"]):
        code, _, err = run_cli(capsys, *argv, "--out", str(out))
        assert_one_line_error(code, err, "escape_target")
    assert snapshot(out) == before and not list(tmp_path.rglob("index.html"))


def test_a_run_whose_checkpoints_are_missing_is_named_as_such(capsys, out):
    shutil.rmtree(Layout(out).run_dir("d"))
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--run", "d", "--out", str(out))
    assert_one_line_error(code, err, "run 'd' is recorded", "checkpoints are missing")


# --- the Python API's contract ---------------------------------------------------------------------------


def _linear():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    return model, torch.rand(6, 1, 2, 2), torch.zeros(6, dtype=torch.int64)


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda m, x, y: robust_accuracy(m, x, y, 0.1), TypeError, "eps must be a sequence"),
        (lambda m, x, y: robust_accuracy(m, x, y, [0.1, "0.2"]), TypeError, "eps must be a number"),
        (lambda m, x, y: fgsm(m, x, y, "0.1"), TypeError, "eps must be a number"),
        (lambda m, x, y: fgsm(m, x, y, True), TypeError, "eps must be a number"),
        (lambda m, x, y: fgsm(m, x, y, -0.1), ValueError, "eps must be a finite number ≥ 0"),
        (lambda m, x, y: fgsm(m, x.double(), y, 0.1), TypeError, "images are torch.float64"),
        (lambda m, x, y: robust_accuracy(m, x.double(), y, [0.1]), TypeError, "images are torch.float64"),
        (lambda m, x, y: ifgsm(m, x, y, 0.1, steps="10"), TypeError, "steps must be an int"),
        (lambda m, x, y: ifgsm(m, x, y, 0.1, steps=0), ValueError, "steps must be ≥ 1"),
        (lambda m, x, y: ifgsm(m, x, y, 0.1, step_size="big"), TypeError, "step_size must be a number"),
    ],
)
def test_api_arguments_raise_the_contracts_errors_naming_the_argument(call, error, needle):
    model, x, y = _linear()
    with pytest.raises(error, match=needle):
        call(model, x, y)


# --- a full disk -------------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_resume_then_finishes_bit_for_bit(capsys, tmp_path, monkeypatch):
    import errno

    from robustbench_mixup.settings import fsutil

    real = fsutil.atomic_path  # checkpoints write through it under their own import of the name, too
    writes = {"n": 0}

    def full_after_four(path):
        writes["n"] += 1
        if writes["n"] > 4:  # run.json, then three member checkpoints of epoch 1: epoch 2 finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path)

    out = tmp_path / "o"
    monkeypatch.setattr(fsutil, "atomic_path", full_after_four)
    monkeypatch.setattr(checkpoints, "atomic_path", full_after_four)
    code, _, err = run_cli(capsys, "train", *TRAIN, "--out", str(out), "--device", "cpu")
    assert code == 2 and "Traceback" not in err  # the epochs' progress lines, then the one error line
    assert err.splitlines()[-1].startswith("robust-eval: error: the disk is full") and "--resume" in err
    monkeypatch.undo()
    assert run_cli(capsys, "train", *TRAIN, "--resume", "--out", str(out), "--device", "cpu")[0] == 0
    whole = tmp_path / "whole"
    assert run_cli(capsys, "train", *TRAIN, "--out", str(whole), "--device", "cpu")[0] == 0
    for member in ("erm", "mixup", "surrogate"):
        a, _ = checkpoints.read(Layout(out).checkpoint("d", member))
        b, _ = checkpoints.read(Layout(whole).checkpoint("d", member))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
