"""Per-example outcomes and values as compact blobs, and back (checked against the length they claim); the
timestamps and integer checks of stored rows."""

from __future__ import annotations

import datetime as dt
from typing import Any


def pack_outcomes(correct: Any) -> bytes:
    """Per-example bool outcomes as bits (numpy.packbits order): 1,250 bytes for 10,000 examples."""
    import numpy as np

    return np.packbits(np.asarray(correct.cpu() if hasattr(correct, "cpu") else correct, dtype=bool)).tobytes()


def unpack_outcomes(blob: Any, n: int) -> Any:
    """`pack_outcomes` undone: a numpy bool array of shape (n,), or None for a row stored without outcomes."""
    if blob is None:
        return None
    if not isinstance(blob, bytes) or len(blob) != (n + 7) // 8:
        raise ValueError(f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes for {n} examples")
    import numpy as np

    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n).astype(bool)


def pack_values(values: Any) -> bytes:
    """Per-unit real values as little-endian float32 (4 bytes each)."""
    import numpy as np

    return np.asarray(values.cpu() if hasattr(values, "cpu") else values, dtype="<f4").tobytes()


def unpack_values(blob: Any, n: int) -> Any:
    """`pack_values` undone: a float64 numpy array of shape (n,) (None for none stored); refuses a blob of
    the wrong size or holding a non-finite value."""
    if blob is None:
        return None
    import numpy as np

    if not isinstance(blob, bytes) or len(blob) != 4 * n:
        raise ValueError(f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes for {n} values")
    values = np.frombuffer(blob, dtype="<f4").astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("a value is not finite")
    return values


def now() -> str:
    """The time a row is written, in UTC to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def is_int(value: Any) -> bool:
    """An integer read back from a row, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
