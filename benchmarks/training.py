"""Training speed: what mixup, the pairing and our data path cost, against the work a step must do.

3. `mixup_overhead`: an epoch of the package's loop with mixup (α = 1) vs with ERM (α = 0).
4. `pair`: one paired epoch (the erm model's epoch, then the mixup model's, as `train_run` does) vs one
   single-model epoch.
5. `loader`: an epoch of the package's loop (index gathers of tensors already on the device, batch-wise
   crop+flip) vs a loop written the way the reference mixup-cifar10 code is: a torchvision-style
   Dataset of uint8 images with per-sample transforms (crop and flip where the protocol augments,
   ToTensor, Normalize), a DataLoader, then mixup with NumPy's beta and a randperm. Same model, same
   number of steps, both with mixup. The floor is the same number of bare steps on one fixed batch.
   On CPU the DataLoader has no workers (the 2 cores are the compute threads); on CUDA it has 8, as in
   the reference code.
8. `paired_throughput` (CUDA): images/s of a paired epoch of preact-resnet18 at width 64 on CIFAR-shaped
   tensors with bf16 autocast and channels_last, against the bare forward+backward+step.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning.devices import autocast

from .setups import Setup, Sizes, build
from .timing import Result, Target, measure


def mixup_overhead(setup: Setup, *, repeat: int, warmup: int = 1) -> Result:
    erm, erm_opt = setup.fresh()
    mix, mix_opt = setup.fresh()
    timings, _ = measure(
        {"erm": lambda: setup.epoch(erm, erm_opt, 0.0), "mixup": lambda: setup.epoch(mix, mix_opt, 1.0)},
        repeat=repeat, device=setup.device, warmup=warmup,
    )  # fmt: skip
    result = Result("mixup_overhead", setup.name, timings, notes={"images": len(setup.train_y)})
    result.rates = {k: _seen(setup) / t.median for k, t in timings.items()}
    result.targets.append(Target("mixup / erm", result.ratio("mixup", "erm"), "<=", 1.05))
    return result


def pair(setup: Setup, *, repeat: int, warmup: int = 1) -> Result:
    erm, erm_opt = setup.fresh()
    mix, mix_opt = setup.fresh()
    single, single_opt = setup.fresh()
    fns = {
        "paired": lambda: _paired_epoch(setup, erm, erm_opt, mix, mix_opt),
        "single": lambda: setup.epoch(single, single_opt, 0.0),
    }
    timings, _ = measure(fns, repeat=repeat, device=setup.device, warmup=warmup)
    result = Result("pair", setup.name, timings, notes={"images": len(setup.train_y)})
    result.targets.append(Target("paired / single", result.ratio("paired", "single"), "<=", 2.05))
    return result


class ReferenceStyleDataset(torch.utils.data.Dataset):
    """uint8 images, one PIL image per item, the torchvision transforms applied one sample at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple, std: tuple, augment: bool) -> None:
        from torchvision import transforms as T

        u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # (N, H, W, C), as on disk
        self.images = u8.squeeze(-1).numpy() if u8.shape[-1] == 1 else u8.numpy()
        self.labels = labels.tolist()
        steps = [T.RandomCrop(images.shape[-1], padding=4), T.RandomHorizontalFlip()] if augment else []
        self.transform = T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _reference_epoch(model: nn.Module, opt: torch.optim.Optimizer, loader, device: torch.device) -> None:
    model.train()
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        lam = np.random.beta(1.0, 1.0)
        index = torch.randperm(inputs.size(0), device=device)
        mixed = lam * inputs + (1 - lam) * inputs[index]
        if device.type == "cuda":
            mixed = mixed.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out = model(mixed).float()
        loss = lam * F.cross_entropy(out, targets) + (1 - lam) * F.cross_entropy(out, targets[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _paired_epoch(setup: Setup, erm: nn.Module, erm_opt: torch.optim.Optimizer, mix: nn.Module,
                  mix_opt: torch.optim.Optimizer) -> None:  # fmt: skip
    """What `train_run` does per epoch for the pair: the erm model's epoch, then the mixup model's."""
    setup.epoch(erm, erm_opt, 0.0)
    setup.epoch(mix, mix_opt, 1.0)


def _floor_epoch(setup: Setup, model: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
    """An epoch's worth of bare forward+backward+step on one fixed batch: no data handling at all."""
    bs = setup.cfg.batch_size
    x, y = setup.train_x[:bs], setup.train_y[:bs]
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        model.train()
        for _ in range(_seen(setup) // bs):
            with autocast(x.device):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def _seen(setup: Setup) -> int:
    return (len(setup.train_y) // setup.cfg.batch_size) * setup.cfg.batch_size


def loader(setup: Setup, *, repeat: int, warmup: int = 1) -> Result:
    bs, dev = setup.cfg.batch_size, setup.device
    data = ReferenceStyleDataset(setup.train_x.cpu(), setup.train_y.cpu(), setup.dataset.mean, setup.dataset.std,
                                 setup.dataset.augment)  # fmt: skip
    workers = min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0
    reference_loader = torch.utils.data.DataLoader(data, batch_size=bs, shuffle=True, drop_last=True,
                                                   num_workers=workers, pin_memory=dev.type == "cuda",
                                                   persistent_workers=workers > 0)  # fmt: skip
    ours_m, ours_opt = setup.fresh()
    ref_m, ref_opt = setup.fresh()
    floor_m, floor_opt = setup.fresh()
    torch.manual_seed(0)
    np.random.seed(0)
    timings, _ = measure(
        {
            "ours": lambda: setup.epoch(ours_m, ours_opt, 1.0),
            "reference-style": lambda: _reference_epoch(ref_m, ref_opt, reference_loader, dev),
            "floor": _floor_epoch(setup, floor_m, floor_opt),
        },
        repeat=repeat, device=dev, warmup=warmup,
    )  # fmt: skip
    result = Result("loader", setup.name, timings, notes={"images": _seen(setup), "workers": workers})
    result.rates = {k: _seen(setup) / t.median for k, t in timings.items()}
    # What the data path costs on top of the bare steps (the model's compute bounds the epoch ratio).
    over = {k: max(timings[k].median - timings["floor"].median, 0.0) for k in ("ours", "reference-style")}
    result.notes["data_seconds"] = over
    result.notes["data_ratio"] = over["reference-style"] / over["ours"] if over["ours"] > 0 else float("inf")
    result.targets.append(Target("reference-style / ours", result.ratio("reference-style", "ours"), ">=", 3.0))
    return result


def paired_throughput(device: torch.device, *, repeat: int, warmup: int = 1, width: int = 64, n: int = 10240
                      ) -> Result:  # fmt: skip
    """preact-resnet18 on CIFAR-shaped tensors: erm, mixup and paired epochs vs the bare step, in images/s."""
    setup = build("cifar", Sizes(n, 8, 1, width), device)
    erm, erm_opt = setup.fresh()
    mix, mix_opt = setup.fresh()
    floor_m, floor_opt = setup.fresh()
    timings, _ = measure(
        {
            "erm": lambda: setup.epoch(erm, erm_opt, 0.0),
            "mixup": lambda: setup.epoch(mix, mix_opt, 1.0),
            "paired": lambda: _paired_epoch(setup, erm, erm_opt, mix, mix_opt),
            "floor": _floor_epoch(setup, floor_m, floor_opt),
        },
        repeat=repeat, device=device, warmup=warmup,
    )  # fmt: skip
    result = Result("paired_throughput", setup.name, timings, notes={"images": _seen(setup)})
    # A paired epoch trains two models: images/s counts the images both of them saw.
    result.rates = {k: (2 if k == "paired" else 1) * _seen(setup) / t.median for k, t in timings.items()}
    result.notes["floor_rate / paired_rate"] = result.rates["floor"] / result.rates["paired"]
    return result
