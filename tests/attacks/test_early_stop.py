"""Early stop: an example leaves PGD or APGD at its first misclassified point. In eval mode each example's path
does not depend on the others', so with the same random starts the broken set is a superset of the full run's
and the examples that stay take the very same steps."""

import pytest
import torch

from robustbench_mixup.attacks import apgd, pgd
from robustbench_mixup.attacks.methods import APGD, APGDDLR, PGD
from robustbench_mixup.settings.config import AttackConfig


def _wrong(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) != y


def _gen():
    return torch.Generator().manual_seed(7)


CASES = [
    ("pgd", lambda m, x, y, e, **kw: pgd(m, x, y, e, steps=10, generator=_gen(), **kw)),
    ("pgd, 2 restarts", lambda m, x, y, e, **kw: pgd(m, x, y, e, steps=10, restarts=2, generator=_gen(), **kw)),
    ("apgd-ce", lambda m, x, y, e, **kw: apgd(m, x, y, e, steps=20, generator=_gen(), **kw)),
    ("apgd-dlr", lambda m, x, y, e, **kw: apgd(m, x, y, e, steps=20, loss="dlr", generator=_gen(), **kw)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "attack"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_early_stop_breaks_a_superset_and_leaves_the_rest_bit_identical(trained_smallcnn, name, attack, eps):
    model, x, y = trained_smallcnn
    x, y = x[:300], y[:300]
    full = attack(model, x, y, eps)
    early = attack(model, x, y, eps, early_stop=True)
    broken_full, broken_early = _wrong(model, full, y), _wrong(model, early, y)
    assert bool((broken_full <= broken_early).all())  # every example broken without it is broken with it
    kept = ~broken_early
    assert 0 < int(kept.sum()) < len(y)  # both kinds exist at this ε: the test checks something
    assert torch.equal(early[kept], full[kept])  # the examples that stay: the very same points
    assert (early - x).abs().max() <= eps + 1e-6 and early.min() >= 0 and early.max() <= 1  # in the ball


@pytest.mark.slow
def test_a_broken_example_is_returned_at_its_first_misclassified_point(trained_smallcnn):
    """PGD of k steps returns the k-th point of the path, so the first k at which an example is misclassified
    (0: the random start) names the point early stop must return; misclassified clean: the clean image."""
    model, x, y = trained_smallcnn
    x, y, eps, size = x[:200], y[:200], 0.1, 0.03
    early = PGD(steps=8, step_size=size, early_stop=True)(model, x, y, eps, generator=_gen())
    paths = [PGD(steps=k, step_size=size)(model, x, y, eps, generator=_gen()) for k in range(1, 9)]
    drawn = PGD().start(x, torch.full((len(x),), eps, dtype=torch.float64), _gen())
    start = torch.minimum(torch.maximum(drawn, (x - eps).clamp(min=0)), (x + eps).clamp(max=1))  # projected
    expected = x.clone()
    done = _wrong(model, x, y)  # misclassified clean: the clean point
    first_wrong = _wrong(model, start, y) & ~done
    assert torch.equal(early[first_wrong], start[first_wrong])
    done |= first_wrong
    for point in paths:
        now = _wrong(model, point, y) & ~done
        expected[now] = point[now]
        done |= now
    expected[~done] = paths[-1][~done]
    clean_wrong = _wrong(model, x, y)
    assert torch.equal(early[clean_wrong], x[clean_wrong])
    rest = ~first_wrong & ~clean_wrong
    assert torch.equal(early[rest], expected[rest])
    assert int(done.sum()) > int(clean_wrong.sum()) + 10  # broken on the way, at several steps


def test_early_stop_is_part_of_an_attacks_identity_in_the_white_box_only():
    attack = APGD(steps=5, early_stop=True)
    assert attack.setting(0.1).early_stop and not attack.setting(0.1, "black").early_stop
    assert not attack.for_transfer().early_stop and attack.for_transfer().setting(0.1) == attack.setting(0.1, "black")
    assert APGDDLR(early_stop=True).setting(0.1) != APGDDLR().setting(0.1)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (AttackConfig("fgsm", (0.1,), early_stop=True), "fgsm takes no --early-stop"),
        (AttackConfig("ifgsm", (0.1,), early_stop=True), "ifgsm takes no --early-stop"),
        (AttackConfig("pgd", (0.1,), early_stop=True, backend="torchattacks"), "--backend native only"),
    ],
)
def test_early_stop_is_refused_where_it_does_not_apply(cfg, needle):
    with pytest.raises(ValueError, match=needle):
        cfg.validate()
    with pytest.raises(TypeError, match="early_stop must be True or False"):
        PGD(early_stop=1)
