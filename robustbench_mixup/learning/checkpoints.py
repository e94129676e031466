"""Checkpoints: safetensors weights plus JSON metadata. Nothing is ever unpickled.

A checkpoint is one `.safetensors` file. Its tensors are the model's state dict under their usual names,
plus optional training state (SGD momentum, for `--resume`) under the `__extra__/` prefix. Its header
metadata holds one JSON document: the model's registry name and constructor arguments (what `load`
rebuilds it from), whatever the caller adds (dataset, training config, seed, metrics, epoch), the package
and torch versions, and a SHA-256 over every tensor AND the rest of the metadata, which `read_file` checks
to catch tampering or corruption anywhere in the file. The model's constructor arguments are checked
against their ranges before a model is built, so a hostile file cannot make us allocate terabytes.

`save_file`/`read_file` are the one boundary for every safetensors file the suite writes and reads back
(checkpoints and saved transfer sets). Files are serialized in memory and written beside their final
name, then renamed into place, so a crash never leaves half of one and no other temporary file exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from robustbench_mixup import __version__
from robustbench_mixup.learning.models import ModelSpec, build_model, check_model_spec
from robustbench_mixup.learning.zoo import IMPORTED, build_imported, check_imported_spec
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.fsutil import atomic_path

EXTRA = "__extra__/"
_META_KEY = "robust_eval"
FORMAT = 2  # 2: the digest covers the metadata too (1, before: the tensors only)
MAX_FILE_BYTES = 4 << 30  # nothing the suite writes comes near; a larger file is refused unread


def _digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and the metadata (canonical JSON, no digest)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    rest = {k: v for k, v in metadata.items() if k != "sha256"}
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


def save_file(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write `tensors` (to CPU, contiguous) and `metadata` (JSON-able) atomically, with a digest over both."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:  # the digest is taken over what a reader will see: the metadata after a JSON round trip
        meta = json.loads(json.dumps({**metadata, "format": FORMAT}, allow_nan=False))
        if any(not isinstance(k, str) for k in metadata):
            raise TypeError("keys must be str")
        text = json.dumps({**meta, "sha256": _digest(tensors, meta)}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable (str keys, finite numbers): {exc}") from None
    blob = save_bytes(tensors, metadata={_META_KEY: text})  # in memory: no temporary file of the library's
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def read_file(path: str | os.PathLike[str], what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors of a file written by `save_file` (CPU) and its metadata, after checking it is intact:
    readable safetensors, robust-eval metadata of this format, and a digest that matches."""
    p = Path(path)
    name = f"{what} {str(p)!r}"
    if not p.is_file():
        raise UsageError(f"{name} does not exist")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{name} is {size:,} bytes, more than robust-eval ever writes: refused unread")
    raw = p.read_bytes()
    try:
        tensors = load_bytes(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, RuntimeError, AttributeError) as exc:
        raise UsageError(f"{name} is unreadable (truncated or not safetensors): {str(exc)[:100]}") from None
    try:
        meta = json.loads(header[_META_KEY])
        if not isinstance(meta, dict):
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise UsageError(f"{name} has no robust-eval metadata; only files robust-eval wrote are read") from None
    if meta.get("format") != FORMAT:
        raise UsageError(
            f"{name} was written by an older robust-eval (format {meta.get('format', 1)}, whose checksum did not "
            f"cover its metadata); this one reads format {FORMAT}: write it again with this version"
        )
    if meta.get("sha256") != _digest(tensors, meta):
        raise UsageError(f"{name} fails its checksum: the file was modified or corrupted")
    return tensors, meta


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
    state) are stored beside the weights under the `__extra__/` prefix. Raises TypeError, naming
    `metadata`, when the metadata is not JSON-serializable; nothing is written then.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    spec = metadata.get("model")
    if spec is None:
        if not isinstance(getattr(model, "spec", None), ModelSpec):
            raise ValueError(
                "metadata must name the model ({'name':..., 'kwargs':...}) for a model not made by build_model"
            )
        spec = model.spec.to_dict()
    tensors = dict(model.state_dict())
    for k, v in (extra or {}).items():
        tensors[EXTRA + k] = v
    meta = {**metadata, "model": spec, "package_version": __version__, "torch_version": torch.__version__}
    save_file(path, tensors, meta)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors of a checkpoint (CPU) and its metadata, after checking the file is intact."""
    return read_file(path, "checkpoint")


def load_with_extra(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    """`load`, plus the training-state tensors stored beside the weights (prefix removed)."""
    tensors, meta = read(path)
    spec = meta.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("kwargs"), dict):
        raise UsageError(f"checkpoint {str(path)!r} does not say which model it holds")
    name = spec.get("name")
    build = build_imported if name == IMPORTED else lambda **kwargs: build_model(str(name), **kwargs)
    try:
        if name == IMPORTED:  # ranges first
            check_imported_spec(spec["kwargs"])
        else:
            check_model_spec(name, spec["kwargs"])
        with torch.device("meta"):  # then the shapes, on no memory: the stored tensors must be what it asks for
            skeleton = build(**spec["kwargs"]).state_dict()
        shapes = {k: tuple(v.shape) for k, v in tensors.items() if not k.startswith(EXTRA)}
        if shapes != {k: tuple(v.shape) for k, v in skeleton.items()}:
            raise UsageError(f"its tensors do not have the shapes of model {name!r} it names")
        model = build(**spec["kwargs"])
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
