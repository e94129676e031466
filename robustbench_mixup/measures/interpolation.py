"""Behaviour in between training pairs: the paper's Figure 2.

For pairs (x_i, y_i), (x_j, y_j) and each λ, the point probed is x = λ·x_i + (1−λ)·x_j.

- `interpolation_miss_rate`: the share of pairs whose top-1 prediction at x is neither y_i nor y_j
  (Figure 2a, "% miss").
- `input_gradient_norm`: the mean over pairs of ‖∇ₓ CE(f(x), λ·onehot(y_i) + (1−λ)·onehot(y_j))‖₂,
  each pair's own loss, norm over C·H·W (Figure 2b).

Both run every λ of a chunk of pairs through ONE forward (and one backward for the norms), with the
model frozen in eval mode; chunks keep memory flat for any number of pairs. `sample_pairs` draws the
pairs from a seed, so every model of a run is probed at the same points.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning.devices import frozen, model_device

# Points (images) per forward/backward. Bounded, so memory stays flat for any number of pairs; small
# on the CPU, where activations that outgrow the cache cost more than calls (measured with smallcnn on
# 2 cores: 2,700 points/s at 128, 1,600 at 4,096), large on CUDA, where calls are what costs.
MAX_POINTS = {"cpu": 128, "cuda": 8192}


def _check_pairs(
    x_i: torch.Tensor, y_i: torch.Tensor, x_j: torch.Tensor, y_j: torch.Tensor, lambdas: torch.Tensor
) -> None:
    if x_i.shape != x_j.shape or not x_i.is_floating_point():
        raise TypeError(
            f"x_i and x_j must be float tensors of one shape, got {tuple(x_i.shape)} and {tuple(x_j.shape)}"
        )
    if y_i.dtype != torch.int64 or y_j.dtype != torch.int64 or y_i.shape != x_i.shape[:1] or y_j.shape != y_i.shape:
        raise TypeError("y_i and y_j must be int64 tensors of shape (P,) matching the images")
    if not isinstance(lambdas, torch.Tensor) or lambdas.ndim != 1 or len(lambdas) == 0:
        raise TypeError("lambdas must be a non-empty 1-D tensor")
    if lambdas.min() < 0 or lambdas.max() > 1:
        raise ValueError("lambdas must lie in [0, 1]")


def probe_points(
    model: nn.Module,
    x_i: torch.Tensor,
    y_i: torch.Tensor,
    x_j: torch.Tensor,
    y_j: torch.Tensor,
    lambdas: torch.Tensor,
    *,
    gradients: bool = True,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per pair and λ: (miss, bool (L, P)) and, if `gradients`, (norm, float (L, P)), on the CPU."""
    _check_pairs(x_i, y_i, x_j, y_j, lambdas)
    device = model_device(model, x_i.device)
    n_lam, n_pairs = len(lambdas), len(y_i)
    chunk = max(1, MAX_POINTS.get(device.type, 128) // n_lam)
    lam = lambdas.to(device=device, dtype=x_i.dtype)
    misses, norms = [], []
    with frozen(model):
        for s in range(0, n_pairs, chunk):
            xi, xj = x_i[s : s + chunk].to(device), x_j[s : s + chunk].to(device)
            yi, yj = y_i[s : s + chunk].to(device), y_j[s : s + chunk].to(device)
            shape = (-1,) + (1,) * (xi.ndim)
            x = (lam.view(shape) * xi + (1 - lam.view(shape)) * xj).flatten(0, 1)  # (L·p, C, H, W), λ-major
            with torch.set_grad_enabled(gradients):
                if gradients:
                    x.requires_grad_(True)
                logits = model(x)
                pred = logits.detach().argmax(1).view(n_lam, -1)
                misses.append(((pred != yi) & (pred != yj)).cpu())
                if gradients:
                    k = logits.shape[1]
                    lam_col = lam.view(-1, 1, 1)
                    target = lam_col * F.one_hot(yi, k) + (1 - lam_col) * F.one_hot(yj, k)  # (L, p, K)
                    # Summing the per-pair losses keeps each pair's gradient its own (eval mode: no
                    # coupling across the batch), undivided by the batch size.
                    loss = -(target.flatten(0, 1) * F.log_softmax(logits, dim=1)).sum()
                    (grad,) = torch.autograd.grad(loss, x)
                    norms.append(grad.flatten(1).norm(dim=1).view(n_lam, -1).cpu())
            if progress is not None:
                progress(len(yi))
    miss = torch.cat(misses, dim=1)
    return miss, (torch.cat(norms, dim=1) if gradients else None)


def interpolation_miss_rate(
    model: nn.Module, x_i: torch.Tensor, y_i: torch.Tensor, x_j: torch.Tensor, y_j: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """Share of pairs whose prediction at λ·x_i + (1−λ)·x_j is neither y_i nor y_j; shape (len(lambdas),)."""
    miss, _ = probe_points(model, x_i, y_i, x_j, y_j, lambdas, gradients=False)
    return miss.double().mean(dim=1)


def input_gradient_norm(
    model: nn.Module, x_i: torch.Tensor, y_i: torch.Tensor, x_j: torch.Tensor, y_j: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """Mean over pairs of the L2 norm of ∇ₓ of each pair's own soft-target cross-entropy; (len(lambdas),)."""
    _, norms = probe_points(model, x_i, y_i, x_j, y_j, lambdas, gradients=True)
    assert norms is not None
    return norms.double().mean(dim=1)


def count_pairs(labels: torch.Tensor, *, same_class: bool) -> int:
    """Distinct unordered pairs {i, j}, i ≠ j, of `labels` (of different classes unless `same_class`)."""
    n = len(labels)
    total = n * (n - 1) // 2
    if same_class:
        return total
    per_class = torch.bincount(labels).tolist()
    return total - sum(c * (c - 1) // 2 for c in per_class)


def sample_pairs(
    labels: torch.Tensor, n_pairs: int, *, same_class: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_pairs` distinct unordered pairs (i, j) drawn uniformly; of different classes unless `same_class`.

    Raises ValueError when the labels cannot supply that many without repeats.
    """
    available = count_pairs(labels, same_class=same_class)
    if n_pairs > available:
        raise ValueError(f"asked for {n_pairs} pairs, but the split supplies at most {available} distinct ones")
    n = len(labels)
    if available < 4 * n_pairs:  # a dense request: enumerate every valid pair, then choose
        i, j = torch.triu_indices(n, n, offset=1)
        keep = torch.ones_like(i, dtype=torch.bool) if same_class else labels[i] != labels[j]
        pick = torch.randperm(int(keep.sum()), generator=generator)[:n_pairs]
        pairs = torch.stack([i[keep][pick], j[keep][pick]], dim=1)
    else:  # a sparse one: draw candidates in vectorized rounds until enough distinct ones
        keys = torch.empty(0, dtype=torch.int64)
        while len(keys) < n_pairs:
            draw = max(2 * (n_pairs - len(keys)), 64)
            i = torch.randint(0, n, (draw,), generator=generator)
            j = torch.randint(0, n, (draw,), generator=generator)
            keep = (i != j) & (torch.ones_like(i, dtype=torch.bool) if same_class else labels[i] != labels[j])
            lo, hi = torch.minimum(i[keep], j[keep]), torch.maximum(i[keep], j[keep])
            keys = torch.unique(torch.cat([keys, lo * n + hi]))
        # A uniform choice among the distinct pairs drawn is a uniform choice of distinct pairs.
        keys = keys[torch.randperm(len(keys), generator=generator)[:n_pairs]]
        pairs = torch.stack([keys // n, keys % n], dim=1)
    # Keep the drawn orientation random: which member is x_i matters for the λ axis.
    flip = torch.rand(len(pairs), generator=generator) < 0.5
    first = torch.where(flip, pairs[:, 1], pairs[:, 0])
    second = torch.where(flip, pairs[:, 0], pairs[:, 1])
    return first, second


def bootstrap_mean_interval(
    values: torch.Tensor, *, generator: torch.Generator, resamples: int = 1000, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of the mean over the last axis of `values` (L, P): (lo, hi) of shape (L,)."""
    n = values.shape[-1]
    means = []
    for start in range(0, resamples, 100):  # chunks keep the (L, B, P) gather small
        b = min(100, resamples - start)
        idx = torch.randint(0, n, (b, n), generator=generator)
        means.append(values[:, idx].double().mean(-1))
    dist = torch.cat(means, dim=1)  # (L, resamples)
    alpha = (1 - level) / 2
    q = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    lo, hi = torch.quantile(dist, q, dim=1)
    return lo, hi


def lambda_grid(count: int) -> torch.Tensor:
    """`count` evenly spaced λ from 0 to 1 inclusive."""
    if count < 2 or not math.isfinite(count):
        raise ValueError(f"lambdas must be ≥ 2, got {count}")
    return torch.linspace(0, 1, count, dtype=torch.float64)
