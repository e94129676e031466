"""The same attacks through torchattacks or foolbox, for cross-checking the native loop.

Both live in the optional extra `[backends]`: torchattacks 3.5.1 pins `requests~=2.25.1`, a release
with known CVEs, so it is never a core dependency. `craft` returns one adversarial tensor per ε (on
the CPU), which the native engine then scores exactly as it scores its own examples. An attack
without a counterpart in a library is refused with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .attacks import Attack
from .config import Backend
from .devices import frozen, model_device
from .errors import UsageError

BACKENDS = Backend.values()


def _torchattacks(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> list:
    import torchattacks

    make = {
        "fgsm": lambda e: torchattacks.FGSM(model, eps=e),
        "ifgsm": lambda e: torchattacks.BIM(model, eps=e, alpha=attack.size_for(e), steps=attack.steps),
    }[attack.name]
    return [make(e)(x, y) for e in eps]


def _foolbox(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> list:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)  # else foolbox picks cuda if present
    if attack.name == "fgsm":  # foolbox takes every ε in one call
        _, clipped, _ = fb.attacks.LinfFastGradientAttack(random_start=False)(fmodel, x, y, epsilons=eps)
        return list(clipped)
    result = []
    for e in eps:  # the step is absolute, so one call per ε
        atk = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=attack.size_for(e), steps=attack.steps,
                                                  random_start=False)  # fmt: skip
        _, clipped, _ = atk(fmodel, x, y, epsilons=[e])
        result.append(clipped[0])
    return result


# backend -> (the attacks it has, the function that runs them on one batch)
LIBRARIES: dict[str, tuple[frozenset[str], Callable[..., list]]] = {
    "torchattacks": (frozenset({"fgsm", "ifgsm"}), _torchattacks),
    "foolbox": (frozenset({"fgsm", "ifgsm"}), _foolbox),
}


def craft(
    backend: str,
    attack: Attack,
    source: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Adversarial examples crafted on `source` by `backend`, one (N, C, H, W) tensor per ε."""
    supported, run = LIBRARIES[backend]
    if attack.name not in supported:
        raise UsageError(f"backend {backend!r} has no {attack.name}: use --backend native")
    device = model_device(source, images.device)
    out: list[list[torch.Tensor]] = [[] for _ in eps]
    with frozen(source):
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            for i, a in enumerate(run(attack, source, x, y, list(eps))):
                out[i].append(a.detach().cpu())
            if progress is not None:
                progress(len(y))
    return [torch.cat(chunks) for chunks in out]
