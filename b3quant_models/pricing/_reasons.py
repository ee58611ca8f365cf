"""IV reason codes shared by the numba kernels and ``IVReason`` (kept apart so that ``IVReason`` and the
rest of the pricing API import without numba; the kernels are compiled on first use)."""

OK = 0
NAN_INPUT = 1
NON_POSITIVE_INPUT = 2
EXPIRED = 3
BELOW_INTRINSIC = 4
ABOVE_UPPER_BOUND = 5
VEGA_TOO_SMALL = 6
NO_CONVERGENCE = 7
