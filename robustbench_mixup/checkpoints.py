"""Checkpoints: safetensors weights plus JSON metadata. Nothing is ever unpickled.

A checkpoint is one `.safetensors` file. Its tensors are the model's state dict under their usual names,
plus optional training state (SGD momentum, for `--resume`) under the `__extra__/` prefix. Its header
metadata holds one JSON document: the model's registry name and constructor arguments (what `load`
rebuilds it from), whatever the caller adds (dataset, training config, seed, metrics, epoch), the package
and torch versions, and a SHA-256 of every tensor, which `load` checks to catch tampering or corruption.
Files are written beside their final name and renamed into place, so a crash never leaves half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .errors import UsageError
from .fsutil import atomic_path
from .models import ModelSpec, build_model

EXTRA = "__extra__/"
_META_KEY = "robust_eval"


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any],
    extra: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write `model`'s weights and `metadata` (JSON-able) to `path` atomically.

    The model must have been made by `models.build_model` (so `model.spec` says how to rebuild it),
    unless `metadata["model"]` gives `{"name": ..., "kwargs": ...}` itself. `extra` tensors (training
    state) are stored beside the weights under the `__extra__/` prefix.
    """
    spec = metadata.get("model")
    if spec is None:
        if not isinstance(getattr(model, "spec", None), ModelSpec):
            raise ValueError(
                "metadata must name the model ({'name':..., 'kwargs':...}) for a model not made by build_model"
            )
        spec = model.spec.to_dict()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    for k, v in (extra or {}).items():
        tensors[EXTRA + k] = v.detach().to("cpu").contiguous().clone()
    meta = {
        **metadata,
        "model": spec,
        "package_version": __version__,
        "torch_version": torch.__version__,
        "sha256": _digest(tensors),
    }
    text = json.dumps(meta, sort_keys=True)  # raises TypeError before anything is written
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: text})


def read(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors of a checkpoint (CPU) and its metadata, after checking the file is intact."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"checkpoint {str(p)!r} does not exist")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"checkpoint {str(p)!r} is unreadable (truncated or not safetensors): {exc}") from None
    try:
        meta = json.loads(header[_META_KEY])
        if not isinstance(meta, dict):
            raise ValueError
    except (KeyError, ValueError):
        raise UsageError(
            f"checkpoint {str(p)!r} has no robust-eval metadata; only robust-eval checkpoints load"
        ) from None
    if meta.get("sha256") != _digest(tensors):
        raise UsageError(f"checkpoint {str(p)!r} fails its checksum: the file was modified or corrupted")
    return tensors, meta


def load_with_extra(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    """`load`, plus the training-state tensors stored beside the weights (prefix removed)."""
    tensors, meta = read(path)
    spec = meta.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("kwargs"), dict):
        raise UsageError(f"checkpoint {str(path)!r} does not say which model it holds")
    try:
        model = build_model(str(spec.get("name")), **spec["kwargs"])
    except UsageError as exc:
        raise UsageError(f"checkpoint {str(path)!r}: {exc}") from None
    weights = {k: v for k, v in tensors.items() if not k.startswith(EXTRA)}
    extra = {k[len(EXTRA) :]: v for k, v in tensors.items() if k.startswith(EXTRA)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"checkpoint {str(path)!r} does not match its model {spec['name']!r}: {first}") from None
    return model.to(device).eval(), meta, extra


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named in the checkpoint's metadata and load its weights strictly.

    Returns (model in eval mode on `device`, metadata). Raises UsageError (a ValueError) for a missing,
    truncated, tampered or foreign file, or one that names an unknown model.
    """
    model, meta, _ = load_with_extra(path, device=device)
    return model, meta
