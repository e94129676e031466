import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta

from robustbench_mixup.learning.mixing import cutmix_batch, mixup_batch


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


# --- CutMix ---------------------------------------------------------------------------------------------------


def _drawn_lambda(seed: int, alpha: float) -> float:
    """The λ ~ Beta(α, α) a call with `torch.Generator().manual_seed(seed)` draws (its first number seeds it)."""
    import numpy as np

    first = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(seed)))
    return float(np.random.default_rng(first).beta(alpha, alpha))


@pytest.mark.parametrize("seed", range(12))
def test_cutmix_pastes_one_box_of_the_permuted_batch_and_weighs_labels_by_area(seed):
    n, k, h, w = 8, 5, 12, 10
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()  # image i is all i
    y = torch.arange(n) % k
    mb = cutmix_batch(x, y, 1.0, num_classes=k, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(mb.index.sort().values, torch.arange(n))  # a permutation
    inside = mb.images != x  # where an image now shows its partner (partners differ: the values are distinct)
    moved = mb.index != torch.arange(n)
    box = inside[moved.nonzero()[0, 0], 0]  # the box, read off an image whose partner is another image
    rows, cols = box.any(1), box.any(0)
    assert torch.equal(box, rows[:, None] & cols[None, :])  # one axis-aligned rectangle
    assert torch.equal(mb.images, torch.where(box, x[mb.index], x))  # inside the partner, outside unchanged
    area = int(box.sum()) / (h * w)
    assert mb.lam == pytest.approx(1 - area)  # λ recomputed from the clipped box
    onehot = F.one_hot(y, k).float()
    torch.testing.assert_close(mb.targets, mb.lam * onehot + (1 - mb.lam) * onehot[mb.index])
    torch.testing.assert_close(mb.targets.sum(1), torch.ones(n))
    # its sides: ⌊H·√(1−λ)⌋ rounded down to even before clipping, so the area is at most 1 − λ drawn
    side = (1 - _drawn_lambda(seed, 1.0)) ** 0.5
    assert int(rows.sum()) <= 2 * (int(h * side) // 2) and int(cols.sum()) <= 2 * (int(w * side) // 2)
    assert area <= 1 - _drawn_lambda(seed, 1.0) + 1e-9


def test_cutmix_box_is_centred_uniformly_and_clipped_at_the_border():
    """Over many batches every pixel is covered at some point, a clipped box is common, and the mean area
    is below the mean of 1 − λ drawn (clipping only ever removes area)."""
    x, y = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    x[1] = 1.0
    covered, areas, clipped = torch.zeros(8, 8, dtype=torch.bool), [], 0
    for seed in range(300):
        mb = cutmix_batch(x, y, 1.0, num_classes=2, generator=torch.Generator().manual_seed(seed))
        if mb.index[0] == 1:
            box = mb.images[0, 0] == 1
            covered |= box
            rows, cols = int(box.any(1).sum()), int(box.any(0).sum())
            clipped += rows % 2 == 1 or cols % 2 == 1 or (box.any(1)[0] or box.any(1)[-1] or box.any(0)[0])
            areas.append(1 - mb.lam)
    assert bool(covered.all()) and clipped > 10
    assert sum(areas) / len(areas) < 0.5  # E[1 − λ] = 0.5 for α = 1


def test_cutmix_alpha_zero_is_erm_and_inputs_are_not_modified():
    x, y = _batch()
    x0 = x.clone()
    mb = cutmix_batch(x, y, 0.0, num_classes=5)
    assert mb.lam == 1.0 and torch.equal(mb.images, x) and torch.equal(mb.index, torch.arange(len(y)))
    cutmix_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x0)
    a = cutmix_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(4))
    b = cutmix_batch(x, y, 1.0, num_classes=5, generator=torch.Generator().manual_seed(4))
    assert a.lam == b.lam and torch.equal(a.images, b.images)


def test_cutmix_needs_images_with_height_and_width():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cutmix_batch(torch.zeros(4, 16), torch.zeros(4, dtype=torch.int64), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="alpha"):
        cutmix_batch(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.int64), -1.0, num_classes=2)
