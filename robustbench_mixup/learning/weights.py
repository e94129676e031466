"""A user's weights, read at one boundary: a state dict in a safetensors file, or a PyTorch state dict read only
by `torch.load(weights_only=True)`. Nothing else is unpickled, and no code from a file is ever run.

Accepted: a mapping of parameter names to tensors, also wrapped as the usual training scripts save it (under a
`state_dict`, `model` or `model_state_dict` key; with the `module.` prefix of DataParallel/DistributedDataParallel
or the `_orig_mod.` prefix of `torch.compile`). Refused with one line each: a pickled whole model, anything that is
not such a mapping, non-finite values, and keys that do not fit the model (`fit`: the first few missing,
unexpected or misshapen ones, named).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import nn

from robustbench_mixup.settings.errors import UsageError

MAX_BYTES = 4 << 30  # far above any classifier this suite evaluates; a larger file is refused unread
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
HOW_TO_SAVE = "save the weights alone: torch.save(model.state_dict(), 'model.pt')"


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in the file at `path` (CPU tensors, wrappers and prefixes removed), checked."""
    p = Path(path)
    name = f"weights {str(p)!r}"
    if p.suffix not in SUFFIXES:
        raise UsageError(f"{name}: expected a state dict in a {' or '.join(SUFFIXES)} file, got {p.suffix or 'none'!r}")
    if not p.is_file():
        raise UsageError(f"{name} does not exist")
    if p.stat().st_size > MAX_BYTES:
        raise UsageError(f"{name} is {p.stat().st_size:,} bytes, more than any model this suite evaluates: refused")
    if p.suffix == ".safetensors":
        try:
            loaded: object = load_safetensors(p.read_bytes())
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"{name} is not a readable safetensors file: {str(exc)[:100]}") from None
    else:
        try:
            loaded = torch.load(p, map_location="cpu", weights_only=True)  # tensors and plain containers only
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{name} holds more than tensors, so it is not read ({first}); {HOW_TO_SAVE}") from None
        except Exception as exc:  # a damaged file: whatever the reader raises on it (KeyError on garbage, ...)
            why = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise UsageError(f"{name} is not a readable PyTorch file ({type(exc).__name__}: {why})") from None
    state = _unwrapped(loaded, name)
    for key, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise UsageError(f"{name}: {key!r} holds NaN or infinite values")
    return state


def _unwrapped(loaded: object, name: str) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for wrapper in (
            "state_dict",
            "model",
            "model_state_dict",
        ):  # {"state_dict": ..., "epoch": ...}, as scripts save
            inner = loaded.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not loaded:
        what = type(loaded).__name__ if not isinstance(loaded, Mapping) else "an empty mapping"
        raise UsageError(f"{name} holds {what}, not a state dict; {HOW_TO_SAVE}")
    bad = [k for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UsageError(f"{name} is not a mapping of names to tensors ({bad[0]!r} is not); {HOW_TO_SAVE}")
    state = dict(loaded)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def fit(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Load `state` into `model` strictly; keys missing, unexpected or of another shape are one line naming the
    first few of each."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (the model's: {tuple(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]  # fmt: skip
    found = (("missing", missing), ("unexpected", unexpected), ("misshapen", shapes))
    problems = [f"{what}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}" for what, keys in found if keys]
    if problems:
        raise UsageError(f"{name} does not fit the architecture: {'; '.join(problems)}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
