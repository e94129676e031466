"""Seeds derived from one recorded seed, so every random stream is reproducible on its own.

Training draws batch order, augmentation, mixing and dropout from separate streams, each seeded by
`derive_seed(seed, stream, epoch)`. Because no stream carries state across epochs, a resumed run
only needs the epoch number to continue exactly where it stopped.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends on `seed` and `keys` only (stable across Python runs)."""
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded by `derive_seed(seed, *keys)`.

    CPU generators give the same draws whatever device the model runs on, so CPU and CUDA runs see
    the same batches; the few integers drawn per batch are then moved to the device.
    """
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
