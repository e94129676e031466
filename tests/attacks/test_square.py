"""The Square attack: a score-based search that needs no gradient, and the check it makes possible."""

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mixup.attacks.indicators import masking_flags
from robustbench_mixup.attacks.methods import Square, square, square_fraction


def _linear(d=64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, d))
        model[1].bias.zero_()
    return model.eval()


def test_on_a_linear_model_what_no_attack_can_break_survives_and_what_is_easy_breaks():
    """Two classes, f = Wx: within the ε-ball the margin falls by at most ε·‖w_y − w_other‖₁, reached at the
    corner sign(w_other − w_y). Images in [0.3, 0.7] with ε = 0.03: the bounds never bind."""
    model = _linear()
    x = 0.3 + 0.4 * torch.rand(1000, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = model[1].weight
    reach = 0.03 * (w[y] - w[1 - y]).abs().sum(1)
    margin = (z.gather(1, y[:, None]) - z.gather(1, (1 - y)[:, None])).squeeze(1)
    adv = square(model, x, y, 0.03, queries=300, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.03 + 1e-6
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    safe, easy = margin > reach, margin < 0.5 * reach
    assert int(safe.sum()) > 100 and int(easy.sum()) > 50  # both kinds are there
    assert not bool(broken[safe].any())  # no attack can
    assert float(broken[easy].float().mean()) >= 0.95  # almost every one


def test_square_keeps_the_ball_and_the_bounds_is_seeded_and_stops_at_a_success(trained_smallcnn):
    model, x, y = trained_smallcnn
    x, y = x[:100], y[:100]
    a = square(model, x, y, 0.2, queries=50, generator=torch.Generator().manual_seed(3))
    b = square(model, x, y, 0.2, queries=50, generator=torch.Generator().manual_seed(3))
    c = square(model, x, y, 0.2, queries=50, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - x).abs().max() <= 0.2 + 1e-6 and a.min() >= 0 and a.max() <= 1
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
        broken = model(a).argmax(1) != y
    assert torch.equal(a[clean_wrong], x[clean_wrong])  # misclassified clean: returned as it is
    assert int(broken.sum()) > int(clean_wrong.sum())  # it bites
    more = square(model, x, y, 0.2, queries=50, restarts=3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert bool(((model(more).argmax(1) != y) >= broken).all())  # restarts only add what they break


def test_the_window_schedule_halves_at_the_papers_points():
    assert square_fraction(0.8, 0, 10_000) == 0.8
    assert square_fraction(0.8, 11, 10_000) == 0.4 and square_fraction(0.8, 9_000, 10_000) == 0.8 / 512
    assert square_fraction(0.8, 500, 1000) == 0.8 / 128  # the schedule rescaled to the budget: 5,000 of 10,000
    with pytest.raises(ValueError, match="p_init"):
        Square(p_init=1.5)


@pytest.mark.slow
def test_square_is_no_weaker_than_torchattacks_square(trained_smallcnn):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained_smallcnn
    x, y = x[:300], y[:300]
    ours = square(model, x, y, 0.1, queries=300, generator=torch.Generator().manual_seed(0))
    theirs = torchattacks.Square(model, norm="Linf", eps=0.1, n_queries=300, p_init=0.8, loss="margin", seed=0)(x, y)
    with torch.no_grad():
        acc = [float((model(a).argmax(1) == y).float().mean()) for a in (ours, theirs)]
    assert acc[0] <= acc[1] + 0.02, acc  # 300 examples: two points is about the seed-to-seed spread


def _row(attack, correct, eps=0.1, model="erm"):
    return {"attack": attack, "model": model, "mode": "white", "eps": eps, "backend": "native",
            "correct": np.asarray(correct, dtype=bool), "top1": float(np.mean(correct)), "n": len(correct)}  # fmt: skip


def test_a_gradient_free_break_that_every_gradient_attack_missed_is_an_alarm_when_significant():
    pgd = _row("pgd", [True] * 80 + [False] * 20)
    apgd = _row("apgd-ce", [True] * 78 + [False] * 22)
    many = _row("square", [False] * 12 + [True] * 68 + [False] * 20)  # breaks 12 that both left correct
    few = _row("square", [False] * 2 + [True] * 78 + [False] * 20)
    none = _row("square", [True] * 78 + [False] * 22)
    (flag,) = masking_flags([pgd, apgd, many])
    assert flag["check"] == "gradient_free_breaks_more" and flag["status"] == "failed"
    assert "breaks 12 of the 78 examples" in flag["detail"] and "masked" in flag["detail"]
    assert [f["status"] for f in masking_flags([pgd, apgd, few])] == ["noise"]  # 2 of 78: not significant
    assert masking_flags([pgd, apgd, none]) == []
    assert masking_flags([many]) == []  # no gradient attack at that ε: nothing to compare


def test_robust_accuracy_takes_square_by_name():
    from robustbench_mixup.attacks import robust_accuracy

    model = _linear()
    x = 0.3 + 0.4 * torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    acc = robust_accuracy(model, x, y, [0.0, 0.03], attack="square")
    assert acc[0] == 1.0 and 0.0 <= float(acc[1]) < 1.0  # every point is correct clean; some break at 0.03


def test_a_bad_query_budget_is_named_by_the_flag_the_user_typed():
    from robustbench_mixup.settings.config import AttackConfig

    with pytest.raises(ValueError, match="--queries must be ≥ 1, got 0"):
        AttackConfig("square", (0.1,), steps=0).validate()
