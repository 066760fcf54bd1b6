"""Input checks shared by the economics modules, and the error they raise."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


class EconomicsInputError(ValueError):
    """An economics input outside its domain (names the argument, element and value)."""


def as_float(x: ArrayLike) -> FloatArray:
    """`x` as a float64 array (no copy when it already is one)."""
    return np.asarray(x, dtype=np.float64)


def check_range(lower: FloatArray, upper: FloatArray) -> None:
    """Raise EconomicsInputError unless 0 <= lower < upper element-wise (NaN passes through)."""
    bad = (lower < 0) | (lower >= upper)
    if np.any(bad):
        lo, hi = np.broadcast_arrays(lower, upper)
        b = np.broadcast_to(bad, lo.shape)
        i = np.unravel_index(int(np.argmax(b)), b.shape) if b.ndim else ()
        raise EconomicsInputError(
            "price range must satisfy 0 <= lower < upper: element "
            f"{tuple(int(k) for k in i)} has lower={float(lo[i])!r}, upper={float(hi[i])!r}")


def as_names(values: object) -> np.ndarray:
    """A str (unicode) array of names: chains, protocols (None and NaN become 'None', 'nan')."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind == "U" else arr.astype(str)


def protocol_masks(protocol: object, known: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Boolean mask per known protocol name; raise naming the first unknown protocol."""
    names = as_names(protocol)
    masks = {k: np.asarray(names == k) for k in known}
    ok = np.logical_or.reduce(list(masks.values())) if masks else np.zeros(names.shape, bool)
    if not np.all(ok):
        bad = sorted(set(np.asarray(names)[~ok].ravel().tolist()))
        raise EconomicsInputError(f"unknown protocol(s) {bad}; expected one of {known}")
    return masks
