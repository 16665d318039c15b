"""numba options, set once for every kernel, and a compiled cache keyed on
the sources the kernels inline.

No fastmath: autograd must propagate NaN and inf exactly, and replayed or
batched results are compared bit-for-bit against rebuilt graphs. The one
exception is the per-sample sums of a batched replay (``kernels.replay``:
``_dot``, ``_rowsum``), reassociable so that they vectorise: a batch's
parameter gradients sum over samples in an order of the kernel's choosing
anyway.

numba's ``cache=True`` keys a kernel's cached machine code on the file that
defines it. crad's kernels inline ``ops.py`` (the rules) and read constants
from other modules, so an edit there would keep running the old code. Every
kernel's cache is therefore also keyed on a digest of all of crad's kernel
sources (this file, ``ops.py``, ``kernels/*.py``): any edit recompiles.
"""
import hashlib
import os

import numba
from numba.core import caching

_HERE = os.path.dirname(os.path.abspath(__file__))

# error_model="numpy": x / 0 is inf or nan as IEEE says, never ZeroDivisionError
# raised from inside a kernel (and the loops carry no zero check).
JIT = dict(error_model="numpy")


def sources_digest(root=_HERE):
    """sha256 over the kernel sources under root (the crad package)."""
    kernels = os.path.join(root, "kernels")
    files = [os.path.join(root, "_config.py"), os.path.join(root, "ops.py")]
    files += sorted(os.path.join(kernels, f) for f in os.listdir(kernels) if f.endswith(".py"))
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


DIGEST = sources_digest()


class _Stamped:
    """A cache locator whose freshness stamp also covers crad's kernel sources."""

    def get_source_stamp(self):
        return (super().get_source_stamp(), DIGEST)


class _UserProvided(_Stamped, caching.UserProvidedCacheLocator):
    pass


class _InTree(_Stamped, caching.InTreeCacheLocator):
    pass


class _UserWide(_Stamped, caching.UserWideCacheLocator):
    pass


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_UserProvided, _InTree, _UserWide]


class _Cache(caching.FunctionCache):
    _impl_class = _Impl


def njit(fn=None, **extra):
    """``numba.njit`` with the project's options and its source-keyed cache."""
    opts = {**JIT, **extra}

    def compile_(f):
        d = numba.njit(**opts)(f)
        d._cache = _Cache(d.py_func)  # what cache=True does, with our locators
        return d

    return compile_ if fn is None else compile_(fn)
