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
the weights of an uninterrupted run. Protocol (PAPER.md, section 3.2): SGD momentum 0.9, lr divided
by 10 at 50% and 75% of the epochs, batch 128, weight decay 1e-4, α = 1.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, seeding
from .config import SURROGATE, TrainConfig
from .data import Dataset, load_dataset, random_crop_flip
from .devices import accuracy, autocast, place, predict, resolve_device
from .errors import UsageError
from .fsutil import atomic_write_json, ensure_writable_dir, exclusive, remove_stale_temporaries
from .layout import Layout, check_run_name
from .mixing import STEPS
from .models import model_for_dataset
from .results import ResultsDB, environment, read_stored

__all__ = ["TrainConfig", "fit", "lr_at", "train_epoch", "train_run"]


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


@dataclass
class Member:
    name: str
    method: str
    param: float
    seed: int
    model: nn.Module
    optimizer: torch.optim.SGD
    epochs_done: int


@dataclass
class RunResult:
    run: str
    out: Path
    final: dict[str, dict[str, float]]  # member -> last epoch's metrics
    seconds: float


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
    members: tuple[str, ...] | None = None,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Train a paired run `run` under `out` (checkpoints/RUN/, reports/results.sqlite): every member of
    `cfg.members` (its methods and the surrogate) unless `members` names some of them.

    Everything is validated, and the dataset loaded, before anything is written. An existing run is
    continued only with `resume=True` and the same configuration; a finished one is left as it is.
    `on_start(epochs)` is told how many member-epochs are left to train, `on_epoch(member, epoch,
    metrics)` is called after each (progress display).
    """
    cfg.validate()
    check_run_name(run)
    members = cfg.members if members is None else members
    if set(members) - set(cfg.members) or not members:
        raise UsageError(f"members must be a non-empty subset of {cfg.members}, got {members}")
    dev = resolve_device(device)
    layout = Layout(out)
    ckdir = layout.run_dir(run)
    if not resume and (ckdir.exists() or read_stored(layout.database, lambda db: db.get_run(run)) is not None):
        raise UsageError(
            f"run {run!r} already exists under {str(layout.root)!r}: pass --resume to continue it, "
            "or choose another --run"
        )
    dataset = load_dataset(
        cfg.dataset, root=data_root, download=download, split_seed=cfg.split_seed, train_n=cfg.train_n
    )
    check_data(cfg, len(dataset.train_labels))

    ensure_writable_dir(layout.root)
    if read_stored(layout.database, lambda db: db.get_group(run)) is not None:
        raise UsageError(f"{run!r} names a group of seeds under {str(layout.root)!r}: choose another --run")
    with exclusive(layout.run_lock(run), f"run {run!r}"), contextlib.ExitStack() as stack:
        # Under the lock, so no other process on this name writes between these checks and our writes.
        previous = read_stored(layout.database, lambda db: db.get_run(run))
        if previous is not None and previous["config"] != cfg.to_dict():
            raise UsageError(f"run {run!r} was started with other settings ({previous['config']}); use another --run")
        state = _prepare_members(cfg, dataset, layout, run, dev, members)  # every checkpoint read and checked
        db = stack.enter_context(ResultsDB(layout.database))  # the first write
        db.start_run(
            run,
            kind="train",
            config=cfg.to_dict(),
            seed=cfg.seed,
            dataset=cfg.dataset,
            environment=environment(str(dev), argv),
        )
        remove_stale_temporaries(ckdir)  # a kill -9 mid-write leaves its temporary behind
        atomic_write_json(layout.run_json(run), {"run": run, "config": cfg.to_dict(), "dataset": dataset.describe()})
        started = time.perf_counter()
        x_tr, y_tr, x_te, y_te = (
            t.to(dev) for t in (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
        )

        def test_accuracy(model: nn.Module) -> dict[str, float]:
            return {"test_acc": accuracy(model, x_te, y_te)}

        drivers = {
            m.name: fit(m.model, m.optimizer, cfg, x_tr, y_tr, method=m.method, param=m.param, seed=m.seed,
                        num_classes=dataset.num_classes, augment=dataset.augment, evaluate=test_accuracy,
                        start_epoch=m.epochs_done)
            for m in state
        }  # fmt: skip
        final: dict[str, dict[str, float]] = {}
        if on_start is not None:
            on_start(sum(cfg.epochs - m.epochs_done for m in state))
        for epoch in range(cfg.epochs):  # the members take turns, epoch by epoch
            for m in state:
                if m.epochs_done > epoch:
                    continue
                m.epochs_done, metrics = next(drivers[m.name])
                # Metrics first, then the checkpoint: a kill in between re-runs this epoch on resume
                # and replaces the row with the same numbers.
                db.record_epoch(run, m.name, m.epochs_done, metrics)
                _save_member(m, layout, cfg, dataset, run, metrics)
                final[m.name] = metrics
                if on_epoch is not None:
                    on_epoch(m.name, m.epochs_done, metrics)
        for m in state:  # per test example, for paired comparisons (the same numbers as the last test_acc)
            db.record_clean(run, m.name, "test", (predict(m.model, x_te) == y_te).cpu())
        seconds = time.perf_counter() - started
        db.finish_run(run, timings={"train": seconds})  # added to earlier calls' (a killed call records none)
        for m in state:
            if m.name not in final:  # finished before this call (a resume of a done run)
                final[m.name] = _last_metrics(db, run, m.name)
    return RunResult(run, layout.root, final, seconds)


def _last_metrics(db: ResultsDB, run: str, member: str) -> dict[str, float]:
    rows = [r for r in db.epochs(run) if r["model"] == member]
    return dict(rows[-1]) if rows else {}


def _prepare_members(
    cfg: TrainConfig, dataset: Dataset, layout: Layout, run: str, device: torch.device, names: tuple[str, ...]
) -> list[Member]:
    members: list[Member] = []
    fresh: dict[int, nn.Module] = {}
    for name in names:
        path = layout.checkpoint(run, name)
        method, param, seed = cfg.member_setting(name)
        if path.exists():
            model, opt, meta = load_trainable(path, cfg, device)
            if meta.get("member") != name:
                raise UsageError(f"checkpoint {str(path)!r} holds {meta.get('member')!r}, not {name!r}")
            stored = meta.get("seed")
            if name == SURROGATE and isinstance(stored, int) and not isinstance(stored, bool):
                seed = stored  # one started before it had a seed stream of its own (seed + 1) goes on as it began
            elif stored != seed:
                raise UsageError(f"checkpoint {str(path)!r} was trained with seed {stored!r}, not the run's {seed}: "
                                 "restore the run's own checkpoints, or train it again under another name")  # fmt: skip
            members.append(Member(name, method, param, seed, model, opt, meta["epoch"]))
            continue
        if seed not in fresh:
            fresh[seed] = init_model(cfg, dataset, seed)
        model = place(copy.deepcopy(fresh[seed]), device)  # every method: the very same initial weights
        members.append(Member(name, method, param, seed, model, make_optimizer(model, cfg), 0))
    return members


def _save_member(m: Member, layout: Layout, cfg: TrainConfig, dataset: Dataset, run: str, metrics: dict) -> None:
    save_trainable(
        layout.checkpoint(run, m.name),
        m.model,
        m.optimizer,
        {
            "run": run, "member": m.name, "method": m.method, "param": m.param, "seed": m.seed,
            "epoch": m.epochs_done,
            "epochs": cfg.epochs, "train": cfg.to_dict(), "dataset": dataset.describe(), "metrics": metrics,
            "rng": "every stream is seeded from (seed, stream, epoch): the epoch number is the RNG state",
        },
    )  # fmt: skip
