"""Architectures of models trained elsewhere, wrapped so that each takes [0, 1] images and normalizes them itself:
the package's own networks, any torchvision classification model (`torchvision:NAME`), any timm model (`timm:NAME`,
the `[zoo]` extra), or a network the user's own code builds (`MODULE:FUNCTION`).

An imported model that is not one of the package's own is an `Imported`: the declared per-channel mean and std as
buffers, then the network. Its checkpoint records `{"name": "imported", "kwargs": {"arch", "in_shape",
"num_classes", "mean", "std"}}`, checked by `check_imported_spec` before anything is built. A stored file can name
a model that torchvision or timm lists; it can also name a user's factory, but that module is imported only if the
user names it in this process (`trust_factory`, which `robust-eval import --arch MODULE:FUNCTION` calls) or in the
environment variable `ROBUST_EVAL_FACTORIES`: no code is imported because a file says so.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import re
import sys
from typing import Any

import torch
from torch import nn

from robustbench_mixup.learning.models import MAX_CLASSES, MAX_INPUTS, MODELS, ModelSpec, Normalize
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.imported import FACTORY, TIMM, TORCHVISION

IMPORTED = "imported"  # the registry name of an `Imported` in a checkpoint
FACTORIES_ENV = "ROBUST_EVAL_FACTORIES"  # comma-separated MODULE:FUNCTION the user lets later commands import
_NAME = re.compile(r"[a-z][a-z0-9_.]{0,79}")
_named: set[str] = set()  # the factories named in this process (an import's --arch)


def torchvision_models() -> list[str]:
    """The names of torchvision's classification models (`torchvision:NAME` accepts exactly these)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise UsageError("timm:NAME needs timm: pip install 'robust-eval[zoo]'") from None
    return timm


def is_factory(arch: str) -> bool:
    """Whether `arch` names the user's own factory (MODULE:FUNCTION) rather than a network of a library's."""
    return arch not in MODELS and not arch.startswith((TORCHVISION, TIMM)) and FACTORY.fullmatch(arch) is not None


def trust_factory(arch: str) -> None:
    """Let this process import the user's factory `arch` (MODULE:FUNCTION): the user named it."""
    _named.add(arch)


def trusted_factories() -> set[str]:
    """The factories this process may import: named in it, or listed in `ROBUST_EVAL_FACTORIES`."""
    listed = {a.strip() for a in os.environ.get(FACTORIES_ENV, "").split(",") if a.strip()}
    return _named | listed


def check_arch(arch: object) -> str:
    """`arch` if it names an architecture this suite can build, else one UsageError saying what is accepted.
    A user's factory is checked for its form here; it is imported only when built."""
    own = ", ".join(MODELS)
    if isinstance(arch, str) and arch in MODELS:
        return arch
    if isinstance(arch, str) and arch.startswith(TORCHVISION):
        name = arch[len(TORCHVISION) :]
        if _NAME.fullmatch(name) and name in torchvision_models():
            return arch
        raise UsageError(f"--arch {arch!r}: torchvision has no classification model {name!r} "
                         f"(e.g. torchvision:resnet18; the list: torchvision.models.list_models())")  # fmt: skip
    if isinstance(arch, str) and arch.startswith(TIMM):
        name = arch[len(TIMM) :]
        if _NAME.fullmatch(name) and name in _timm().list_models():
            return arch
        raise UsageError(f"--arch {arch!r}: timm has no model {name!r} (e.g. timm:resnet18; the list: "
                         "timm.list_models())")  # fmt: skip
    if isinstance(arch, str) and is_factory(arch):
        return arch
    raise UsageError(f"--arch must be one of the package's networks ({own}), torchvision:NAME, timm:NAME or your "
                     f"factory MODULE:FUNCTION, got {arch!r}")  # fmt: skip


def _factory(arch: str) -> Any:
    """The user's function `arch` names, imported only if trusted; its failures are one UsageError each."""
    if arch not in trusted_factories():
        raise UsageError(f"the network comes from your code {arch!r}, which robust-eval imports only when you name "
                         f"it: set {FACTORIES_ENV}={arch}")  # fmt: skip
    module, function = arch.rsplit(":", 1)
    try:
        with _cwd_on_path():
            found = importlib.import_module(module)
    except Exception as exc:  # the user's module: whatever it raises is its own answer, said in one line
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
        raise UsageError(f"--arch {arch!r}: cannot import {module!r} ({why}); it must be importable from the "
                         "current folder or PYTHONPATH") from None  # fmt: skip
    factory = getattr(found, function, None)
    if not callable(factory):
        raise UsageError(f"--arch {arch!r}: module {module!r} has no function {function!r}")
    return factory


@contextlib.contextmanager
def _cwd_on_path() -> Any:
    """The current folder on the import path for the duration (a console script does not put it there)."""
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        if added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())


def network(arch: str, in_shape: list[int], num_classes: int) -> nn.Module:
    """The bare network `arch` names (no normalization), with `num_classes` outputs for inputs of `in_shape`."""
    arch = check_arch(arch)
    if arch.startswith(TORCHVISION):
        import torchvision

        return torchvision.models.get_model(arch[len(TORCHVISION) :], weights=None, num_classes=num_classes)
    if arch.startswith(TIMM):
        return _timm().create_model(arch[len(TIMM) :], pretrained=False, num_classes=num_classes,
                                    in_chans=in_shape[0])  # fmt: skip
    factory = _factory(arch)
    try:
        takes = "num_classes" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    try:
        net = factory(num_classes=num_classes) if takes else factory()
    except Exception as exc:  # the user's code
        raise UsageError(f"--arch {arch!r}: the factory raised {type(exc).__name__}: "
                         f"{str(exc).strip()[:160]}") from None  # fmt: skip
    if not isinstance(net, nn.Module):
        raise UsageError(f"--arch {arch!r}: the factory returned a {type(net).__name__}, not a torch.nn.Module")
    return net


class Imported(nn.Module):
    """A network trained elsewhere behind the declared normalization: forward(x) = net((x − mean) / std)."""

    def __init__(self, arch: str, in_shape: list[int], num_classes: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = network(arch, list(in_shape), num_classes)
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
    if not isinstance(arch, str) or arch in MODELS:
        raise UsageError(f"model {IMPORTED!r}: arch must be torchvision:NAME, timm:NAME or MODULE:FUNCTION, "
                         f"got {arch!r}")  # fmt: skip
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
