"""The same attacks through torchattacks or foolbox, for cross-checking the native loop.

Both live in the optional extra `[backends]`: torchattacks 3.5.1 pins `requests~=2.25.1`, a release
with known CVEs, so it is never a core dependency. `craft` returns one adversarial tensor per ε (on
the CPU), which the native engine then scores exactly as it scores its own examples. An attack
without a counterpart in a library is refused with one line, and so are restarts where the library's
attack has none. The libraries draw their random starts from torch's global generator: each `craft`
runs on a fork of it seeded with the attack's `seed`, so it is reproducible and leaves the caller's
random state as it found it (torchattacks' APGD reseeds the global generator itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from robustbench_mixup.attacks.methods import Attack
from robustbench_mixup.learning.devices import frozen, model_device
from robustbench_mixup.measures.gradients import attack_loss
from robustbench_mixup.settings.config import Backend
from robustbench_mixup.settings.errors import UsageError

BACKENDS = Backend.values()


def _torchattacks(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> list:
    import torchattacks

    def pgd(e: float) -> nn.Module:
        return torchattacks.PGD(model, eps=e, alpha=attack.size_for(e), steps=attack.steps,
                                random_start=attack.random_start)  # fmt: skip

    def apgd(e: float) -> nn.Module:
        return torchattacks.APGD(model, eps=e, steps=attack.steps, n_restarts=attack.restarts, loss=attack.loss,
                                 seed=attack.seed)  # fmt: skip

    make = {
        "fgsm": lambda e: torchattacks.FGSM(model, eps=e),
        "ifgsm": lambda e: torchattacks.BIM(model, eps=e, alpha=attack.size_for(e), steps=attack.steps),
        "pgd": pgd,
        "apgd-ce": apgd,
        "apgd-dlr": apgd,
    }[attack.name]
    if getattr(attack, "loss", "ce") == "dlr":  # torchattacks would fail on an index: the native refusal instead
        with torch.no_grad():
            attack_loss(model(x[:1]), y[:1], "dlr")
    return [make(e)(x, y) for e in eps]


def _foolbox(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> list:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)  # else foolbox picks cuda if present
    if attack.name == "fgsm":  # foolbox takes every ε in one call
        _, clipped, _ = fb.attacks.LinfFastGradientAttack(random_start=False)(fmodel, x, y, epsilons=eps)
        return list(clipped)
    result = []
    for e in eps:  # the step is absolute, so one call per ε
        if attack.name == "pgd":
            atk = fb.attacks.LinfPGD(abs_stepsize=attack.size_for(e), steps=attack.steps,
                                     random_start=attack.random_start)  # fmt: skip
        else:
            atk = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=attack.size_for(e), steps=attack.steps,
                                                      random_start=False)  # fmt: skip
        _, clipped, _ = atk(fmodel, x, y, epsilons=[e])
        result.append(clipped[0])
    return result


_APGD = frozenset({"apgd-ce", "apgd-dlr"})
# backend -> (the attacks it has, those of them it can restart, the function that runs them on one batch)
LIBRARIES: dict[str, tuple[frozenset[str], frozenset[str], Callable[..., list]]] = {
    "torchattacks": (frozenset({"fgsm", "ifgsm", "pgd", "apgd-ce", "apgd-dlr"}), _APGD, _torchattacks),
    "foolbox": (frozenset({"fgsm", "ifgsm", "pgd"}), frozenset(), _foolbox),  # foolbox has no APGD
}


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators (the CPU's and `device`'s) seeded with `seed`, restored on exit."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


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
    supported, restartable, run = LIBRARIES[backend]
    if attack.name not in supported:
        raise UsageError(f"backend {backend!r} has no {attack.name}: use --backend native")
    if attack.restarts > 1 and attack.name not in restartable:
        raise UsageError(f"backend {backend!r} has no restarts for {attack.name}: use --backend native")
    device = model_device(source, images.device)
    out: list[list[torch.Tensor]] = [[] for _ in eps]
    with frozen(source), _seeded(attack.seed, device):
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            for i, a in enumerate(run(attack, source, x, y, list(eps))):
                out[i].append(a.detach().cpu())
            if progress is not None:
                progress(len(y))
    return [torch.cat(chunks) for chunks in out]
