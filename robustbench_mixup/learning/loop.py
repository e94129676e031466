"""Paired training: one loop for every method, the method a step called on each batch.

A run trains one model per method of `TrainConfig.methods` (default `erm` and `mixup`), plus a surrogate:

| member              | init seed | batch/augmentation seed | step (`mixing.STEPS`) and its parameter |
|---------------------|-----------|-------------------------|-----------------------------------------|
| `erm`               | S         | S                       | `erm_step`                              |
| `mixup`             | S         | S                       | `mixup_step`, the run's α               |
| `cutmix`, ...       | S         | S                       | its step, its own α (or smoothing)      |
| `surrogate`         | S'        | S'                      | `erm_step`                              |

The methods start from the same weights and see the same batches and augmentations; only the step
differs. `surrogate` is an independent ERM model, the black-box source (the paper's ERM#2); its
seed S' = `config.surrogate_seed(S)` is a hash of (S, 'surrogate'), so no run of a group of seeds shares
a model with another.

Every random stream of an epoch (batch order, augmentation, mixing, dropout) is seeded from
(member seed, stream, epoch) and the learning rate is a function of the epoch; so a checkpoint of
weights + SGD momentum + epoch number is the whole state, and `--resume` after a kill ends with exactly
the weights of an uninterrupted run. Protocol (the paper, section 3.2; `verdicts.paper.PROTOCOL`): SGD
momentum 0.9, lr divided by 10 at 50% and 75% of the epochs, batch 128, weight decay 1e-4, α = 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning import checkpoints, seeding
from robustbench_mixup.learning.data import Dataset, random_crop_flip
from robustbench_mixup.learning.devices import autocast, place
from robustbench_mixup.learning.mixing import STEPS
from robustbench_mixup.learning.models import model_for_dataset
from robustbench_mixup.settings.config import TrainConfig
from robustbench_mixup.settings.errors import UsageError


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Step schedule: lr, /10 from epoch ⌊E/2⌋, /100 from ⌊3E/4⌋ (0-based; 100 and 150 of 200)."""
    milestones = [m for m in (cfg.epochs // 2, (3 * cfg.epochs) // 4) if m > 0]
    return cfg.lr * 0.1 ** sum(epoch >= m for m in milestones)


def check_data(cfg: TrainConfig, n_train: int) -> None:
    """Raise UsageError unless `cfg` can train on `n_train` examples (every step needs a full batch)."""
    if cfg.batch_size > n_train:
        what = cfg.dataset if cfg.train_n is None else f"the training subset of {cfg.dataset} (--train-n)"
        raise UsageError(f"--batch-size {cfg.batch_size} exceeds the {n_train} training examples of {what}")


def init_model(cfg: TrainConfig, dataset: Dataset, seed: int) -> nn.Module:
    """The member's initial weights: drawn on the CPU from `seed`, so every device starts alike."""
    options = {} if cfg.width is None else {"width": cfg.width}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeding.derive_seed(seed, "init"))
        return model_for_dataset(cfg.model, dataset, dropout=cfg.dropout, **options)


# --- the loop ---------------------------------------------------------------------------------------


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    method: str,
    param: float,
    num_classes: int,
    batch_size: int,
    seed: int,
    epoch: int,
    augment: bool,
) -> dict[str, float]:
    """One epoch of `method` (a key of `mixing.STEPS`, with its α or smoothing factor `param`) over
    `images`/`labels` (already on the model's device). The last partial batch is dropped, so every step
    sees `batch_size` examples (and BatchNorm never sees a batch of one).

    Returns train_loss (mean over steps) and train_acc: for a mixed batch an example counts
    λ if the prediction is y_i plus (1−λ) if it is y_j, the soft-target agreement.
    """
    step_fn = STEPS[method]
    device = images.device
    order = seeding.generator(seed, "order", epoch)
    aug_gen = seeding.generator(seed, "augment", epoch)
    mix_gen = seeding.generator(seed, "mixup", epoch)
    perm = torch.randperm(len(labels), generator=order).to(device)
    steps = len(labels) // batch_size
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device)
    model.train()
    # Dropout draws from torch's global generator: seed it per epoch, and give its state back after.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seeding.derive_seed(seed, "dropout", epoch))
        for step in range(steps):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            x, y = images[idx], labels[idx]
            if augment:
                x = random_crop_flip(x, aug_gen)
            with autocast(device):  # the one line where the methods differ
                logits, target, credit, _, _ = step_fn(model, x, y, param, num_classes=num_classes, generator=mix_gen)
            loss = F.cross_entropy(logits.float(), target)  # class indices or soft targets alike
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: no host sync inside the loop.
            loss_sum += loss.detach()
            pred = logits.detach().argmax(1, keepdim=True)
            hits += (pred.squeeze(1) == credit).sum() if credit.ndim == 1 else credit.gather(1, pred).sum()
    return {"train_loss": loss_sum.item() / steps, "train_acc": hits.item() / (steps * batch_size)}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    method: str,
    param: float,
    seed: int,
    num_classes: int,
    augment: bool,
    evaluate: Callable[[nn.Module], dict[str, float]],
    start_epoch: int = 0,
) -> Iterator[tuple[int, dict[str, float]]]:
    """THE epoch driver of `train` and `sweep`: yields (epoch, metrics) after each epoch, 1-based.

    Epochs `start_epoch` .. `cfg.epochs - 1` (0-based) are trained with the schedule `lr_at`; the
    metrics are train_loss, train_acc, lr, whatever `evaluate(model)` measures, the epoch's seconds
    (training and evaluation) and the training images per second. The caller saves between epochs:
    the epoch number is the whole random state, so stopping after any yield and resuming with
    `start_epoch` gives the weights of an uninterrupted run.
    """
    check_data(cfg, len(labels))
    seen = (len(labels) // cfg.batch_size) * cfg.batch_size
    for epoch in range(start_epoch, cfg.epochs):
        lr = lr_at(epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        stats = train_epoch(
            model, optimizer, images, labels, method=method, param=param, num_classes=num_classes,
            batch_size=cfg.batch_size,
            seed=seed, epoch=epoch, augment=augment,
        )  # fmt: skip
        train_s = time.perf_counter() - t0
        measured = evaluate(model)
        yield epoch + 1, {**stats, "lr": lr, **measured, "seconds": time.perf_counter() - t0,
                          "images_per_s": seen / train_s}  # fmt: skip


# --- a model's training state on disk -------------------------------------------------------------


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def save_trainable(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, metadata: dict[str, Any]) -> None:
    """A checkpoint that training can resume from: weights, SGD momentum, and `metadata` (with "epoch")."""
    momentum = {}
    for name, p in model.named_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            momentum[f"momentum/{name}"] = buf
    checkpoints.save(model, path, metadata=metadata, extra=momentum)


def load_trainable(
    path: Path, cfg: TrainConfig, device: torch.device
) -> tuple[nn.Module, torch.optim.SGD, dict[str, Any]]:
    """(model in train mode, its optimizer with the saved momentum, metadata) of a `save_trainable` file
    written under the same configuration `cfg`."""
    model, meta, extra = checkpoints.load_with_extra(path, device=device)
    if meta.get("train") != cfg.to_dict():
        raise UsageError(f"checkpoint {str(path)!r} belongs to another configuration; it cannot resume this run")
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= cfg.epochs:
        raise UsageError(f"checkpoint {str(path)!r} says epoch {epoch!r}, outside 0..{cfg.epochs}: it cannot resume")
    model = place(model, device).train()
    opt = make_optimizer(model, cfg)
    for pname, p in model.named_parameters():
        if f"momentum/{pname}" in extra:
            opt.state[p]["momentum_buffer"] = extra[f"momentum/{pname}"].to(device)
    return model, opt, meta


def new_trainable(
    cfg: TrainConfig, dataset: Dataset, seed: int, device: torch.device
) -> tuple[nn.Module, torch.optim.SGD]:
    """A freshly initialized model (weights from `seed`) on `device`, and its optimizer."""
    model = place(init_model(cfg, dataset, seed), device)
    return model, make_optimizer(model, cfg)


# --- orchestration: a named run with checkpoints, resume and the results database -----------------
