"""FGSM and I-FGSM in pixel space: ONE gradient-sign loop, FGSM being its single step of size ε.

    fgsm(x)  = clip(x + ε·sign(∇ₓ CE(f(x), y)), bounds)                        (Goodfellow et al. 2015)
    ifgsm(x) : x ← clip(x + a·sign(∇ₓ CE), x₀ − ε, x₀ + ε), then clip to bounds; `steps` times,
               a = ε / steps by default: the paper's "equal step size" (Kurakin et al. 2017)

Gradients are taken with respect to the input only: parameters are frozen for the attack (no weight
gradient is ever computed), the model runs in eval mode, and both its mode and its parameters'
`requires_grad` flags are restored afterwards. Any `nn.Module` mapping images in [0, 1] to logits works.

An attack is a small frozen object built once with its own settings (`FGSM()`, `IFGSM(steps=10)`) and
called with the model and ε at call time: `IFGSM(steps=10)(model, images, labels, 0.03)`, in the
manner of foolbox. `ATTACK_TYPES` maps the registry names of `config.ATTACKS` to these types; a new
attack is one class here and one row there. Evaluation is two functions: `craft` makes adversarial
examples on a source model (per ε), `score` counts the hits of any number of models on ready-made
inputs; `evaluate_attack` runs both batch by batch without keeping the examples (the white box).
For FGSM one input gradient per batch serves every ε.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTACKS
from .devices import frozen, model_device

Bounds = tuple[float, float]
Progress = Callable[[int], None]


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇ₓ of the summed cross-entropy, the logits at x). Call inside `frozen(model)`."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x)
    return grad, logits.detach()


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


def gradient_sign_attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float,
    bounds: Bounds = (0.0, 1.0),
) -> torch.Tensor:
    """The one loop: `steps` signed-gradient steps of `step_size`, each projected onto the ε-ball
    around `images` intersected with `bounds`. Returns a new tensor; the inputs are not modified."""
    _check(images, labels, eps, bounds)
    _check_dtype(model, images)
    x0 = images.detach()
    if eps == 0:
        return x0.clone()
    lo = (x0 - eps).clamp_(min=bounds[0])
    hi = (x0 + eps).clamp_(max=bounds[1])
    x = x0.clone()
    with frozen(model):
        for _ in range(steps):
            grad, _ = input_gradient(model, x, labels)
            x = torch.minimum(torch.maximum(x + step_size * grad.sign(), lo), hi)
    return x


# --- attack objects -------------------------------------------------------------------------------

Crafted = tuple[int, torch.Tensor, "torch.Tensor | None"]  # (ε index, adversarial batch, source logits if free)


class Attack:
    """An L∞ gradient-sign attack with fixed settings; ε and the model are given at call time.

    A subclass is a frozen dataclass of its settings with `name`, `steps` and `size_for(eps)`; it
    overrides `craft_batch` only when it can share work across ε (as FGSM shares its gradient).
    """

    name: ClassVar[str]  # the key in config.ATTACKS and ATTACK_TYPES
    steps: int

    def size_for(self, eps: float) -> float:
        """The step size used at `eps` (what the database records)."""
        raise NotImplementedError

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, bounds: Bounds = (0.0, 1.0)
    ) -> torch.Tensor:
        return gradient_sign_attack(
            model, images, labels, eps, steps=self.steps, step_size=self.size_for(eps), bounds=bounds
        )

    def craft_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds
    ) -> Iterator[Crafted]:
        """Every ε of one batch, crafted on `model` (inside `frozen(model)`)."""
        for i, e in enumerate(eps):
            yield i, self(model, x, y, e, bounds=bounds), None


@dataclass(frozen=True)
class FGSM(Attack):
    """`clip(x + ε·sign(∇ₓ CE(f(x), y)), bounds)` (Goodfellow et al. 2015)."""

    name: ClassVar[str] = "fgsm"
    steps: ClassVar[int] = 1

    def size_for(self, eps: float) -> float:
        return eps

    def craft_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds
    ) -> Iterator[Crafted]:
        grad, clean_logits = input_gradient(model, x, y)  # once per batch, shared by every ε
        direction = grad.sign()
        for i, e in enumerate(eps):
            yield (i, x, clean_logits) if e == 0 else (i, (x + e * direction).clamp_(*bounds), None)


@dataclass(frozen=True)
class IFGSM(Attack):
    """`steps` projected steps of `step_size` (default ε / steps, the paper's equal steps), no random
    start (Kurakin et al. 2017)."""

    name: ClassVar[str] = "ifgsm"
    steps: int = 10
    step_size: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise TypeError(f"steps must be an int, got {type(self.steps).__name__} {self.steps!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {self.steps}")
        size = self.step_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))):
            raise TypeError(f"step_size must be a number or None, got {type(self.step_size).__name__}")

    def size_for(self, eps: float) -> float:
        size = eps / self.steps if self.step_size is None else self.step_size
        if not math.isfinite(size) or (size <= 0 and eps > 0):
            raise ValueError(f"step_size must be > 0, got {self.step_size!r}")
        return size


ATTACK_TYPES: dict[str, type[Attack]] = {"fgsm": FGSM, "ifgsm": IFGSM}


def make_attack(name: str, *, steps: int | None = None, step_size: float | None = None) -> Attack:
    """The attack `name` (a key of ATTACK_TYPES); `steps`/`step_size` apply to iterative attacks
    (`config.ATTACKS[name].iterative`), `steps=None` meaning the attack's default."""
    if name not in ATTACK_TYPES:
        raise ValueError(f"attack must be one of {tuple(ATTACK_TYPES)}, got {name!r}")
    if not ATTACKS[name].iterative:
        return ATTACK_TYPES[name]()
    return ATTACK_TYPES[name](**({} if steps is None else {"steps": steps}), step_size=step_size)  # type: ignore[call-arg]


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


# --- crafting and scoring -------------------------------------------------------------------------


@dataclass
class AttackCounts:
    """Correct predictions per model and per input set (one set per ε) on n examples."""

    n: int
    top1: dict[str, list[int]]  # model name -> count per set
    top5: dict[str, list[int]]


def _hits(
    model: nn.Module, crafted: list[Crafted], y: torch.Tensor, reuse_logits: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 and top-5 hits of `model` on every crafted batch of one input batch, per set index.

    On CUDA all sets go through ONE forward (the batches concatenated): far fewer kernel launches. On
    the CPU one forward per set is faster (measured: concatenating 7 batches of 250 doubled the time,
    the activations no longer fit in cache). With `reuse_logits` the source's clean logits, which come
    free with its gradient, are used instead of a forward.
    """
    logits = {i: out for i, _, out in crafted if out is not None and reuse_logits}
    todo = [(i, x) for i, x, _ in crafted if i not in logits]
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
    h1 = torch.zeros(len(crafted), dtype=torch.int64, device=y.device)
    h5 = torch.zeros(len(crafted), dtype=torch.int64, device=y.device)
    index = torch.tensor(order, device=y.device)
    h1[index] = hit[..., 0].sum(1)
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
    top1 = {name: torch.zeros(n_sets, dtype=torch.int64, device=device) for name in targets}
    top5 = {name: torch.zeros(n_sets, dtype=torch.int64, device=device) for name in targets}
    kept: list[list[torch.Tensor]] = [[] for _ in range(n_sets)]
    with contextlib.ExitStack() as stack:
        for model in {id(m): m for m in [*([source] if source is not None else []), *targets.values()]}.values():
            stack.enter_context(frozen(model))
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            crafted = batch(start, x, y)
            for name, model in targets.items():
                h1, h5 = _hits(model, crafted, y, reuse_logits=model is source)
                top1[name] += h1
                top5[name] += h5
            if keep:
                for i, x_adv, _ in crafted:
                    kept[i].append(x_adv.cpu())
            if progress is not None:
                progress(len(y))
    counts = AttackCounts(len(labels), {k: v.tolist() for k, v in top1.items()},
                          {k: v.tolist() for k, v in top5.items()})  # fmt: skip
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
        return list(attack.craft_batch(source, x, y, eps, bounds))

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
        return [(i, s[start : start + len(y)].to(x.device), None) for i, s in enumerate(sets)]

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

    `attack` is an `Attack`, or a registry name built with `steps`/`step_size`. Batches of
    `batch_size` images move to the source's device; counts accumulate there and sync once at the end.
    """
    atk = attack if isinstance(attack, Attack) else make_attack(attack, steps=steps, step_size=step_size)
    eps = _check_all(atk, images, labels, eps, bounds, batch_size)

    def batch(start: int, x: torch.Tensor, y: torch.Tensor) -> list[Crafted]:
        return list(atk.craft_batch(source, x, y, eps, bounds))

    counts, _ = _run(source, targets, images, labels, len(eps), batch, batch_size=batch_size, keep=False,
                     progress=progress)  # fmt: skip
    return counts


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

    `source=None` is the white box (crafted on `model`); otherwise the examples are crafted on
    `source` and classified by `model` (black box, transfer).
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
