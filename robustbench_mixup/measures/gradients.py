"""A model's input gradient of a loss (cross-entropy or DLR): the forward and backward pass that every
attack step and every gradient diagnostic costs. No weight gradients are kept."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("ce", "dlr")


def attack_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-example loss an attack maximizes, shape (N,).

    "ce": cross-entropy. "dlr": the difference-of-logits ratio −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3),
    with z_π sorted descending (Croce & Hein 2020): invariant to shifting and scaling the logits, so it
    does not saturate on confident models as the cross-entropy does. It needs at least 3 classes.
    """
    logits = logits.float()
    if loss == "ce":
        return F.cross_entropy(logits, labels, reduction="none")
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, the model gives {logits.shape[1]}")
    top = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, labels[:, None])[:, 0]
    other = torch.where(top[:, 0] == true, top[:, 1], top[:, 0])  # the best wrong logit
    return -(true - other) / (top[:, 0] - top[:, 2] + 1e-12)


def _precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision="bf16"` (CPU or CUDA); exact float32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∇ₓ of the summed per-example loss, the per-example loss, the logits), all at `x`.
    Call inside `frozen(model)`: the one forward+backward every step of every attack costs."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        with _precision(x.device, precision):
            logits = model(x)
        losses = attack_loss(logits, y, loss)
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad, losses.detach(), logits.detach()


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇ₓ of the summed cross-entropy, the logits at x). Call inside `frozen(model)`."""
    grad, _, logits = loss_gradient(model, images, labels)
    return grad, logits
