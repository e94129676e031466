"""The same attacks through torchattacks or foolbox, for cross-checking the native loop.

Both live in the optional extra `[backends]`: torchattacks 3.5.1 pins `requests~=2.25.1`, a release
with known CVEs, so it is never a core dependency. Each function returns one adversarial tensor per ε
(on the CPU), which the native engine then scores exactly as it scores its own examples.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import nn

from .attacks import frozen, model_device
from .errors import UsageError

BACKENDS = ("native", "torchattacks", "foolbox")


def require(backend: str) -> None:
    """Raise UsageError unless `backend` is known and importable."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend != "native" and importlib.util.find_spec(backend) is None:
        raise UsageError(
            f"backend {backend!r} is not installed: it comes with the optional extra, "
            "pip install 'robust-eval[backends]'"
        )


def craft(
    backend: str,
    source: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: Sequence[float],
    *,
    attack: str,
    steps: int,
    step_size: float | None,
    batch_size: int,
) -> list[torch.Tensor]:
    """Adversarial examples crafted on `source` by `backend`, one (N, C, H, W) tensor per ε."""
    device = model_device(source, images.device)
    out: list[list[torch.Tensor]] = [[] for _ in eps]
    with frozen(source):
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            adv = _craft_batch(backend, source, x, y, list(eps), attack, steps, step_size)
            for i, a in enumerate(adv):
                out[i].append(a.detach().cpu())
    return [torch.cat(chunks) for chunks in out]


def _craft_batch(
    backend: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float], attack: str,
    steps: int, step_size: float | None,
) -> list[torch.Tensor]:  # fmt: skip
    if backend == "torchattacks":
        import torchattacks

        result = []
        for e in eps:
            if attack == "fgsm":
                atk = torchattacks.FGSM(model, eps=e)
            else:
                atk = torchattacks.BIM(model, eps=e, alpha=e / steps if step_size is None else step_size, steps=steps)
            result.append(atk(x, y))
        return result
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)  # else foolbox picks cuda if present
    if attack == "fgsm":  # foolbox takes every ε in one call
        _, clipped, _ = fb.attacks.LinfFastGradientAttack(random_start=False)(fmodel, x, y, epsilons=eps)
        return list(clipped)
    result = []
    for e in eps:  # the step is absolute, ε / steps by default, so one call per ε
        size = e / steps if step_size is None else step_size
        atk = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=size, steps=steps, random_start=False)
        _, clipped, _ = atk(fmodel, x, y, epsilons=[e])
        result.append(clipped[0])
    return result
