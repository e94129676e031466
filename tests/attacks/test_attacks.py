import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.attacks.engine import robust_accuracy
from robustbench_mixup.attacks.indicators import ordering_flags
from robustbench_mixup.attacks.methods import fgsm, ifgsm
from robustbench_mixup.learning.models import build_model
from robustbench_mixup.measures.stats import wilson_interval
from robustbench_mixup.settings.config import AttackConfig as AttackSpec
from robustbench_mixup.stages.attack import build_attack, evaluate_models

SHAPE = (1, 8, 8)


def _models():
    torch.manual_seed(0)
    kw = {"in_shape": list(SHAPE), "num_classes": 10, "mean": [0.4], "std": [0.3]}
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # not a package model
    return {
        "mlp": build_model("mlp", **kw),
        "smallcnn": build_model("smallcnn", dropout=0.3, **kw),
        "preact": build_model("preact-resnet18", width=4, **kw),
        "plain": plain,
    }


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", ["mlp", "smallcnn", "preact", "plain"])
@pytest.mark.parametrize("attack", ["fgsm", "ifgsm"])
@pytest.mark.parametrize("eps", [0.0, 0.03, 0.3])
def test_invariants(name, attack, eps):
    model = _models()[name].train()
    flags_before = [p.requires_grad for p in model.parameters()]
    x, y = _data()
    x_before = x.clone()
    adv = fgsm(model, x, y, eps) if attack == "fgsm" else ifgsm(model, x, y, eps, steps=5)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert (adv - x).abs().max() <= eps + 1e-7  # the ε-ball
    assert adv.min() >= 0 and adv.max() <= 1  # the bounds
    if eps == 0:
        assert torch.equal(adv, x)
    assert torch.equal(x, x_before)  # inputs untouched
    assert model.training  # mode restored
    assert [p.requires_grad for p in model.parameters()] == flags_before
    assert all(p.grad is None for p in model.parameters())  # no weight gradients


def test_eval_mode_is_restored_too():
    model = _models()["smallcnn"].eval()
    x, y = _data()
    ifgsm(model, x, y, 0.1)
    assert not model.training


def test_fgsm_on_a_linear_model_matches_the_hand_computation():
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = _data(32)
    W, b = lin[1].weight.detach(), lin[1].bias.detach()
    p = torch.softmax(x.flatten(1) @ W.T + b, dim=1)
    grad = (p - F.one_hot(y, 10).float()) @ W  # ∂CE/∂x for logits Wx + b
    expected = (x + 0.05 * grad.sign().view_as(x)).clamp(0, 1)
    torch.testing.assert_close(fgsm(lin, x, y, 0.05), expected)


def test_ifgsm_takes_equal_steps_and_one_step_of_size_eps_is_fgsm():
    model = _models()["mlp"]
    x, y = _data()
    torch.testing.assert_close(ifgsm(model, x, y, 0.1, steps=1), fgsm(model, x, y, 0.1))
    assert torch.equal(ifgsm(model, x, y, 0.1), ifgsm(model, x, y, 0.1, steps=10, step_size=0.01))
    # Steps bigger than ε still stay inside the ε-ball.
    big = ifgsm(model, x, y, 0.05, steps=3, step_size=0.2)
    assert (big - x).abs().max() <= 0.05 + 1e-7


def test_robust_accuracy_matches_attack_then_classify():
    models = _models()
    x, y = _data(200)
    eps = [0.0, 0.02, 0.1]
    for attack, fn in (("fgsm", fgsm), ("ifgsm", ifgsm)):
        white = robust_accuracy(models["mlp"], x, y, eps, attack=attack, batch_size=64)
        black = robust_accuracy(models["mlp"], x, y, eps, attack=attack, source=models["smallcnn"], batch_size=64)
        with torch.no_grad():
            manual_white = [(models["mlp"](fn(models["mlp"], x, y, e)).argmax(1) == y).double().mean() for e in eps]
            manual_black = [
                (models["mlp"](fn(models["smallcnn"], x, y, e)).argmax(1) == y).double().mean() for e in eps
            ]
        torch.testing.assert_close(white, torch.stack(manual_white))
        torch.testing.assert_close(black, torch.stack(manual_black))
        assert white.shape == (3,) and white[0] == black[0]  # ε = 0 is the clean accuracy for both


class Counting(nn.Module):
    """Counts forward passes, and those that will be differentiated."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.forwards, self.grad_forwards = inner, 0, 0

    def forward(self, x):
        self.forwards += 1
        self.grad_forwards += int(x.requires_grad)
        return self.inner(x)


def test_fgsm_curve_takes_one_gradient_per_batch_for_all_eps():
    model = Counting(_models()["mlp"])
    x, y = _data(100)
    robust_accuracy(model, x, y, [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5], batch_size=50)
    assert model.grad_forwards == 2  # one per batch, shared by all 8 ε
    # Per batch: the gradient's forward (which doubles as ε = 0), then one forward for each other ε
    # (on CUDA the other 7 go through one concatenated forward).
    assert model.forwards == 2 * 8


def test_bad_arguments():
    model, (x, y) = _models()["mlp"], _data()
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps"):
        ifgsm(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        ifgsm(model, x, y, 0.1, step_size=0.0)
    with pytest.raises(TypeError, match="labels"):
        fgsm(model, x, y.float(), 0.1)
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(model, x, y, [0.1], attack="cw")


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)


# --- backends agree --------------------------------------------------------------------------------


@pytest.fixture
def trained(trained_smallcnn):
    return trained_smallcnn


@pytest.mark.parametrize("attack", ["fgsm", "ifgsm"])
def test_native_torchattacks_and_foolbox_agree(trained, attack):
    pytest.importorskip("torchattacks")
    pytest.importorskip("foolbox")
    model, x, y = trained
    x, y = x[:500], y[:500]  # example for example, 500 show what 1,000 counted (and take half the time)
    eps = (0.02, 0.05, 0.1, 0.2)
    acc, correct = {}, {}
    for backend in ("native", "torchattacks", "foolbox"):
        spec = AttackSpec(attack=attack, eps=eps, steps=10, mode="white", backend=backend)
        _, rows = evaluate_models({"m": model}, x, y, spec)
        acc[backend] = [round(r.top1 * len(y)) for r in rows]
        correct[backend] = [r.correct for r in rows]
    assert acc["native"][0] > acc["native"][-1]  # the attack bites
    for other in ("torchattacks", "foolbox"):  # the same examples broken, at most one flipped by float rounding
        flips = [int((a != b).sum()) for a, b in zip(correct["native"], correct[other], strict=True)]
        assert all(f <= 1 for f in flips), (other, flips, acc)


# --- the sanity checks fire on models built to violate them ----------------------------------------


class Noisy(nn.Module):
    """A 'randomized defense': random logits on every call (its own seeded generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x):
        return torch.randn(len(x), 10, generator=self.g) + 0 * x.flatten(1)[:, :1]


class Threshold(nn.Module):
    """Class 1 iff the mean pixel exceeds 1/2; `quantize` rounds the input first (zero gradient)."""

    def __init__(self, quantize: bool) -> None:
        super().__init__()
        self.quantize = quantize

    def forward(self, x):
        if self.quantize:
            x = torch.round(x * 255) / 255
        s = 50 * (x.flatten(1).mean(1, keepdim=True) - 0.5)
        return torch.cat([-s, s], dim=1)


def _threshold_data(n=400):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 1, 4, 4, generator=g) * 0.5 + torch.rand(n, 1, 1, 1, generator=g) * 0.5).clamp(0, 1)
    return x, (x.flatten(1).mean(1) > 0.5).long()


def _stored(rows, spec):
    """Rows as the database stores them (what `ordering_flags` reads)."""
    attack = build_attack(spec)
    return [{"model": r.model, "mode": r.mode, "eps": r.eps, "n": r.n, "top1": r.top1, "attack": spec.attack,
             "backend": spec.backend, "steps": attack.steps, "step_size": attack.size_for(r.eps), "restarts": 1,
             "source": r.model if r.mode == "white" else "src", "correct": r.correct} for r in rows]  # fmt: skip


def _flags(models, x, y, spec, black_source=None, other=()):
    """(checks failed significantly, checks within noise), and the stored rows."""
    from robustbench_mixup.stages.attack import craft_sets

    black = None if black_source is None else craft_sets(spec, build_attack(spec), black_source, x, y)
    clean, rows = evaluate_models(models, x, y, spec, black_sets=black)
    stored = _stored(rows, spec)
    flags = ordering_flags([*stored, *other], {m: c["top1"] for m, c in clean.items()})
    status = {s: {f["check"] for f in flags if f["status"] == s} for s in ("failed", "noise")}
    return status["failed"], status["noise"], stored


def test_honest_models_raise_no_flag():
    x, y = _threshold_data()
    spec = AttackSpec(attack="fgsm", eps=(0.0, 0.02, 0.05, 0.1), mode="both")
    failed, noise, _ = _flags({"erm": Threshold(False)}, x, y, spec, black_source=Threshold(False))
    assert failed == noise == set()


def test_a_randomized_model_fails_eps0_but_its_wobbles_in_eps_are_within_noise():
    x, y = _data(1000)
    spec = AttackSpec(attack="fgsm", eps=(0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3), mode="white")
    failed, noise, stored = _flags({"erm": Noisy()}, x, y, spec)
    assert failed == {"eps0_equals_clean"}  # exact: a deterministic model reproduces its clean accuracy
    # Random logits: accuracy ~10% at every ε, rising here and there by chance. Rises exist, none significant.
    assert any(b["top1"] > a["top1"] for a, b in itertools.pairwise(stored))
    assert noise == {"monotone_in_eps"}


def test_an_ifgsm_too_weak_to_move_fails_ifgsm_below_fgsm_significantly():
    model, (x, y) = _models()["mlp"], _data(1000)
    eps = (0.1, 0.3)
    _, _, fgsm_rows = _flags({"erm": model}, x, y, AttackSpec(attack="fgsm", eps=eps, mode="white"))
    weak = AttackSpec(attack="ifgsm", eps=eps, steps=2, step_size=1e-4, mode="white")  # moves 2e-4 in all
    failed, _, _ = _flags({"erm": model}, x, y, weak, other=fgsm_rows)
    assert "ifgsm_le_fgsm" in failed


def test_a_gradient_masking_model_fails_black_at_least_white():
    # Rounding the input zeroes the gradient: white-box FGSM does nothing, transfer from the
    # unmasked twin still fools it.
    x, y = _threshold_data()
    spec = AttackSpec(attack="fgsm", eps=(0.05, 0.1), mode="both")
    failed, _, stored = _flags({"erm": Threshold(True)}, x, y, spec, black_source=Threshold(False))
    white = [r["top1"] for r in stored if r["mode"] == "white"]
    assert white == [1.0, 1.0] and failed == {"black_ge_white"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attacks_on_cuda_keep_the_invariants_and_agree_with_cpu(trained):
    model, x, y = trained
    cuda_model = build_model(model.spec.name, **model.spec.kwargs).cuda().eval()
    cuda_model.load_state_dict(model.state_dict())
    xc, yc = x.cuda(), y.cuda()
    for attack in (fgsm, ifgsm):
        adv = attack(cuda_model, xc, yc, 0.1)
        assert adv.device == xc.device and (adv - xc).abs().max() <= 0.1 + 1e-6 and 0 <= adv.min() <= adv.max() <= 1
    eps = [0.0, 0.05, 0.1]
    on_cpu = robust_accuracy(model, x, y, eps)
    on_gpu = robust_accuracy(cuda_model, xc, yc, eps)
    assert on_gpu.device.type == "cpu" and (on_gpu - on_cpu).abs().max() <= 0.01  # TF32 may flip a few signs


def test_progress_is_reported_per_batch():
    from robustbench_mixup.attacks.engine import evaluate_attack

    model, (x, y) = _models()["mlp"], _data(100)
    seen = []
    evaluate_attack(model, {"m": model}, x, y, [0.0, 0.1], batch_size=30, progress=seen.append)
    assert seen == [30, 30, 30, 10]
