"""The benchmark harness: how it times, what it compares, and that bad options are refused.

Timings themselves are never asserted here (they live in benchmarks/results.json); CI runs
`python -m benchmarks --quick` to keep the whole command working.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import BENCHMARKS, HEAVY, merge, parse, table
from benchmarks.attacks import _agree_bound, multi_eps
from benchmarks.batched import StackedSGD, VmapMaxPool2x2, sequential_epoch, weight_difference
from benchmarks.setups import cifar_shaped, sizes
from benchmarks.timing import Result, Target, Timing, measure
from benchmarks.training import ReferenceStyleDataset
from robustbench_mixup.learning.loop import make_optimizer
from robustbench_mixup.learning.models import MaxPool2x2, build_model
from robustbench_mixup.settings.config import TrainConfig


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
    assert quick.repeat == quick.heavy_repeat == 1 and quick.out.name == "results-quick.json"
    full = parse(["--only", "fgsm_curve, probe", "--repeat", "7"])
    assert full.repeat == full.heavy_repeat == 7 and full.only == ["fgsm_curve", "probe"]
    assert full.out.name == "results.json"
    default = parse(["--only", "pgd,apgd,precision"])
    assert (default.repeat, default.heavy_repeat) == (5, 3) and default.only == ["pgd", "apgd", "precision"]
    assert set(HEAVY) <= set(BENCHMARKS)


def test_sizes_of_the_iterative_attacks() -> None:
    """Every setup has images for PGD/APGD and the precision comparison, on every device and in --quick."""
    for device in ("cpu", "cuda"):
        for quick in (False, True):
            for size in sizes(torch.device(device), quick).values():
                assert 0 < size.iterative <= 1000 and 0 < size.precision <= 1000
    assert all(s.precision == 1000 for s in sizes(torch.device("cuda"), False).values())


def test_agreement_bound_allows_one_example_on_small_sets() -> None:
    assert _agree_bound(1000, 0.002) == 0.002  # 2 in 1,000
    assert _agree_bound(250, 0.002) == 1 / 250  # a single example: 0.002 would demand equality
    assert _agree_bound(50, 0.01) == 1 / 50


def _entry(benchmark: str, setup: str) -> dict:
    return {"benchmark": benchmark, "setup": setup, "timings": {}, "targets": [], "notes": {}, "rates": {}}


def test_merge_keeps_the_benchmarks_not_run() -> None:
    """`--only pgd` rewrites pgd's entries and keeps the others, each with the stamp of its own run."""
    previous = {
        "created": "yesterday", "commit": "abc", "device": "CPU, 2 threads", "quick": False,
        "results": [_entry("fgsm_curve", "a"), _entry("pgd", "a"), _entry("precision ifgsm-10", "a"),
                    _entry("cli_startup", "fresh process"), "junk"],
    }  # fmt: skip
    stamp = {"created": "now", "commit": "def"}
    fresh = {**stamp, "results": [{**_entry("pgd", "b"), "measured": stamp}]}
    merged = merge(previous, fresh, {"pgd"})
    assert merged["created"] == "now"
    rows = [(e["benchmark"], e["setup"]) for e in merged["results"]]
    # pgd's old entry is gone, the rest kept, all in BENCHMARKS order (a family's entries by their first word)
    assert rows == [("fgsm_curve", "a"), ("cli_startup", "fresh process"), ("pgd", "b"), ("precision ifgsm-10", "a")]
    kept = merged["results"][0]["measured"]
    assert kept["created"] == "yesterday" and kept["commit"] == "abc"
    assert merged["results"][2]["measured"] == stamp
    # "precision ifgsm-10" belongs to precision: running precision drops it
    assert [e["benchmark"] for e in merge(previous, {"results": []}, {"precision", "pgd"})["results"]] == [
        "fgsm_curve", "cli_startup"]  # fmt: skip


@pytest.mark.parametrize("previous", [None, [], {"results": "x"}, "text"])
def test_merge_ignores_an_unreadable_file(previous: object) -> None:
    fresh = {"results": [_entry("pgd", "b")]}
    assert merge(previous, fresh, {"pgd"}) == fresh


def test_table_shows_skips_accuracies_and_precision() -> None:
    t = Timing(2.0, 1.0, 3.0, 3)
    skipped = multi_eps(None, repeat=1, n=0)
    assert not skipped.timings and "CUDA only" in skipped.notes["skipped"]
    precision = Result(
        "precision ifgsm-10", "m", {"fp32": t, "bf16": Timing(4.0, 4.0, 4.0, 3)},
        notes={"n": 1000, "accuracies": {"fp32": 0.5, "bf16": 0.504}, "speed_vs_fp32": {"fp32": 1.0, "bf16": 0.5},
               "accuracy_difference_points": {"bf16": 0.4}, "compile": "skipped in --quick"},
    )  # fmt: skip
    text = table([skipped, precision])
    assert "multi_eps" in text and "CUDA only" in text
    assert "robust accuracy on 1000: fp32 0.5000, bf16 0.5040" in text
    assert "bf16 ×0.50 speed, +0.40 points" in text and "compile: skipped in --quick" in text


@pytest.mark.parametrize(
    "argv",
    [["--repeat", "0"], ["--only", "fgsm,probe"], ["--only", ","], ["--run", "x", "--only", "pgd,ifgsm"],
     ["--n", "100"], ["--run", "x", "--n", "0"]],
)  # fmt: skip
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_run_option_times_the_iterative_attacks_on_a_run() -> None:
    args = parse(["--run", "checkpoints/quick", "--n", "500"])
    assert args.only == ["pgd", "apgd", "square"] and args.n == 500 and args.out.name == "results-run.json"
    assert parse(["--run", "checkpoints/quick", "--only", "square"]).only == ["square"]


def test_from_run_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    from benchmarks.setups import from_run
    from robustbench_mixup.settings.errors import UsageError

    with pytest.raises(UsageError, match="not a run's folder"):
        from_run(tmp_path, torch.device("cpu"))
    (tmp_path / "run.json").write_text('{"config": {"dataset": "digits", "model": "smallcnn"}}')
    with pytest.raises(UsageError, match="holds no model checkpoint"):
        from_run(tmp_path, torch.device("cpu"))
    (tmp_path / "run.json").write_text('{"config": {"no_such_field": 1}}')
    with pytest.raises(UsageError, match="not a run's folder"):
        from_run(tmp_path, torch.device("cpu"))


def test_early_stop_ceiling_is_the_share_the_survivors_leave() -> None:
    """Survivors take every step: with robust accuracy a, early stop is at most (peer / ours) / a times the
    peer. A peer 1.2× slower than ours and a = 0.112 give a ceiling of 10.7. Equal accuracies computed two ways
    (sum / n and 1 − fooled / n) differ in the last bit: the superset rule does not cry wolf on that."""
    from benchmarks.attacks import _early_targets

    t = {"ours": 10.0, "ours early stop": 7.5, "torchattacks": 12.0, "foolbox": 20.0}
    result = Result("pgd", "m", {k: Timing(v, v, v, 1) for k, v in t.items()})
    accuracies = {"ours": 0.6, "ours early stop": 28 / 250, "torchattacks": 1 - 222 / 250, "foolbox": 0.61}
    assert accuracies["ours early stop"] > accuracies["torchattacks"]  # 0.112 vs 0.11199999999999999
    _early_targets(result, accuracies, ["torchattacks", "foolbox"])
    assert result.notes["fastest_peer"] == "torchattacks"
    assert result.notes["early_stop_ceiling"] == pytest.approx(1.2 / 0.112)
    got = {tg.label: (tg.value, tg.met) for tg in result.targets}
    assert got["torchattacks / ours early stop"] == (pytest.approx(1.6), False)
    assert got["accuracy ours early stop − min over peers"] == (0.0, True)
    assert "early stop can be about ×10.71 the fastest peer here at most" in table([result])
    none_left = Result("pgd", "m", {k: Timing(v, v, v, 1) for k, v in t.items()})
    _early_targets(none_left, {**accuracies, "ours early stop": 0.0}, ["torchattacks"], superset=False)
    assert "early_stop_ceiling" not in none_left.notes  # nothing survives: no ceiling but the batch overhead
    assert [tg.label for tg in none_left.targets] == ["torchattacks / ours early stop", "ours / ours early stop"]


def test_adv_lib_absent_is_a_note_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from benchmarks.attacks import _adv_lib

    monkeypatch.setitem(sys.modules, "adv_lib", None)
    monkeypatch.setitem(sys.modules, "adv_lib.attacks", None)
    why = _adv_lib(lambda attacks: lambda: 0.0)
    assert isinstance(why, str) and why.startswith("skipped: adv-lib is not installed")


def test_art_absent_is_a_note_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI installs `.[test]`, without ART: the pgd benchmark runs the others and says why ART is missing."""
    import sys

    from benchmarks.attacks import _art_pgd

    monkeypatch.setitem(sys.modules, "art", None)
    monkeypatch.setitem(sys.modules, "art.attacks.evasion", None)
    why = _art_pgd(None, torch.zeros(1), torch.zeros(1), 0.1, 0.01, 1, 1)  # type: ignore[arg-type]
    assert isinstance(why, str) and why.startswith("skipped: ART is not installed")


def test_batched_training_agrees_with_the_package_loop() -> None:
    """M models stacked and trained by one vmapped call per batch end the epoch where the package's
    `train_epoch` leaves each of them: same batches, same SGD, only the order of the sums differs."""
    # The replacement pool: MaxPool2x2's values and gradient route, ties (the zeros after a ReLU) included.
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)).relu().round()
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = VmapMaxPool2x2()(ours)
    assert torch.equal(out, MaxPool2x2()(theirs))
    g = torch.randn_like(out)
    out.backward(g)
    MaxPool2x2()(theirs).backward(g)
    assert torch.equal(ours.grad, theirs.grad)

    gen = torch.Generator().manual_seed(1)
    images, labels = torch.rand(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    torch.manual_seed(0)
    initial = build_model("smallcnn", in_shape=[1, 28, 28], num_classes=10, mean=[0.5], std=[0.3])
    cfg = TrainConfig(batch_size=32)  # two steps: the first SGD step and one with momentum
    models = [copy.deepcopy(initial) for _ in range(2)]
    stats = sequential_epoch(models, [make_optimizer(m, cfg) for m in models], images, labels, cfg, 10)
    stacked = StackedSGD([copy.deepcopy(initial) for _ in range(2)], cfg)
    batched_stats = stacked.epoch(images, labels)
    moved = max((p - q).abs().max().item() for p, q in zip(models[0].parameters(), initial.parameters(), strict=True))
    assert moved > 1e-3  # the epoch did change the weights ...
    assert weight_difference(models, stacked) <= 1e-5  # ... and both ways changed them alike
    assert batched_stats["train_loss"].tolist() == pytest.approx([s["train_loss"] for s in stats], abs=1e-5)


def test_batched_sgd_update_is_torch_sgd() -> None:
    """The hand-written update on stacked tensors is torch.optim.SGD's, bit for bit, over several steps."""
    torch.manual_seed(0)
    model, cfg = torch.nn.Linear(5, 3), TrainConfig()
    stacked = StackedSGD([copy.deepcopy(model), copy.deepcopy(model)], cfg)
    opt = make_optimizer(model, cfg)
    for _ in range(3):
        grads = {name: torch.randn_like(p) for name, p in model.named_parameters()}
        for name, p in model.named_parameters():
            p.grad = grads[name].clone()
        opt.step()
        stacked.update({name: torch.stack([g, g]) for name, g in grads.items()})
    for name, p in model.named_parameters():
        assert torch.equal(stacked.params[name][0], p.detach()) and torch.equal(stacked.params[name][1], p.detach())
