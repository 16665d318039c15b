"""Vector: many nodes behind one handle, microcrad's Vector of node ids."""
import numbers
import threading

import numpy as np

from . import anomaly
from . import kernels as K
from .arena import StaleValueError, arena_arg, mixed
from .ops import ADD, MUL, POW
from .value import EXITING, DerivedOps, Value, as_float, wrap

_NO_IDS = np.empty(0, np.int32)
_NO_CONSTS = np.empty(0, np.float64)


def _queue_releases(a, ids):
    """Drop one reference to each slot of ids (int32). From the owning thread:
    now, after applying what the journal holds (one kernel call each). From
    another thread: queued (one list append), for the owner to apply."""
    if a._owner == threading.get_ident():
        K.release_many(*a.columns(), ids.reshape(-1))
    else:
        a._vrel.append((np.int64(a._k) << 32) | ids.reshape(-1).astype(np.int64))


def _readonly(x):
    x = np.asarray(x)  # a 0-d Vector's values come out of numpy as a scalar
    x.flags.writeable = False
    return x


class Vector(DerivedOps):
    """An array of nodes (any shape) that owns one reference to each.

    Indexing gives a ``Value`` (one element) or a ``Vector`` (a sub-array);
    ``.data`` and ``.grad`` read and write all elements as numpy arrays, and
    iteration walks the first axis. Made by ``leaves``, ``Vector(values)``,
    ``Module.parameters()`` and a model's batched forward.
    """

    __slots__ = ("_arena", "_ids")
    __array_ufunc__ = None  # numpy defers to our reflected operators: np.ones(3) * v is a Vector

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
        K.retain_many(a.columns()[1], ids)
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

    def __del__(self, _queue=_queue_releases, _exiting=EXITING):  # bound early: globals may be gone at exit
        a = self._arena
        if a is not None and not _exiting[0] and self._ids.size:
            self._arena = None
            _queue(a, self._ids)

    def release(self):
        """Give up this vector's references now; the vector becomes stale."""
        a, ids = self._slots()
        self._arena = None
        if ids.size:
            _queue_releases(a, ids)

    def __copy__(self):
        """A new Vector of the same nodes, with references of its own."""
        return self[...]

    def __deepcopy__(self, memo):
        raise TypeError("a Vector holds nodes of a graph and cannot be deep-copied; use copy.copy (new "
                        "references to the same nodes) or crad.leaves(v.data) (new leaves)")

    def __reduce_ex__(self, protocol):
        raise TypeError("a Vector cannot be pickled; save numbers (v.data) or a model (MLP.save)")

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
        if self._ids.ndim == 0:
            raise TypeError("len() of a 0-d Vector (a single node); use .size, or v[()] for its Value")
        return self._ids.shape[0]

    def __getitem__(self, key):
        a, ids = self._slots()
        try:
            sub = ids[key]
        except IndexError as e:
            raise IndexError(f"{e} (Vector of shape {ids.shape})") from None
        if not isinstance(sub, np.ndarray):  # an element (v[...] of a 0-d Vector stays a Vector)
            i = int(sub)
            if a._owner != threading.get_ident():
                a._check_thread()
            a._rel.append(a._k << 32 | i | K.RETAIN)  # applied in order with the journal
            return wrap(a, i)
        sub = np.array(sub, np.int32)
        K.retain_many(a.columns()[1], sub.reshape(-1))
        return Vector._adopt(a, sub)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def reshape(self, *shape):
        """The same nodes viewed with another shape (a new handle)."""
        a, ids = self._slots()
        sub = ids.reshape(*shape).copy()
        K.retain_many(a.columns()[1], sub.reshape(-1))
        return Vector._adopt(a, sub)

    # -- values -------------------------------------------------------------
    def _get(self, row):
        a, ids = self._slots()
        return _readonly(a.columns()[0][row][ids])

    def _set(self, row, x, name):
        a, ids = self._slots()
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, not {x.dtype}")
        if x.shape not in (ids.shape, ()):
            raise ValueError(f"{name} of shape {x.shape} does not fit a Vector of shape {ids.shape}")
        a.columns()[0][row][ids] = x

    @property
    def data(self):
        """Node values, as a new read-only numpy array of the vector's shape
        (assign ``v.data = ...`` to change them)."""
        return self._get(K.DATA)

    @data.setter
    def data(self, x):
        self._set(K.DATA, x, "data")

    @property
    def grad(self):
        """Node gradients, as a new read-only numpy array of the vector's
        shape (assign ``v.grad = ...`` to change them)."""
        return self._get(K.GRAD)

    @grad.setter
    def grad(self, x):
        self._set(K.GRAD, x, "grad")

    # -- elementwise graph building: one kernel call, one node per element --
    def _map(self, op, other=None, exponent=None):
        """One node per element: op(self, other) with other a Vector or Value
        (nodes), numbers (micrograd's constant leaves), or nothing (a unary
        op, with POW's exponent). Shapes broadcast as numpy's do."""
        a, x = self._slots()
        if isinstance(other, (Vector, Value)):
            b, y = other._slots() if isinstance(other, Vector) else other._slot()
            if b is not a:
                raise mixed((a, b))
            mode, y = K.MAP_NODES, np.asarray(y, np.int32)
        elif other is not None:
            y = np.asarray(other)
            if y.dtype.kind not in "biuf":
                return NotImplemented
            mode, y = K.MAP_CONSTS, y.astype(np.float64)
        else:
            mode, y = K.MAP_UNARY, np.full(x.shape, 0.0 if exponent is None else exponent)
        if x.shape != y.shape:
            try:  # copies: numba must not see broadcast views (their writeable flag is deprecated)
                x, y = (np.array(p) for p in np.broadcast_arrays(x, y))
            except ValueError:
                raise ValueError(f"shapes {x.shape} and {y.shape} do not broadcast") from None
        shape = x.shape
        x = np.ascontiguousarray(x, np.int32).reshape(-1)
        y = np.ascontiguousarray(y).reshape(-1)
        ids, c = (y, _NO_CONSTS) if mode == K.MAP_NODES else (_NO_IDS, y)
        out = np.empty(x.size, np.int32)
        _, new = a.build(x.size * (2 if mode == K.MAP_CONSTS else 1), K.emit_map, op, mode, x, ids, c, out)
        return anomaly.checked(Vector._adopt(a, out.reshape(shape)), new)

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
        """Sum as chains of adds: a Value (axis=None) or a Vector without that
        axis. A sum over no elements is a new leaf 0.0, as Python's sum([])."""
        a, ids = self._slots()
        if axis is None:
            flat = ids.reshape(-1)
            if flat.size <= 1:
                return self[(0,) * ids.ndim] if flat.size else Value(0.0, arena=a)
            root, new = a.build(flat.size - 1, K.emit_sum, flat)
            return anomaly.checked(wrap(a, root), new)
        if not isinstance(axis, (int, np.integer)) or not -ids.ndim <= axis < ids.ndim:
            raise ValueError(f"axis must be None or an int in [-{ids.ndim}, {ids.ndim}), got {axis!r}")
        moved = np.moveaxis(ids, axis, -1)
        rows = np.ascontiguousarray(moved).reshape(int(np.prod(moved.shape[:-1])), moved.shape[-1])
        if rows.shape[1] <= 1 or rows.shape[0] == 0:
            if rows.shape[0] == 0:  # no sums to make
                return Vector._adopt(a, np.empty(moved.shape[:-1], np.int32))
            if rows.shape[1] == 0:  # sums of nothing
                return leaves(np.zeros(moved.shape[:-1]), arena=a)
            K.retain_many(a.columns()[1], rows.reshape(-1))
            return Vector._adopt(a, rows.reshape(moved.shape[:-1]))
        out = np.empty(rows.shape[0], np.int32)
        _, new = a.build(rows.shape[0] * (rows.shape[1] - 1), K.emit_rowsum, rows, out)
        return anomaly.checked(Vector._adopt(a, out.reshape(moved.shape[:-1])), new)

    def mean(self, axis=None):
        """sum(axis) times 1/n, as micrograd would write it."""
        ndim = self._slots()[1].ndim
        if axis is not None and (not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim):
            raise ValueError(f"axis must be None or an int in [-{ndim}, {ndim}), got {axis!r}")
        n = self.size if axis is None else self.shape[axis]
        if n == 0:
            raise ValueError(f"mean over no elements (a Vector of shape {self.shape}); "
                             "an empty batch has no mean: skip it")
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
    a = arena_arg(arena)
    flat = np.ascontiguousarray(x, np.float64).reshape(-1)
    ids = np.empty(flat.size, np.int32)
    _, new = a.build(flat.size, K.emit_leaves, flat, ids)
    return anomaly.checked(Vector._adopt(a, ids.reshape(x.shape)), new)


def dot(u, v):
    """The scalar graph of sum_k u[k] * v[k]: n muls and a chain of n - 1 adds
    (a new leaf 0.0 when n is 0). u and v are Vectors of the same size in
    the same arena; one kernel call."""
    if not isinstance(u, Vector) or not isinstance(v, Vector):
        raise TypeError(f"dot() takes two Vectors, not {type(u).__name__} and {type(v).__name__}")
    a, x = u._slots()
    b, y = v._slots()
    if a is not b:
        raise mixed((a, b), "dot() operands")
    if x.size != y.size:
        raise ValueError(f"dot() needs Vectors of the same size, got {x.size} and {y.size}")
    if x.size == 0:
        return Value(0.0, arena=a)
    root, new = a.build(2 * x.size - 1, K.emit_dot, x.reshape(-1), y.reshape(-1))
    return anomaly.checked(wrap(a, root), new)


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


def stack(vectors):
    """One Vector of shape (k, *shape) holding the nodes of k Vectors of the
    same shape and arena (no new nodes: it retains each node once more)."""
    vectors = list(vectors)
    if not vectors or not all(isinstance(v, Vector) for v in vectors):
        raise TypeError("stack() takes a non-empty sequence of Vectors")
    parts = [v._slots() for v in vectors]
    a, shape = parts[0][0], parts[0][1].shape
    for k, (b, ids) in enumerate(parts):
        if b is not a:
            raise mixed((a, b), f"stack(): Vector 0 and Vector {k}")
        if ids.shape != shape:
            raise ValueError(f"stack(): Vector {k} has shape {ids.shape}, Vector 0 has {shape}")
    ids = np.stack([ids for _, ids in parts])
    K.retain_many(a.columns()[1], ids.reshape(-1))
    return Vector._adopt(a, ids)
