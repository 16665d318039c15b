"""numba options, set once for every kernel.

No fastmath: autograd must propagate NaN and inf exactly, and replayed or
batched results are compared bit-for-bit against rebuilt graphs.
"""
import numba

# error_model="numpy": x / 0 is inf or nan as IEEE says, never ZeroDivisionError
# raised from inside a kernel (and the loops carry no zero check).
JIT = dict(cache=True, error_model="numpy")


def njit(fn=None, **extra):
    """``numba.njit`` with the project's options."""
    opts = {**JIT, **extra}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)
