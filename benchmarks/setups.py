"""The two model/data setups every benchmark runs on, built once per process.

- `smallcnn/mnist-5k`: the bundled MNIST subset and the small CNN (the laptop quick start).
- `preact-resnet18-w16/cifar-shaped`: 3×32×32 synthetic images (a smooth class template plus noise,
  so a model learns them in one epoch and the attacks have something to break), preact-resnet18 at
  width 16, and the CIFAR protocol's random crop + flip in training.

Both models are trained for one epoch before they are attacked or probed, so robust accuracies move
with ε; the timings do not depend on the weights.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mixup.learning.data import Dataset, load_dataset
from robustbench_mixup.learning.loop import make_optimizer, new_trainable, train_epoch
from robustbench_mixup.settings.config import TrainConfig


@dataclass(frozen=True)
class Sizes:
    train: int  # images per training epoch
    attack: int  # test images attacked
    pairs: int  # probe pairs (× 11 λ = points)
    width: int  # preact-resnet18's first-stage channels
    iterative: int = 0  # test images for PGD-50 and APGD-100 (`pgd`, `apgd`, `multi_eps`)
    precision: int = 0  # test images for the fp32 / bf16 / compiled comparison (`precision`)


def sizes(device: torch.device, quick: bool) -> dict[str, Sizes]:
    """Per setup. CPU sizes keep the whole run to minutes on 2 cores; CUDA ones keep the GPU busy.

    On the CPU the 50- and 100-step attacks get one batch of MNIST (250) and 50 CIFAR-shaped images
    (a PGD-50 call on the MNIST batch takes about 30 s on 2 cores, an APGD-100 twice that), and the
    precision comparison 1,000 MNIST images but 50 CIFAR-shaped ones (bf16 autocast is 5-8× slower
    than float32 on a CPU without bf16 instructions). A benchmark takes at most what the setup has."""
    if quick:
        return {"mnist": Sizes(256, 64, 16, 16, 16, 16), "cifar": Sizes(128, 32, 8, 16, 8, 8)}
    if device.type == "cuda":
        return {"mnist": Sizes(4000, 1000, 5000, 16, 1000, 1000), "cifar": Sizes(10240, 1000, 2000, 16, 1000, 1000)}
    return {"mnist": Sizes(4000, 1000, 500, 16, 250, 1000), "cifar": Sizes(1024, 500, 100, 16, 50, 50)}


@dataclass
class Setup:
    name: str
    dataset: Dataset  # CPU tensors; `train_x` etc. are the benchmark's slices on the device
    cfg: TrainConfig
    device: torch.device
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    initial: nn.Module  # freshly initialized (copy it before training)
    trained: nn.Module  # one epoch of ERM, eval mode, parameters frozen: attacked and probed

    def fresh(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A copy of the initial weights on the device (channels_last on CUDA) and its SGD."""
        model = copy.deepcopy(self.initial)
        return model, make_optimizer(model, self.cfg)

    def epoch(self, model: nn.Module, opt: torch.optim.Optimizer, alpha: float, epoch: int = 0,
              method: str = "mixup") -> dict:  # fmt: skip
        """One epoch of the package's training loop (`method` with parameter `alpha`; mixup at α = 0 is
        ERM) over the benchmark's training images."""
        return train_epoch(
            model, opt, self.train_x, self.train_y, method=method, param=alpha, num_classes=self.dataset.num_classes,
            batch_size=self.cfg.batch_size, seed=0, epoch=epoch, augment=self.dataset.augment,
        )  # fmt: skip


def cifar_shaped(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """Synthetic 3×32×32 images in [0, 1]: half a smooth per-class template, half uniform noise."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return (0.5 * templates[y] + 0.5 * torch.rand(n, 3, 32, 32, generator=g)).contiguous(), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    mean, std = x_tr.mean(dim=(0, 2, 3)).tolist(), x_tr.std(dim=(0, 2, 3)).tolist()
    classes = tuple(f"class{k}" for k in range(10))
    return Dataset("cifar-shaped", x_tr, y_tr, x_te, y_te, classes, tuple(mean), tuple(std), augment=True)


def build(key: str, size: Sizes, device: torch.device) -> Setup:
    if key == "mnist":
        name, dataset = "smallcnn/mnist-5k", load_dataset("mnist-5k")
        cfg = TrainConfig(dataset="mnist-5k", model="smallcnn", lr=0.05)
    else:
        name, dataset = f"preact-resnet18-w{size.width}/cifar-shaped", cifar_shaped(size.train, size.attack)
        cfg = TrainConfig(dataset="cifar10", model="preact-resnet18", width=size.width, lr=0.05)
    initial, _ = new_trainable(cfg, dataset, seed=0, device=device)

    def take(x: torch.Tensor, n: int) -> torch.Tensor:
        return x[:n].to(device)

    setup = Setup(
        name, dataset, cfg, device,
        take(dataset.train_images, size.train), take(dataset.train_labels, size.train),
        take(dataset.test_images, size.attack), take(dataset.test_labels, size.attack),
        initial, initial,
    )  # fmt: skip
    trained, opt = setup.fresh()
    setup.epoch(trained, opt, alpha=0.0)
    trained.eval()
    for p in trained.parameters():  # frozen for ours and the libraries alike
        p.requires_grad_(False)
    setup.trained = trained
    return setup


def from_run(run_dir: Path, device: torch.device) -> dict[str, Setup]:
    """The models of a finished `robust-eval run` (its folder `checkpoints/NAME`), one setup per method
    (the surrogate left out), on the run's test images: the attacks timed on the models a user evaluates,
    whose robust accuracies are what the early-stop ratio depends on. Read through the package's own
    checks (`checkpoints.load`); a folder that is not a run raises UsageError."""
    from robustbench_mixup.learning import checkpoints
    from robustbench_mixup.settings.errors import UsageError

    try:
        record = json.loads((run_dir / "run.json").read_text())
        cfg = TrainConfig(**record["config"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UsageError(
            f"--run {str(run_dir)!r} is not a run's folder (checkpoints/NAME with run.json): {exc}"
        ) from None
    dataset = load_dataset(cfg.dataset, split_seed=cfg.split_seed)
    found = {}
    for path in sorted(run_dir.glob("*.safetensors")):
        if path.stem == "surrogate":
            continue
        model, _ = checkpoints.load(path, device=device)
        for p in model.parameters():
            p.requires_grad_(False)
        test_x, test_y = dataset.test_images.to(device), dataset.test_labels.to(device)
        name = f"{run_dir.name}/{path.stem}/{cfg.model}/{cfg.dataset}"
        found[path.stem] = Setup(name, dataset, cfg, device, test_x[:0], test_y[:0], test_x, test_y, model, model)
    if not found:
        raise UsageError(f"--run {str(run_dir)!r} holds no model checkpoint (*.safetensors)")
    return found
