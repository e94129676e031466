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

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from robustbench_mixup.attacks.descent import (
    APGDStep,
    Bounds,
    Project,
    SignStep,
    Trace,
    _check,
    _check_dtype,
    _check_flag,
    _check_int,
    _check_size,
    descend,
)
from robustbench_mixup.learning.devices import frozen
from robustbench_mixup.measures.gradients import LOSSES, loss_gradient
from robustbench_mixup.settings.config import ATTACKS, PRECISIONS, AttackSetting

MAX_GROUP_IMAGES = 4096  # on CUDA, (ε, restart) pairs share a forward+backward up to this many images


# --- losses and the input gradient ----------------------------------------------------------------


# --- argument checks ------------------------------------------------------------------------------


# --- the one loop -------------------------------------------------------------------------------------


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
    early_stop: bool = False  # PGD, APGD: an example leaves the loop at its first misclassified point

    def size_for(self, eps: float) -> float:
        """The step size used at `eps` (what the database records)."""
        raise NotImplementedError

    def setting(self, eps: float, mode: str = "white") -> AttackSetting:
        """This attack's identity at `eps` in `mode`, as a stored row of it reads (`AttackSetting.of`). Early
        stop is the white box's: a transfer set is crafted in full (`for_transfer`)."""
        early = self.early_stop and mode == "white"
        return AttackSetting(self.steps, self.size_for(eps), self.restarts, self.seed, self.precision, early)

    def for_transfer(self) -> Attack:
        """The attack that crafts a black-box set: without early stop (stopping where the source is fooled
        would hand the target weaker examples)."""
        return dataclasses.replace(self, early_stop=False) if self.early_stop else self  # type: ignore[type-var]

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
        a restart that misclassifies it if any does, else the returned point of highest loss. On CUDA the ε
        of one restart go through the network as one batch (`_groups`)."""
        jobs = [(i, e) for i, e in enumerate(eps) for _ in range(self.restarts)]
        starts = [self.start(x, _radii(e, x), generator) if e > 0 else None for _, e in jobs]
        shape = (-1, *[1] * (x.ndim - 1))
        best: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # per ε: point, loss, broken
        traces: list[list[Trace]] = [[] for _ in eps]
        # Restart by restart (the starts were drawn above, in one order whatever the stopping): with early stop
        # a restart attacks only the examples no earlier restart broke at its ε.
        for r in range(self.restarts):
            mine = [j for j in range(len(jobs)) if j % self.restarts == r]
            for chunk in self._groups(mine, len(x), x.device.type):
                idx = [None if r == 0 or not self.early_stop else (~best[jobs[j][0]][2]).nonzero().squeeze(1)
                       for j in chunk]  # fmt: skip
                parts = [x if i is None else x[i] for i in idx]
                sizes = [len(p) for p in parts]
                radii = torch.cat([_radii(jobs[j][1], p) for j, p in zip(chunk, parts, strict=True)])
                start = None
                if any(starts[j] is not None for j in chunk):
                    start = torch.cat([p if starts[j] is None else starts[j] if i is None else starts[j][i]
                                       for j, p, i in zip(chunk, parts, idx, strict=True)])  # fmt: skip
                xs = torch.cat(parts)
                ys = torch.cat([y if i is None else y[i] for i in idx])
                adv, loss, fooled, trace = self.descend(model, xs, ys, radii, start, bounds)
                offset = 0
                for j, i, m in zip(chunk, idx, sizes, strict=True):
                    part = slice(offset, offset + m)
                    offset += m
                    a, lo, w = adv[part], loss[part], None if fooled is None else fooled[part]
                    t = Trace(trace.losses[:, part], trace.fooled_on_path[part], trace.grad_zero[part],
                              trace.grad_nonfinite[part])  # fmt: skip
                    if i is not None:  # back to the whole batch: the rest were broken before this restart
                        a, lo, w, t = _scatter(x, i, a, lo, w, t)
                    k = jobs[j][0]
                    traces[k].append(t)
                    if r == 0:
                        best[k] = (a, lo, torch.zeros_like(y, dtype=torch.bool) if w is None else w)
                        continue
                    best_x, best_loss, done = best[k]  # restarts > 1: every restart's point is scored
                    take = (w & ~done) | (~done & ~w & (lo > best_loss))
                    best[k] = (torch.where(take.view(shape), a, best_x), torch.where(take, lo, best_loss), done | w)
        return [(best[k][0], Trace.merge(traces[k])) for k in range(len(eps))]

    def _groups(self, jobs: list[int], batch: int, device: str) -> Iterator[list[int]]:
        """The jobs in groups that go through the network as one batch: on CUDA as many as fit
        `MAX_GROUP_IMAGES` (one launch of k·B images costs far less than k launches); on the CPU one at a
        time (measured: concatenating evicts the activations from cache and is slower)."""
        group = max(1, min(len(jobs), MAX_GROUP_IMAGES // max(batch, 1))) if device == "cuda" else 1
        for g in range(0, len(jobs), group):
            yield jobs[g : g + group]

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


def _scatter(
    x: torch.Tensor, idx: torch.Tensor, adv: torch.Tensor, loss: torch.Tensor, wrong: torch.Tensor | None, t: Trace
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Trace]:
    """A restart's results on the examples `idx` of the batch `x` as whole-batch tensors: the others (broken
    by an earlier restart) are never taken from it (loss −∞, not misclassified, no trace)."""
    n = len(x)
    full_loss = torch.full((n,), -math.inf, device=x.device, dtype=loss.dtype).index_copy(0, idx, loss)
    full_wrong = torch.zeros(n, dtype=torch.bool, device=x.device)
    if wrong is not None:
        full_wrong = full_wrong.index_copy(0, idx, wrong)
    losses = torch.full((len(t.losses), n), -math.inf, device=x.device, dtype=t.losses.dtype)
    losses = losses.index_copy(1, idx, t.losses)
    flags = [torch.zeros(n, dtype=torch.bool, device=x.device).index_copy(0, idx, f)
             for f in (t.fooled_on_path, t.grad_zero, t.grad_nonfinite)]  # fmt: skip
    return x.index_copy(0, idx, adv), full_loss, full_wrong, Trace(losses, *flags)


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
    early_stop: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("restarts", self.restarts, 1)
        _check_flag("early_stop", self.early_stop)

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
                       bounds=bounds, precision=self.precision, early_stop=self.early_stop)  # fmt: skip


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
    early_stop: bool = False

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_int("restarts", self.restarts, 1)
        _check_flag("early_stop", self.early_stop)
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
                       bounds=bounds, precision=self.precision, early_stop=self.early_stop)  # fmt: skip


@dataclass(frozen=True)
class APGDDLR(APGD):
    """APGD on the difference-of-logits-ratio loss (at least 3 classes)."""

    name: ClassVar[str] = "apgd-dlr"
    loss: ClassVar[str] = "dlr"


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y − max_{j≠y} z_j per example: below 0 exactly when the example is misclassified."""
    other = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return logits.gather(1, y[:, None]).squeeze(1) - other


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The share of the image a square covers at `query` of `queries`: p_init, halved at fixed points of the
    budget (Andriushchenko et al. 2020, the schedule rescaled to 10,000 queries)."""
    at = int(query / queries * 10_000)
    halvings = sum(at > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2**halvings


@dataclass(frozen=True)
class Square(Attack):
    """The L∞ Square attack (Andriushchenko et al. 2020): a score-based random search that needs no gradient.
    From vertical stripes of ±ε, each query redraws the ±ε of one square window per channel, at a random
    place per example, and keeps the change if it lowers the margin z_y − max_{j≠y} z_j; the window shrinks on a
    fixed schedule. An example stops at its first misclassified point; `restarts` start again from new stripes
    on the examples no earlier restart broke. Queries are forwards only, batched over the examples still
    robust; the random draws come from the CPU generator, the same on every device."""

    name: ClassVar[str] = "square"
    random_start: ClassVar[bool] = True  # type: ignore[misc]
    steps: int = 5000  # the query budget per example and restart
    p_init: float = 0.8
    restarts: int = 1
    seed: int = 0
    precision: ClassVar[str] = "fp32"  # type: ignore[misc]

    def __post_init__(self) -> None:
        _check_int("queries", self.steps, 1)
        _check_int("restarts", self.restarts, 1)
        if isinstance(self.p_init, bool) or not isinstance(self.p_init, (int, float)) or not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init!r}")

    def size_for(self, eps: float) -> float:
        return float(self.p_init)  # stored as the step size: with the queries, what sets the search

    def attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], bounds: Bounds,
        generator: torch.Generator,
    ) -> list[tuple[torch.Tensor, Trace]]:  # fmt: skip
        return [self._search(model, x, y, float(e), bounds, generator) for e in eps]

    def _search(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: Bounds, g: torch.Generator
    ) -> tuple[torch.Tensor, Trace]:
        c, h, w = x.shape[1:]
        lo, hi = (x - eps).clamp(min=bounds[0]), (x + eps).clamp(max=bounds[1])

        best = x.clone()
        with torch.no_grad():
            margin = _margin(model(x).float(), y)  # misclassified clean: broken as it is
        first = margin.clone()
        for _ in range(self.restarts):
            idx = (margin >= 0).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            signs = torch.randint(0, 2, (len(idx), c, 1, w), generator=g).to(x.device, x.dtype) * 2 - 1
            # The examples still robust, compacted: (their index, clean image, box, current point, margin).
            ids, base, a, b = idx, x[idx], lo[idx], hi[idx]
            cur = torch.minimum(torch.maximum(base + eps * signs, a), b)  # vertical stripes of ±ε
            with torch.no_grad():
                cur_margin = _margin(model(cur).float(), y[ids])
            rows = torch.arange(h, device=x.device)[None, :, None]
            cols = torch.arange(w, device=x.device)[None, None, :]
            for q in range(1, self.steps + 1):
                done = cur_margin < 0
                if bool(done.any()) or q == self.steps:  # record what is settled; go on with the rest
                    keep = done if q < self.steps else torch.ones_like(done)
                    improved = keep & (cur_margin < margin[ids])
                    best[ids[improved]] = cur[improved]
                    margin[ids[improved]] = cur_margin[improved]
                    live = ~keep
                    ids, base, a, b, cur, cur_margin = (t[live] for t in (ids, base, a, b, cur, cur_margin))
                if len(ids) == 0:
                    break
                fraction = square_fraction(self.p_init, q, self.steps)
                side = max(1, min(round(math.sqrt(fraction * h * w)), h - 1, w - 1))
                top = torch.randint(0, h - side + 1, (len(ids),), generator=g).to(x.device)
                left = torch.randint(0, w - side + 1, (len(ids),), generator=g).to(x.device)
                inside_rows = (rows >= top[:, None, None]) & (rows < (top + side)[:, None, None])
                inside_cols = (cols >= left[:, None, None]) & (cols < (left + side)[:, None, None])
                window = (inside_rows & inside_cols)[:, None]
                trial, redraw = cur, torch.ones(len(ids), dtype=torch.bool, device=x.device)
                for _ in range(4):  # a window drawn as it already is would waste the query: draw it again
                    bits = torch.randint(0, 2, (len(ids), c, 1, 1), generator=g).to(x.device, x.dtype)
                    drawn = torch.minimum(torch.maximum(torch.where(window, base + (bits * 2 - 1) * eps, cur), a), b)
                    trial = torch.where(redraw.view(-1, 1, 1, 1), drawn, trial)
                    redraw = ((trial - cur).abs() < 1e-7).flatten(1).all(1)
                    if not bool(redraw.any()):
                        break
                with torch.no_grad():
                    trial_margin = _margin(model(trial).float(), y[ids])
                better = trial_margin < cur_margin
                cur = torch.where(better.view(-1, 1, 1, 1), trial, cur)
                cur_margin = torch.where(better, trial_margin, cur_margin)
        broken = margin < 0
        trace = Trace(torch.stack([first, margin]).neg(), broken, torch.zeros_like(broken), torch.zeros_like(broken))
        return best, trace


ATTACK_TYPES: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "ifgsm": IFGSM,
    "pgd": PGD,
    "apgd-ce": APGD,
    "apgd-dlr": APGDDLR,
    "square": Square,
}


def make_attack(
    name: str, *, steps: int | None = None, step_size: float | None = None, restarts: int = 1, seed: int = 0,
    precision: str = "fp32", early_stop: bool = False,
) -> Attack:  # fmt: skip
    """The attack `name` (a key of ATTACK_TYPES) with the settings it takes (`config.ATTACKS[name].options`);
    `steps=None` means the attack's default, and a setting the attack does not take is ignored (FGSM has
    no steps). `config.AttackConfig.validate` is where a user is told so."""
    if name not in ATTACK_TYPES:
        raise ValueError(f"attack must be one of {tuple(ATTACK_TYPES)}, got {name!r}")
    given = {"steps": steps, "step_size": step_size, "restarts": restarts, "seed": seed, "precision": precision,
             "early_stop": early_stop}  # fmt: skip
    options = ATTACKS[name].options
    return ATTACK_TYPES[name](**{k: v for k, v in given.items() if k in options and v is not None})


# --- the public functions (docs/API.md) -----------------------------------------------------------


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
    early_stop: bool = False,
) -> torch.Tensor:
    """L∞ PGD (Madry et al. 2018); `step_size=None` means `2.5 * eps / steps`. Random starts are drawn
    from `generator` (default: a generator seeded 0, so the same call gives the same points). `early_stop`:
    an example misclassified clean or at any step is returned at its first misclassified point and leaves
    the batch (robust accuracy counts it broken, as AutoAttack does); the others' points are unchanged."""
    attack = PGD(steps=steps, step_size=step_size, restarts=restarts, random_start=random_start,
                 early_stop=early_stop)  # fmt: skip
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
    early_stop: bool = False,
) -> torch.Tensor:
    """APGD (Croce & Hein 2020) on `loss` "ce" or "dlr"; the best point per example is returned.
    `early_stop`: as for `pgd`."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    attack = ATTACK_TYPES[f"apgd-{loss}"](steps=steps, restarts=restarts, early_stop=early_stop)  # type: ignore[call-arg]
    return attack(model, images, labels, eps, bounds=bounds, generator=generator)


def square(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """The L∞ Square attack (Andriushchenko et al. 2020): gradient-free, `queries` forwards per example and
    restart at most, each example returned at its first misclassified point (else its point of least margin)."""
    return Square(steps=queries, p_init=p_init, restarts=restarts)(model, images, labels, eps, bounds=bounds,
                                                                    generator=generator)  # fmt: skip


# --- crafting and scoring -------------------------------------------------------------------------
