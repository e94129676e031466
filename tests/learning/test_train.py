import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_mixup.learning import checkpoints
from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.learning.devices import accuracy as evaluate
from robustbench_mixup.learning.loop import lr_at, train_epoch
from robustbench_mixup.learning.models import build_model
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.stages.train import train_run

DIGITS = TrainConfig(dataset="digits", model="mlp", epochs=4, batch_size=64, lr=0.05)


def _tensors(out: Path, run: str, member: str) -> dict[str, torch.Tensor]:
    tensors, _ = checkpoints.read(out / "checkpoints" / run / f"{member}.safetensors")
    return tensors  # weights and SGD momentum


def _assert_same_run(out_a: Path, out_b: Path, run: str) -> None:
    for member in ("erm", "mixup", "surrogate"):
        a, b = _tensors(out_a, run, member), _tensors(out_b, run, member)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (member, k)


def test_lr_schedule_divides_by_ten_at_half_and_three_quarters():
    cfg = TrainConfig(epochs=200, lr=0.1)
    assert [lr_at(e, cfg) for e in (0, 99, 100, 149, 150, 199)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_at(0, TrainConfig(epochs=1, lr=0.1)) == 0.1


def test_same_config_twice_gives_bitwise_identical_weights(tmp_path):
    train_run(DIGITS, run="r", out=tmp_path / "a", device="cpu")
    train_run(DIGITS, run="r", out=tmp_path / "b", device="cpu")
    _assert_same_run(tmp_path / "a", tmp_path / "b", "r")


def test_erm_and_mixup_share_init_and_batches_only_mixing_differs(tmp_path):
    # With α = 0 the `mixup` member IS a second ERM model: same init, same batches, same dropout
    # draws, so it must end bitwise equal to `erm`. The surrogate (its own seed) must not.
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64, alpha=0.0, dropout=0.2)
    train_run(cfg, run="r", out=tmp_path, device="cpu")
    erm, mix, sur = (_tensors(tmp_path, "r", m) for m in ("erm", "mixup", "surrogate"))
    assert all(torch.equal(erm[k], mix[k]) for k in erm)
    assert not torch.equal(erm["net.2.weight"], sur["net.2.weight"])
    # With α > 0 they diverge.
    train_run(TrainConfig(dataset="digits", model="mlp", epochs=1, batch_size=64), run="r2", out=tmp_path, device="cpu")
    assert not torch.equal(
        _tensors(tmp_path, "r2", "erm")["net.2.weight"], _tensors(tmp_path, "r2", "mixup")["net.2.weight"]
    )


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    train_run(DIGITS, run="r", out=tmp_path / "full", device="cpu")

    def stop_after_mixup_epoch_2(member, epoch, metrics):
        if (member, epoch) == ("mixup", 2):
            raise KeyboardInterrupt  # erm and mixup are at epoch 2, the surrogate at 1

    with pytest.raises(KeyboardInterrupt):
        train_run(DIGITS, run="r", out=tmp_path / "cut", device="cpu", on_epoch=stop_after_mixup_epoch_2)
    epochs_seen = []
    train_run(
        DIGITS,
        run="r",
        out=tmp_path / "cut",
        device="cpu",
        resume=True,
        on_epoch=lambda m, e, _: epochs_seen.append((m, e)),
    )
    assert ("erm", 2) not in epochs_seen and ("surrogate", 2) in epochs_seen  # nothing finished is redone
    _assert_same_run(tmp_path / "full", tmp_path / "cut", "r")
    with sqlite3.connect(tmp_path / "cut" / "reports" / "results.sqlite") as con:
        rows = con.execute("SELECT model, count(*) FROM epochs GROUP BY model ORDER BY model").fetchall()
        status = con.execute("SELECT status FROM runs").fetchone()[0]
    assert rows == [("erm", 4), ("mixup", 4), ("surrogate", 4)] and status == "done"


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    train_run(DIGITS, run="r", out=tmp_path, device="cpu")
    before = (tmp_path / "checkpoints" / "r" / "erm.safetensors").read_bytes()
    result = train_run(DIGITS, run="r", out=tmp_path, device="cpu", resume=True)
    assert (tmp_path / "checkpoints" / "r" / "erm.safetensors").read_bytes() == before
    assert set(result.final) == {"erm", "mixup", "surrogate"}


def test_checkpoint_metadata_records_the_run(tmp_path):
    train_run(DIGITS, run="r", out=tmp_path, device="cpu")
    model, meta = checkpoints.load(tmp_path / "checkpoints" / "r" / "mixup.safetensors")
    assert meta["train"] == DIGITS.to_dict() and meta["epoch"] == 4 and meta["seed"] == 0
    assert (meta["member"], meta["method"], meta["param"]) == ("mixup", "mixup", 1.0)
    assert meta["dataset"]["name"] == "digits" and 0 <= meta["metrics"]["test_acc"] <= 1
    ds = load_dataset("digits")
    assert evaluate(model, ds.test_images, ds.test_labels) == pytest.approx(meta["metrics"]["test_acc"])


def test_augmented_epoch_on_cifar_shaped_tensors_is_deterministic():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_model(
            "preact-resnet18",
            in_shape=[3, 32, 32],
            num_classes=10,
            mean=[0.5] * 3,
            std=[0.25] * 3,
            width=4,
            dropout=0.1,
        )
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        stats = train_epoch(
            m, opt, x, y, method="mixup", param=1.0, num_classes=10, batch_size=16, seed=1, epoch=0, augment=True
        )
        results.append((stats, m.state_dict()))
    assert results[0][0] == results[1][0] and 0 <= results[0][0]["train_acc"] <= 1
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    args = ["--dataset", "mnist-5k", "--model", "smallcnn", "--epochs", "2", "--train-n", "2000", "--run", "k",
            "--device", "cpu"]  # fmt: skip
    cmd = [sys.executable, "-m", "robustbench_mixup", "train", *args]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, capture_output=True)

    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db = tmp_path / "cut" / "reports" / "results.sqlite"
    deadline = time.monotonic() + 120
    rows = 0
    while rows < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if db.exists():
            with sqlite3.connect(db, timeout=5) as con:
                rows = (
                    con.execute("SELECT count(*) FROM sqlite_master WHERE name='epochs'").fetchone()[0]
                    and con.execute("SELECT count(*) FROM epochs").fetchone()[0]
                )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        done = con.execute("SELECT count(*) FROM epochs").fetchone()[0]
    assert 1 <= done < 6, "the kill must land mid-run for this test to mean anything"
    subprocess.run([*cmd, "--out", str(tmp_path / "cut"), "--resume"], check=True, capture_output=True)
    _assert_same_run(tmp_path / "full", tmp_path / "cut", "k")
    leftovers = [p.name for p in (tmp_path / "cut" / "checkpoints" / "k").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.slow
def test_smallcnn_on_mnist5k_reaches_94_percent_for_erm_and_mixup(tmp_path):
    cfg = TrainConfig(dataset="mnist-5k", model="smallcnn", epochs=10)
    result = train_run(cfg, run="acc", out=tmp_path, device="cpu", members=("erm", "mixup"))
    assert result.final["erm"]["test_acc"] >= 0.94, result.final
    assert result.final["mixup"]["test_acc"] >= 0.94, result.final


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_pairs_models_and_its_checkpoints_load_on_cpu(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64, alpha=0.0)
    result = train_run(cfg, run="g", out=tmp_path, device="cuda")
    erm, mix = _tensors(tmp_path, "g", "erm"), _tensors(tmp_path, "g", "mixup")
    assert all(torch.equal(erm[k], mix[k]) for k in erm)  # same init, same batches on the GPU too
    model, _ = checkpoints.load(tmp_path / "checkpoints" / "g" / "erm.safetensors")
    ds = load_dataset("digits")
    acc = evaluate(model, ds.test_images, ds.test_labels)  # float32 on CPU vs bf16 on CUDA
    assert abs(acc - result.final["erm"]["test_acc"]) < 0.02
    cnn = TrainConfig(dataset="digits", model="preact-resnet18", width=8, epochs=1, batch_size=64)
    assert train_run(cnn, run="c", out=tmp_path, device="cuda").final["mixup"]["test_acc"] > 0.1


def test_a_surrogate_started_with_seed_plus_one_resumes_as_it_began(tmp_path, monkeypatch):
    """Before the surrogate had a seed stream of its own it trained with seed + 1: such a run, interrupted, is
    finished with that seed (bitwise as if never interrupted), not silently switched to the new one."""
    from robustbench_mixup.settings import config

    cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64)
    monkeypatch.setattr(config, "surrogate_seed", lambda seed: seed + 1)  # how older versions seeded it
    train_run(cfg, run="r", out=tmp_path / "whole", device="cpu")

    def stop(member, epoch, metrics):
        if member == "surrogate" and epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, run="r", out=tmp_path / "cut", device="cpu", on_epoch=stop)
    monkeypatch.undo()  # this version's seed stream, from here on
    assert config.surrogate_seed(0) != 1
    train_run(cfg, run="r", out=tmp_path / "cut", device="cpu", resume=True)
    whole, cut = _tensors(tmp_path / "whole", "r", "surrogate"), _tensors(tmp_path / "cut", "r", "surrogate")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert checkpoints.load(Path(tmp_path / "cut" / "checkpoints" / "r" / "surrogate.safetensors"))[1]["seed"] == 1
