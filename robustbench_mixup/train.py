"""Paired ERM / mixup training: one loop, the mixing an optional step on each batch.

A run trains three models:

| member      | init seed | batch/augmentation seed | α          |
|-------------|-----------|-------------------------|------------|
| `erm`       | S         | S                       | 0          |
| `mixup`     | S         | S                       | the run's α |
| `surrogate` | S + 1     | S + 1                   | 0          |

`erm` and `mixup` start from the same weights and see the same batches and augmentations; only the
mixing differs. `surrogate` is an independent ERM model, the black-box source (the paper's ERM#2).

Every random stream of an epoch (batch order, augmentation, mixing, dropout) is seeded from
(member seed, stream, epoch) and the learning rate is a function of the epoch; so a checkpoint of
weights + SGD momentum + epoch number is the whole state, and `--resume` after a kill ends with exactly
the weights of an uninterrupted run. Protocol (PAPER.md, section 3.2): SGD momentum 0.9, lr divided
by 10 at 50% and 75% of the epochs, batch 128, weight decay 1e-4, α = 1.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, seeding
from .data import DATASETS, Dataset, load_dataset, random_crop_flip
from .errors import UsageError
from .fsutil import atomic_write_json, check_name, ensure_writable_dir, remove_stale_temporaries
from .mixing import mixup_batch
from .models import MODELS, model_for_dataset
from .results import ResultsDB, database_path, environment

MEMBERS = ("erm", "mixup", "surrogate")
PAIR = ("erm", "mixup")  # the two models every stage after training compares


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights. Recorded with the run and in every checkpoint."""

    dataset: str = "mnist-5k"
    model: str = "smallcnn"
    epochs: int = 15
    alpha: float = 1.0  # Beta(α, α) for the `mixup` member; 0 makes it a second ERM model
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.1  # initial; divided by 10 at 50% and 75% of the epochs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.0  # p of the models' dropout layers (0: none)
    width: int | None = None  # preact-resnet18's first-stage channels (None: 64)
    split_seed: int = 0  # the bundled datasets' train/test split, independent of `seed`

    def validate(self) -> TrainConfig:
        checks = [
            (self.dataset in DATASETS, f"unknown dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}"),
            (self.model in MODELS, f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}"),
            (self.epochs >= 1, f"--epochs must be ≥ 1, got {self.epochs}"),
            (math.isfinite(self.alpha) and self.alpha >= 0, f"--alpha must be ≥ 0, got {self.alpha}"),
            (self.batch_size >= 1, f"--batch-size must be ≥ 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"--weight-decay must be ≥ 0, got {self.weight_decay}",
            ),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.width is None or self.width >= 1, f"--width must be ≥ 1, got {self.width}"),
            (self.width is None or self.model == "preact-resnet18", "--width applies to preact-resnet18 only"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def member_alpha_seed(self, member: str) -> tuple[float, int]:
        return {"erm": (0.0, self.seed), "mixup": (self.alpha, self.seed), "surrogate": (0.0, self.seed + 1)}[member]


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Step schedule: lr, /10 from epoch ⌊E/2⌋, /100 from ⌊3E/4⌋ (0-based; 100 and 150 of 200)."""
    milestones = [m for m in (cfg.epochs // 2, (3 * cfg.epochs) // 4) if m > 0]
    return cfg.lr * 0.1 ** sum(epoch >= m for m in milestones)


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
    alpha: float,
    num_classes: int,
    batch_size: int,
    seed: int,
    epoch: int,
    augment: bool,
) -> dict[str, float]:
    """One epoch over `images`/`labels` (already on the model's device). The last partial batch is
    dropped, so every step sees `batch_size` examples (and BatchNorm never sees a batch of one).

    Returns train_loss (mean over steps) and train_acc: for a mixed batch an example counts
    λ if the prediction is y_i plus (1−λ) if it is y_j, the soft-target agreement.
    """
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
            target: torch.Tensor = y
            if alpha > 0:  # the one line where mixup differs from ERM
                x, target, _, _ = mixup_batch(x, y, alpha, num_classes=num_classes, generator=mix_gen)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), target)  # class indices or soft targets alike
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: no host sync inside the loop.
            loss_sum += loss.detach()
            pred = logits.detach().argmax(1, keepdim=True)
            hits += (pred.squeeze(1) == y).sum() if target.ndim == 1 else target.gather(1, pred).sum()
    return {"train_loss": loss_sum.item() / steps, "train_acc": hits.item() / (steps * batch_size)}


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of `model` on (images, labels), in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=images.device, dtype=torch.int64)
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size]
        if images.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(images.device):
            correct += (model(x).argmax(1) == labels[start : start + batch_size]).sum()
    model.train(was_training)
    return correct.item() / max(len(labels), 1)


# --- orchestration: a named run with checkpoints, resume and the results database -----------------


@dataclass
class Member:
    name: str
    alpha: float
    seed: int
    model: nn.Module
    optimizer: torch.optim.SGD
    epochs_done: int


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _place(model: nn.Module, device: torch.device) -> nn.Module:
    """On CUDA, channels_last weights to match the channels_last batches."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


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
    model = _place(model, device).train()
    opt = make_optimizer(model, cfg)
    for pname, p in model.named_parameters():
        if f"momentum/{pname}" in extra:
            opt.state[p]["momentum_buffer"] = extra[f"momentum/{pname}"].to(device)
    return model, opt, meta


def new_trainable(
    cfg: TrainConfig, dataset: Dataset, seed: int, device: torch.device
) -> tuple[nn.Module, torch.optim.SGD]:
    """A freshly initialized model (weights from `seed`) on `device`, and its optimizer."""
    model = _place(init_model(cfg, dataset, seed), device)
    return model, make_optimizer(model, cfg)


def _restore_member(path: Path, name: str, cfg: TrainConfig, device: torch.device) -> Member:
    model, opt, meta = load_trainable(path, cfg, device)
    if meta.get("member") != name:
        raise UsageError(f"checkpoint {str(path)!r} holds {meta.get('member')!r}, not {name!r}")
    alpha, seed = cfg.member_alpha_seed(name)
    return Member(name, alpha, seed, model, opt, int(meta["epoch"]))


@dataclass
class RunResult:
    run: str
    out: Path
    final: dict[str, dict[str, float]]  # member -> last epoch's metrics
    seconds: float


def run_dir(out: Path, run: str) -> Path:
    return Path(out) / "checkpoints" / run


def train_run(
    cfg: TrainConfig,
    *,
    run: str,
    out: str | Path = ".",
    device: str = "auto",
    resume: bool = False,
    data_root: str | Path | None = None,
    download: bool = False,
    argv: list[str] | None = None,
    members: tuple[str, ...] = MEMBERS,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Train a paired run `run` under `out` (checkpoints/RUN/, reports/results.sqlite).

    Everything is validated, and the dataset loaded, before anything is written. An existing run is
    continued only with `resume=True` and the same configuration; a finished one is left as it is.
    `on_epoch(member, epoch, metrics)` is called after each member's epoch (progress display).
    """
    cfg.validate()
    check_name(run)
    unknown = set(members) - set(MEMBERS)
    if unknown or not members:
        raise UsageError(f"members must be a non-empty subset of {MEMBERS}, got {members}")
    dev = resolve_device(device)
    out = Path(out)
    ckdir = run_dir(out, run)
    db_path = database_path(out)
    if not resume and (ckdir.exists() or _known_run(db_path, run)):
        raise UsageError(
            f"run {run!r} already exists under {str(out)!r}: pass --resume to continue it, or choose another --run"
        )
    dataset = load_dataset(cfg.dataset, root=data_root, download=download, split_seed=cfg.split_seed)
    if cfg.batch_size > len(dataset.train_labels):
        raise UsageError(
            f"--batch-size {cfg.batch_size} exceeds the {len(dataset.train_labels)} training examples of {cfg.dataset}"
        )

    ensure_writable_dir(out)
    db = ResultsDB(db_path)
    try:
        previous = db.get_run(run)
        if previous is not None and previous["config"] != cfg.to_dict():
            raise UsageError(f"run {run!r} was started with other settings ({previous['config']}); use another --run")
        db.start_run(
            run,
            kind="train",
            config=cfg.to_dict(),
            seed=cfg.seed,
            dataset=cfg.dataset,
            environment=environment(str(dev), argv),
        )
        remove_stale_temporaries(ckdir)  # a kill -9 mid-write leaves its temporary behind
        atomic_write_json(ckdir / "run.json", {"run": run, "config": cfg.to_dict(), "dataset": dataset.describe()})
        started = time.perf_counter()
        state = _prepare_members(cfg, dataset, ckdir, dev, members)
        tensors = [
            t.to(dev) for t in (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
        ]
        final: dict[str, dict[str, float]] = {}
        for epoch in range(cfg.epochs):
            for m in state:
                if m.epochs_done > epoch:
                    continue
                metrics = _member_epoch(m, epoch, cfg, dataset, *tensors)
                # Metrics first, then the checkpoint: a kill in between re-runs this epoch on resume
                # and replaces the row with the same numbers.
                db.record_epoch(run, m.name, epoch + 1, metrics)
                _save_member(m, ckdir, cfg, dataset, run, metrics)
                final[m.name] = metrics
                if on_epoch is not None:
                    on_epoch(m.name, epoch + 1, metrics)
        seconds = time.perf_counter() - started
        db.finish_run(run, timings={"train": seconds})  # added to earlier calls' (a killed call records none)
        for m in state:
            if m.name not in final:  # finished before this call (a resume of a done run)
                final[m.name] = _last_metrics(db, run, m.name)
    finally:
        db.close()
    return RunResult(run, out, final, seconds)


def _known_run(db_path: Path, run: str) -> bool:
    if not db_path.exists():
        return False
    with ResultsDB(db_path) as db:
        return db.get_run(run) is not None


def _member_epoch(
    m: Member, epoch: int, cfg: TrainConfig, dataset: Dataset,
    x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
) -> dict[str, float]:  # fmt: skip
    """Train member `m` for epoch `epoch` (0-based) and evaluate it; returns the epoch's metrics."""
    lr = lr_at(epoch, cfg)
    for group in m.optimizer.param_groups:
        group["lr"] = lr
    t0 = time.perf_counter()
    stats = train_epoch(
        m.model, m.optimizer, x_tr, y_tr, alpha=m.alpha, num_classes=dataset.num_classes,
        batch_size=cfg.batch_size, seed=m.seed, epoch=epoch, augment=dataset.augment,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    m.epochs_done = epoch + 1
    seen = (len(y_tr) // cfg.batch_size) * cfg.batch_size
    return {
        **stats, "lr": lr, "test_acc": evaluate(m.model, x_te, y_te),
        "seconds": time.perf_counter() - t0, "images_per_s": seen / train_s,
    }  # fmt: skip


def _last_metrics(db: ResultsDB, run: str, member: str) -> dict[str, float]:
    rows = [r for r in db.epochs(run) if r["model"] == member]
    return dict(rows[-1]) if rows else {}


def _prepare_members(
    cfg: TrainConfig, dataset: Dataset, ckdir: Path, device: torch.device, names: tuple[str, ...]
) -> list[Member]:
    members: list[Member] = []
    fresh: dict[int, nn.Module] = {}
    for name in names:
        path = ckdir / f"{name}.safetensors"
        if path.exists():
            members.append(_restore_member(path, name, cfg, device))
            continue
        alpha, seed = cfg.member_alpha_seed(name)
        if seed not in fresh:
            fresh[seed] = init_model(cfg, dataset, seed)
        model = _place(copy.deepcopy(fresh[seed]), device)  # erm and mixup: the very same initial weights
        members.append(Member(name, alpha, seed, model, make_optimizer(model, cfg), 0))
    return members


def _save_member(m: Member, ckdir: Path, cfg: TrainConfig, dataset: Dataset, run: str, metrics: dict) -> None:
    save_trainable(
        ckdir / f"{m.name}.safetensors",
        m.model,
        m.optimizer,
        {
            "run": run, "member": m.name, "alpha": m.alpha, "seed": m.seed, "epoch": m.epochs_done,
            "epochs": cfg.epochs, "train": cfg.to_dict(), "dataset": dataset.describe(), "metrics": metrics,
            "rng": "every stream is seeded from (seed, stream, epoch): the epoch number is the RNG state",
        },
    )  # fmt: skip
