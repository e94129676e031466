"""6. `probe`: points per second of the two between-pairs probes, and the gradient-norm probe vs its floor.

The points are 11 λ between each of P pairs of test images of different classes. The floor is one
bare forward+backward (input gradient of the cross-entropy) per point, in chunks of the same size as
the probe's, on points mixed beforehand: what the gradient-norm probe cannot do without.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_mixup.learning.devices import frozen
from robustbench_mixup.measures.interpolation import (
    MAX_POINTS,
    input_gradient_norm,
    interpolation_miss_rate,
    lambda_grid,
    sample_pairs,
)

from .setups import Setup
from .timing import Result, Target, measure

LAMBDAS = 11


def probe(setup: Setup, *, pairs: int, repeat: int, warmup: int = 1) -> Result:
    model, dev = setup.trained, setup.device
    i, j = sample_pairs(setup.test_y.cpu(), pairs, same_class=False, generator=torch.Generator().manual_seed(0))
    x_i, y_i, x_j, y_j = setup.test_x[i], setup.test_y[i], setup.test_x[j], setup.test_y[j]
    lam = lambda_grid(LAMBDAS).to(torch.float32)
    shape = (-1,) + (1,) * x_i.ndim
    lam_dev = lam.to(dev)
    points = (lam_dev.view(shape) * x_i + (1 - lam_dev.view(shape)) * x_j).flatten(0, 1)  # λ-major
    labels = y_i.repeat(LAMBDAS)
    chunk = max(1, MAX_POINTS.get(dev.type, 128) // LAMBDAS) * LAMBDAS  # the probe's points per pass

    def floor() -> None:
        with frozen(model):
            for s in range(0, len(labels), chunk):
                x = points[s : s + chunk].detach().requires_grad_(True)
                loss = F.cross_entropy(model(x), labels[s : s + chunk], reduction="sum")
                torch.autograd.grad(loss, x)

    timings, _ = measure(
        {
            "miss_rate": lambda: interpolation_miss_rate(model, x_i, y_i, x_j, y_j, lam),
            "gradient_norm": lambda: input_gradient_norm(model, x_i, y_i, x_j, y_j, lam),
            "floor": floor,
        },
        repeat=repeat, device=dev, warmup=warmup,
    )  # fmt: skip
    n = pairs * LAMBDAS
    result = Result("probe", setup.name, timings, notes={"pairs": pairs, "lambdas": LAMBDAS, "points": n})
    result.rates = {k: n / t.median for k, t in timings.items()}
    result.targets.append(Target("gradient_norm / floor", result.ratio("gradient_norm", "floor"), "<=", 1.15))
    return result
