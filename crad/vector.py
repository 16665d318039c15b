"""Vector: many nodes behind one handle, microcrad's Vector of node ids."""
import numbers

import numpy as np

from . import anomaly
from . import kernels as K
from .arena import StaleValueError, current_arena
from .ops import ADD, MUL, POW
from .value import EXITING, DerivedOps, Value, as_float, wrap

_NO_IDS = np.empty(0, np.int32)
_NO_CONSTS = np.empty(0, np.float64)


class Vector(DerivedOps):
    """An array of nodes (any shape) that owns one reference to each.

    Indexing gives a ``Value`` (one element) or a ``Vector`` (a sub-array);
    ``.data`` and ``.grad`` read and write all elements as numpy arrays, and
    iteration walks the first axis. Made by ``leaves``, ``Vector(values)``,
    ``Module.parameters()`` and a model's batched forward.
    """

    __slots__ = ("_arena", "_ids")

    def __init__(self, values):
        """A vector of existing Values (it retains each)."""
        self._arena = None
        values = list(values)
        if not values:
            raise ValueError("a Vector needs at least one Value")
        ids = np.empty(len(values), np.int32)
        a = None
        for k, v in enumerate(values):
            if not isinstance(v, Value):
                raise TypeError(f"a Vector holds Values, not {type(v).__name__} (element {k})")
            b, ids[k] = v._slot()
            if a is None:
                a = b
            elif b is not a:
                raise ValueError("all Values of a Vector must belong to the same arena")
        K.retain_many(a.I, ids)
        self._ids, self._arena = ids, a

    @classmethod
    def _adopt(cls, a, ids):
        """A vector taking over the references the caller owns on ids (int32)."""
        v = object.__new__(cls)
        v._arena, v._ids = a, ids
        return v

    def _slots(self):
        if self._arena is None:
            raise StaleValueError("this Vector was released")
        return self._arena, self._ids

    def __del__(self, _release_many=K.release_many, _exiting=EXITING):  # bound early: globals may be gone at exit
        a = self._arena
        if a is not None and not _exiting[0]:
            self._arena = None
            _release_many(a.F, a.I, a.M, self._ids.reshape(-1))

    def release(self):
        """Give up this vector's references now; the vector becomes stale."""
        a, ids = self._slots()
        self._arena = None
        K.release_many(a.F, a.I, a.M, ids.reshape(-1))

    # -- shape and elements ---------------------------------------------------
    @property
    def shape(self):
        return self._ids.shape

    @property
    def ndim(self):
        return self._ids.ndim

    @property
    def size(self):
        return self._ids.size

    @property
    def arena(self):
        return self._slots()[0]

    def __len__(self):
        return self._ids.shape[0]

    def __getitem__(self, key):
        a, ids = self._slots()
        try:
            sub = ids[key]
        except IndexError as e:
            raise IndexError(f"{e} (Vector of shape {ids.shape})") from None
        if np.ndim(sub) == 0:
            i = int(sub)
            a.I[K.REFS, i] += 1
            return wrap(a, i)
        sub = np.array(sub, np.int32)
        K.retain_many(a.I, sub.reshape(-1))
        return Vector._adopt(a, sub)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def reshape(self, *shape):
        """The same nodes viewed with another shape (a new handle)."""
        a, ids = self._slots()
        sub = ids.reshape(*shape).copy()
        K.retain_many(a.I, sub.reshape(-1))
        return Vector._adopt(a, sub)

    # -- values -------------------------------------------------------------
    def _get(self, row):
        a, ids = self._slots()
        return a.F[row][ids]

    def _set(self, row, x, name):
        a, ids = self._slots()
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, not {x.dtype}")
        if x.shape not in (ids.shape, ()):
            raise ValueError(f"{name} of shape {x.shape} does not fit a Vector of shape {ids.shape}")
        a.F[row][ids] = x

    @property
    def data(self):
        """Node values, as a new numpy array of the vector's shape."""
        return self._get(K.DATA)

    @data.setter
    def data(self, x):
        self._set(K.DATA, x, "data")

    @property
    def grad(self):
        """Node gradients, as a new numpy array of the vector's shape."""
        return self._get(K.GRAD)

    @grad.setter
    def grad(self, x):
        self._set(K.GRAD, x, "grad")

    # -- elementwise graph building: one kernel call, one node per element --
    def _map(self, op, other=None, exponent=None):
        a, x = self._slots()
        y, c = _NO_IDS, _NO_CONSTS
        if isinstance(other, Vector):
            b, y = other._slots()
            if b is not a:
                raise ValueError("operands belong to different arenas")
        elif isinstance(other, Value):
            b, j = other._slot()
            if b is not a:
                raise ValueError("operands belong to different arenas")
            y = np.int32(j)
        elif other is not None:
            c = np.asarray(other)
            if c.dtype.kind not in "biuf":
                return NotImplemented
            c = c.astype(np.float64)
        if exponent is not None:
            c = np.float64(exponent)
        parts = [x, y] if y.size else [x, c] if c.size else [x]
        if len(parts) == 2 and parts[0].shape != parts[1].shape:
            try:  # copies: numba must not see broadcast views (their writeable flag is deprecated)
                parts = [np.array(p) for p in np.broadcast_arrays(*parts)]
            except ValueError:
                raise ValueError(f"shapes {x.shape} and {parts[1].shape} do not broadcast") from None
        shape = parts[0].shape
        flat = [np.ascontiguousarray(p).reshape(-1) for p in parts]
        x = flat[0].astype(np.int32, copy=False)
        if y.size:
            y = flat[1].astype(np.int32, copy=False)
        elif c.size:
            c = flat[1]
        n = x.size
        a.reserve(2 * n if c.size and op in (ADD, MUL) else n)
        out = np.empty(n, np.int32)
        K.emit_map(a.F, a.I, a.M, op, x, y, c, out)
        return anomaly.checked(Vector._adopt(a, out.reshape(shape)), 2 * n if c.size and op in (ADD, MUL) else n)

    def __add__(self, other):
        return self._map(ADD, other)

    def __mul__(self, other):
        return self._map(MUL, other)

    def __pow__(self, exponent):
        if isinstance(exponent, (Value, Vector)):
            raise TypeError("only constant (int or float) exponents are supported")
        return self._map(POW, exponent=as_float(exponent, "exponent"))

    def _unary(self, op):
        return self._map(op)

    # Built from the primitives exactly as micrograd builds the scalar forms.
    def __sub__(self, other):
        if isinstance(other, (Vector, Value)):
            return self + (-other)
        neg = _negated(other)
        return NotImplemented if neg is None else self + neg

    def __truediv__(self, other):
        if isinstance(other, (Vector, Value)):
            return self * other ** -1
        inv = _inverse(other)
        return NotImplemented if inv is None else self * inv

    def sum(self, axis=None):
        """Sum as chains of adds: a Value (axis=None) or a Vector without that axis."""
        a, ids = self._slots()
        if axis is None:
            flat = ids.reshape(-1)
            if flat.size == 1:
                return self[(0,) * ids.ndim]
            a.reserve(flat.size)
            return anomaly.checked(wrap(a, K.emit_sum(a.F, a.I, a.M, flat)), flat.size - 1)
        if not isinstance(axis, (int, np.integer)) or not -ids.ndim <= axis < ids.ndim:
            raise ValueError(f"axis must be None or an int in [-{ids.ndim}, {ids.ndim}), got {axis!r}")
        moved = np.moveaxis(ids, axis, -1)
        rows = np.ascontiguousarray(moved).reshape(-1, moved.shape[-1])
        if rows.shape[1] == 1:
            K.retain_many(a.I, rows.reshape(-1))
            return Vector._adopt(a, rows.reshape(moved.shape[:-1]))
        a.reserve(rows.size)
        out = np.empty(rows.shape[0], np.int32)
        K.emit_rowsum(a.F, a.I, a.M, rows, out)
        return anomaly.checked(Vector._adopt(a, out.reshape(moved.shape[:-1])), rows.shape[0] * (rows.shape[1] - 1))

    def mean(self, axis=None):
        """sum(axis) times 1/n, as micrograd would write it."""
        n = self.size if axis is None else self.shape[axis]
        return self.sum(axis) * (1.0 / n)

    def __repr__(self):
        if self._arena is None:
            return "Vector(<released>)"
        return f"Vector(shape={self.shape}, data={np.array2string(self.data, threshold=8)})"


def leaves(x, arena=None):
    """A Vector of new leaves holding the values of x (any numeric array-like).

    One kernel call, however many leaves; the vector has x's shape.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"leaves() needs numeric values, not {x.dtype}")
    if x.size == 0:
        raise ValueError("leaves() needs at least one value")
    a = current_arena() if arena is None else arena
    flat = np.ascontiguousarray(x, np.float64).reshape(-1)
    a.reserve(flat.size)
    ids = np.empty(flat.size, np.int32)
    K.emit_leaves(a.F, a.I, a.M, flat, ids)
    return anomaly.checked(Vector._adopt(a, ids.reshape(x.shape)), flat.size)


def dot(u, v):
    """The scalar graph of sum_k u[k] * v[k]: n muls and a chain of n - 1 adds.

    u and v are Vectors of the same size in the same arena; one kernel call.
    """
    if not isinstance(u, Vector) or not isinstance(v, Vector):
        raise TypeError(f"dot() takes two Vectors, not {type(u).__name__} and {type(v).__name__}")
    a, x = u._slots()
    b, y = v._slots()
    if a is not b:
        raise ValueError("dot() operands belong to different arenas")
    if x.size != y.size:
        raise ValueError(f"dot() needs Vectors of the same size, got {x.size} and {y.size}")
    a.reserve(2 * x.size - 1)
    return anomaly.checked(wrap(a, K.emit_dot(a.F, a.I, a.M, x.reshape(-1), y.reshape(-1))), 2 * x.size - 1)


def _negated(c):
    if isinstance(c, numbers.Real):
        return -float(c)
    c = np.asarray(c)
    return -c.astype(np.float64) if c.dtype.kind in "biuf" else None


def _inverse(c):
    """1 / c for constants, IEEE (1 / 0 = inf), as numpy divides."""
    c = np.asarray(c)
    if c.dtype.kind not in "biuf":
        return None
    with np.errstate(divide="ignore"):
        return np.float64(1.0) / c.astype(np.float64)
