"""Value: micrograd's scalar, as a handle to one slot of an arena."""
import atexit
import math
import numbers

from . import anomaly
from . import kernels as K
from .arena import StaleValueError, current_arena
from .ops import ADD, EXP, LEAF, LOG, MUL, POW, RELU, SYMBOL, TANH

_BACKWARD_SWEEP = True  # tests turn it off to exercise the general (Kahn) path

# Set when the interpreter exits: handles collected after that skip their
# release (the arena dies with the process, and numba may be half torn down).
EXITING = [False]
atexit.register(EXITING.__setitem__, 0, True)


def as_float(x, what="value"):
    """float(x) for an int, float or numpy real scalar; TypeError otherwise."""
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"{what} must be an int, float or numpy real scalar, not {type(x).__name__}")


def _emit(a, op, l, r, c):
    i = K.emit(a.F, a.I, a.M, op, l, r, c)
    if i < 0:
        a.reserve(1)
        i = K.emit(a.F, a.I, a.M, op, l, r, c)
    return i


def _emit_const(a, op, l, c):
    i = K.emit_const(a.F, a.I, a.M, op, l, c)
    if i < 0:
        a.reserve(2)
        i = K.emit_const(a.F, a.I, a.M, op, l, c)
    return i


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
    """A handle that takes over the reference the caller owns on slot i."""
    v = object.__new__(Value)
    v._arena = a
    v._i = i
    v._g = int(a._gen[i])
    return v


class Value(DerivedOps):
    """A scalar node of a computation graph, with micrograd's API.

    ``Value(x)`` makes a leaf in the current arena. Operators (``+ - * / **``,
    unary ``-``) and ``relu exp log tanh`` make new nodes; ``backward()``
    accumulates gradients into ``.grad`` of everything the value depends on.

    The object is a handle: it owns one reference to its node and gives it
    up when it is garbage-collected or ``release()``d. Two handles to the same
    node compare equal and hash alike.

    >>> a = Value(2.0); b = a * a + 1
    >>> b.backward(); (b.data, a.grad)
    (5.0, 4.0)
    """

    __slots__ = ("_arena", "_i", "_g")

    def __init__(self, data, _children=(), _op="", *, arena=None):
        self._arena = None
        if _children or _op:
            raise TypeError("Value() makes leaves only; build other nodes with operators")
        x = as_float(data, "Value data")
        a = current_arena() if arena is None else arena
        i = _emit(a, LEAF, -1, -1, x)
        self._i, self._g, self._arena = i, int(a._gen[i]), a
        anomaly.checked(self, 1)

    # -- handle --------------------------------------------------------------
    def _slot(self):
        a = self._arena
        if a is None:
            raise StaleValueError("this Value was released; keep a handle (or a retain()ed copy) "
                                  "for as long as you use the node")
        if a._gen[self._i] != self._g:
            raise StaleValueError(f"the node of this Value (slot {self._i}) was freed")
        return a, self._i

    def __del__(self, _release=K.release, _exiting=EXITING):  # bound early: globals may be gone at exit
        a = self._arena
        if a is not None and not _exiting[0] and a._gen[self._i] == self._g:
            self._arena = None
            _release(a.F, a.I, a.M, self._i)

    def release(self):
        """Give up this handle's reference now; the handle becomes stale.

        Frees the node, and whatever it alone kept alive, if nothing else owns it.
        """
        a, i = self._slot()
        self._arena = None
        K.release(a.F, a.I, a.M, i)

    def retain(self):
        """A new handle to the same node, owning one more reference."""
        a, i = self._slot()
        a.I[K.REFS, i] += 1
        return wrap(a, i)

    @property
    def ref_count(self):
        """References to this node: handles, vectors, modules and using nodes."""
        a, i = self._slot()
        return int(a.I[K.REFS, i])

    @property
    def arena(self):
        return self._slot()[0]

    def __eq__(self, other):
        return (isinstance(other, Value) and self._arena is other._arena
                and self._i == other._i and self._g == other._g)

    def __hash__(self):
        return hash((id(self._arena), self._i, self._g))

    # -- data and grad -------------------------------------------------------
    @property
    def data(self):
        a, i = self._slot()
        return float(a.F[K.DATA, i])

    @data.setter
    def data(self, x):
        x = as_float(x, "data")
        a, i = self._slot()
        a.F[K.DATA, i] = x

    @property
    def grad(self):
        a, i = self._slot()
        return float(a.F[K.GRAD, i])

    @grad.setter
    def grad(self, x):
        x = as_float(x, "grad")
        a, i = self._slot()
        a.F[K.GRAD, i] = x

    @property
    def _op(self):
        a, i = self._slot()
        op = int(a.I[K.OP, i])
        return f"**{a.F[K.ARG, i]:g}" if op == POW else SYMBOL[op]

    @property
    def _prev(self):
        """The operands, as new handles (a set, as micrograd's)."""
        a, i = self._slot()
        out = set()
        for j in (int(a.I[K.LHS, i]), int(a.I[K.RHS, i])):
            if j >= 0 and a.I[K.OP, i] != LEAF:
                a.I[K.REFS, j] += 1
                out.add(wrap(a, j))
        return out

    def __repr__(self):
        if self._arena is None:
            return "Value(<released>)"
        return f"Value(data={self.data}, grad={self.grad})"

    def _repr_html_(self):
        """Notebooks show the graph (crad.viz.notebook_html: capped, so a huge graph stays small)."""
        from .viz import notebook_html  # viz imports this module
        return notebook_html(self)

    # -- ops -----------------------------------------------------------------
    def _binary(self, op, other):
        a, i = self._slot()
        if isinstance(other, Value):
            b, j = other._slot()
            if b is not a:
                raise ValueError("operands belong to different arenas; build a graph in one arena")
            return anomaly.checked(wrap(a, _emit(a, op, i, j, 0.0)), 1)
        if isinstance(other, numbers.Real):
            return anomaly.checked(wrap(a, _emit_const(a, op, i, float(other))), 2)
        return NotImplemented

    def _unary(self, op, c=0.0):
        a, i = self._slot()
        return anomaly.checked(wrap(a, _emit(a, op, i, -1, c)), 1)

    def __add__(self, other):
        return self._binary(ADD, other)

    def __mul__(self, other):
        return self._binary(MUL, other)

    def __pow__(self, other):
        if isinstance(other, Value):
            raise TypeError("only constant (int or float) exponents are supported; "
                            "for a Value exponent b use (b * a.log()).exp()")
        return self._unary(POW, as_float(other, "exponent"))

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
        n = K.backward(a.F, a.I, a.M, i, _BACKWARD_SWEEP)
        if anomaly.active:
            anomaly.check_backward(a, n)
