from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx  # the package's command line, which imports no torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes (pytest -n): a core each, so torch
    os.environ["OMP_NUM_THREADS"] = "1"  # takes one thread, here and in every process a test starts

import torch  # after the thread count is set


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    """A tiny Fashion-MNIST in its real file format: 30 train and 10 test 28x28 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fm"
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    return root


@pytest.fixture(autouse=True)
def _single_thread_determinism() -> None:
    torch.manual_seed(1234)  # tests that forget a generator still see fixed numbers


@pytest.fixture(scope="session")
def trained_smallcnn():
    """A smallcnn trained for two epochs on mnist-5k, and its 1,000 test images (shared: attacks never
    change a model's weights, mode or flags)."""
    from robustbench_mixup.learning.data import load_dataset
    from robustbench_mixup.learning.loop import init_model, train_epoch
    from robustbench_mixup.settings.config import TrainConfig

    data = load_dataset("mnist-5k")
    model = init_model(TrainConfig(model="smallcnn"), data, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(2):
        train_epoch(model, opt, data.train_images, data.train_labels, method="erm", param=0.0, num_classes=10,
                    batch_size=128, seed=0, epoch=epoch, augment=False)  # fmt: skip
    return model.eval(), data.test_images[:1000], data.test_labels[:1000]
