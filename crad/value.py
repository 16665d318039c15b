"""Value: micrograd's scalar, as a handle to one slot of an arena.

The operators write behind (``kernels.journal``): ``a * b`` claims the next
slot of a block the arena claimed in advance, writes one record into the
journal and returns a handle, with no kernel call; a collected handle queues
its release. The arena applies both, in order, before anyone reads or writes
the columns. Under ``detect_anomaly()`` every record is applied at once, so
the first non-finite value is caught where it is made.
"""
import atexit
import math
import numbers
import threading

from . import anomaly
from . import kernels as K
from .arena import ArenaThreadError, StaleValueError, _local, arena_arg, current_arena, mixed
from .ops import ADD, EXP, LEAF, LOG, MUL, POW, RELU, SYMBOL, TANH

_BACKWARD_SWEEP = True  # tests turn it off to exercise the general (Kahn) path

# Set when the interpreter exits: handles collected after that skip their
# release (the arena dies with the process, and numba may be half torn down).
EXITING = [False]
atexit.register(EXITING.__setitem__, 0, True)

_new = object.__new__
_ident = threading.get_ident
_anomaly = anomaly.active  # the list itself: truthy while detect_anomaly() is on
CONST_LEAF, RETAIN = K.CONST_LEAF, K.RETAIN


def as_float(x, what="value"):
    """float(x) for an int, float or numpy real scalar; TypeError otherwise."""
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"{what} must be an int, float or numpy real scalar, not {type(x).__name__}")


def _record(a, op, l, r, c):
    """A new handle to op(l, r) (a LEAF of value c when op is LEAF), written
    to a's journal. The handle owns the node's one reference."""
    if a._owner != _ident():
        a._check_thread()
    k = a._k
    if k == a._kend:
        k = a._claim()
    a._k = k + 1
    a._jopv[k] = op
    a._jlv[k] = l
    a._jrv[k] = r
    a._jcv[k] = c
    i = a._resv[k]
    v = _new(Value)
    v._arena = a
    v._i = i
    v._g = a._genv[i]
    if _anomaly:
        anomaly.check_record(v, 1)
    return v


def _record_const(a, op, l, c):
    """op(l, leaf(c)): micrograd's constant operand, two records (the
    caller checked the thread)."""
    k = a._k
    if k + 2 > a._kend:
        k = a._claim(2)
    a._k = k + 2
    resv = a._resv
    a._jopv[k] = CONST_LEAF
    a._jcv[k] = c
    a._jopv[k + 1] = op
    a._jlv[k + 1] = l
    a._jrv[k + 1] = resv[k]
    a._jcv[k + 1] = 0.0
    i = resv[k + 1]
    v = _new(Value)
    v._arena = a
    v._i = i
    v._g = a._genv[i]
    if _anomaly:
        anomaly.check_record(v, 2)
    return v


class DerivedOps:
    """What Value and Vector share on top of their own ``_unary(op)``, ``+``,
    ``*`` and ``**``: the unary primitives, and the operators micrograd builds
    from the primitives, so both make the same nodes: -x is x * -1, c - x is
    (-x) + c, c / x is x ** -1 * c, the reflected + and * put the handle left."""

    def relu(self):
        return self._unary(RELU)

    def exp(self):
        return self._unary(EXP)

    def log(self):
        return self._unary(LOG)

    def tanh(self):
        return self._unary(TANH)

    def __neg__(self):
        return self * -1.0

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return (-self) + other

    def __rtruediv__(self, other):
        return self ** -1 * other


def wrap(a, i):
    """A handle that takes over the reference the caller owns on slot i
    (a live node of a's applied columns)."""
    v = _new(Value)
    v._arena = a
    v._i = i
    v._g = a._genv[i]
    return v


def _operator(op):
    """Value.__add__ or __mul__. The hot path of every micrograd program: it
    checks what it must (one arena, live operands, the owning thread) and
    writes the record inline (``_record``'s steps: a call costs as much as
    a third of the rest); anything unusual takes ``_binary``'s checked path."""
    def operator(self, other):
        a = self._arena
        if a is None or a._genv[self._i] != self._g or a._owner != _ident():
            return self._binary(op, other)
        if type(other) is Value:
            if other._arena is not a or a._genv[other._i] != other._g:
                return self._binary(op, other)
            k = a._k
            if k == a._kend:
                k = a._claim()
            a._k = k + 1
            a._jopv[k] = op
            a._jlv[k] = self._i
            a._jrv[k] = other._i
            i = a._resv[k]
            v = _new(Value)
            v._arena = a
            v._i = i
            v._g = a._genv[i]
            if _anomaly:
                anomaly.check_record(v, 1)
            return v
        if type(other) is float:
            return _record_const(a, op, self._i, other)
        return self._binary(op, other)
    operator.__name__ = operator.__qualname__ = "__add__" if op == ADD else "__mul__"
    return operator


class Value(DerivedOps):
    """A scalar node of a computation graph, with micrograd's API.

    ``Value(x)`` makes a leaf in the current arena. Operators (``+ - * / **``,
    unary ``-``) and ``relu exp log tanh`` make new nodes; ``backward()``
    accumulates gradients into ``.grad`` of everything the value depends on.

    The object is a handle: it owns one reference to its node and gives it
    up when it is garbage-collected or ``release()``d. Two handles to the same
    node compare equal and hash alike. ``copy.copy`` gives a new handle with a
    reference of its own (as ``retain()``); deep copies and pickling are refused.

    >>> a = Value(2.0); b = a * a + 1
    >>> b.backward(); (b.data, a.grad)
    (5.0, 4.0)
    """

    __slots__ = ("_arena", "_i", "_g")
    __array_ufunc__ = None  # numpy defers to our reflected operators: np.float64(2) * v is a Value

    def __init__(self, data, _children=(), _op="", *, arena=None):
        self._arena = None
        if _children or _op:
            raise TypeError("Value() makes leaves only; build other nodes with operators")
        x = data if type(data) is float else as_float(data, "Value data")
        if arena is None:
            try:
                a = _local.current  # current_arena(), without its call
            except AttributeError:
                a = current_arena()
        else:
            a = arena_arg(arena)
        if a._owner != _ident():
            a._check_thread()
        k = a._k  # _record's steps, inlined: a leaf is a third of a micrograd graph
        if k == a._kend:
            k = a._claim()
        a._k = k + 1
        a._jopv[k] = LEAF
        a._jcv[k] = x
        i = a._resv[k]
        self._i = i
        self._g = a._genv[i]
        self._arena = a
        if _anomaly:
            anomaly.check_record(self, 1)

    # -- handle --------------------------------------------------------------
    def _slot(self):
        a = self._arena
        if a is None:
            raise StaleValueError("this Value was released; keep a handle (or a retain()ed copy) "
                                  "for as long as you use the node")
        if a._genv[self._i] != self._g:
            raise StaleValueError(f"the node of this Value (slot {self._i}) was freed")
        return a, self._i

    def _live_slot(self):
        """(arena, slot) with the arena's journal applied, for a kernel call."""
        a, i = self._slot()
        a.columns()
        return a, i

    def __del__(self):
        # One list append (atomic: safe from any thread, inside a GC pass, at
        # exit); the position orders it among the records (kernels.journal).
        a = self._arena
        if a is not None and a._genv[self._i] == self._g:
            a._rel.append(a._k << 32 | self._i)

    def release(self):
        """Give up this handle's reference now; the handle becomes stale.

        Frees the node, and whatever it alone kept alive, if nothing else owns it.
        """
        a, i = self._slot()
        self._arena = None
        a._rel.append(a._k << 32 | i)
        if a._owner == _ident():
            a._sync()  # at once: every other handle to a freed node is stale now

    def retain(self):
        """A new handle to the same node, owning one more reference."""
        a, i = self._slot()
        if a._owner != _ident():
            a._check_thread()
        a._rel.append(a._k << 32 | i | RETAIN)  # applied in order with the journal
        return wrap(a, i)

    def __copy__(self):
        return self.retain()

    def __deepcopy__(self, memo):
        raise TypeError("a Value is a handle to a node of a graph and cannot be deep-copied; "
                        "use copy.copy (a new handle to the same node) or Value(v.data) (a new leaf)")

    def __reduce_ex__(self, protocol):
        raise TypeError("a Value cannot be pickled; save numbers (v.data) or a model (MLP.save)")

    @property
    def ref_count(self):
        """References to this node: handles, vectors, modules and using nodes."""
        a, i = self._live_slot()
        return int(a._I[K.REFS, i])

    @property
    def arena(self):
        return self._slot()[0]

    def __eq__(self, other):
        return (isinstance(other, Value) and self._arena is other._arena
                and self._i == other._i and self._g == other._g)

    def __hash__(self):
        return hash((id(self._arena), self._i, self._g))

    # -- data and grad: pending records are applied first, since they compute
    # the values (and zero the grads) of their nodes and read their operands'.
    @property
    def data(self):
        a = self._arena
        if a is None or a._genv[self._i] != self._g or a._owner != _ident():
            self._slot()
            a._check_thread()
        if a._k:
            a._sync()
        return a._datav[self._i]

    @data.setter
    def data(self, x):
        x = x if type(x) is float else as_float(x, "data")
        a = self._arena
        if a is None or a._genv[self._i] != self._g or a._owner != _ident():
            self._slot()
            a._check_thread()
        if a._k:
            a._sync()
        a._datav[self._i] = x

    @property
    def grad(self):
        a = self._arena
        if a is None or a._genv[self._i] != self._g or a._owner != _ident():
            self._slot()
            a._check_thread()
        if a._k:
            a._sync()
        return a._gradv[self._i]

    @grad.setter
    def grad(self, x):
        x = x if type(x) is float else as_float(x, "grad")
        a = self._arena
        if a is None or a._genv[self._i] != self._g or a._owner != _ident():
            self._slot()
            a._check_thread()
        if a._k:
            a._sync()
        a._gradv[self._i] = x

    @property
    def _op(self):
        a, i = self._live_slot()
        op = int(a._I[K.OP, i])
        return f"**{a._F[K.ARG, i]:g}" if op == POW else SYMBOL[op]

    @property
    def _prev(self):
        """The operands, as new handles (a set, as micrograd's)."""
        a, i = self._live_slot()
        I = a._I
        out = set()
        for j in (int(I[K.LHS, i]), int(I[K.RHS, i])):
            if j >= 0 and I[K.OP, i] != LEAF:
                I[K.REFS, j] += 1
                out.add(wrap(a, j))
        return out

    def __repr__(self):
        a = self._arena
        if a is None:
            return "Value(<released>)"
        if a._owner != _ident():
            return "Value(<in another thread's arena>)"
        return f"Value(data={self.data}, grad={self.grad})"

    def _repr_html_(self):
        """Notebooks show the graph (crad.viz.notebook_html: capped, so a huge graph stays small)."""
        from .viz import notebook_html  # viz imports this module
        return notebook_html(self)

    # -- ops ------------------------------------------------------------------
    def _binary(self, op, other):
        """The checked path of + and * (and anything the fast path declines)."""
        a, i = self._slot()
        if isinstance(other, Value):
            b, j = other._slot()
            if b is not a:
                raise mixed((a, b))
            return _record(a, op, i, j, 0.0)
        if isinstance(other, numbers.Real):
            a._check_thread()
            return _record_const(a, op, i, float(other))
        return NotImplemented

    def _unary(self, op, c=0.0):
        a = self._arena
        if a is None or a._genv[self._i] != self._g:
            self._slot()
        return _record(a, op, self._i, -1, c)

    __add__ = _operator(ADD)
    __mul__ = _operator(MUL)

    def __pow__(self, other):
        if isinstance(other, Value):
            raise TypeError("only constant (int or float) exponents are supported; "
                            "for a Value exponent b use (b * a.log()).exp()")
        return self._unary(POW, other if type(other) is float else as_float(other, "exponent"))

    def __rpow__(self, other):
        raise TypeError("a Value exponent is not supported; for c ** v use (v * math.log(c)).exp()")

    # Built from the primitives exactly as micrograd builds them (see DerivedOps).
    def __sub__(self, other):
        if not isinstance(other, (Value, numbers.Real)):
            return NotImplemented
        return self + (-other)

    def __truediv__(self, other):
        if isinstance(other, Value):
            return self * other ** -1
        if isinstance(other, numbers.Real):
            c = float(other)  # IEEE: a / 0 multiplies by inf, as numpy would
            return self * (1.0 / c if c else math.copysign(math.inf, c))
        return NotImplemented

    # -- backward ------------------------------------------------------------
    def backward(self):
        """Set this node's grad to 1 and accumulate (+=) the chain rule into
        every node it depends on. Gradients add up across calls, as in
        micrograd: zero them (``Module.zero_grad``) between steps."""
        a, i = self._slot()
        F, I, M = a.columns()
        n = K.backward(F, I, M, i, _BACKWARD_SWEEP)
        if anomaly.active and anomaly.mine():
            anomaly.check_backward(a, n)


__all__ = ["ArenaThreadError", "DerivedOps", "StaleValueError", "Value", "as_float", "wrap"]
