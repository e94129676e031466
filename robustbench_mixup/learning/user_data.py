"""A test set the user brings: `npz:PATH`, a NumPy archive, or `folder:PATH`, class folders of PNG/JPEG images;
each read at one boundary, nothing unpickled.

The archive holds `images` (uint8 in 0..255, or float in [0, 1]; NCHW, or NHWC with 1 or 3 channels) and `labels`
(integers from 0), optionally `train_images` and `train_labels` (the probe's training pairs; without them the
probe says it has nothing to pair). Everything is checked before it is used: a zip whose members would unpack to
more than `MAX_BYTES` (a decompression bomb) is refused unread, object arrays are refused by
`np.load(allow_pickle=False)`, and shapes, dtypes, value ranges, label ranges and sizes each give one line.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from robustbench_mixup.settings.errors import UsageError

PREFIX = "npz:"
FOLDER = "folder:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGES = 200_000
MAX_BYTES = 4 << 30  # what the arrays may unpack to, all together
MAX_SIDE = 4096  # pixels per image side
MAX_CLASSES = 100_000


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, or of a folder tree (each file's relative path and bytes, in sorted order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f != path:
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_folder(path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """(images (N, C, H, W) in [0, 1], labels (N,), class names) of an ImageFolder tree: one folder per class
    (sorted by name, the label is its index) of PNG/JPEG files, all of one size; 1 channel when the first image is
    grey, else 3. Each file's size is read from its header and checked before it is decoded (a decompression bomb
    is refused unread); a truncated or unreadable file is one line naming it."""
    from PIL import Image

    where = f"dataset {FOLDER}{path}"
    if not path.is_dir():
        raise UsageError(f"{where}: no such folder")
    classes = tuple(sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise UsageError(f"{where} has no class folders (expected PATH/CLASS/IMAGE.png, one folder per class)")
    files = [(f, k) for k, c in enumerate(classes) for f in sorted((path / c).iterdir())
             if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
    if not files or len(files) > MAX_IMAGES:
        raise UsageError(f"{where} holds {len(files):,} PNG/JPEG images; expected 1 to {MAX_IMAGES:,}")
    images, size, mode = [], None, None
    for f, _ in files:
        try:
            with Image.open(f) as img:  # reads the header only: the size is known before any pixel is decoded
                size, mode = size or img.size, mode or ("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                found = img.size
                pixels = None if found != size or max(found) > MAX_SIDE else np.asarray(img.convert(mode), np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise UsageError(f"{where}: {f} cannot be read as an image ({type(exc).__name__}: {exc})") from None
        if max(found) > MAX_SIDE:
            raise UsageError(f"{where}: {f} is {found[0]}x{found[1]} pixels, more than {MAX_SIDE} a side: refused "
                             "before decoding")  # fmt: skip
        if pixels is None:
            raise UsageError(f"{where}: {f} is {found[0]}x{found[1]}, the first image {size[0]}x{size[1]}: every "
                             "image must have one size")  # fmt: skip
        images.append(pixels)
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous(), torch.tensor([k for _, k in files], dtype=torch.int64), classes


def _images(a: np.ndarray, key: str, where: str) -> torch.Tensor:
    if a.ndim != 4:
        raise UsageError(f"{where}: '{key}' has shape {a.shape}; expected (N, C, H, W) or (N, H, W, C)")
    if a.shape[1] not in (1, 3) and a.shape[-1] in (1, 3):
        a = a.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    n, c, h, w = a.shape
    if c not in (1, 3) or not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or n < 1:
        raise UsageError(f"{where}: '{key}' has shape {a.shape}; expected N ≥ 1 images of 1 or 3 channels, "
                         f"sides up to {MAX_SIDE}")  # fmt: skip
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)
    if a.dtype.kind != "f":
        raise UsageError(f"{where}: '{key}' is {a.dtype}; expected uint8 (0..255) or float in [0, 1]")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise UsageError(f"{where}: '{key}' holds values outside [0, 1] (or NaN): give floats in [0, 1], or uint8")
    return x


def _labels(a: np.ndarray, key: str, n: int, where: str) -> torch.Tensor:
    if a.ndim != 1 or len(a) != n or a.dtype.kind not in "iu":
        raise UsageError(f"{where}: '{key}' is {a.dtype} of shape {a.shape}; expected {n} integer labels")
    if len(a) and (int(a.min()) < 0 or int(a.max()) >= MAX_CLASSES):
        raise UsageError(f"{where}: '{key}' holds labels outside 0..{MAX_CLASSES - 1} (min {int(a.min())}, "
                         f"max {int(a.max())})")  # fmt: skip
    return torch.from_numpy(a.astype(np.int64))


def read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(train images, train labels, test images, test labels, number of classes) of the archive at `path`,
    checked; the training split is empty (0 images) when the archive has none. The number of classes is the
    archive's `num_classes` when it has one (a test set may lack the last classes), else the largest label + 1."""
    where = f"dataset {PREFIX}{path}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{where} is not a NumPy .npz archive ({exc})") from None
    if total > MAX_BYTES:
        raise UsageError(f"{where} would unpack to {total:,} bytes, more than the {MAX_BYTES:,} accepted: refused")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise UsageError(f"{where} holds an array that only pickle could read ({exc}): save plain arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{where} cannot be read ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise UsageError(f"{where} has no {' or '.join(repr(k) for k in missing)} array (it holds "
                         f"{', '.join(sorted(arrays)) or 'nothing'})")  # fmt: skip
    x_te = _images(arrays["images"], "images", where)
    y_te = _labels(arrays["labels"], "labels", len(x_te), where)
    if ("train_images" in arrays) != ("train_labels" in arrays):
        raise UsageError(f"{where}: 'train_images' and 'train_labels' go together")
    if "train_images" in arrays:
        x_tr = _images(arrays["train_images"], "train_images", where)
        y_tr = _labels(arrays["train_labels"], "train_labels", len(x_tr), where)
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise UsageError(f"{where}: 'train_images' are {tuple(x_tr.shape[1:])}, 'images' {tuple(x_te.shape[1:])}")
    else:
        x_tr, y_tr = x_te[:0], y_te[:0]
    k = int(max(int(y_te.max()), int(y_tr.max()) if len(y_tr) else 0)) + 1
    if "num_classes" in arrays:
        given = arrays["num_classes"]
        if given.shape != () or given.dtype.kind not in "iu" or not k <= int(given) <= MAX_CLASSES:
            raise UsageError(f"{where}: 'num_classes' must be one integer in [{k}, {MAX_CLASSES}] (the labels go up to "
                             f"{k - 1}), got {given!r}")  # fmt: skip
        k = int(given)
    return x_tr, y_tr, x_te, y_te, k
