from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_idx


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
