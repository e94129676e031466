"""`npz:PATH`: a test set the user brings, read at one boundary (never unpickled) and checked."""

import re
import zipfile

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli

from robustbench_mixup.learning import user_data
from robustbench_mixup.learning.data import load_dataset
from robustbench_mixup.settings.errors import UsageError


def _digits():
    d = load_dataset("digits")
    return d.test_images.numpy(), d.test_labels.numpy(), d.train_images.numpy(), d.train_labels.numpy()


def test_an_npz_test_set_reads_back_in_either_layout_and_either_dtype(tmp_path):
    x, y, xt, yt = _digits()
    np.savez(tmp_path / "a.npz", images=(x * 255).round().astype(np.uint8).transpose(0, 2, 3, 1), labels=y,
             train_images=xt, train_labels=yt)  # fmt: skip
    np.savez(tmp_path / "b.npz", images=x, labels=y.astype(np.int32), num_classes=np.int64(12))
    a = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert a.image_shape == (1, 8, 8) and a.num_classes == 10 and len(a.train_labels) == len(yt)
    assert torch.allclose(a.test_images, torch.from_numpy(x), atol=0.5 / 255)  # NHWC uint8 back to NCHW [0, 1]
    assert torch.equal(a.train_images, torch.from_numpy(xt)) and torch.equal(a.test_labels, torch.from_numpy(y))
    b = load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert len(b.train_labels) == 0 and b.num_classes == 12 and torch.equal(b.test_images, torch.from_numpy(x))
    assert all(np.isfinite(b.mean)) and all(s > 0 for s in b.std)  # its statistics from the test images


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"images": np.array([{"a": 1}], dtype=object), "labels": np.zeros(1, np.int64)}, "only pickle could read"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.zeros(2, np.int64)}, "'images' has shape (2, 8, 8)"),
        ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.array([0, -1])}, "labels outside 0.."),
        ({"images": np.full((2, 1, 8, 8), 2.0), "labels": np.zeros(2, np.int64)}, "values outside [0, 1]"),
        ({"images": np.full((2, 1, 8, 8), np.nan), "labels": np.zeros(2, np.int64)}, "values outside [0, 1]"),
        ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.zeros(3, np.int64)}, "expected 2 integer labels"),
        ({"images": np.zeros((2, 1, 8, 8), np.uint8)}, "has no 'labels' array"),
        ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.zeros(2, np.int64),
          "train_images": np.zeros((2, 1, 8, 8), np.uint8)}, "'train_images' and 'train_labels' go together"),
        ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.array([0, 5]), "num_classes": np.int64(3)},
         "'num_classes' must be one integer in [6,"),
    ],
)  # fmt: skip
def test_a_broken_or_hostile_npz_is_one_line(tmp_path, arrays, needle):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UsageError, match=re.escape(needle)):
        load_dataset(f"npz:{path}")


def test_what_is_not_an_npz_or_would_unpack_too_far_is_refused_unread(tmp_path, monkeypatch):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UsageError, match=r"is not a NumPy \.npz archive"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")
    with pytest.raises(UsageError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    x, y, _, _ = _digits()
    np.savez_compressed(tmp_path / "big.npz", images=x, labels=y)
    monkeypatch.setattr(user_data, "MAX_BYTES", 10_000)  # stands for a decompression bomb: the sizes are declared
    assert sum(i.file_size for i in zipfile.ZipFile(tmp_path / "big.npz").infolist()) > 10_000
    with pytest.raises(UsageError, match=r"would unpack to .* bytes, more than the 10,000 accepted"):
        load_dataset(f"npz:{tmp_path / 'big.npz'}")


def test_models_imported_on_an_npz_are_evaluated_and_its_file_must_stay_the_same(tmp_path, capsys):
    """Import on a test set the user brought; a run on a test set without training images says the probe has no
    pairs; a changed file is refused by every later command."""
    from robustbench_mixup.models import build_model

    x, y, _, _ = _digits()
    np.savez(tmp_path / "test.npz", images=x, labels=y)
    data = load_dataset("digits")
    xt, yt = data.train_images, data.train_labels
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=[1, 8, 8], num_classes=10, mean=list(data.mean), std=list(data.std))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for i in range(0, len(yt), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[i : i + 64]), yt[i : i + 64]).backward()
            opt.step()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "import", "--run", "u", "--dataset", f"npz:{tmp_path / 'test.npz'}", "--arch",
                                "mlp", "--member", f"erm={tmp_path / 'm.pt'}", "--member",
                                f"mixup={tmp_path / 'm.pt'}", "--out", str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert f"run u: npz:{tmp_path / 'test.npz'}, mlp" in stdout
    where = ["--run", "u", "--out", str(out), "--device", "cpu"]
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--mode", "white", *where)
    assert code == 0, err
    code, _, err = run_cli(capsys, "probe", *where)
    assert_one_line_error(code, err, "its dataset has no train images, so there are no pairs to probe")
    np.savez(tmp_path / "test.npz", images=x[::-1].copy(), labels=y[::-1].copy())  # the file changes
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--mode", "white", *where)
    assert_one_line_error(code, err, "has changed since run 'u' was imported on it")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height grey pixels (and holds none): what a decompression bomb shows
    before anything is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _write_folder(root, n_per_class=3):
    from PIL import Image

    x, y, _, _ = _digits()
    for k in range(3):
        (root / f"class{k}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(y == k)[:n_per_class]):
            Image.fromarray((x[idx, 0] * 255).round().astype(np.uint8), mode="L").save(root / f"class{k}" / f"{i}.png")
    return x, y


def test_a_folder_of_class_folders_is_a_test_set(tmp_path):
    x, y = _write_folder(tmp_path / "f")
    ds = load_dataset(f"folder:{tmp_path / 'f'}")
    assert ds.classes == ("class0", "class1", "class2") and ds.image_shape == (1, 8, 8) and len(ds.train_labels) == 0
    assert ds.test_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # the label is the folder's index, sorted by name
    first = (x[np.flatnonzero(y == 0)[0], 0] * 255).round() / 255
    assert torch.allclose(ds.test_images[0, 0], torch.from_numpy(first).float())  # PNG is lossless


@pytest.mark.parametrize("case", ["truncated", "bomb", "sizes", "empty"])
def test_a_broken_or_hostile_folder_is_one_line(tmp_path, case):
    from PIL import Image

    root = tmp_path / "f"
    _write_folder(root)
    if case == "truncated":
        f = root / "class1" / "0.png"
        f.write_bytes(f.read_bytes()[:30])
        needle = f"{f} cannot be read as an image"
    elif case == "bomb":
        (root / "class2" / "huge.png").write_bytes(_png_header(20000, 20000))
        needle = "huge.png"
    elif case == "sizes":
        Image.new("L", (9, 9)).save(root / "class2" / "odd.png")
        needle = "is 9x9, the first image 8x8: every image must have one size"
    else:
        root = tmp_path / "nothing"
        root.mkdir()
        needle = "has no class folders"
    with pytest.raises(UsageError, match=re.escape(needle)):
        load_dataset(f"folder:{root}")


def test_models_imported_on_a_folder_are_attacked(tmp_path, capsys):
    from robustbench_mixup.models import build_model

    _write_folder(tmp_path / "f", n_per_class=20)
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=[1, 8, 8], num_classes=3, mean=[0.3], std=[0.37])
    ds = load_dataset(f"folder:{tmp_path / 'f'}")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):  # fit the three classes (their test images are all there is)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(ds.test_images), ds.test_labels).backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "import", "--run", "f", "--dataset", f"folder:{tmp_path / 'f'}", "--arch", "mlp",
                           "--member", f"erm={tmp_path / 'm.pt'}", "--member", f"mixup={tmp_path / 'm.pt'}",
                           "--out", str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--mode", "white", "--run", "f", "--out", str(out),
                           "--device", "cpu")  # fmt: skip
    assert code == 0, err
    (tmp_path / "f" / "class0" / "0.png").unlink()  # the folder changes
    code, _, err = run_cli(capsys, "fgsm", "--eps", "0.1", "--mode", "white", "--run", "f", "--out", str(out),
                           "--device", "cpu")  # fmt: skip
    assert_one_line_error(code, err, "has changed since run 'f' was imported on it")
