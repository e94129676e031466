import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta

from robustbench_mixup.mixing import mixup_batch


def _batch(n=16, k=5):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, k, (n,), generator=g)


def test_alpha_zero_is_the_identity():
    x, y = _batch()
    mb = mixup_batch(x, y, 0.0, num_classes=5)
    assert mb.lam == 1.0
    assert torch.equal(mb.images, x)
    assert torch.equal(mb.targets, F.one_hot(y, 5).float())
    assert torch.equal(mb.index, torch.arange(len(y)))


def test_mixed_batch_follows_the_definition():
    x, y = _batch()
    mb = mixup_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(3))
    assert 0.0 <= mb.lam <= 1.0
    assert torch.equal(mb.index.sort().values, torch.arange(len(y)))  # a permutation
    torch.testing.assert_close(mb.images, mb.lam * x + (1 - mb.lam) * x[mb.index])
    onehot = F.one_hot(y, 5).float()
    torch.testing.assert_close(mb.targets, mb.lam * onehot + (1 - mb.lam) * onehot[mb.index])
    torch.testing.assert_close(mb.targets.sum(1), torch.ones(len(y)))
    assert mb.targets.shape == (len(y), 5) and mb.images.shape == x.shape and mb.images.dtype == x.dtype


def test_inputs_are_not_modified():
    x, y = _batch()
    x0, y0 = x.clone(), y.clone()
    mixup_batch(x, y, 2.0, num_classes=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_same_generator_seed_same_batch_and_different_seeds_differ():
    x, y = _batch()
    a = mixup_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(7))
    b = mixup_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(7))
    c = mixup_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(8))
    assert a.lam == b.lam and torch.equal(a.index, b.index) and torch.equal(a.images, b.images)
    assert (a.lam, a.index.tolist()) != (c.lam, c.index.tolist())


def test_lambda_follows_beta_alpha_alpha():
    x, y = _batch(n=4)
    g = torch.Generator().manual_seed(0)
    lams = torch.tensor([mixup_batch(x, y, 1.0, num_classes=5, generator=g).lam for _ in range(4000)])
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12; a 4,000-draw mean is within ±0.02 w.p. > 0.99.
    assert abs(lams.mean().item() - 0.5) < 0.02
    assert abs(lams.var().item() - 1 / 12) < 0.01
    small = torch.tensor([mixup_batch(x, y, 0.2, num_classes=5, generator=g).lam for _ in range(2000)])
    # Beta(0.2, 0.2) piles up at the ends: P(λ < 0.1 or λ > 0.9) = 2·I_0.1(0.2, 0.2); 4 binomial σ of slack.
    p = 2 * beta.cdf(0.1, 0.2, 0.2)
    share = ((small < 0.1) | (small > 0.9)).float().mean().item()
    assert abs(share - p) < 4 * (p * (1 - p) / len(small)) ** 0.5


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"alpha": -1.0}, ValueError),
        ({"alpha": float("nan")}, ValueError),
        ({"num_classes": 0}, ValueError),
        ({"num_classes": 3}, ValueError),  # labels go up to 4
    ],
)
def test_bad_arguments_raise(kwargs, exc):
    x, y = _batch()
    args = {"alpha": 1.0, "num_classes": 5} | kwargs
    with pytest.raises(exc, match=r"alpha|num_classes|labels"):
        mixup_batch(x, y, args.pop("alpha"), **args)


def test_wrong_types_raise_type_error():
    x, y = _batch()
    with pytest.raises(TypeError, match="labels"):
        mixup_batch(x, y.float(), 1.0, num_classes=5)
    with pytest.raises(TypeError, match="images"):
        mixup_batch(x.long(), y, 1.0, num_classes=5)
