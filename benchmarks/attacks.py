"""Attack speed against torchattacks and foolbox, and against the floor of the work an attack must do.

1. `fgsm_curve`: an 8-ε FGSM robust-accuracy curve. Ours takes one input gradient per batch and reuses
   it for every ε; torchattacks' FGSM runs once per ε; foolbox's LinfFastGradientAttack gets all ε at
   once. Floor: one forward+backward per batch, then one forward per further ε.
2. `ifgsm`: 10-step I-FGSM at one ε. Ours vs torchattacks' BIM vs foolbox's LinfBasicIterativeAttack;
   floor: 10 bare forward+backward passes per batch (input gradients only) and one forward to score.

Every implementation attacks the same frozen model on the same images in batches of the same size;
the accuracies they report must agree.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from robustbench_mixup.attacks import input_gradient, robust_accuracy
from robustbench_mixup.devices import frozen

from .setups import Setup
from .timing import Result, Target, measure

EPS8 = [0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]
IFGSM_EPS = 0.1
STEPS = 10
BATCH = 250
AGREE = 0.002  # |accuracy difference| allowed between implementations: 2 examples in 1,000


def _batches(x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, len(y), BATCH):
        yield x[i : i + BATCH], y[i : i + BATCH]


def _accuracy(model: nn.Module, adversarial: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> float:
    with torch.no_grad():
        return sum(int((model(a).argmax(1) == yb).sum()) for a, yb in adversarial) / n


def _agreement(result: Result, accuracies: dict[str, list[float]]) -> None:
    ours = accuracies["ours"]
    worst = max(abs(a - b) for name in ("torchattacks", "foolbox") for a, b in zip(accuracies[name], ours, strict=True))
    result.notes["accuracies"] = accuracies
    result.targets.append(Target("max |accuracy − ours|", worst, "<=", AGREE))


def _compare(
    benchmark: str, setup: Setup, fns: dict, notes: dict, *, faster: float, floor: float, repeat: int, warmup: int
) -> Result:
    """Time ours, torchattacks, foolbox and the floor; targets: each library/ours ≥ `faster`, ours/floor ≤ `floor`."""
    timings, out = measure(fns, repeat=repeat, device=setup.device, warmup=warmup)
    result = Result(benchmark, setup.name, timings, notes={"n": len(setup.test_y), "batch": BATCH, **notes})
    result.targets += [
        Target("torchattacks / ours", result.ratio("torchattacks", "ours"), ">=", faster),
        Target("foolbox / ours", result.ratio("foolbox", "ours"), ">=", faster),
        Target("ours / floor", result.ratio("ours", "floor"), "<=", floor),
    ]
    _agreement(result, {k: out[k] for k in ("ours", "torchattacks", "foolbox")})
    return result


def fgsm_curve(setup: Setup, *, repeat: int, warmup: int = 1) -> Result:
    import foolbox as fb
    import torchattacks

    model, x, y, n = setup.trained, setup.test_x, setup.test_y, len(setup.test_y)
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=setup.device)
    attack = fb.attacks.LinfFastGradientAttack(random_start=False)

    def ours() -> list[float]:
        return robust_accuracy(model, x, y, EPS8, batch_size=BATCH).tolist()

    def ta() -> list[float]:
        return [_accuracy(model, [(torchattacks.FGSM(model, eps=e)(xb, yb), yb) for xb, yb in _batches(x, y)], n)
                for e in EPS8]  # fmt: skip

    def foolbox() -> list[float]:
        hits = torch.zeros(len(EPS8))
        for xb, yb in _batches(x, y):
            _, _, success = attack(fmodel, xb, yb, epsilons=EPS8)
            hits += (~success).sum(1).cpu()
        return (hits / n).tolist()

    def floor() -> None:
        with frozen(model), torch.no_grad():
            for xb, yb in _batches(x, y):
                grad, _ = input_gradient(model, xb, yb)
                for e in EPS8[1:]:
                    model(xb + e * grad.sign())

    fns = {"ours": ours, "torchattacks": ta, "foolbox": foolbox, "floor": floor}
    return _compare("fgsm_curve", setup, fns, {"eps": EPS8}, faster=2.5, floor=1.15, repeat=repeat, warmup=warmup)


def ifgsm(setup: Setup, *, repeat: int, warmup: int = 1) -> Result:
    import foolbox as fb
    import torchattacks

    model, x, y, n = setup.trained, setup.test_x, setup.test_y, len(setup.test_y)
    e, size = IFGSM_EPS, IFGSM_EPS / STEPS
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=setup.device)
    attack = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=size, steps=STEPS, random_start=False)
    bim = torchattacks.BIM(model, eps=e, alpha=size, steps=STEPS)

    def ours() -> list[float]:
        return robust_accuracy(model, x, y, [e], attack="ifgsm", steps=STEPS, batch_size=BATCH).tolist()

    def ta() -> list[float]:
        return [_accuracy(model, [(bim(xb, yb), yb) for xb, yb in _batches(x, y)], n)]

    def foolbox() -> list[float]:
        return [sum(int((~attack(fmodel, xb, yb, epsilons=[e])[2]).sum()) for xb, yb in _batches(x, y)) / n]

    def floor() -> None:
        with frozen(model):
            for xb, yb in _batches(x, y):
                for _ in range(STEPS):
                    input_gradient(model, xb, yb)
                with torch.no_grad():
                    model(xb)

    fns = {"ours": ours, "torchattacks": ta, "foolbox": foolbox, "floor": floor}
    notes = {"eps": e, "steps": STEPS}
    return _compare("ifgsm", setup, fns, notes, faster=1.0, floor=1.10, repeat=repeat, warmup=warmup)
