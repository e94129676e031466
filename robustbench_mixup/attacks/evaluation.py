"""`evaluate`: the suite's attacks on any models, in a notebook.

Give it models you already have (any `nn.Module` mapping [0, 1] images to logits, keyed by a name), one test
set and a list of attacks and ε; it returns every model's per-example outcomes on the SAME examples, a table of
accuracies with their intervals, and the paired difference of any two models (McNemar's exact test on the
examples where they disagree, Newcombe's interval), which is how the suite's verdicts compare models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from robustbench_mixup.attacks.engine import craft, evaluate_attack, score
from robustbench_mixup.attacks.methods import make_attack
from robustbench_mixup.measures.stats import paired_difference, wilson_interval
from robustbench_mixup.settings.config import ATTACKS

if TYPE_CHECKING:
    import pandas

CLEAN, WORST = "clean", "worst"  # the attack names of the clean pass and of the worst case over the attacks
Key = tuple[str, str, str, float]  # (model, attack, mode, ε); mode "white", "black" or "clean"


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` measured: per (model, attack, mode, ε), whether each example was still classified
    correctly. Clean accuracy is attack "clean" (mode "clean", ε 0); with two or more attacks, "worst" is
    the white-box worst case (an example counts as robust only if no attack broke it)."""

    models: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    seed: int
    outcomes: dict[Key, torch.Tensor]  # (N,) bool on the CPU, the same N examples for every key

    @property
    def n(self) -> int:
        return len(next(iter(self.outcomes.values())))

    def frame(self) -> pandas.DataFrame:
        """One row per model × attack × mode × ε: `accuracy`, its 95% Wilson interval `lo`, `hi`, and `n`."""
        import pandas

        rows = []
        for (model, attack, mode, eps), correct in self.outcomes.items():
            hits = int(correct.sum())
            lo, hi = wilson_interval(hits, len(correct))
            rows.append({"model": model, "attack": attack, "mode": mode, "eps": eps, "accuracy": hits / len(correct),
                         "lo": lo, "hi": hi, "n": len(correct)})  # fmt: skip
        return pandas.DataFrame(rows)

    def compare(self, a: str, b: str, *, confidence: float = 0.95) -> pandas.DataFrame:
        """Model `b` against model `a` on the same examples, one row per attack × mode × ε both were measured
        under: `diff` (accuracy of b − accuracy of a), its interval `lo`, `hi` (Newcombe), `p_value` (exact
        McNemar), `n01` (a wrong, b right), `n10` (a right, b wrong), `n`."""
        import pandas

        for name in (a, b):
            if name not in self.models:
                raise ValueError(f"compare takes two of the evaluated models {self.models}, got {name!r}")
        rows = []
        for (model, attack, mode, eps), correct in self.outcomes.items():
            if model != a or (b, attack, mode, eps) not in self.outcomes:
                continue
            d = paired_difference(correct.numpy(), self.outcomes[b, attack, mode, eps].numpy(), confidence=confidence)
            rows.append({"attack": attack, "mode": mode, "eps": eps, "diff": d.diff, "lo": d.lo, "hi": d.hi,
                         "p_value": d.p_value, "n01": d.n01, "n10": d.n10, "n": d.n})  # fmt: skip
        return pandas.DataFrame(rows)


def _checked(
    models: object, images: object, labels: object, attacks: object, eps: object, source: object, seed: object,
    batch_size: object,
) -> tuple[tuple[str, ...], tuple[float, ...]]:  # fmt: skip
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict of name -> torch.nn.Module")
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"models' keys must be non-empty names (str), got {name!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be a torch.nn.Module, got {type(model).__name__}")
    if source is not None and not isinstance(source, nn.Module):
        raise TypeError(f"source must be a torch.nn.Module or None, got {type(source).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise TypeError("images must be a float tensor of shape (N, C, H, W) with values in [0, 1]")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise TypeError(f"labels must be an int64 tensor of shape ({len(images)},), one per image")
    if len(labels) == 0:
        raise ValueError("images must hold at least one example")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must lie in [0, 1] (pixel space, so that ε is in pixel units): scale them, and put "
                         "any normalization inside the model")  # fmt: skip
    if isinstance(attacks, str) or not isinstance(attacks, Sequence) or not attacks:
        raise TypeError(f"attacks must be a non-empty sequence of attack names ({', '.join(ATTACKS)})")
    for name in attacks:
        if name not in ATTACKS:
            raise ValueError(f"attacks must be among {', '.join(ATTACKS)}, got {name!r}")
    if isinstance(eps, (str, bytes)) or not isinstance(eps, Sequence) or not eps:
        raise TypeError("eps must be a non-empty sequence of ε values in pixel units, e.g. (8/255,)")
    for e in eps:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not (math.isfinite(e) and 0 < e <= 1):
            raise ValueError(f"eps values must lie in (0, 1] (pixel units), got {e!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int ≥ 1, got {batch_size!r}")
    return tuple(dict.fromkeys(attacks)), tuple(dict.fromkeys(float(e) for e in eps))


def evaluate(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    attacks: Sequence[str] = ("fgsm", "pgd"),
    eps: Sequence[float] = (8 / 255,),
    source: nn.Module | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> Evaluation:
    """Attack every model of `models` on the same (images, labels) with each of `attacks` (names of the suite's
    registry: "fgsm", "ifgsm", "pgd", "apgd-ce", "apgd-dlr", at their default settings) at each ε of `eps`.

    White box: each model is attacked with its own gradients. With `source` (another model), black box too:
    the examples crafted on `source` are classified by every model. Random starts are drawn from `seed`, so
    the same call gives the same outcomes. Models come back in the mode they had, with their flags.
    """
    names, eps_values = _checked(models, images, labels, attacks, eps, source, seed, batch_size)
    models = dict(models)
    outcomes: dict[Key, torch.Tensor] = {}
    clean = score(models, images, labels, [images], batch_size=batch_size)
    for model in models:
        outcomes[model, CLEAN, CLEAN, 0.0] = clean.correct[model][0]
    for attack_name in names:
        attack = make_attack(attack_name, seed=seed)
        for model_name, model in models.items():
            counts = evaluate_attack(model, {model_name: model}, images, labels, eps_values, attack=attack,
                                     batch_size=batch_size)  # fmt: skip
            for i, e in enumerate(eps_values):
                outcomes[model_name, attack_name, "white", e] = counts.correct[model_name][i]
        if source is not None:
            sets = craft(attack, source, images, labels, eps_values, batch_size=batch_size)
            counts = score(models, images, labels, sets, batch_size=batch_size)
            for model_name in models:
                for i, e in enumerate(eps_values):
                    outcomes[model_name, attack_name, "black", e] = counts.correct[model_name][i]
    if len(names) > 1:
        for model_name in models:
            for e in eps_values:
                robust = torch.stack([outcomes[model_name, a, "white", e] for a in names]).all(0)
                outcomes[model_name, WORST, "white", e] = robust
    return Evaluation(tuple(models), names, eps_values, seed, outcomes)
