"""L∞ gradient attacks in pixel space: ONE descent loop, every attack a step rule and a start in it.

    fgsm(x)  = clip(x + ε·sign(∇ₓ CE(f(x), y)), bounds)                        (Goodfellow et al. 2015)
    ifgsm(x) : x ← clip(x + a·sign(∇ₓ CE), x₀ − ε, x₀ + ε), then clip to bounds; `steps` times,
               a = ε / steps by default: the paper's "equal step size" (Kurakin et al. 2017)
    pgd(x)   : the same signed steps of 2.5·ε/steps from a uniform random start in the ε-ball, with
               restarts; per example a misclassified point if any restart found one (Madry et al. 2018)
    apgd(x)  : signed steps with momentum 0.75 and a step size halved at checkpoints where progress
               stalls, on the cross-entropy or the difference-of-logits-ratio loss (Croce & Hein 2020)

Gradients are taken with respect to the input only: parameters are frozen for the attack (no weight
gradient is ever computed), the model runs in eval mode, and both its mode and its parameters'
`requires_grad` flags are restored afterwards. Any `nn.Module` mapping images in [0, 1] to logits works.

An attack is a small frozen object built once with its own settings (`FGSM()`, `PGD(steps=50)`) and
called with the model and ε at call time: `PGD(steps=50)(model, images, labels, 0.03)`, in the
manner of foolbox. `ATTACK_TYPES` maps the registry names of `config.ATTACKS` to these types; a new
attack is one class here and one row there. The loop (`descend`) enforces the ε-ball and the bounds
for every attack and records, per example, what it saw on its way (`Trace`): the failure indicators
of `indicators.py` read it. Evaluation is two functions: `craft` makes adversarial examples on a
source model (per ε), `score` counts the hits of any number of models on ready-made inputs;
`evaluate_attack` runs both batch by batch without keeping the examples (the white box).
For FGSM one input gradient per batch serves every ε.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTACKS
from .devices import frozen, model_device

Bounds = tuple[float, float]
Progress = Callable[[int], None]
LOSSES = ("ce", "dlr")
PRECISIONS = ("fp32", "bf16")
MAX_GROUP_IMAGES = 4096  # on CUDA, (ε, restart) pairs share a forward+backward up to this many images


# --- losses and the input gradient ----------------------------------------------------------------


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


# --- argument checks ------------------------------------------------------------------------------


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


def _check_size(step_size: object) -> None:
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))):
        raise TypeError(f"step_size must be a number or None, got {type(step_size).__name__}")


# --- the one loop -------------------------------------------------------------------------------------


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

    def observe(self, x: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor | None) -> None:
        wrong = self.wrong = logits.argmax(1) != self.labels
        self.losses.append(losses)
        if self.grad_zero is None and grad is not None:
            flat = grad.flatten(1)
            self.grad_zero = (flat == 0).all(1)
            self.grad_nonfinite = ~torch.isfinite(flat).all(1)
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Trace]:
    """THE loop of every gradient attack: `steps` steps of `rule(radius, project)` from `start`
    (default x0), each projected onto the ε-ball around `x0` (per-example radii `eps`, shape (N,))
    intersected with `bounds`. Call inside `frozen(model)`. Returns `_Tracker.result` and the trace.

    Each step costs one forward+backward. `keep` (see `_Tracker.result`) other than "last" costs one
    forward more, to score the last point: a point met on the way is never lost (no silent success).
    """
    exact = eps.view(-1, *[1] * (x0.ndim - 1)).to(torch.float64)
    radius = exact.to(x0.dtype)
    lo = torch.maximum(x0 - radius, torch.full_like(x0, bounds[0]))
    hi = torch.minimum(x0 + radius, torch.full_like(x0, bounds[1]))

    def project(z: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(z, lo), hi)

    x = x0.clone() if start is None else project(start)
    step = rule(exact, project)
    tracker = _Tracker(x, y, keep)
    for k in range(steps):
        grad, losses, logits = loss_gradient(model, x, y, loss, precision)
        tracker.observe(x, losses, logits, grad)
        x = project(step(k, x, grad, losses, tracker))
    if keep != "last":
        with torch.no_grad(), _precision(x.device, precision):
            logits = model(x)
        tracker.observe(x, attack_loss(logits, y, loss), logits.float(), None)
    return (*tracker.result(x), tracker.trace())


# --- attack objects -------------------------------------------------------------------------------


class Crafted(NamedTuple):
    """One ε of one batch: its index in the ε grid, the adversarial batch, the source's logits on it when
    they came free (FGSM at ε = 0), and what the attack saw on its way."""

    index: int
    images: torch.Tensor
    logits: torch.Tensor | None
    trace: Trace | None


def _radii(eps: float, x: torch.Tensor) -> torch.Tensor:
    """ε per example, in float64: step sizes derived from it round once, to the images' dtype."""
    return torch.full((len(x),), float(eps), dtype=torch.float64, device=x.device)


def _seed(seed: int, offset: int) -> torch.Generator:
    """The generator of the batch starting at example `offset`: the same numbers for the same command."""
    return torch.Generator().manual_seed(hash((seed, offset)) & (2**63 - 1))  # int tuples hash the same every run


class Attack:
    """An L∞ gradient attack with fixed settings; ε and the model are given at call time.

    A subclass is a frozen dataclass of its settings with `name`, `steps`, `size_for(eps)` and
    `descend` (one restart through the loop); `restarts` and random starts are handled here. It
    overrides `craft_batch` only when it can share work across ε (as FGSM shares its gradient).
    """

    name: ClassVar[str]  # the key in config.ATTACKS and ATTACK_TYPES
    steps: int
    restarts: int = 1
    random_start: bool = False
    seed: int = 0  # of the random starts
    precision: str = "fp32"  # or "bf16": autocast for every forward and backward of the loop

    def size_for(self, eps: float) -> float:
        """The step size used at `eps` (what the database records)."""
        raise NotImplementedError

    def start(self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """The random start of one restart, drawn on the CPU (the same on every device); None: x itself."""
        return None

    def descend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, start: torch.Tensor | None,
        bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Trace]:  # fmt: skip
        raise NotImplementedError

    def attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds,
        generator: torch.Generator,
    ) -> list[tuple[torch.Tensor, Trace]]:  # fmt: skip
        """Every ε and restart of one batch (inside `frozen(model)`), combined per example: the point of
        a restart that misclassifies it if any does, else the returned point of highest loss.

        On CUDA all (ε, restart) pairs go through the network as ONE batch (they share nothing but the
        model, and one launch of k·B images costs far less than k launches); on the CPU one at a time
        (measured: concatenating evicts the activations from cache and is slower).
        """
        jobs = [(i, e) for i, e in enumerate(eps) for _ in range(self.restarts)]
        starts = [self.start(x, _radii(e, x), generator) if e > 0 else None for _, e in jobs]
        group = max(1, min(len(jobs), MAX_GROUP_IMAGES // max(len(x), 1))) if x.device.type == "cuda" else 1
        results: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Trace]] = []
        for g in range(0, len(jobs), group):
            chunk = range(g, min(g + group, len(jobs)))
            radii = torch.cat([_radii(jobs[j][1], x) for j in chunk])
            start = None
            if any(starts[j] is not None for j in chunk):
                start = torch.cat([x if starts[j] is None else starts[j] for j in chunk])
            xs, ys = x.repeat(len(chunk), *[1] * (x.ndim - 1)), y.repeat(len(chunk))
            adv, loss, fooled, trace = self.descend(model, xs, ys, radii, start, bounds)
            for k, _ in enumerate(chunk):
                part = slice(k * len(y), (k + 1) * len(y))
                results.append(
                    (
                        adv[part],
                        loss[part],
                        None if fooled is None else fooled[part],
                        Trace(
                            trace.losses[:, part],
                            trace.fooled_on_path[part],
                            trace.grad_zero[part],
                            trace.grad_nonfinite[part],
                        ),
                    )
                )
        out = []
        for i in range(len(eps)):
            runs = results[i * self.restarts : (i + 1) * self.restarts]
            best_x, best_loss, fooled, _ = runs[0]
            for adv, loss, wrong, _ in runs[1:]:  # restarts > 1: every restart's point is scored
                take = (wrong & ~fooled) | (~fooled & ~wrong & (loss > best_loss))
                best_x = torch.where(take.view(-1, *[1] * (x.ndim - 1)), adv, best_x)
                best_loss = torch.where(take, loss, best_loss)
                fooled = fooled | wrong
            out.append((best_x, Trace.merge([t for *_, t in runs])))
        return out

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
        bounds: Bounds = (0.0, 1.0), generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Adversarial examples for `images` at `eps`; a new tensor, the inputs are not modified."""
        _check(images, labels, eps, bounds)
        _check_dtype(model, images)
        self.size_for(eps)
        x0 = images.detach()
        if eps == 0:
            return x0.clone()
        with frozen(model):
            ((adv, _),) = self.attack(model, x0, labels, [eps], bounds, generator or _seed(self.seed, 0))
        return adv

    def craft_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds,
        offset: int = 0,
    ) -> Iterator[Crafted]:  # fmt: skip
        """Every ε of the batch of examples `offset`… crafted on `model` (inside `frozen(model)`)."""
        todo = [e for e in eps if e > 0]
        done = iter(self.attack(model, x, y, todo, bounds, _seed(self.seed, offset))) if todo else iter(())
        for i, e in enumerate(eps):
            if e == 0:
                yield Crafted(i, x, None, None)
            else:
                adv, trace = next(done)
                yield Crafted(i, adv, None, trace)


def _sign_rule(size: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, Project], SignStep]:
    return lambda radius, project: SignStep(size(radius))


@dataclass(frozen=True)
class FGSM(Attack):
    """`clip(x + ε·sign(∇ₓ CE(f(x), y)), bounds)` (Goodfellow et al. 2015)."""

    name: ClassVar[str] = "fgsm"
    steps: ClassVar[int] = 1

    def size_for(self, eps: float) -> float:
        return eps

    def descend(self, model, x, y, eps, start, bounds):  # type: ignore[no-untyped-def]
        return descend(model, x, y, eps, steps=1, rule=_sign_rule(lambda r: r), bounds=bounds)

    def craft_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds,
        offset: int = 0,
    ) -> Iterator[Crafted]:  # fmt: skip
        grad, losses, clean_logits = loss_gradient(model, x, y)  # once per batch, shared by every ε
        direction = grad.sign()
        flat = grad.flatten(1)
        trace = Trace(losses[None], clean_logits.argmax(1) != y, (flat == 0).all(1), ~torch.isfinite(flat).all(1))
        for i, e in enumerate(eps):
            if e == 0:
                yield Crafted(i, x, clean_logits, None)
            else:
                yield Crafted(i, (x + e * direction).clamp_(*bounds), None, trace)


@dataclass(frozen=True)
class IFGSM(Attack):
    """`steps` projected steps of `step_size` (default ε / steps, the paper's equal steps), no random
    start (Kurakin et al. 2017); the last point is returned."""

    name: ClassVar[str] = "ifgsm"
    steps: int = 10
    step_size: float | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_size(self.step_size)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def size_for(self, eps: float) -> float:
        size = eps / self.steps if self.step_size is None else self.step_size
        if not math.isfinite(size) or (size <= 0 and eps > 0):
            raise ValueError(f"step_size must be > 0, got {self.step_size!r}")
        return size

    def _size(self, radius: torch.Tensor) -> torch.Tensor:
        return radius / self.steps if self.step_size is None else torch.full_like(radius, self.step_size)

    def descend(self, model, x, y, eps, start, bounds):  # type: ignore[no-untyped-def]
        return descend(model, x, y, eps, steps=self.steps, rule=_sign_rule(self._size), bounds=bounds,
                       precision=self.precision)  # fmt: skip


@dataclass(frozen=True)
class PGD(IFGSM):
    """Madry et al. (2018): I-FGSM's steps of `step_size` (default 2.5·ε/steps) from a uniform random
    start in the ε-ball, `restarts` times; per example the last point of a restart that misclassifies
    it if any does, else the last point of the restart with the highest loss. `random_start=False,
    restarts=1` is I-FGSM with PGD's step size (and agrees exactly with the libraries' PGD)."""

    name: ClassVar[str] = "pgd"
    steps: int = 50
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("restarts", self.restarts, 1)

    def size_for(self, eps: float) -> float:
        size = 2.5 * eps / self.steps if self.step_size is None else self.step_size
        if not math.isfinite(size) or (size <= 0 and eps > 0):
            raise ValueError(f"step_size must be > 0, got {self.step_size!r}")
        return size

    def _size(self, radius: torch.Tensor) -> torch.Tensor:
        return 2.5 * radius / self.steps if self.step_size is None else torch.full_like(radius, self.step_size)

    def start(self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        if not self.random_start:
            return None
        u = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        return x + ((2 * u - 1) * eps.view(-1, *[1] * (x.ndim - 1))).to(x.dtype)

    def descend(self, model, x, y, eps, start, bounds):  # type: ignore[no-untyped-def]
        return descend(model, x, y, eps, steps=self.steps, rule=_sign_rule(self._size), start=start,
                       keep="last" if self.restarts == 1 else "scored",
                       bounds=bounds, precision=self.precision)  # fmt: skip


@dataclass(frozen=True)
class APGD(Attack):
    """APGD (Croce & Hein 2020) on `loss` "ce" or "dlr", from a random start at the ε-ball's surface,
    `restarts` times; the best point per example (misclassified if one was met, else highest loss)."""

    name: ClassVar[str] = "apgd-ce"
    loss: ClassVar[str] = "ce"  # APGDDLR: "dlr" (the loss is part of the attack's name)
    random_start: ClassVar[bool] = True  # type: ignore[misc]
    steps: int = 100
    restarts: int = 1
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_int("restarts", self.restarts, 1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def size_for(self, eps: float) -> float:
        return 2 * eps  # the initial step size; halved adaptively

    def start(self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        t = (2 * torch.rand(x.shape, generator=generator, dtype=torch.float32) - 1).to(device=x.device, dtype=x.dtype)
        scale = t.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
        return x + (eps.view(-1, *[1] * (x.ndim - 1)) * t / scale).to(x.dtype)

    def descend(self, model, x, y, eps, start, bounds):  # type: ignore[no-untyped-def]
        def rule(radius: torch.Tensor, project: Project) -> APGDStep:
            return APGDStep(radius, project, self.steps, x.dtype)

        return descend(model, x, y, eps, steps=self.steps, rule=rule, loss=self.loss, start=start, keep="best",
                       bounds=bounds, precision=self.precision)  # fmt: skip


@dataclass(frozen=True)
class APGDDLR(APGD):
    """APGD on the difference-of-logits-ratio loss (at least 3 classes)."""

    name: ClassVar[str] = "apgd-dlr"
    loss: ClassVar[str] = "dlr"


ATTACK_TYPES: dict[str, type[Attack]] = {"fgsm": FGSM, "ifgsm": IFGSM, "pgd": PGD, "apgd-ce": APGD, "apgd-dlr": APGDDLR}


def make_attack(
    name: str, *, steps: int | None = None, step_size: float | None = None, restarts: int = 1, seed: int = 0,
    precision: str = "fp32",
) -> Attack:  # fmt: skip
    """The attack `name` (a key of ATTACK_TYPES) with the settings it takes (`config.ATTACKS[name].options`);
    `steps=None` means the attack's default, and a setting the attack does not take is ignored (FGSM has
    no steps). `config.AttackConfig.validate` is where a user is told so."""
    if name not in ATTACK_TYPES:
        raise ValueError(f"attack must be one of {tuple(ATTACK_TYPES)}, got {name!r}")
    given = {"steps": steps, "step_size": step_size, "restarts": restarts, "seed": seed, "precision": precision}
    options = ATTACKS[name].options
    return ATTACK_TYPES[name](**{k: v for k, v in given.items() if k in options and v is not None})


# --- the public functions of API.md ---------------------------------------------------------------


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Untargeted FGSM: `clip(images + eps * sign(grad_x CE(model(images), labels)), *bounds)`."""
    return FGSM()(model, images, labels, eps, bounds=bounds)


def ifgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Iterative FGSM, no random start; `step_size=None` means `eps / steps` (the paper's protocol)."""
    return IFGSM(steps, step_size)(model, images, labels, eps, bounds=bounds)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    steps: int = 50,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """L∞ PGD (Madry et al. 2018); `step_size=None` means `2.5 * eps / steps`. Random starts are drawn
    from `generator` (default: a generator seeded 0, so the same call gives the same points)."""
    attack = PGD(steps=steps, step_size=step_size, restarts=restarts, random_start=random_start)
    return attack(model, images, labels, eps, bounds=bounds, generator=generator)


def apgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """APGD (Croce & Hein 2020) on `loss` "ce" or "dlr"; the best point per example is returned."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    attack = ATTACK_TYPES[f"apgd-{loss}"](steps=steps, restarts=restarts)
    return attack(model, images, labels, eps, bounds=bounds, generator=generator)


# --- crafting and scoring -------------------------------------------------------------------------


@dataclass
class AttackCounts:
    """Correct predictions per model and per input set (one set per ε) on n examples."""

    n: int
    top1: dict[str, list[int]]  # model name -> count per set
    top5: dict[str, list[int]]
    correct: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # model -> per set, (n,) bool on the CPU
    traces: list[list[Trace]] = field(default_factory=list)  # per set, one per batch (crafting runs only)
    first: list[torch.Tensor | None] = field(default_factory=list)  # per set, the first batch's inputs (on the CPU)

    def trace(self, index: int) -> Trace | None:
        """The trace of set `index` over all n examples (None where the set was not crafted here)."""
        parts = self.traces[index] if index < len(self.traces) else []
        if not parts:
            return None
        steps = min(len(t.losses) for t in parts)
        return Trace(torch.cat([t.losses[:steps] for t in parts], 1), torch.cat([t.fooled_on_path for t in parts]),
                     torch.cat([t.grad_zero for t in parts]), torch.cat([t.grad_nonfinite for t in parts]))  # fmt: skip


def _hits(
    model: nn.Module, crafted: list[Crafted], y: torch.Tensor, reuse_logits: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per crafted set of one input batch: top-1 hits per example (k, B) bool and top-5 hit counts (k,).

    On CUDA all sets go through ONE forward (the batches concatenated): far fewer kernel launches. On
    the CPU one forward per set is faster (measured: concatenating 7 batches of 250 doubled the time,
    the activations no longer fit in cache). With `reuse_logits` the source's clean logits, which come
    free with its gradient, are used instead of a forward.
    """
    logits = {c.index: c.logits for c in crafted if c.logits is not None and reuse_logits}
    todo = [(c.index, c.images) for c in crafted if c.index not in logits]
    group = len(todo) if y.device.type == "cuda" else 1
    with torch.no_grad():
        for g in range(0, len(todo), group):
            chunk = todo[g : g + group]
            out = model(torch.cat([x for _, x in chunk]))
            logits.update(zip([i for i, _ in chunk], out.split(len(y)), strict=True))
    order = sorted(logits)
    stacked = torch.stack([logits[i] for i in order])  # (k, B, classes)
    top = stacked.topk(min(5, stacked.shape[-1]), dim=-1).indices  # (k, B, 5)
    hit = top == y[None, :, None]
    h1 = torch.zeros(len(crafted), len(y), dtype=torch.bool, device=y.device)
    h5 = torch.zeros(len(crafted), dtype=torch.int64, device=y.device)
    index = torch.tensor(order, device=y.device)
    h1[index] = hit[..., 0]
    h5[index] = hit.any(-1).sum(1)
    return h1, h5


def _check_all(attack: Attack, images: torch.Tensor, labels: torch.Tensor, eps: Sequence[float], bounds: Bounds,
               batch_size: int) -> list[float]:  # fmt: skip
    eps = [float(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else e for e in eps]
    if not eps:
        raise ValueError("eps must hold at least one value")
    for e in eps:
        _check(images, labels, e, bounds)
        attack.size_for(e)
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    return eps


def _run(
    source: nn.Module | None,
    targets: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    n_sets: int,
    batch: Callable[[int, torch.Tensor, torch.Tensor], list[Crafted]],
    *,
    batch_size: int,
    keep: bool,
    progress: Progress | None,
) -> tuple[AttackCounts, list[torch.Tensor]]:
    """The batch loop shared by `craft`, `score` and `evaluate_attack`: `batch(start, x, y)` gives the
    inputs of one batch, which every target scores; with `keep`, they are kept (on the CPU)."""
    anyone = source if source is not None else next(iter(targets.values()), None)
    device = images.device if anyone is None else model_device(anyone, images.device)
    top1: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
    top5 = {name: torch.zeros(n_sets, dtype=torch.int64, device=device) for name in targets}
    kept: list[list[torch.Tensor]] = [[] for _ in range(n_sets)]
    traces: list[list[Trace]] = [[] for _ in range(n_sets)]
    first: list[torch.Tensor | None] = [None] * n_sets
    with contextlib.ExitStack() as stack:
        for model in {id(m): m for m in [*([source] if source is not None else []), *targets.values()]}.values():
            stack.enter_context(frozen(model))
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            crafted = batch(start, x, y)
            for name, model in targets.items():
                h1, h5 = _hits(model, crafted, y, reuse_logits=model is source)
                top1[name].append(h1)
                top5[name] += h5
            for c in crafted:
                if start == 0 and c.trace is not None:
                    first[c.index] = c.images.cpu()
                if keep:
                    kept[c.index].append(c.images.cpu())
                if c.trace is not None:
                    traces[c.index].append(c.trace)
            if progress is not None:
                progress(len(y))
    correct = {name: list(torch.cat(h, 1).cpu()) if h else [torch.zeros(0, dtype=torch.bool)] * n_sets
               for name, h in top1.items()}  # fmt: skip
    counts = AttackCounts(len(labels), {k: [int(c.sum()) for c in v] for k, v in correct.items()},
                          {k: v.tolist() for k, v in top5.items()}, correct, traces, first)  # fmt: skip
    return counts, [torch.cat(k) for k in kept] if keep else []


def craft(
    attack: Attack,
    source: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    batch_size: int = 256,
    bounds: Bounds = (0.0, 1.0),
    progress: Progress | None = None,
) -> list[torch.Tensor]:
    """Adversarial examples crafted on `source` by `attack`: one (N, C, H, W) CPU tensor per ε."""
    eps = _check_all(attack, images, labels, eps, bounds, batch_size)

    def batch(start: int, x: torch.Tensor, y: torch.Tensor) -> list[Crafted]:
        return list(attack.craft_batch(source, x, y, eps, bounds, start))

    _, sets = _run(source, {}, images, labels, len(eps), batch, batch_size=batch_size, keep=True, progress=progress)
    return sets


def score(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    sets: Sequence[torch.Tensor],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> AttackCounts:
    """Top-1/top-5 hits of every model on ready-made inputs: `sets` holds tensors shaped like `images`
    (adversarial sets, or `[images]` for the clean accuracy), `labels` their labels."""

    def batch(start: int, x: torch.Tensor, y: torch.Tensor) -> list[Crafted]:
        return [Crafted(i, s[start : start + len(y)].to(x.device), None, None) for i, s in enumerate(sets)]

    counts, _ = _run(None, models, images, labels, len(sets), batch, batch_size=batch_size, keep=False,
                     progress=progress)  # fmt: skip
    return counts


def evaluate_attack(
    source: nn.Module,
    targets: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    attack: Attack | str = "fgsm",
    steps: int = 10,
    step_size: float | None = None,
    batch_size: int = 256,
    bounds: Bounds = (0.0, 1.0),
    progress: Progress | None = None,
) -> AttackCounts:
    """Craft on `source` for every ε and count the hits of each target, batch by batch, keeping nothing.

    `attack` is an `Attack`, or a registry name built with `steps`/`step_size` where it takes them.
    Batches of `batch_size` images move to the source's device; counts accumulate there and sync once
    at the end. The counts carry the per-example outcomes and the attack's traces.
    """
    atk = attack if isinstance(attack, Attack) else _named(attack, steps, step_size)
    eps = _check_all(atk, images, labels, eps, bounds, batch_size)

    def batch(start: int, x: torch.Tensor, y: torch.Tensor) -> list[Crafted]:
        return list(atk.craft_batch(source, x, y, eps, bounds, start))

    counts, _ = _run(source, targets, images, labels, len(eps), batch, batch_size=batch_size, keep=False,
                     progress=progress)  # fmt: skip
    return counts


def _named(name: str, steps: int | None, step_size: float | None) -> Attack:
    """`robust_accuracy`'s attack names: `steps` and `step_size` apply to I-FGSM only (the others use
    their own defaults, as API.md says)."""
    if name not in ATTACK_TYPES:
        raise ValueError(f"attack must be one of {tuple(ATTACK_TYPES)}, got {name!r}")
    if name == "ifgsm":
        return make_attack(name, steps=steps, step_size=step_size)
    return make_attack(name)


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    attack: str = "fgsm",
    source: nn.Module | None = None,
    steps: int = 10,
    step_size: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Top-1 accuracy of `model` on adversarial examples for each ε in `eps`, shape (len(eps),).

    `attack` is "fgsm", "ifgsm" (with `steps`, `step_size`), "pgd", "apgd-ce" or "apgd-dlr" (with
    their defaults). `source=None` is the white box (crafted on `model`); otherwise the examples are
    crafted on `source` and classified by `model` (black box, transfer).
    """
    if isinstance(eps, (str, bytes, int, float)) or not isinstance(eps, Sequence | torch.Tensor):
        raise TypeError(f"eps must be a sequence of ε values in pixel units (e.g. [0.03]), got {type(eps).__name__}")
    if isinstance(eps, torch.Tensor):
        eps = eps.tolist()
    _check_dtype(model, images)
    counts = evaluate_attack(
        model if source is None else source, {"target": model}, images, labels, eps,
        attack=attack, steps=steps, step_size=step_size, batch_size=batch_size,
    )  # fmt: skip
    return torch.tensor(counts.top1["target"], dtype=torch.float64) / max(counts.n, 1)
