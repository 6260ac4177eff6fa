"""The one check every statistic makes of its input: a finite 1-D vector of numbers."""

from __future__ import annotations

import numpy as np


def finite_vector(values, name: str, *, size=None, min_size: int = 0) -> np.ndarray:
    """`values` as a 1-D float array, or a one-line ValueError naming `name`.

    Args:
        values: sequence of numbers.
        name: str. The argument's name, for the message.
        size: int, optional. The length it must have.
        min_size: int, default 0. The fewest values it may hold.
    """
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected a sequence of numbers, got {values!r:.80}") from error
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise ValueError(f"{name}: expected {size} values (one per label), got {arr.size}")
    if arr.size < min_size:
        raise ValueError(f"{name}: needs at least {min_size} values, got {arr.size}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}: value at index {int(bad[0])} is {arr[bad[0]]}; "
                         f"expected finite numbers")
    return arr
