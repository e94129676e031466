import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning.seeding import generator
from robustbench_mixup.measures import pointwise as diagnostics
from robustbench_mixup.measures.pointwise import (
    NOISE_STREAM,
    Diagnostics,
    expected_calibration_error,
    logit_margins,
    random_signs,
    sign_noise,
)

EPS = (0.0, 0.05, 0.3)


def _data(n=40, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=g), torch.randint(0, k, (n,), generator=g)


def _mlp(k=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, k))


def _diag(**kw):
    n = len(kw.get("grad_norm", kw.get("margin", [0.0])))
    base = dict(correct=torch.ones(n, dtype=torch.bool), confidence=torch.ones(n), margin=torch.ones(n),
                grad_norm=torch.ones(n), eps=(), noise_correct=torch.zeros(0, n, dtype=torch.bool))  # fmt: skip
    return Diagnostics(**(base | {k: torch.as_tensor(v) if k != "eps" else v for k, v in kw.items()}))


# --- calibration and margins ----------------------------------------------------------------------


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # bin (0.7, 0.8]: 4 at 0.75 with 3 right; bin (0.1, 0.2]: 5 at 0.2 with 1 right
    conf = torch.tensor([0.75] * 4 + [0.2] * 5)
    correct = torch.tensor([True, True, True, False, True, False, False, False, False])
    assert expected_calibration_error(conf, correct, bins=10) == pytest.approx(0.0, abs=1e-7)


def test_ece_of_certain_confidence_with_half_right_is_one_half():
    correct = torch.tensor([True, False] * 8)
    assert expected_calibration_error(torch.ones(16), correct) == 0.5


def test_ece_two_bin_hand_case_and_the_bin_edges():
    conf, correct = torch.tensor([0.2, 0.4, 0.6, 0.9]), torch.tensor([True, False, True, True])
    # bin [0, .5]: acc .5, conf .3 → ½·.2; bin (.5, 1]: acc 1, conf .75 → ½·.25
    assert expected_calibration_error(conf, correct, bins=2) == pytest.approx(0.225, abs=1e-7)
    # 0.5 closes the first bin: |1 − .5|/2 + |0 − .9|/2 = .7 (in the second bin it would be |1 − 1.4|/2 = .2)
    assert expected_calibration_error(torch.tensor([0.5, 0.9]), torch.tensor([True, False]), bins=2) == (
        pytest.approx(0.7, abs=1e-7)
    )
    # 0 is in the first bin with 0.4: |(1 − 0) + (0 − .4)| / 2
    assert expected_calibration_error(torch.tensor([0.0, 0.4]), torch.tensor([True, False]), bins=2) == (
        pytest.approx(0.3, abs=1e-7)
    )
    # one bin: |accuracy − mean confidence|
    assert expected_calibration_error(conf, correct, bins=1) == pytest.approx(abs(0.75 - 0.525), abs=1e-7)


@pytest.mark.parametrize(
    ("conf", "correct", "bins", "error", "match"),
    [
        (torch.ones(2), torch.ones(2, dtype=torch.bool), 0, ValueError, "bins must be ≥ 1"),
        (torch.ones(2), torch.ones(2, dtype=torch.bool), True, TypeError, "bins must be an int"),
        (torch.ones(2), torch.ones(2, dtype=torch.bool), 2.0, TypeError, "bins must be an int"),
        (torch.tensor([0.5, 1.5]), torch.ones(2, dtype=torch.bool), 15, ValueError, r"lie in \[0, 1\]"),
        (torch.tensor([0.5, math.nan]), torch.ones(2, dtype=torch.bool), 15, ValueError, r"lie in \[0, 1\]"),
        (torch.ones(2), torch.ones(2), 15, TypeError, "correct must be a bool"),
        (torch.ones(2), torch.ones(3, dtype=torch.bool), 15, TypeError, "same shape"),
        (torch.ones(2, dtype=torch.int64), torch.ones(2, dtype=torch.bool), 15, TypeError, "floating-point"),
        (torch.ones(0), torch.ones(0, dtype=torch.bool), 15, ValueError, "at least one example"),
    ],
)
def test_ece_rejects_bad_input(conf, correct, bins, error, match):
    with pytest.raises(error, match=match):
        expected_calibration_error(conf, correct, bins)


def test_margins_on_a_hand_matrix():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])  # right by 1, wrong by 5, a tie
    assert logit_margins(logits, labels).tolist() == [1.0, -5.0, 0.0]
    with pytest.raises(ValueError, match="at least 2 classes"):
        logit_margins(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        logit_margins(logits, torch.tensor([0, 3, 1]))
    with pytest.raises(TypeError, match="int64"):
        logit_margins(logits, labels.int())


# --- the per-example pass -------------------------------------------------------------------------


def test_gradient_norm_of_a_linear_model_is_the_hand_computed_one():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x, y = _data()
    d = diagnostics.test_point_diagnostics(lin, x, y, eps=(), seed=0)
    W, b = lin[1].weight.detach().double(), lin[1].bias.detach().double()
    logits = x.flatten(1).double() @ W.T + b
    p = torch.softmax(logits, dim=1)
    expected = ((p - F.one_hot(y, 5)) @ W).norm(dim=1)  # ∇ₓ CE = Wᵀ(p − onehot), per example, undivided by N
    torch.testing.assert_close(d.grad_norm.double(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d.confidence.double(), p.max(1).values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d.margin.double(), logit_margins(logits, y), rtol=1e-4, atol=1e-5)
    assert torch.equal(d.correct, logits.argmax(1) == y)
    assert d.grad_norm.dtype == d.confidence.dtype == d.margin.dtype == torch.float32
    assert d.noise_correct.shape == (0, 40) and d.eps == ()


def test_underflow_fraction_counts_exactly():
    d = _diag(grad_norm=[0.0, 1e-7, 1e-6, 1e-5])
    assert d.underflow_fraction() == 0.5  # strictly below 1e-6
    assert d.underflow_fraction(1e-4) == 1.0 and d.underflow_fraction(0.0) == 0.0


def test_a_saturated_softmax_underflows_exactly_where_it_is_certain():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        lin[1].weight.copy_(100 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    # margins 200 (softmax exactly one-hot in float32: gradient exactly 0), 0 (large) and 20 (‖·‖ ≈ 3e-7)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.55, 0.45]]).view(4, 1, 1, 2)
    d = diagnostics.test_point_diagnostics(lin, x, torch.tensor([0, 1, 0, 0]), eps=(), seed=0)
    assert d.grad_norm[:2].tolist() == [0.0, 0.0] and d.grad_norm[2] > 1
    assert 0 < d.grad_norm[3] < diagnostics.UNDERFLOW
    assert d.underflow_fraction() == 0.75 and d.summary()["grad_underflow"] == 0.75
    assert d.zero_fraction == 0.5 and d.summary()["grad_zero"] == 0.5  # only the exactly-one-hot points: no sign


def test_sign_noise_moves_each_pixel_by_exactly_eps_unless_clipped():
    x, _ = _data(n=256)
    x[:, 0] = 0.0  # pixels at the bounds, to be clipped half the time
    x[:, 1, 0] = 1.0
    before = x.clone()
    signs = random_signs(x.shape, torch.Generator().manual_seed(0))
    assert signs.dtype == torch.int8 and set(signs.unique().tolist()) == {-1, 1}
    assert abs(signs.float().mean().item()) < 0.05  # 12,288 fair signs: |mean| < 5 standard deviations
    noisy = sign_noise(x, 0.1, signs)
    assert torch.equal(x, before)  # the caller's tensor is left alone
    assert noisy.min() >= 0 and noisy.max() <= 1
    target = x + 0.1 * signs
    inside = (target >= 0) & (target <= 1)
    torch.testing.assert_close(noisy[inside], target[inside], rtol=0, atol=1e-7)
    assert (noisy[target > 1] == 1).all() and (noisy[target < 0] == 0).all()
    assert (~inside).any() and inside.any()


class _FirstPixel(nn.Module):
    """Class 1 iff the first pixel exceeds 0.5: on images of 0.5, noise of ε reveals the sign drawn there."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.lin.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)[:, :1])


def test_noise_is_the_seeded_cpu_draw_shared_by_every_eps_and_deterministic():
    x, y = torch.full((64, 1, 2, 2), 0.5), torch.ones(64, dtype=torch.int64)
    d = diagnostics.test_point_diagnostics(_FirstPixel(), x, y, eps=(0.1, 0.25), seed=3)
    expected = random_signs(x.shape, generator(3, NOISE_STREAM))[:, 0, 0, 0] > 0
    assert torch.equal(d.noise_correct, torch.stack([expected, expected]))
    again = diagnostics.test_point_diagnostics(_FirstPixel(), x, y, eps=(0.25,), seed=3, batch_size=5)
    assert torch.equal(again.noise_correct[0], d.noise_correct[1])  # same seed: same noise, whatever else is asked
    other = diagnostics.test_point_diagnostics(_FirstPixel(), x, y, eps=(0.25,), seed=4)
    assert not torch.equal(other.noise_correct[0], d.noise_correct[1])  # 2⁻⁶⁴ to coincide by chance


def test_eps_zero_is_exactly_the_clean_correctness():
    x, y = _data()
    d = diagnostics.test_point_diagnostics(_mlp(), x, y, eps=EPS, seed=0)
    assert torch.equal(d.noise_correct[0], d.correct) and d.noise_accuracy[0] == d.clean_accuracy
    assert d.noise_correct.shape == (3, 40) and d.eps == EPS


def test_results_do_not_depend_on_the_batch_size():
    x, y = _data(n=50)
    model = _mlp()
    full = diagnostics.test_point_diagnostics(model, x, y, eps=EPS, seed=1)
    for batch_size in (1, 7, 50, 1000):
        part = diagnostics.test_point_diagnostics(model, x, y, eps=EPS, seed=1, batch_size=batch_size)
        assert torch.equal(part.correct, full.correct) and torch.equal(part.noise_correct, full.noise_correct)
        for name in ("confidence", "margin", "grad_norm"):
            torch.testing.assert_close(getattr(part, name), getattr(full, name))


def test_the_model_is_frozen_in_eval_mode_and_restored_without_weight_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, 5))
    model.train()
    model[4].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x, y = _data()
    d = diagnostics.test_point_diagnostics(model, x, y, eps=(0.1,), seed=0, batch_size=8)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        probs = model.eval()(x).softmax(1)  # eval mode: running BatchNorm statistics, no dropout
    torch.testing.assert_close(d.confidence, probs.max(1).values)


def test_summary_has_one_key_per_measure_and_per_eps():
    x, y = _data()
    d = diagnostics.test_point_diagnostics(_mlp(), x, y, eps=EPS, seed=0)
    s = d.summary()
    assert list(s) == ["clean_acc", "ece", "median_margin", "grad_norm_median", "grad_norm_p90", "grad_underflow",
                       "grad_zero", "noise_acc@0", "noise_acc@0.05", "noise_acc@0.3"]  # fmt: skip
    assert s["clean_acc"] == d.correct.double().mean().item() and s["ece"] == d.ece(diagnostics.ECE_BINS)
    assert [s[f"noise_acc@{e:g}"] for e in EPS] == list(d.noise_accuracy)
    hand = _diag(margin=[1.0, 2.0, 3.0, 10.0], grad_norm=[0.0, 1.0, 2.0, 3.0])
    assert hand.median_margin == 2.5 and hand.grad_norm_quantile(0.5) == 1.5
    assert hand.grad_norm_quantile(0.9) == pytest.approx(2.7)  # linear interpolation, as numpy
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        hand.grad_norm_quantile(1.5)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"images": _data()[0].double()}, TypeError, "float32"),
        ({"images": _data()[0] + 1}, ValueError, r"\[0, 1\]"),
        ({"labels": _data()[1].int()}, TypeError, "int64"),
        ({"images": torch.zeros(0, 3, 4, 4), "labels": torch.zeros(0, dtype=torch.int64)}, ValueError, "at least one"),
        ({"eps": 0.1}, TypeError, "sequence"),
        ({"eps": (0.1, True)}, TypeError, "must be a number"),
        ({"eps": (-0.1,)}, ValueError, "finite number ≥ 0"),
        ({"eps": (math.inf,)}, ValueError, "finite number ≥ 0"),
        ({"eps": (math.nan,)}, ValueError, "finite number ≥ 0"),
        ({"eps": (0.1, 0.1)}, ValueError, "distinct"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"seed": -1}, ValueError, "seed must be ≥ 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_point_diagnostics_rejects_bad_input(change, error, match):
    x, y = _data()
    kw = {"images": x, "labels": y, "eps": (0.1,), "seed": 0} | change
    with pytest.raises(error, match=match):
        diagnostics.test_point_diagnostics(_mlp(), kw.pop("images"), kw.pop("labels"), **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_numbers():
    x, y = _data(n=300)
    model = _mlp()
    cpu = diagnostics.test_point_diagnostics(model, x, y, eps=EPS, seed=2)
    gpu = diagnostics.test_point_diagnostics(model.cuda(), x, y, eps=EPS, seed=2)
    assert torch.equal(cpu.correct, gpu.correct) and torch.equal(cpu.noise_correct, gpu.noise_correct)
    for name in ("confidence", "margin", "grad_norm"):
        torch.testing.assert_close(getattr(gpu, name), getattr(cpu, name), rtol=1e-4, atol=1e-5)
