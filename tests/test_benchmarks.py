"""The benchmark harness: how it times, what it compares, and that bad options are refused.

Timings themselves are never asserted here (they live in benchmarks/results.json); CI runs
`python -m benchmarks --quick` to keep the whole command working.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.__main__ import parse
from benchmarks.setups import cifar_shaped
from benchmarks.timing import Target, measure
from benchmarks.training import ReferenceStyleDataset


def test_measure_round_robin_after_warmup() -> None:
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n) or len(calls)) for name in ("a", "b", "c")}
    timings, last = measure(fns, repeat=3, device=torch.device("cpu"), warmup=2)
    assert calls == ["a", "b", "c"] * 5  # 2 warm-up rounds, then 3 timed ones, interleaved
    assert last == {"a": 13, "b": 14, "c": 15}  # each function's last result
    for t in timings.values():
        assert t.repeat == 3 and 0 <= t.min <= t.median <= t.max


@pytest.mark.parametrize(
    ("op", "value", "met"), [(">=", 2.5, True), (">=", 2.49, False), ("<=", 1.15, True), ("<=", 1.151, False)]
)
def test_target(op: str, value: float, met: bool) -> None:
    target = Target("x", value, op, 2.5 if op == ">=" else 1.15)
    assert target.met is met and target.to_dict()["met"] is met


def test_reference_style_dataset_serves_the_same_images() -> None:
    """Apples to apples: per sample, the reference-style pipeline yields our images, normalized."""
    data = cifar_shaped(16, 4)
    mean, std = data.mean, data.std
    plain = ReferenceStyleDataset(data.train_images, data.train_labels, mean, std, augment=False)
    for i in (0, 7, 15):
        image, label = plain[i]
        expected = (data.train_images[i] - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        assert label == int(data.train_labels[i])
        # uint8 storage, as on disk: within half a grey level
        assert torch.allclose(image, expected, atol=0.5 / 255 / min(std) + 1e-6)
    augmented = ReferenceStyleDataset(data.train_images, data.train_labels, mean, std, augment=True)
    assert augmented[0][0].shape == (3, 32, 32)


def test_cifar_shaped_is_seeded_and_in_range() -> None:
    a, b = cifar_shaped(64, 8, seed=3), cifar_shaped(64, 8, seed=3)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert a.train_images.min() >= 0 and a.train_images.max() <= 1 and a.augment
    assert not torch.equal(a.train_images, cifar_shaped(64, 8, seed=4).train_images)


def test_options() -> None:
    quick = parse(["--quick"])
    assert quick.repeat == 1 and quick.out.name == "results-quick.json"
    full = parse(["--only", "fgsm_curve, probe", "--repeat", "7"])
    assert full.repeat == 7 and full.only == ["fgsm_curve", "probe"] and full.out.name == "results.json"


@pytest.mark.parametrize("argv", [["--repeat", "0"], ["--only", "fgsm,probe"], ["--only", ","]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
