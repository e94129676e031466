"""Architectures of models trained elsewhere: the package's own networks, or any torchvision classification model
(`torchvision:NAME`), wrapped so that it takes [0, 1] images and normalizes them itself.

An imported model that is not one of the package's own is an `Imported`: the declared per-channel mean and std as
buffers, then the network. Its checkpoint records `{"name": "imported", "kwargs": {"arch", "in_shape",
"num_classes", "mean", "std"}}`, checked by `check_imported_spec` before anything is built, so a stored file can
name only a classification model that torchvision lists (nothing is imported that a file names).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from robustbench_mixup.learning.models import MAX_CLASSES, MAX_INPUTS, MODELS, ModelSpec, Normalize
from robustbench_mixup.settings.errors import UsageError

IMPORTED = "imported"  # the registry name of an `Imported` in a checkpoint
TORCHVISION = "torchvision:"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def torchvision_models() -> list[str]:
    """The names of torchvision's classification models (`torchvision:NAME` accepts exactly these)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: object) -> str:
    """`arch` if it names an architecture this suite can build, else one UsageError saying what is accepted."""
    own = ", ".join(MODELS)
    if isinstance(arch, str) and arch in MODELS:
        return arch
    if isinstance(arch, str) and arch.startswith(TORCHVISION):
        name = arch[len(TORCHVISION) :]
        if _NAME.fullmatch(name) and name in torchvision_models():
            return arch
        raise UsageError(f"--arch {arch!r}: torchvision has no classification model {name!r} "
                         f"(e.g. torchvision:resnet18; the list: torchvision.models.list_models())")  # fmt: skip
    raise UsageError(f"--arch must be one of the package's networks ({own}) or torchvision:NAME, got {arch!r}")


class Imported(nn.Module):
    """A network trained elsewhere behind the declared normalization: forward(x) = net((x − mean) / std)."""

    def __init__(self, arch: str, in_shape: list[int], num_classes: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        import torchvision

        name = check_arch(arch)[len(TORCHVISION) :]
        self.normalize = Normalize(mean, std)
        self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        self.spec = ModelSpec(IMPORTED, {"arch": arch, "in_shape": list(in_shape), "num_classes": num_classes,
                                         "mean": list(mean), "std": list(std)})  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def check_imported_spec(kwargs: dict[str, Any]) -> None:
    """Raise UsageError unless `kwargs` are the arguments of an `Imported` this suite could have written."""
    if set(kwargs) != {"arch", "in_shape", "num_classes", "mean", "std"}:
        raise UsageError(
            f"model {IMPORTED!r}: arguments {sorted(kwargs)} are not arch, in_shape, num_classes, mean, std"
        )
    arch = kwargs["arch"]
    if not (isinstance(arch, str) and arch.startswith(TORCHVISION)):
        raise UsageError(f"model {IMPORTED!r}: arch must be torchvision:NAME, got {arch!r}")
    check_arch(arch)
    shape, k = kwargs["in_shape"], kwargs["num_classes"]
    ints = isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and not isinstance(d, bool)
                                                                and d >= 1 for d in shape)  # fmt: skip
    if not (ints and math.prod(shape) <= MAX_INPUTS):
        raise UsageError(f"in_shape must be [C, H, W] of positive ints with C·H·W ≤ {MAX_INPUTS:,}, got {shape!r}")
    if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_CLASSES):
        raise UsageError(f"num_classes must be an int in [1, {MAX_CLASSES:,}], got {k!r}")
    for key in ("mean", "std"):
        v = kwargs[key]
        if not (isinstance(v, list) and len(v) == shape[0] and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):  # fmt: skip
            raise UsageError(f"{key} must be {shape[0]} finite numbers (one per channel), got {v!r}")
    if not all(x > 0 for x in kwargs["std"]):
        raise UsageError(f"std must be > 0, got {kwargs['std']!r}")


def build_imported(**kwargs: Any) -> Imported:
    check_imported_spec(kwargs)
    return Imported(**kwargs)
