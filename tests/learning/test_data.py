import re

import numpy as np
import pytest
import torch
from helpers import write_idx

from robustbench_mixup.learning import data
from robustbench_mixup.learning.data import load_dataset, random_crop_flip, read_idx, stratified_split
from robustbench_mixup.settings import config
from robustbench_mixup.settings.errors import UsageError


def _check(ds, n_train, n_test, shape):
    assert ds.train_images.shape == (n_train, *shape) and ds.test_images.shape == (n_test, *shape)
    assert ds.train_images.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    for x in (ds.train_images, ds.test_images):
        assert x.min() >= 0 and x.max() <= 1
    assert len(ds.mean) == len(ds.std) == shape[0]
    torch.testing.assert_close(torch.tensor(ds.mean), ds.train_images.mean(dim=(0, 2, 3)))


def test_registry_matches_the_cli_names():
    assert data.DATASETS == config.DATASETS


def test_digits():
    ds = load_dataset("digits")
    _check(ds, 1438, 359, (1, 8, 8))  # 20% of each class, rounded per class
    assert ds.num_classes == 10 and ds.train_images.max() == 1.0


def test_mnist5k_is_a_stratified_4000_1000_split():
    ds = load_dataset("mnist-5k")
    _check(ds, 4000, 1000, (1, 28, 28))
    assert torch.bincount(ds.train_labels).tolist() == [400] * 10
    assert torch.bincount(ds.test_labels).tolist() == [100] * 10
    # The source is sorted by label; the split must not be.
    assert (ds.train_labels[:50] != ds.train_labels[0]).any()


def test_splits_are_deterministic_given_the_seed():
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=0)
    c = load_dataset("digits", split_seed=1)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.test_images, c.test_images)


def test_stratified_split_partitions_the_indices():
    labels = torch.arange(103) % 4
    tr, te = stratified_split(labels, 0.2, seed=5)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(103))
    assert torch.bincount(labels[te]).tolist() == [round(0.2 * c) for c in torch.bincount(labels).tolist()]


def test_fashion_mnist_reads_idx_files(fashion_root):
    ds = load_dataset("fashion-mnist", root=fashion_root)
    _check(ds, 30, 10, (1, 28, 28))
    raw = read_idx(fashion_root / "train-images-idx3-ubyte.gz")
    torch.testing.assert_close(ds.train_images[:, 0], torch.from_numpy(raw.copy()).float() / 255)
    assert ds.classes[0] == "T-shirt/top" and ds.test_labels.tolist() == list(range(10))


def test_truncated_idx_file_is_a_usage_error(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, np.zeros((4, 3, 3)))
    import gzip

    with gzip.open(path) as fh:
        raw = fh.read()
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-5])
    with pytest.raises(UsageError, match="truncated"):
        read_idx(path)


def test_missing_fashion_mnist_names_the_paths_and_the_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(UsageError) as err:
        load_dataset("fashion-mnist", root=tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "apt-get install dataset-fashion-mnist" in msg and "--download" in msg


def test_mnist_reads_torchvision_layout(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = rng.integers(0, 256, (12, 28, 28))
    for prefix, n in (("train", 12), ("t10k", 12)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:n])  # torchvision reads them unpacked
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    ds = load_dataset("mnist", root=tmp_path)
    _check(ds, 12, 12, (1, 28, 28))
    torch.testing.assert_close(ds.train_images[:, 0], torch.from_numpy(images).float() / 255)
    assert ds.train_labels.tolist() == [i % 10 for i in range(12)]


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    with pytest.raises(UsageError, match="--download"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.skipif(not data.SYSTEM_FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_system_fashion_mnist_is_the_full_set(tmp_path):
    ds = load_dataset("fashion-mnist", root=tmp_path)
    _check(ds, 60000, 10000, (1, 28, 28))
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10


def test_unknown_dataset():
    with pytest.raises(UsageError, match=r"unknown dataset 'svhn'.*mnist-5k"):
        load_dataset("svhn")


def test_random_crop_flip_returns_shifted_and_flipped_windows():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 6, 6, generator=g)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    # Each output must be one of the 5x5 windows of its padded input, flipped or not.
    for i in range(len(x)):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    again = random_crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(out, again)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 0.8, 1.0, 0.333])
def test_corrupt_labels_exact_count_all_wrong_input_untouched(fraction):
    labels = torch.arange(1001) % 10
    before = labels.clone()
    noisy, mask = data.corrupt_labels(labels, fraction, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(labels, before)
    assert mask.dtype == torch.bool and int(mask.sum()) == round(fraction * 1001)
    assert (noisy[mask] != labels[mask]).all()  # every corrupted label is wrong
    assert torch.equal(noisy[~mask], labels[~mask])
    assert noisy.min() >= 0 and noisy.max() < 10


def test_corrupt_labels_is_uniform_over_the_other_classes_and_seeded():
    labels = torch.zeros(20000, dtype=torch.int64)
    noisy, mask = data.corrupt_labels(labels, 1.0, 5, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(noisy, minlength=5)
    assert counts[0] == 0 and ((counts[1:] - 5000).abs() < 4 * (20000 * 0.25 * 0.75) ** 0.5).all()
    again = data.corrupt_labels(labels, 1.0, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy, again[0]) and torch.equal(mask, again[1])


def test_corrupt_labels_bad_arguments():
    labels = torch.arange(10) % 3
    with pytest.raises(ValueError, match="fraction"):
        data.corrupt_labels(labels, 1.5, 3)
    with pytest.raises(ValueError, match="num_classes"):
        data.corrupt_labels(labels, 0.5, 1)
    with pytest.raises(TypeError, match="labels"):
        data.corrupt_labels(labels.float(), 0.5, 3)


def test_train_subset_is_stratified_seeded_and_keeps_the_test_split():
    full = load_dataset("mnist-5k")
    sub = load_dataset("mnist-5k", train_n=1003)
    assert len(sub.train_labels) == 1003 and sub.train_of == len(full.train_labels) == 4000
    assert torch.equal(sub.test_images, full.test_images) and torch.equal(sub.test_labels, full.test_labels)
    # each class its share of 1003, rounded by largest remainders: never off by one or more
    share = torch.bincount(full.train_labels, minlength=10).double() * 1003 / 4000
    counts = torch.bincount(sub.train_labels, minlength=10).double()
    assert (counts - share).abs().max() < 1 and counts.sum() == 1003
    # the images are training images of the full split, each once, with their labels
    rows = {tuple(x.flatten().tolist()): int(y) for x, y in zip(full.train_images, full.train_labels, strict=True)}
    kept = [tuple(x.flatten().tolist()) for x in sub.train_images]
    assert len(set(kept)) == len(kept) and all(rows[k] == int(y) for k, y in zip(kept, sub.train_labels, strict=True))
    # mean and std are those of the images kept
    assert sub.mean[0] == pytest.approx(sub.train_images.mean().item(), rel=1e-5)
    again = load_dataset("mnist-5k", train_n=1003)
    assert torch.equal(again.train_images, sub.train_images)
    other = load_dataset("mnist-5k", train_n=1003, split_seed=1)
    assert not torch.equal(other.train_labels, load_dataset("mnist-5k", train_n=1003, split_seed=0).train_labels)
    assert sub.describe()["train_of"] == 4000 and "train_of" not in full.describe()


@pytest.mark.parametrize("n", [0, 9, 4001, True, "100"])
def test_train_subset_out_of_range_is_one_usage_error(n):
    with pytest.raises(UsageError, match=r"--train-n\) must hold an integer number of images in \[10, 4000\]"):
        load_dataset("mnist-5k", train_n=n)


def _write_cifar10_binary(root, n_train=8, n_test=20, seed=0):
    """A tiny CIFAR-10 in the official binary layout: each record a label byte then the R, G and B planes."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    written = {}
    for name, n in [*((f"data_batch_{i}.bin", n_train) for i in range(1, 6)), ("test_batch.bin", n_test)]:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1).tobytes())
        written[name] = (labels, pixels)
    return written


def test_cifar10_is_read_from_its_binary_archive_without_pickle(tmp_path):
    written = _write_cifar10_binary(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.image_shape == (3, 32, 32) and len(ds.train_labels) == 40 and len(ds.test_labels) == 20
    labels, pixels = written["test_batch.bin"]
    assert torch.equal(ds.test_labels, torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(ds.test_images, torch.from_numpy(pixels).float() / 255)  # the planes in the right order
    first, _ = written["data_batch_1.bin"]
    assert torch.equal(ds.train_labels[:8], torch.from_numpy(first.astype(np.int64)))
    assert ds.classes[0] == "airplane" and ds.augment


@pytest.mark.parametrize(("corrupt", "needle"), [
    (lambda f: f.write_bytes(f.read_bytes()[:-5]), "is not a whole number of 3073-byte records"),
    (lambda f: f.write_bytes(bytes([10]) + f.read_bytes()[1:]), "holds label 10, but the dataset has 10 classes"),
    (lambda f: f.unlink(), "lacks test_batch.bin"),
])  # fmt: skip
def test_a_damaged_cifar_binary_archive_is_one_line(tmp_path, corrupt, needle):
    _write_cifar10_binary(tmp_path)
    corrupt(tmp_path / "cifar-10-batches-bin" / "test_batch.bin")
    with pytest.raises(UsageError, match=re.escape(needle)):
        load_dataset("cifar10", root=tmp_path)
