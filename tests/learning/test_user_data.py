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
    assert_one_line_error(code, err, "is not the file run 'u' was imported on")
