"""Implied volatility with a per-row reason code, on top of the numba kernels in ``_kernels``.

The solver returns either a volatility accurate to ~1e-8 absolute (see ``docs/pricing.md`` for the
precise criterion) or NaN with the reason why no trustworthy volatility exists, so downstream tables
can keep the row and say what went wrong instead of storing a silently wrong number.
"""

from __future__ import annotations

import threading
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from . import _reasons as k
from .black import ArrayLike, FloatArray, as_is_call

# Below this many rows the numba thread pool costs more than it saves.
_PARALLEL_MIN_ROWS = 4096
# Numba's fallback "workqueue" threading layer aborts on concurrent parallel launches (e.g. several
# serving threads); serialising the parallel path is cheap insurance on any layer.
_PARALLEL_LOCK = threading.Lock()

DEFAULT_NOISE_TOL = 1e-9


class IVReason(IntEnum):
    """Why ``implied_vol`` returned what it did (stored as int8 per row)."""

    OK = k.OK
    NAN_INPUT = k.NAN_INPUT
    NON_POSITIVE_INPUT = k.NON_POSITIVE_INPUT
    EXPIRED = k.EXPIRED
    BELOW_INTRINSIC = k.BELOW_INTRINSIC
    ABOVE_UPPER_BOUND = k.ABOVE_UPPER_BOUND
    VEGA_TOO_SMALL = k.VEGA_TOO_SMALL
    NO_CONVERGENCE = k.NO_CONVERGENCE

    def describe(self) -> str:
        """Human-readable sentence for reports and tables."""
        return _DESCRIPTIONS[self]

    @classmethod
    def labels(cls, codes: ArrayLike) -> npt.NDArray[np.str_]:
        """Vectorized code -> lower-case name (e.g. ``"below_intrinsic"``) for a string column."""
        table = np.array([m.name.lower() for m in sorted(cls, key=int)])
        return table[np.asarray(codes, dtype=np.intp)]


_DESCRIPTIONS: dict[IVReason, str] = {
    IVReason.OK: "solved",
    IVReason.NAN_INPUT: "an input is NaN or infinite",
    IVReason.NON_POSITIVE_INPUT: "price, spot or strike is <= 0",
    IVReason.EXPIRED: "time to expiry t <= 0",
    IVReason.BELOW_INTRINSIC: "premium at or below the discounted forward intrinsic value",
    IVReason.ABOVE_UPPER_BOUND: "premium at or above the no-arbitrage bound (S e^-qt call, K e^-rt put)",
    IVReason.VEGA_TOO_SMALL: "vega too small: double-precision premium does not pin vol to the tolerance",
    IVReason.NO_CONVERGENCE: "solver did not converge",
}


def implied_vol_with_reason(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
    *,
    noise_tol: float = DEFAULT_NOISE_TOL,
) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """BSM implied vol (per 1.00, annualised on ``t``) and an ``IVReason`` code per broadcast row.

    ``noise_tol``: a vol is only returned where one ulp of the premium's reference scale (the
    premium for OTM options, max(F, K) for ITM ones, whose intrinsic value must be subtracted) moves
    the vol by at most ``noise_tol``; elsewhere the premium cannot pin the vol and the row is NaN
    with ``VEGA_TOO_SMALL``. The default keeps the error <= 1e-8 for prices carrying ~10 ulps of noise.
    """
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (price, spot, strike, t, r, q)), as_is_call(is_call)
    )
    shape = arrays[0].shape
    # Own contiguous copies: numba must not be handed read-only broadcast views (NumPy warns it will fail).
    flat = [np.array(a, copy=True).reshape(-1) for a in arrays]
    n = flat[0].shape[0]
    out = np.empty(n, dtype=np.float64)
    reason = np.empty(n, dtype=np.int8)
    args = (*flat, float(noise_tol), out, reason)
    from . import _kernels  # numba: imported (and compiled) on the first solve, not with the package

    if n >= _PARALLEL_MIN_ROWS:
        with _PARALLEL_LOCK:
            _kernels.iv_parallel(*args)
    else:
        _kernels.iv_serial(*args)
    return out.reshape(shape), reason.reshape(shape)


def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
    *,
    noise_tol: float = DEFAULT_NOISE_TOL,
) -> FloatArray:
    """BSM implied vol; NaN where no volatility reproduces the price (see ``implied_vol_with_reason``)."""
    return implied_vol_with_reason(price, spot, strike, t, r, is_call, q, noise_tol=noise_tol)[0]
