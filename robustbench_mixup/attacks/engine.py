"""craft, score, evaluate_attack: batches of images through the loop, outcomes per example."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from robustbench_mixup.attacks.descent import Bounds, Trace, _check, _check_dtype
from robustbench_mixup.attacks.methods import ATTACK_TYPES, Attack, Crafted, make_attack
from robustbench_mixup.learning.devices import frozen, model_device

Progress = Callable[[int], None]


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
    their own defaults, as docs/API.md says)."""
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
