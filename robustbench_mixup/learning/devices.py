"""Where the computation runs, and how a model is run there.

One device is chosen per command (`--device auto|cpu|cuda`). On CUDA, training and inference use bf16
autocast and channels_last (weights and batches alike); on the CPU everything stays float32 and
bitwise reproducible. Every stage that runs a model for predictions goes through `predict`, so a
number measured during training, in a sweep or in an attack's clean pass is computed the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from robustbench_mixup.settings.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when present), 'cpu' or 'cuda'/'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda asked for, but torch sees no CUDA device: use --device cpu or auto")
        return torch.device(name)
    raise UsageError(f"unknown device {name!r}: use auto, cpu or cuda")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU runs stay in float32 and bitwise reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` on `device`; on CUDA with channels_last weights to match the channels_last batches."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """A batch laid out for the device it is on: channels_last on CUDA (4-D images only)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" and x.ndim == 4 else x


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """The device of `model`'s parameters, or `default` for a model without any."""
    param = next(model.parameters(), None)
    return param.device if param is not None else default


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; both restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


# Images per forward when only predictions are wanted. On the CPU a batch that stays in cache is faster:
# smallcnn on 4,000 mnist images, median of 4: 1.0 s in batches of 128, 1.8 s of 256 and 2.4 s of 1,024 on
# one thread (a sweep worker's), 0.5 s, 0.6 s and 1.2 s on two; the logits bit for bit the same (in eval
# mode a convolution treats each image alone).
PREDICT_BATCH = {"cpu": 128, "cuda": 1024}


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor:
    """Top-1 predictions (N,) of `model` on `images` (on the model's device), in eval mode (restored);
    `batch_size` images per forward (default: `PREDICT_BATCH` of the device)."""
    batch_size = batch_size or PREDICT_BATCH.get(images.device.type, 1024)
    was_training = model.training
    model.eval()
    preds = []
    for start in range(0, len(images), batch_size):
        with autocast(images.device):
            preds.append(model(as_batch(images[start : start + batch_size])).argmax(1))
    model.train(was_training)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64, device=images.device)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int | None = None) -> float:
    """Top-1 accuracy of `model` on (images, labels)."""
    if len(labels) == 0:
        return 0.0
    return (predict(model, images, batch_size=batch_size) == labels).sum().item() / len(labels)
