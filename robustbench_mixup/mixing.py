"""Mixing a minibatch with a permutation of itself; α = 0 is ERM for every method.

- mixup (Zhang et al., ICLR 2018, section 2): x~ = λ·x_i + (1−λ)·x_j, y~ = λ·y_i + (1−λ)·y_j.
- CutMix (Yun et al., ICCV 2019): a box of area about (1−λ) of the image, pasted from x_j; λ is then
  the fraction of the image left to x_i, and y~ = λ·y_i + (1−λ)·y_j.

One λ ~ Beta(α, α) per minibatch and one random permutation of the minibatch, as in the paper's
reference loader. Training uses the soft targets with cross-entropy, which equals
λ·CE(f(x~), y_i) + (1−λ)·CE(f(x~), y_j).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class MixedBatch(NamedTuple):
    images: torch.Tensor  # (N, ...) mixed images, same dtype/device as the input
    targets: torch.Tensor  # (N, num_classes) soft targets; each row sums to 1
    lam: float  # the λ of this batch, in [0, 1]
    index: torch.Tensor  # int64 (N,): partner j of each example i


def _check(images: torch.Tensor, labels: torch.Tensor, alpha: float, num_classes: int) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError("images must be a floating-point torch.Tensor")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        raise TypeError("labels must be a 1-D int64 torch.Tensor")
    if images.ndim < 1 or len(images) != len(labels):
        raise ValueError(f"images and labels disagree on N: {tuple(images.shape)} vs {tuple(labels.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int ≥ 1, got {num_classes!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number ≥ 0, got {alpha!r}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")


def _draw(n: int, alpha: float, device: torch.device, generator: torch.Generator | None) -> tuple[float, torch.Tensor]:
    """λ ~ Beta(α, α) and a permutation of n, both from `generator` (the default torch generator if None)."""
    # torch's Beta sampler takes no generator; a NumPy Generator seeded from ours keeps one stream.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return lam, torch.randperm(n, generator=generator, device=gen_device).to(device)


def mixup_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    *,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Mix a batch with a permutation of itself: `images = lam*x + (1-lam)*x[index]`.

    images: float (N, ...); labels: int64 (N,) in [0, num_classes); alpha ≥ 0 (0 means ERM: λ = 1,
    the images returned unchanged, one-hot targets). λ and the permutation come from `generator`
    (the default torch generator if None). The inputs are never modified.
    """
    _check(images, labels, alpha, num_classes)
    n = len(labels)
    onehot = F.one_hot(labels, num_classes).to(images.dtype)
    if alpha == 0:
        return MixedBatch(images, onehot, 1.0, torch.arange(n, device=labels.device))
    lam, index = _draw(n, alpha, labels.device, generator)
    mixed = images.mul(lam).add_(images[index], alpha=1.0 - lam)
    targets = onehot.mul(lam).add_(onehot[index], alpha=1.0 - lam)
    return MixedBatch(mixed, targets, lam, index)


def cutmix_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    *,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Paste a box of a permutation of the batch into it (CutMix): inside the box `images[index]`, outside
    the images unchanged.

    images: float (N, C, H, W); the rest as `mixup_batch`. λ ~ Beta(α, α) sets the box's sides to
    ⌊H·√(1−λ)⌋ × ⌊W·√(1−λ)⌋ (rounded down to even, half on each side of the centre), its centre is uniform
    over the pixels and it is clipped to the image; then `lam` becomes the fraction of the image outside the
    box and the targets `lam·onehot(y) + (1−lam)·onehot(y[index])`, so the labels weigh what is visible.
    One box per batch, as in the authors' code. The inputs are never modified.
    """
    _check(images, labels, alpha, num_classes)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) for CutMix, got shape {tuple(images.shape)}")
    n = len(labels)
    onehot = F.one_hot(labels, num_classes).to(images.dtype)
    if alpha == 0:
        return MixedBatch(images, onehot, 1.0, torch.arange(n, device=labels.device))
    drawn, index = _draw(n, alpha, labels.device, generator)
    h, w = images.shape[-2:]
    side = float(np.sqrt(1.0 - drawn))
    half_h, half_w = int(h * side) // 2, int(w * side) // 2
    cy, cx = (int(torch.randint(0, size, (1,), generator=generator)) for size in (h, w))
    y1, y2 = max(cy - half_h, 0), min(cy + half_h, h)
    x1, x2 = max(cx - half_w, 0), min(cx + half_w, w)
    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[index][:, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
    targets = onehot.mul(lam).add_(onehot[index], alpha=1.0 - lam)
    return MixedBatch(mixed, targets, lam, index)
