"""The training methods: how a minibatch becomes (logits, targets). α = 0 is ERM for every method.

- mixup (Zhang et al., ICLR 2018, section 2): x~ = λ·x_i + (1−λ)·x_j, y~ = λ·y_i + (1−λ)·y_j.
- CutMix (Yun et al., ICCV 2019): a box of area about (1−λ) of the image, pasted from x_j; λ is then
  the fraction of the image left to x_i, and y~ = λ·y_i + (1−λ)·y_j.
- Manifold Mixup (Verma et al., ICML 2019): the same mixing of the representation at a layer k drawn
  uniformly per minibatch from the input and the model's `mixing_layers()`; y~ as for mixup.
- label smoothing (Szegedy et al., CVPR 2016), the control with soft labels and no mixing:
  y~ = (1−s)·onehot(y) + s/K.

One λ ~ Beta(α, α) per minibatch and one random permutation of the minibatch, as in the paper's
reference loader. Training uses the soft targets with cross-entropy, which equals
λ·CE(f(x~), y_i) + (1−λ)·CE(f(x~), y_j).

`STEPS` maps each method of `config.METHODS` to its step `(model, x, y, param, *, num_classes,
generator) -> Step`; `loop.train_epoch` calls the run's step on every batch and shares every other line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning.devices import as_batch
from robustbench_mixup.learning.models import mixing_layers

__all__ = [
    "STEPS", "MixedBatch", "Step", "cutmix_batch", "cutmix_step", "erm_step", "label_smoothing_step",
    "manifold_mixup_step", "mixup_batch", "mixup_step",
]  # fmt: skip


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


def _mix(t: torch.Tensor, lam: float, index: torch.Tensor) -> torch.Tensor:
    """λ·t + (1−λ)·t[index], a new tensor: the one mixing of images, representations and targets."""
    return t.mul(lam).add_(t[index], alpha=1.0 - lam)


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
    return MixedBatch(_mix(images, lam, index), _mix(onehot, lam, index), lam, index)


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
    return MixedBatch(mixed, _mix(onehot, lam, index), lam, index)


# --- training steps: one per method ----------------------------------------------------------------


class Step(NamedTuple):
    """What a training step hands the loop: the loss is cross-entropy(logits, targets)."""

    logits: torch.Tensor  # (N, K)
    targets: torch.Tensor  # int64 (N,) class indices, or (N, K) soft targets whose rows sum to 1
    credit: torch.Tensor  # what a correct prediction earns: the labels (N,), or (N, K) weights per class
    lam: float  # the batch's λ (1 when nothing is mixed)
    layer: int | None  # where it mixed: None nowhere, 0 the input, k the output of mixing_layers(model)[k−1]


def erm_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, param: float = 0.0, *, num_classes: int,
    generator: torch.Generator | None = None,
) -> Step:  # fmt: skip
    """ERM: the batch as it is, the labels as targets (`param` and `generator` are unused)."""
    return Step(model(as_batch(x)), y, y, 1.0, None)


def _mixed_step(
    batch: Callable[..., MixedBatch], model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float,
    num_classes: int, generator: torch.Generator | None,
) -> Step:  # fmt: skip
    if alpha == 0:  # ERM exactly, class-index targets included, with no draw from the stream
        return erm_step(model, x, y, num_classes=num_classes)
    mixed = batch(x, y, alpha, num_classes=num_classes, generator=generator)
    return Step(model(as_batch(mixed.images)), mixed.targets, mixed.targets, mixed.lam, 0)


def mixup_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, *, num_classes: int,
    generator: torch.Generator | None = None,
) -> Step:  # fmt: skip
    """Input mixup (`mixup_batch`) with Beta(α, α); α = 0 is `erm_step`."""
    return _mixed_step(mixup_batch, model, x, y, alpha, num_classes, generator)


def cutmix_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, *, num_classes: int,
    generator: torch.Generator | None = None,
) -> Step:  # fmt: skip
    """CutMix (`cutmix_batch`) with Beta(α, α); α = 0 is `erm_step`."""
    return _mixed_step(cutmix_batch, model, x, y, alpha, num_classes, generator)


def manifold_mixup_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, *, num_classes: int,
    generator: torch.Generator | None = None,
) -> Step:  # fmt: skip
    """Manifold Mixup: λ ~ Beta(α, α) and the permutation as for mixup, then a layer k uniform over
    {0 (the input), 1 .. L} with L = len(mixing_layers(model)); the output h of layer k is replaced by
    λ·h + (1−λ)·h[index] in this forward pass only (a hook removed on return). α = 0 is `erm_step`.
    Trained, as every method here, with cross-entropy on the soft targets (the authors' code uses binary
    cross-entropy on the softmax; the mixing is theirs)."""
    _check(x, y, alpha, num_classes)
    if alpha == 0:
        return erm_step(model, x, y, num_classes=num_classes)
    layers = mixing_layers(model)
    lam, index = _draw(len(y), alpha, y.device, generator)
    k = int(torch.randint(0, len(layers) + 1, (1,), generator=generator))
    targets = _mix(F.one_hot(y, num_classes).to(x.dtype), lam, index)
    if k == 0:
        return Step(model(as_batch(_mix(x, lam, index))), targets, targets, lam, 0)

    def mix(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return _mix(output, lam, index)

    handle = layers[k - 1].register_forward_hook(mix)
    try:
        logits = model(as_batch(x))
    finally:
        handle.remove()
    return Step(logits, targets, targets, lam, k)


def label_smoothing_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, smoothing: float, *, num_classes: int,
    generator: torch.Generator | None = None,
) -> Step:  # fmt: skip
    """Label smoothing: targets (1−s)·onehot(y) + s/K, the inputs unmixed; a correct prediction is one of
    y, as for ERM. s = 0 is `erm_step`; `generator` is unused."""
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")
    if smoothing == 0:
        return erm_step(model, x, y, num_classes=num_classes)
    targets = F.one_hot(y, num_classes).to(x.dtype).mul(1.0 - smoothing).add_(smoothing / num_classes)
    return Step(model(as_batch(x)), targets, y, 1.0, None)


STEPS: dict[str, Callable[..., Step]] = {
    "erm": erm_step,
    "mixup": mixup_step,
    "cutmix": cutmix_step,
    "manifold-mixup": manifold_mixup_step,
    "label-smoothing": label_smoothing_step,
}
