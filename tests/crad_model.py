"""A plain-Python model of crad's public API, for the fuzz and model tests.

The model builds the graph micrograd's way, one Python object per node, with
each derived op (``-``, ``/``, negation, constant operands) spelled out here
from the primitives, independently of crad's facade. A test applies the same
Python expression to a crad object and to its model twin, then checks the
arena against the model:

- ``live`` equals the number of model nodes reachable from what the test holds;
- every held handle's node, and everything below it, sits in the slot the
  arena's LHS/RHS wiring says (op, operands and constant as modelled), with
  the value and gradient the model computed (NaN-aware, within a tolerance
  scaled by the magnitude of what was summed);
- optionally (``exact_refs``), each node's REFS equals the handles holding
  it plus the operand cells of live nodes that use it.

Values follow the engine's specification (tests/naive.py): C's libm through
``math``, IEEE results where ``math`` raises.
"""
import itertools
import math

import numpy as np

from crad import Value
from crad import kernels as K
from crad.ops import ADD, EXP, LEAF, LOG, MUL, POW, RELU, TANH

_keys = itertools.count()


def _ieee(fn, fallback, *args):
    try:
        return float(fn(*map(float, args)))
    except (ValueError, OverflowError, ZeroDivisionError):
        with np.errstate(all="ignore"):
            return float(fallback(*map(np.float64, args)))


def forward(op, x, y, c):
    if op == ADD:
        return x + y
    if op == MUL:
        return x * y
    if op == POW:
        return _ieee(math.pow, np.power, x, c)
    if op == EXP:
        return _ieee(math.exp, np.exp, x)
    if op == LOG:
        return _ieee(math.log, np.log, x)
    if op == RELU:
        return 0.0 if x < 0.0 else x
    if op == TANH:
        return _ieee(math.tanh, np.tanh, x)
    raise AssertionError(op)


def local_grads(op, x, y, c, out, g):
    """(d/dx, d/dy) times g, as crad's ops.backward (IEEE throughout)."""
    with np.errstate(all="ignore"):
        x, y, c, out, g = map(np.float64, (x, y, c, out, g))
        if op == ADD:
            return g, g
        if op == MUL:
            return y * g, x * g
        if op == POW:
            return (c * np.float64(_ieee(math.pow, np.power, x, c - 1.0)) * g if c != 0.0 else 0.0), 0.0
        if op == EXP:
            return out * g, 0.0
        if op == LOG:
            return g / x, 0.0
        if op == RELU:
            return (g if out > 0.0 else 0.0), 0.0
        if op == TANH:
            return (1.0 - out * out) * g, 0.0
    raise AssertionError(op)


class Derived:
    """What Node and Vec build from their own ``_unary(op)``, ``+``, ``*``
    and ``**``, exactly as micrograd does: the unary primitives, -x = x * -1,
    c - x = (-x) + c, c / x = x ** -1 * c, reflected + and * with x left."""

    __slots__ = ()

    def __neg__(self):
        return self * -1.0

    def __radd__(self, o):
        return self + o

    def __rmul__(self, o):
        return self * o

    def __rsub__(self, o):
        return (-self) + o

    def __rtruediv__(self, o):
        return self ** -1 * o

    def relu(self):
        return self._unary(RELU)

    def exp(self):
        return self._unary(EXP)

    def log(self):
        return self._unary(LOG)

    def tanh(self):
        return self._unary(TANH)


class Node(Derived):
    """A model node: micrograd's Value, with a creation key (operands always
    have smaller keys, so descending keys are a reverse topological order)."""

    __slots__ = ("key", "op", "l", "r", "c", "data", "grad", "mag")
    __array_ufunc__ = None  # numpy scalars on the left defer to us, as they do to crad.Value

    def __init__(self, op, l=None, r=None, c=0.0):
        self.key = next(_keys)
        self.op, self.l, self.r, self.c = op, l, r, float(c)
        if op == LEAF:
            self.data = float(c)
        else:
            self.data = forward(op, l.data, r.data if r is not None else 0.0, self.c)
        self.grad = 0.0
        self.mag = 0.0  # sum of |contributions| to grad: the tolerance's scale

    def operands(self):
        return [n for n in (self.l, self.r) if n is not None]

    # -- micrograd's operators, built from the primitives as micrograd builds them
    def __add__(self, o):
        if isinstance(o, Vec):
            return NotImplemented
        return Node(ADD, self, o if isinstance(o, Node) else Node(LEAF, c=float(o)))

    def __mul__(self, o):
        if isinstance(o, Vec):
            return NotImplemented
        return Node(MUL, self, o if isinstance(o, Node) else Node(LEAF, c=float(o)))

    def __pow__(self, e):
        return Node(POW, self, c=float(e))


    def __sub__(self, o):
        if isinstance(o, Vec):
            return NotImplemented
        return self + (-o)


    def __truediv__(self, o):
        if isinstance(o, Vec):
            return NotImplemented
        if isinstance(o, Node):
            return self * o ** -1
        c = float(o)
        return self * (1.0 / c if c else math.copysign(math.inf, c))


    def _unary(self, op):
        return Node(op, self)


def leaf(x):
    return Node(LEAF, c=float(x))


def reachable(roots):
    """Every node reachable from roots (model nodes), as {key: node}."""
    seen, stack = {}, list(roots)
    while stack:
        n = stack.pop()
        if n.key in seen:
            continue
        seen[n.key] = n
        stack.extend(n.operands())
    return seen


def backward(root):
    """micrograd's backward: grad[root] = 1, then += along a reverse topological order."""
    nodes = sorted(reachable([root]).values(), key=lambda n: -n.key)
    root.grad, root.mag = 1.0, 1.0
    apply_rules(nodes)


def apply_rules(nodes):
    """The chain rule at each of nodes (users first), accumulating."""
    for n in nodes:
        if n.op == LEAF:
            continue
        gx, gy = local_grads(n.op, n.l.data, n.r.data if n.r is not None else 0.0, n.c, n.data, n.grad)
        for m, g in ((n.l, gx), (n.r, gy)):
            if m is not None:
                with np.errstate(all="ignore"):  # inf + -inf is NaN, as in the kernels
                    m.grad = float(np.float64(m.grad) + g)
                m.mag += abs(float(g)) if np.isfinite(g) else math.inf


class Vec(Derived):
    """A model Vector: an object array of Nodes, numpy's broadcasting."""

    __array_ufunc__ = None

    def __init__(self, nodes):
        self.n = np.asarray(nodes, dtype=object)

    @classmethod
    def leaves(cls, x):
        x = np.asarray(x, np.float64)
        out = np.empty(x.shape, object)
        for idx in np.ndindex(x.shape):
            out[idx] = leaf(x[idx])
        return cls(out)

    @property
    def shape(self):
        return self.n.shape

    def _map(self, op, other=None, exponent=None):
        x = self.n
        if isinstance(other, (Vec, Node)):
            if isinstance(other, Vec):
                y = other.n
            else:
                y = np.empty((), object)
                y[()] = other
            x, y = np.broadcast_arrays(x, y)
            out = np.empty(x.shape, object)
            for idx in np.ndindex(x.shape):
                out[idx] = Node(op, x[idx], y[idx])
        elif other is not None:
            x, y = np.broadcast_arrays(x, np.asarray(other, np.float64))
            out = np.empty(x.shape, object)
            for idx in np.ndindex(x.shape):
                out[idx] = Node(op, x[idx], leaf(y[idx]))
        else:
            out = np.empty(x.shape, object)
            for idx in np.ndindex(x.shape):
                out[idx] = Node(op, x[idx], c=0.0 if exponent is None else exponent)
        return Vec(out)

    def __add__(self, o):
        return self._map(ADD, o)

    def __mul__(self, o):
        return self._map(MUL, o)

    def __pow__(self, e):
        return self._map(POW, exponent=float(e))


    def __sub__(self, o):
        if isinstance(o, (Vec, Node)):
            return self + (-o)
        return self + (-np.asarray(o, np.float64))


    def __truediv__(self, o):
        if isinstance(o, (Vec, Node)):
            return self * o ** -1
        with np.errstate(divide="ignore"):
            return self * (np.float64(1.0) / np.asarray(o, np.float64))


    def _unary(self, op):
        return self._map(op)

    def __getitem__(self, key):
        sub = self.n[key]
        return sub if isinstance(sub, Node) else Vec(sub)

    def reshape(self, *shape):
        return Vec(self.n.reshape(*shape))

    def sum(self, axis=None):
        if axis is None:
            flat = list(self.n.reshape(-1))
            if not flat:
                return leaf(0.0)
            s = flat[0]
            for m in flat[1:]:
                s = Node(ADD, s, m)
            return s
        moved = np.moveaxis(self.n, axis, -1)
        rows = moved.reshape(int(np.prod(moved.shape[:-1])), moved.shape[-1])  # not -1: ambiguous when empty
        out = np.empty(rows.shape[0], object)
        for k, row in enumerate(rows):
            out[k] = Vec(row).sum()
        return Vec(out.reshape(moved.shape[:-1]))

    def mean(self, axis=None):
        n = self.n.size if axis is None else self.n.shape[axis]
        return self.sum(axis) * (1.0 / n)

    def nodes(self):
        return list(self.n.reshape(-1))


def dot(u, v):
    us, vs = u.nodes(), v.nodes()
    if not us:
        return leaf(0.0)
    s = Node(MUL, us[0], vs[0])
    for a, b in zip(us[1:], vs[1:]):
        s = Node(ADD, s, Node(MUL, a, b))
    return s


def layer(W, b, X, relu):
    """emit_layer's graph (micrograd's Neuron per sample): W (nout, nin), b
    (nout,), X (B, nin) object arrays of Nodes -> (B, nout)."""
    B, nin = X.shape
    out = np.empty((B, W.shape[0]), object)
    for s in range(B):
        for j in range(W.shape[0]):
            acc = b[j]
            for q in range(nin):
                acc = Node(ADD, acc, Node(MUL, W[j, q], X[s, q]))
            out[s, j] = Node(RELU, acc) if relu else acc
    return out


# -- checking crad against the model -------------------------------------------
def crad_slots(obj):
    """Flat slot ids (int) of a crad Value or Vector handle."""
    if isinstance(obj, Value):
        return [obj._i]
    return [int(i) for i in obj._ids.reshape(-1)]


def model_nodes(obj):
    return [obj] if isinstance(obj, Node) else obj.nodes()


def _close(got, want, mag=None, rtol=1e-9):
    """got matches want. Values (mag None) are computed the same way by crad
    and the model: NaN and inf must match. A gradient is a sum whose order
    may differ: within rtol of mag, the sum of |contributions|; anything goes
    once that sum overflows (inf + -inf and overflow are order-dependent)."""
    got, want = float(got), float(want)
    if mag is not None and (not math.isfinite(mag) or mag > 1e300):
        return True
    if math.isnan(want) or math.isinf(want):
        return got == want or (math.isnan(want) and math.isnan(got))
    return abs(got - want) <= rtol * max(mag or 0.0, abs(want)) + 1e-12


def check(arena, held, exact_refs=False, values=True):
    """Check the arena against the model. held: (crad handle, model twin)
    pairs that own references (Values, Vectors), plus ``(None, [nodes])``
    for owners the test cannot see into (a tape, a module): their nodes are
    reachable but their slots are found through the wiring only.

    Returns the map key -> slot."""
    F, I, M = arena.columns()
    roots, slot_of, owners = [], {}, {}
    for h, m in held:
        ms = model_nodes(m) if h is not None else list(m)
        roots.extend(ms)
        if h is None:
            continue
        ss = crad_slots(h)
        assert len(ss) == len(ms)
        for n, s in zip(ms, ss):
            assert slot_of.setdefault(n.key, s) == s, "two handles of one model node on different slots"
            owners[n.key] = owners.get(n.key, 0) + 1
        if isinstance(h, Value):
            assert I[K.GEN, h._i] == h._g, "a held handle is stale"
    nodes = reachable(roots)
    assert arena.live == len(nodes), f"live {arena.live}, model {len(nodes)}"
    users = {}
    for n in sorted(nodes.values(), key=lambda n: -n.key):  # users first: a slot is known before its operands
        s = slot_of.get(n.key)
        if s is None:
            continue  # an owner we cannot see into, above nothing we hold: checked by `live` only
        assert I[K.GEN, s] & 1, f"node {n.key} (slot {s}) is not live"
        assert I[K.OP, s] == n.op, f"slot {s}: op {I[K.OP, s]}, model {n.op}"
        if n.op == LEAF:
            assert I[K.LOW, s] == s
        for m, row in ((n.l, K.LHS), (n.r, K.RHS)):
            if n.op == LEAF:
                break
            j = int(I[row, s])
            if m is None:
                assert j == -1
                continue
            assert slot_of.setdefault(m.key, j) == j, f"slot {s}: operand in slot {j}, model says {slot_of[m.key]}"
            users[m.key] = users.get(m.key, 0) + 1
        if n.op == POW:
            assert F[K.ARG, s] == n.c
        if values:
            assert _close(F[K.DATA, s], n.data), f"node {n.key} data {F[K.DATA, s]}, model {n.data}"
            assert _close(F[K.GRAD, s], n.grad, n.mag), f"node {n.key} grad {F[K.GRAD, s]}, model {n.grad}"
    top = int(M[K.M_TOP])
    livemask = (I[K.GEN, :top] & 1).astype(bool)
    assert livemask.sum() == arena.live
    assert (I[K.REFS, :top][livemask] >= 1).all()
    assert set(slot_of.values()) <= set(np.flatnonzero(livemask).tolist())
    if exact_refs:
        for key, s in slot_of.items():
            want = owners.get(key, 0) + users.get(key, 0)
            assert I[K.REFS, s] == want, f"slot {s}: refs {I[K.REFS, s]}, model {want}"
    return slot_of


def invariants(arena):
    """The column invariants alone: free list, GEN parity == live, REFS >= 1, LOW."""
    F, I, M = arena.columns()
    top = int(M[K.M_TOP])
    live = (I[K.GEN, :top] & 1).astype(bool)
    assert live.sum() == arena.live == M[K.M_LIVE]
    assert not (I[K.GEN, top:] & 1).any(), "a slot above TOP is live"
    free, i = set(), int(M[K.M_FREE_HEAD])
    for _ in range(int(M[K.M_NFREE])):
        assert 0 <= i < top and not live[i] and i not in free, "free list corrupt"
        free.add(i)
        i = int(I[K.LHS, i])
    assert len(free) + arena.live == top
    assert (I[K.REFS, :top][live] >= 1).all()
    idx = np.flatnonzero(live)
    leaf = I[K.OP, idx] == LEAF
    assert (I[K.LOW, idx[leaf]] == idx[leaf]).all()
    for row in (K.LHS, K.RHS):  # operands of live nodes are live
        ops = I[row, idx[~leaf]]
        ops = ops[ops >= 0]
        assert live[ops].all(), "a live node uses a vacant slot"
    low = I[K.LOW, idx]
    assert ((low == -1) | ((low >= 0) & (low <= idx))).all()
