"""THE descent loop: the ε-ball and the bounds, the step rules (sign steps, APGD's), and the per-example
trace that the failure indicators read."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robustbench_mixup.measures.gradients import _precision, attack_loss, loss_gradient

Bounds = tuple[float, float]


def _check(images: torch.Tensor, labels: torch.Tensor, eps: float, bounds: Bounds) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError("images must be a floating-point torch.Tensor")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise TypeError("labels must be an int64 tensor of shape (N,) matching images")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a number (pixel units), got {type(eps).__name__} {eps!r}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number ≥ 0 (pixel units), got {eps!r}")
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")


def _check_dtype(model: nn.Module, images: torch.Tensor) -> None:
    param = next(model.parameters(), None)
    if param is not None and param.is_floating_point() and images.dtype != param.dtype:
        raise TypeError(
            f"images are {images.dtype} but the model's parameters are {param.dtype}: pass images.to({param.dtype})"
        )


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be ≥ {low}, got {value}")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def _check_size(step_size: object) -> None:
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))):
        raise TypeError(f"step_size must be a number or None, got {type(step_size).__name__}")


@dataclass
class Trace:
    """What an attack saw on its way, per example: the raw material of the failure indicators.

    `losses[k]` is the loss at the k-th point evaluated (the start first); `fooled_on_path` marks
    examples misclassified at some evaluated point; the gradient flags are those of the first point.
    """

    losses: torch.Tensor  # (points, N)
    fooled_on_path: torch.Tensor  # (N,) bool
    grad_zero: torch.Tensor  # (N,) bool: the input gradient is exactly 0 everywhere
    grad_nonfinite: torch.Tensor  # (N,) bool: the input gradient holds NaN or ±inf

    @staticmethod
    def merge(traces: Sequence[Trace]) -> Trace:
        """Restarts of one attack on the same examples: fooled by any, the best loss by step of any."""
        first = traces[0]
        if len(traces) == 1:
            return first
        steps = min(len(t.losses) for t in traces)
        best = torch.stack([t.losses[:steps].cummax(0).values for t in traces]).amax(0)
        fooled = torch.stack([t.fooled_on_path for t in traces]).any(0)
        return Trace(best, fooled, first.grad_zero, first.grad_nonfinite)


class _Tracker:
    """The loop's memory: the trace, the highest-loss point and the first misclassified point per example."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, keep: str) -> None:
        self.labels, self.keep, self.keep_best = y, keep, keep == "best"
        self.losses: list[torch.Tensor] = []
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.best_x = x.clone() if self.keep_best else x
        self.best_loss = torch.full((len(x),), -math.inf, device=x.device)
        self.best_grad: torch.Tensor | None = None
        self.adv_x = x.clone() if self.keep_best else x
        self.grad_zero = self.grad_nonfinite = None
        self.wrong: torch.Tensor | None = None

    def observe(self, x: torch.Tensor, losses: torch.Tensor, wrong: torch.Tensor, grad: torch.Tensor | None,
                active: torch.Tensor | None = None) -> None:  # fmt: skip
        """The point `x` with its losses, misclassified marks and gradient; `active`: the examples whose
        gradient was computed (early stop: the others left the batch, their `wrong` True, losses carried)."""
        self.wrong = wrong
        self.losses.append(losses)
        if self.grad_zero is None and grad is not None:
            flat = grad.flatten(1)
            self.grad_zero = (flat == 0).all(1)
            self.grad_nonfinite = ~torch.isfinite(flat).all(1)
            if active is not None:  # no gradient was taken of the rest
                self.grad_zero &= active
                self.grad_nonfinite &= active
        if self.keep_best:
            new = wrong & ~self.fooled
            self.adv_x[new] = x[new]
        if self.keep == "best":
            better = losses > self.best_loss
            self.best_x[better] = x[better]
            self.best_loss = torch.where(better, losses, self.best_loss)
            if grad is not None:
                self.best_grad = grad.clone() if self.best_grad is None else self.best_grad
                self.best_grad[better] = grad[better]
        self.fooled |= wrong

    def result(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(The point returned per example, its loss, whether it is misclassified): with keep "last"
        the last point, unscored; "scored": the last point, scored; "best": a misclassified point if one
        was met, else the point of highest loss."""
        if self.keep == "last":
            return x, self.losses[-1], None
        if self.keep == "scored":
            return x, self.losses[-1], self.wrong
        shape = (-1, *[1] * (x.ndim - 1))
        return torch.where(self.fooled.view(shape), self.adv_x, self.best_x), self.best_loss, self.fooled.clone()

    def trace(self) -> Trace:
        none = torch.zeros_like(self.fooled)
        return Trace(torch.stack(self.losses), self.fooled.clone(),
                     none if self.grad_zero is None else self.grad_zero,
                     none if self.grad_nonfinite is None else self.grad_nonfinite)  # fmt: skip


Project = Callable[[torch.Tensor], torch.Tensor]


class SignStep:
    """x ← x + a·sign(∇): FGSM, I-FGSM and PGD (`size`: a per-example radius → step size rule)."""

    def __init__(self, size: torch.Tensor) -> None:
        self.size = size

    def __call__(self, k: int, x: torch.Tensor, grad: torch.Tensor, losses: torch.Tensor, t: _Tracker) -> torch.Tensor:
        if self.size.dtype != x.dtype:
            self.size = self.size.to(x.dtype)  # rounded once, from float64
        return x + self.size * grad.sign()


class APGDStep:
    """APGD's step (Croce & Hein 2020, Algorithm 1): a signed step of η, then momentum α = 0.75 on the
    move; η starts at 2ε and is halved, with a restart from the best point, at each checkpoint where
    (1) the loss rose in fewer than ρ = 75% of the steps since the last checkpoint, or (2) η was not
    halved at the last checkpoint and the best loss has not improved since. Checkpoints come every
    0.22·T steps at first, the interval shrinking by 0.03·T down to 0.06·T, as in the reference code."""

    ALPHA, RHO = 0.75, 0.75

    def __init__(self, eps: torch.Tensor, project: Project, steps: int, dtype: torch.dtype) -> None:
        self.eta = (2 * eps).to(dtype)
        self.project = project
        self.previous: torch.Tensor | None = None
        self.interval = max(int(0.22 * steps), 1)
        self.shrink, self.min_interval = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
        self.since = 0
        self.halved_last = None
        self.best_at_check = None

    def __call__(self, k: int, x: torch.Tensor, grad: torch.Tensor, losses: torch.Tensor, t: _Tracker) -> torch.Tensor:
        if k > 0:
            self.since += 1
            if self.since == self.interval:
                x, grad = self._checkpoint(x, grad, t)
        z = self.project(x + self.eta * grad.sign())
        a = 1.0 if self.previous is None else self.ALPHA
        move = a * (z - x) + (1 - a) * (x - (x if self.previous is None else self.previous))
        self.previous = x
        return x + move

    def _checkpoint(self, x: torch.Tensor, grad: torch.Tensor, t: _Tracker) -> tuple[torch.Tensor, torch.Tensor]:
        recent = torch.stack(t.losses[-self.since - 1 :])
        rises = (recent[1:] > recent[:-1]).sum(0)
        stalled = rises < self.RHO * self.since  # condition 1 (the reference code uses ≤ k·ρ on the count)
        if self.best_at_check is not None:
            stalled |= ~self.halved_last & (t.best_loss <= self.best_at_check)  # condition 2
        self.halved_last, self.best_at_check = stalled, t.best_loss.clone()
        shape = (-1, *[1] * (x.ndim - 1))
        self.eta = torch.where(stalled.view(shape), self.eta / 2, self.eta)
        x = torch.where(stalled.view(shape), t.best_x, x)
        if t.best_grad is not None:
            grad = torch.where(stalled.view(shape), t.best_grad, grad)
        self.interval = max(self.interval - self.shrink, self.min_interval)
        self.since = 0
        return x, grad


def descend(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    *,
    steps: int,
    rule: Callable[[torch.Tensor, Project], Callable[..., torch.Tensor]],
    loss: str = "ce",
    start: torch.Tensor | None = None,
    keep: str = "last",
    bounds: Bounds = (0.0, 1.0),
    precision: str = "fp32",
    early_stop: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Trace]:
    """THE loop of every gradient attack: `steps` steps of `rule(radius, project)` from `start`
    (default x0), each projected onto the ε-ball around `x0` (per-example radii `eps`, shape (N,))
    intersected with `bounds`. Call inside `frozen(model)`. Returns `_Tracker.result` and the trace.

    Each step costs one forward+backward. `keep` (see `_Tracker.result`) other than "last" costs one
    forward more, to score the last point: a point met on the way is never lost (no silent success).
    `early_stop` (`_descend_early`): an example leaves the loop at its first misclassified point.
    """
    exact = eps.view(-1, *[1] * (x0.ndim - 1)).to(torch.float64)
    radius = exact.to(x0.dtype)
    lo = torch.maximum(x0 - radius, torch.full_like(x0, bounds[0]))
    hi = torch.minimum(x0 + radius, torch.full_like(x0, bounds[1]))

    def project(z: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(z, lo), hi)

    x = x0.clone() if start is None else project(start)
    step = rule(exact, project)
    if not early_stop:
        tracker = _Tracker(x, y, keep)
        for k in range(steps):
            grad, losses, logits = loss_gradient(model, x, y, loss, precision)
            tracker.observe(x, losses, logits.argmax(1) != y, grad)
            x = project(step(k, x, grad, losses, tracker))
        if keep != "last":
            with torch.no_grad(), _precision(x.device, precision):
                logits = model(x)
            tracker.observe(x, attack_loss(logits, y, loss), logits.float().argmax(1) != y, None)
        return (*tracker.result(x), tracker.trace())
    return _descend_early(model, x0, x, y, project, step, steps=steps, loss=loss, keep=keep, precision=precision)


def _descend_early(
    model: nn.Module, x0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, project: Project,
    step: Callable[..., torch.Tensor], *, steps: int, loss: str, keep: str, precision: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Trace]:  # fmt: skip
    """`descend` with early stop: an example misclassified clean, or at any point of its path, leaves the
    batch there and keeps that point; only the rest go through the network. In eval mode an example's path
    does not depend on the others', so the examples that stay take the very steps they take without it."""
    shape = (-1, *[1] * (x0.ndim - 1))
    with torch.no_grad(), _precision(x0.device, precision):
        clean = model(x0).float()
    active = clean.argmax(1) == y
    x = torch.where(active.view(shape), x, x0)  # misclassified clean: the clean point is the answer
    last = attack_loss(clean, y, loss)  # what a departed example's trace carries on
    tracker = _Tracker(x, y, keep)
    tracker.fooled |= ~active
    for k in range(steps):
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        g, part, logits = loss_gradient(model, x[idx], y[idx], loss, precision)
        grad = torch.zeros_like(x).index_copy_(0, idx, g)
        losses = last.index_copy(0, idx, part.to(last.dtype))
        wrong = (~active).index_copy(0, idx, logits.argmax(1) != y[idx])
        tracker.observe(x, losses, wrong, grad, active)
        last = losses
        moved = project(step(k, x, grad, losses, tracker))
        active = active & ~wrong
        x = torch.where(active.view(shape), moved, x)  # a broken example stays at its first misclassified point
    else:
        if keep != "last":
            idx = active.nonzero().squeeze(1)
            wrong, losses = ~active, last
            if len(idx):
                with torch.no_grad(), _precision(x.device, precision):
                    logits = model(x[idx]).float()
                wrong = wrong.index_copy(0, idx, logits.argmax(1) != y[idx])
                losses = last.index_copy(0, idx, attack_loss(logits, y[idx], loss).to(last.dtype))
            tracker.observe(x, losses, wrong, None)
    if not tracker.losses:  # every example misclassified clean
        tracker.losses.append(last)
    if keep != "last" and tracker.wrong is None:
        tracker.wrong = ~active
    return (*tracker.result(x), tracker.trace())
