"""PGD and APGD: the invariants every attack keeps, answers computed by hand on linear models, the
restart and seeding rules of docs/API.md, and agreement with torchattacks and foolbox on a trained model."""

import pytest
import torch
from torch import nn

from robustbench_mixup.attacks import backends
from robustbench_mixup.attacks.engine import robust_accuracy
from robustbench_mixup.attacks.methods import APGD, APGDDLR, PGD, ifgsm
from robustbench_mixup.attacks.methods import apgd as _apgd
from robustbench_mixup.attacks.methods import pgd as _pgd
from robustbench_mixup.learning.models import build_model
from robustbench_mixup.measures.gradients import attack_loss
from robustbench_mixup.settings.config import AttackConfig
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.stages.attack import evaluate_models

SHAPE = (1, 8, 8)


def pgd(model, x, y, eps, **kw):
    return _pgd(model, x, y, eps, **{"steps": 5, **kw})


def apgd_ce(model, x, y, eps, **kw):
    return _apgd(model, x, y, eps, **{"steps": 5, **kw})


def apgd_dlr(model, x, y, eps, **kw):
    return _apgd(model, x, y, eps, **{"steps": 5, "loss": "dlr", **kw})


ATTACKS = {"pgd": pgd, "apgd-ce": apgd_ce, "apgd-dlr": apgd_dlr}


def _models():
    torch.manual_seed(0)
    kw = {"in_shape": list(SHAPE), "num_classes": 10, "mean": [0.4], "std": [0.3]}
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # not a package model
    return {"mlp": build_model("mlp", **kw), "smallcnn": build_model("smallcnn", dropout=0.3, **kw), "plain": plain}


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _wrong(model, adv, y):
    with torch.no_grad():
        return model(adv).argmax(1) != y


# --- the invariants ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "smallcnn", "plain"])
@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_invariants(name, attack, eps):
    model = _models()[name].train()
    flags_before = [p.requires_grad for p in model.parameters()]
    x, y = _data(32)
    x_before, y_before = x.clone(), y.clone()
    adv = ATTACKS[attack](model, x, y, eps)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert (adv - x).abs().max() <= eps + 1e-7  # the ε-ball
    assert adv.min() >= 0 and adv.max() <= 1  # the bounds
    if eps == 0:
        assert torch.equal(adv, x)
    else:
        assert adv.data_ptr() != x.data_ptr()
    assert torch.equal(x, x_before) and torch.equal(y, y_before)  # inputs untouched
    assert model.training  # mode restored
    assert [p.requires_grad for p in model.parameters()] == flags_before
    assert all(p.grad is None for p in model.parameters())  # no weight gradients


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_narrow_bounds_are_kept(attack):
    model, (x, y) = _models()["mlp"], _data(32)
    x = 0.2 + 0.3 * x  # inside the bounds (0.2, 0.5); the attack pushes some pixels onto their edges
    adv = ATTACKS[attack](model, x, y, 0.1, bounds=(0.2, 0.5))
    assert (adv - x).abs().max() <= 0.1 + 1e-7
    assert adv.min() >= 0.2 and adv.max() <= 0.5
    assert ((adv == 0.2) | (adv == 0.5)).any()  # the bounds bite, and are not crossed


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_float64_keeps_the_ball_to_float64_precision(attack):
    model, (x, y) = _models()["mlp"].double(), _data(32)
    x = x.double()
    adv = ATTACKS[attack](model, x, y, 0.1)
    assert adv.dtype == torch.float64 and adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= 0.1 + 1e-12


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_attacks_bite(attack):
    model, (x, y) = _models()["mlp"], _data(200)
    with torch.no_grad():
        y = model(x).argmax(1)  # every example correctly classified at first
    adv = ATTACKS[attack](model, x, y, 0.3)
    assert _wrong(model, adv, y).float().mean() > 0.5


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_same_generator_seed_same_points_other_seed_other_points(attack):
    model, (x, y) = _models()["mlp"], _data(32)
    a = ATTACKS[attack](model, x, y, 0.1, generator=_gen(7))
    b = ATTACKS[attack](model, x, y, 0.1, generator=_gen(7))
    c = ATTACKS[attack](model, x, y, 0.1, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # No generator: a fixed default, never the global random state.
    torch.manual_seed(1)
    d = ATTACKS[attack](model, x, y, 0.1)
    torch.manual_seed(2)
    assert torch.equal(d, ATTACKS[attack](model, x, y, 0.1))


def test_pgd_without_random_start_is_ifgsm_with_pgds_step_size():
    model, (x, y) = _models()["smallcnn"], _data(32)
    for eps, steps in ((0.1, 10), (0.03, 7)):
        expected = ifgsm(model, x, y, eps, steps=steps, step_size=2.5 * eps / steps)
        ours = _pgd(model, x, y, eps, steps=steps, random_start=False)
        assert (ours - expected).abs().max() <= 1e-6  # bitwise below, where the step size rounds alike
        assert torch.equal(PGD(steps=steps, random_start=False)(model, x, y, eps), ours)
        # Without a random start the generator plays no part.
        assert torch.equal(_pgd(model, x, y, eps, steps=steps, random_start=False, generator=_gen(3)), ours)
    # The default step size 2.5·ε/steps is what the restart-free run uses: ε/4 per step for 10 steps.
    assert torch.equal(_pgd(model, x, y, 0.1, steps=10, random_start=False),
                       ifgsm(model, x, y, 0.1, steps=10, step_size=0.025))  # fmt: skip


def test_pgd_without_random_start_is_bitwise_ifgsm_for_any_eps():
    model, (x, y) = _models()["plain"], _data(64)
    eps, steps = 0.03, 7
    expected = ifgsm(model, x, y, eps, steps=steps, step_size=2.5 * eps / steps)
    assert torch.equal(_pgd(model, x, y, eps, steps=steps, random_start=False), expected)


def _restart_alone(attack, k, seed, model, x, y, eps, **kw):
    """Restart k of `attack(restarts=R, generator=seed)` on its own: the generator advanced past the
    k starts drawn before it (all starts are drawn in order, one x-shaped uniform draw each)."""
    g = _gen(seed)
    for _ in range(k):
        torch.rand(x.shape, generator=g, dtype=torch.float32)
    return attack(model, x, y, eps, restarts=1, generator=g, **kw)


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce"])
def test_restarts_break_a_superset_of_the_first_restart(attack):
    fn = ATTACKS[attack]
    model, (x, y) = _models()["mlp"], _data(200)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.03  # about half broken: room for restarts to add
    one = fn(model, x, y, eps, steps=3, generator=_gen(5))
    many = fn(model, x, y, eps, steps=3, restarts=4, generator=_gen(5))
    assert torch.equal(_restart_alone(fn, 0, 5, model, x, y, eps, steps=3), one)
    broken_one, broken_many = _wrong(model, one, y), _wrong(model, many, y)
    assert (broken_many | ~broken_one).all()  # every example the first restart broke stays broken
    assert 0 < broken_one.sum() < len(y) and broken_many.sum() > broken_one.sum()
    assert (many - x).abs().max() <= eps + 1e-7 and many.min() >= 0 and many.max() <= 1


def test_pgd_restarts_return_a_breaking_restart_else_the_highest_loss_one():
    model, (x, y) = _models()["mlp"], _data(200)
    eps, restarts = 0.03, 3
    many = pgd(model, x, y, eps, steps=3, restarts=restarts, generator=_gen(11))
    runs = torch.stack([_restart_alone(pgd, k, 11, model, x, y, eps, steps=3) for k in range(restarts)])  # (R, N, ...)
    with torch.no_grad():
        logits = torch.stack([model(r) for r in runs])
    wrong = logits.argmax(-1) != y
    losses = torch.stack([attack_loss(z, y) for z in logits])
    # The first breaking restart, else the restart of the highest loss (the first of equals).
    pick = torch.where(wrong.any(0), wrong.int().argmax(0), losses.argmax(0))
    expected = runs[pick, torch.arange(len(y))]
    assert torch.equal(many, expected)
    assert 0 < wrong.any(0).sum() < len(y)  # both rules were exercised


def test_bad_arguments():
    model, (x, y) = _models()["mlp"], _data()
    with pytest.raises(ValueError, match="restarts"):
        _pgd(model, x, y, 0.1, restarts=0)
    with pytest.raises(ValueError, match="steps"):
        _apgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="loss"):
        _apgd(model, x, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="eps"):
        _pgd(model, x, y, -0.1)
    with pytest.raises(ValueError, match="step_size"):
        _pgd(model, x, y, 0.1, step_size=0.0)
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(model, x, y, [0.1], attack="apgd")


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce", "apgd-dlr"])
def test_robust_accuracy_is_the_accuracy_on_the_attacks_points(attack):
    # robust_accuracy uses the defaults (50 and 100 steps) and the generator a direct call uses.
    model, (x, y) = _models()["mlp"], _data(100)
    direct = {"pgd": lambda: _pgd(model, x, y, 0.05), "apgd-ce": lambda: _apgd(model, x, y, 0.05),
              "apgd-dlr": lambda: _apgd(model, x, y, 0.05, loss="dlr")}[attack]()  # fmt: skip
    acc = robust_accuracy(model, x, y, [0.0, 0.05], attack=attack, batch_size=100)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).double().mean()
    assert acc[0] == clean
    assert acc[1] == (~_wrong(model, direct, y)).double().mean()
    assert acc[1] < acc[0]


# --- linear models: the answer by hand -----------------------------------------------------------------


def _linear(num_classes, d=64):
    """Logits z_j = c_j·(d·x) + b_j: every margin z_y − z_j is affine in s = d·x. For y the class of the
    largest (smallest) c every margin falls as s falls (rises): the margin's minimum over the ε-ball is
    at the corner x0 − ε·sign(w_y − w_j), the same for all j, and the CE gradient's sign points at it."""
    g = _gen(3)
    direction = torch.randn(d, generator=g)
    c = torch.linspace(1.0, -1.0, num_classes) * 0.5
    lin = nn.Linear(d, num_classes)
    w = direction / direction.abs().sum() * 8
    with torch.no_grad():  # logits centred on x = 0.5, so that small ε leaves some examples unbroken
        lin.weight.copy_(c[:, None] * w[None, :])
        lin.bias.copy_(-c * (w @ torch.full((d,), 0.5)) + torch.randn(num_classes, generator=g) * 0.01)
    return nn.Sequential(nn.Flatten(), lin), lin.weight.detach(), lin.bias.detach()


def _margin(logits, y):
    true = logits.gather(1, y[:, None])[:, 0]
    return true - logits.scatter(1, y[:, None], -torch.inf).amax(1)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_linear_model_pgd_and_apgd_reach_the_corner_of_least_margin(num_classes):
    model, W, b = _linear(num_classes)
    g = _gen(4)
    n, eps = 200, 0.02
    x = 0.3 + 0.4 * torch.rand(n, *SHAPE, generator=g)  # ≥ ε away from the bounds: the corner is inside
    y = torch.randint(0, 2, (n,), generator=g) * (num_classes - 1)  # the classes of extreme c
    other = (num_classes - 1) - y  # any other class gives the same sign
    corner = x - eps * (W[y] - W[other]).sign().view_as(x)
    with torch.no_grad():
        best = _margin(model(corner), y)
        # The least margin over the ball: min over j ≠ y of (w_y − w_j)·x0 + b_y − b_j − ε‖w_y − w_j‖₁.
        diff = W[y][:, None, :] - W[None, :, :]  # (n, classes, d)
        to_j = (diff @ x.flatten(1)[:, :, None])[..., 0] + (b[y][:, None] - b) - eps * diff.abs().sum(-1)
        analytic = to_j.scatter(1, y[:, None], torch.inf).amin(1)
    torch.testing.assert_close(best, analytic, rtol=0, atol=1e-5)
    for random_start in (False, True):  # 10 steps of 2.5ε/10 cross the ball from anywhere
        adv = _pgd(model, x, y, eps, steps=10, random_start=random_start, generator=_gen(0))
        torch.testing.assert_close(adv, corner, rtol=0, atol=1e-6)
        with torch.no_grad():
            torch.testing.assert_close(_margin(model(adv), y), analytic, rtol=0, atol=1e-5)
    # APGD keeps the first misclassified point it meets, else the point of highest loss: the corner.
    adv = _apgd(model, x, y, eps, steps=10, generator=_gen(0))
    with torch.no_grad():
        margin = _margin(model(adv), y)
    survives = analytic > 0
    assert 0 < survives.sum() < n  # both cases occur
    torch.testing.assert_close(margin[survives], analytic[survives], rtol=0, atol=1e-5)
    torch.testing.assert_close(adv[survives], corner[survives], rtol=0, atol=1e-6)
    assert (margin[~survives] < 0).all()


# --- the DLR loss ----------------------------------------------------------------------------------------


def test_dlr_by_hand_and_invariant_to_scaling_and_shifting_the_logits():
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0]] * 3 + [[0.5, 2.0, 2.0, -4.0]])
    y = torch.tensor([0, 1, 3, 1])
    # −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3); in the last row the best wrong logit ties the true one.
    expected = torch.tensor([-2 / 3, 2 / 3, 4 / 3, 0.0])
    torch.testing.assert_close(attack_loss(z, y, "dlr"), expected)
    g = _gen(0)
    logits, labels = torch.randn(50, 10, generator=g) * 3, torch.randint(0, 10, (50,), generator=g)
    base = attack_loss(logits, labels, "dlr")
    scale = torch.rand(50, 1, generator=g) * 10 + 0.1  # per example
    shift = torch.randn(50, 1, generator=g) * 100
    torch.testing.assert_close(attack_loss(logits * scale + shift, labels, "dlr"), base, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attack_loss(logits * 1000.0, labels, "dlr"), base, rtol=1e-5, atol=1e-6)
    assert (base >= -1).all()  # the margin can never exceed z_π1 − z_π3


def test_dlr_refuses_fewer_than_three_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    x, y = _data(8)
    y = y % 2
    with pytest.raises(ValueError, match="at least 3 classes"):
        _apgd(model, x, y, 0.1, loss="dlr")
    with pytest.raises(ValueError, match="at least 3 classes"):
        robust_accuracy(model, x, y, [0.1], attack="apgd-dlr")
    assert _apgd(model, x, y, 0.1, steps=2).shape == x.shape  # the cross-entropy takes two classes
    pytest.importorskip("torchattacks")
    with pytest.raises(ValueError, match="at least 3 classes"):
        backends.craft("torchattacks", APGDDLR(steps=2), model, x, y, [0.1], batch_size=8)


# --- the libraries' attacks through backends.py ------------------------------------------------------------


def test_backends_refuse_what_the_library_lacks():
    model, (x, y) = _models()["mlp"], _data(8)
    with pytest.raises(UsageError, match="backend 'foolbox' has no apgd-ce"):
        backends.craft("foolbox", APGD(steps=2), model, x, y, [0.1], batch_size=8)
    for backend in ("torchattacks", "foolbox"):
        with pytest.raises(UsageError, match=f"backend '{backend}' has no restarts for pgd") as info:
            backends.craft(backend, PGD(steps=2, restarts=3), model, x, y, [0.1], batch_size=8)
        assert "\n" not in str(info.value)
    spec = AttackConfig(attack="apgd-dlr", eps=(0.1,), steps=2, mode="white", backend="foolbox")
    with pytest.raises(UsageError, match="has no apgd-dlr"):
        evaluate_models({"m": model}, x, y, spec)


LIBRARY_ATTACKS = [
    ("torchattacks", PGD(steps=5)),
    ("foolbox", PGD(steps=5)),
    ("torchattacks", APGD(steps=5, restarts=2)),
    ("torchattacks", APGDDLR(steps=5)),
]


@pytest.mark.parametrize(("backend", "attack"), LIBRARY_ATTACKS)
def test_backend_attacks_keep_the_invariants_are_seeded_and_leave_the_global_rng_alone(backend, attack):
    pytest.importorskip(backend)
    model, (x, y) = _models()["mlp"], _data(64)
    state = torch.get_rng_state()
    eps = [0.03, 0.1]
    a = backends.craft(backend, attack, model, x, y, eps, batch_size=32)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    b = backends.craft(backend, attack, model, x, y, eps, batch_size=32)
    for e, adv, again in zip(eps, a, b, strict=True):
        assert adv.shape == x.shape and adv.dtype == x.dtype
        assert (adv - x).abs().max() <= e + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert torch.equal(adv, again)  # seeded by the attack's seed
    assert _wrong(model, a[1], y).sum() > _wrong(model, x, y).sum()


def test_library_pgd_without_random_start_is_ours():
    pytest.importorskip("torchattacks")
    pytest.importorskip("foolbox")
    model, (x, y) = _models()["smallcnn"], _data(64)
    attack = PGD(steps=10, random_start=False)
    ours = attack(model, x, y, 0.1)
    for backend in ("torchattacks", "foolbox"):
        (theirs,) = backends.craft(backend, attack, model, x, y, [0.1], batch_size=64)
        assert (theirs - ours).abs().max() <= 1e-6, backend


# --- agreement on a trained model ----------------------------------------------------------------------


@pytest.fixture
def trained(trained_smallcnn):
    return trained_smallcnn


def _correct(model, adv, y):
    return int((~_wrong(model, adv, y)).sum())


@pytest.mark.slow
def test_pgd_without_random_start_agrees_with_the_libraries_to_one_in_a_thousand(trained):
    pytest.importorskip("torchattacks")
    pytest.importorskip("foolbox")
    model, x, y = trained
    attack = PGD(steps=5, random_start=False)  # the same steps exactly: 5 of them show it as well as 50
    ours = _correct(model, attack(model, x, y, 0.1), y)
    assert ours < _correct(model, x, y) - 100  # the attack bites
    for backend in ("torchattacks", "foolbox"):
        (adv,) = backends.craft(backend, attack, model, x, y, [0.1], batch_size=500)
        assert abs(_correct(model, adv, y) - ours) <= len(y) // 1000, backend


@pytest.mark.slow
@pytest.mark.parametrize(("attack", "steps", "libraries"), [("pgd", 10, ("torchattacks", "foolbox")),
                                                            ("apgd-ce", 20, ("torchattacks",))])  # fmt: skip
def test_random_start_attacks_agree_with_the_libraries_to_one_point(trained, attack, steps, libraries):
    for library in libraries:
        pytest.importorskip(library)
    model, x, y = trained
    acc = {}
    for backend in ("native", *libraries):
        spec = AttackConfig(attack=attack, eps=(0.1,), steps=steps, mode="white", backend=backend, batch_size=500)
        clean, rows = evaluate_models({"m": model}, x, y, spec)
        acc[backend] = round(rows[0].top1 * len(y))
    assert acc["native"] < clean["m"]["top1"] * len(y) - 100  # the attack bites
    for backend in libraries:
        assert abs(acc[backend] - acc["native"]) <= len(y) // 100, acc


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("attack", ["pgd", "apgd-ce"])
def test_on_cuda_restarts_run_as_one_batch_and_agree_with_the_cpu(attack):
    model, (x, y) = _models()["mlp"], _data(200)
    cuda_model = _models()["mlp"].cuda()
    on_cpu = ATTACKS[attack](model, x, y, 0.1, restarts=3, generator=_gen(0))
    on_gpu = ATTACKS[attack](cuda_model, x.cuda(), y.cuda(), 0.1, restarts=3, generator=_gen(0))
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == x.dtype and on_gpu.shape == x.shape
    assert (on_gpu.cpu() - x).abs().max() <= 0.1 + 1e-6 and on_gpu.min() >= 0 and on_gpu.max() <= 1
    # The starts are drawn on the CPU, the same on every device; TF32 may flip a few signs on the way.
    assert abs(int(_wrong(model, on_cpu, y).sum()) - int(_wrong(model, on_gpu.cpu(), y).sum())) <= 4
