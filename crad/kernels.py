"""numba kernels over the arena's columns. They know nothing of Python objects.

Every kernel takes the arena as three arrays:

- ``F``: float64, shape (3, cap). Rows DATA, GRAD, ARG (POW's exponent).
- ``I``: int32, shape (9, cap). Rows OP, LHS, RHS (operand slots, -1 for none),
  REFS, GEN, MARK (epoch stamp), LOW, and two scratch rows STACK and AUX that a
  kernel may overwrite freely (they hold nothing between calls).
- ``M``: int64, shape (8,). The arena's counters, indexed by the M_* names.

Invariants every kernel keeps (the tests check them):

- A slot is live iff GEN is odd. Vacant slots are threaded into a LIFO free
  list through their LHS cell; M_FREE_HEAD is its head, M_NFREE its length.
  Slots at or above M_TOP were never used.
- A live node has REFS >= 1 outside a kernel. Its owners are handles, vectors,
  tapes and the nodes that use it as an operand (one reference per operand
  cell, so ``a * a`` holds two).
- LOW[i] is the lowest slot reachable from i when every node reachable from i
  sits above its operands, else -1. When LOW[root] >= 0, descending slot order
  is a reverse topological order of root's graph: backward is one sweep.
- A kernel that emits nodes is called only after the facade has made room
  (``room(...)``), except the single-node emitters, which return -1 instead.
"""
import numpy as np

from ._config import njit
from .ops import ADD, LEAF, MUL, backward as rule, forward

DATA, GRAD, ARG = 0, 1, 2
OP, LHS, RHS, REFS, GEN, MARK, LOW, STACK, AUX = range(9)
N_FLOAT_ROWS, N_INT_ROWS = 3, 9
M_TOP, M_FREE_HEAD, M_NFREE, M_LIVE, M_PEAK, M_EPOCH, M_MADE, M_FREED = range(8)
N_META = 8


@njit(inline="always")
def room(I, M):
    """Slots available without growing."""
    return M[M_NFREE] + I.shape[1] - M[M_TOP]


@njit(inline="always")
def _take(F, I, M):
    """A vacant slot made live with no reference and zero grad. Needs room."""
    if M[M_NFREE] > 0:
        i = M[M_FREE_HEAD]
        M[M_FREE_HEAD] = I[LHS, i]
        M[M_NFREE] -= 1
    else:
        i = M[M_TOP]
        M[M_TOP] += 1
    I[GEN, i] += 1  # even -> odd: live
    I[REFS, i] = 0
    F[GRAD, i] = 0.0
    M[M_LIVE] += 1
    M[M_MADE] += 1
    if M[M_LIVE] > M[M_PEAK]:
        M[M_PEAK] = M[M_LIVE]
    return i


@njit(inline="always")
def _free(I, M, i):
    I[GEN, i] += 1  # odd -> even: vacant; every handle to it is now stale
    I[LHS, i] = M[M_FREE_HEAD]
    M[M_FREE_HEAD] = i
    M[M_NFREE] += 1
    M[M_LIVE] -= 1
    M[M_FREED] += 1


@njit(inline="always")
def _low(I, i, j, lo):
    """Fold operand j of node i into i's LOW (see the module invariants)."""
    if lo < 0 or j < 0:
        return lo
    lj = I[LOW, j]
    if lj < 0 or j >= i:
        return -1
    return min(lo, lj)


@njit(inline="always")
def _node(F, I, M, op, l, r, c):
    """Emit one node with no owner yet; retains its operands. Needs room."""
    i = _take(F, I, M)
    I[OP, i] = op
    I[LHS, i] = l
    I[RHS, i] = r
    F[ARG, i] = c
    x = 0.0
    y = 0.0
    if l >= 0:
        I[REFS, l] += 1
        x = F[DATA, l]
    if r >= 0:
        I[REFS, r] += 1
        y = F[DATA, r]
    F[DATA, i] = forward(op, x, y, c) if op != LEAF else c
    I[LOW, i] = _low(I, i, r, _low(I, i, l, i))
    return i


@njit
def emit(F, I, M, op, l, r, c):
    """One node owned by the caller: op(l, r) or a LEAF of value c.

    Returns its slot, or -1 when the arena is full (nothing was changed).
    """
    if room(I, M) < 1:
        return -1
    i = _node(F, I, M, op, l, r, c)
    I[REFS, i] = 1
    return i


@njit
def emit_const(F, I, M, op, l, c):
    """op(l, leaf(c)): micrograd's way with a constant operand.

    Returns the op node's slot, owned by the caller, or -1 when full.
    """
    if room(I, M) < 2:
        return -1
    k = _node(F, I, M, LEAF, -1, -1, c)
    i = _node(F, I, M, op, l, k, 0.0)
    I[REFS, i] = 1
    return i


@njit
def emit_leaves(F, I, M, x, out):
    """Leaves of values x (float64, (n,)); their slots into out (int32, (n,)).

    Each leaf is owned by the caller. Needs room for n nodes.
    """
    for k in range(x.shape[0]):
        i = _node(F, I, M, LEAF, -1, -1, x[k])
        I[REFS, i] = 1
        out[k] = i


@njit
def emit_dot(F, I, M, u, v):
    """sum_k u[k] * v[k] as a scalar graph: one MUL per pair, a chain of ADDs.

    u, v: int32, (n,), n >= 1, live slots. Returns the root, owned by the
    caller. Needs room for 2n - 1 nodes.
    """
    s = _node(F, I, M, MUL, u[0], v[0], 0.0)
    for k in range(1, u.shape[0]):
        m = _node(F, I, M, MUL, u[k], v[k], 0.0)
        s = _node(F, I, M, ADD, s, m, 0.0)
    I[REFS, s] += 1
    return s


@njit
def emit_sum(F, I, M, u):
    """u[0] + u[1] + ... as a chain of ADDs (micrograd's ``sum`` without the 0).

    u: int32, (n,), n >= 2, live slots. Returns the root, owned by the
    caller. Needs room for n - 1 nodes.
    """
    s = _node(F, I, M, ADD, u[0], u[1], 0.0)
    for k in range(2, u.shape[0]):
        s = _node(F, I, M, ADD, s, u[k], 0.0)
    I[REFS, s] += 1
    return s


@njit(inline="always")
def _release(F, I, M, root):
    """Drop one reference to root; free whatever that leaves unowned.

    Iterative: STACK holds nodes whose count reached zero, AUX collects them.
    A dense ordered graph is then freed in descending slot order, so the LIFO
    free list returns its slots in ascending order and the next graph built
    from them is ordered again (backward by a sweep).
    """
    I[REFS, root] -= 1
    if I[REFS, root] > 0:
        return 0
    I[STACK, 0] = root
    sp = 1
    n = 0
    while sp > 0:
        sp -= 1
        i = I[STACK, sp]
        I[AUX, n] = i
        n += 1
        l = I[LHS, i]
        r = I[RHS, i]
        if l >= 0:
            I[REFS, l] -= 1
            if I[REFS, l] == 0:
                I[STACK, sp] = l
                sp += 1
        if r >= 0:
            I[REFS, r] -= 1
            if I[REFS, r] == 0:
                I[STACK, sp] = r
                sp += 1
    lo = I[LOW, root]
    if lo >= 0 and root - lo <= 4 * n:
        for i in range(root, lo - 1, -1):
            if I[REFS, i] == 0 and I[GEN, i] & 1:
                _free(I, M, i)
    else:
        for k in range(n):
            _free(I, M, I[AUX, k])
    return n


@njit
def release(F, I, M, root):
    """Drop one reference to the live slot root. Returns how many were freed."""
    return _release(F, I, M, root)


@njit
def release_many(F, I, M, ids):
    """Drop one reference to each slot of ids (int32, (n,)), last first."""
    n = 0
    for k in range(ids.shape[0] - 1, -1, -1):
        n += _release(F, I, M, ids[k])
    return n


@njit
def retain_many(I, ids):
    """Add one reference to each slot of ids (int32, (n,))."""
    for k in range(ids.shape[0]):
        I[REFS, ids[k]] += 1


@njit(inline="always")
def _apply(F, I, i):
    """Chain rule at node i: add its gradient's share into its operands."""
    op = I[OP, i]
    if op == LEAF:
        return
    l = I[LHS, i]
    r = I[RHS, i]
    x = F[DATA, l]
    y = F[DATA, r] if r >= 0 else 0.0
    gx, gy = rule(op, x, y, F[ARG, i], F[DATA, i], F[GRAD, i])
    F[GRAD, l] += gx
    if r >= 0:
        F[GRAD, r] += gy


@njit
def _next_epoch(I, M):
    """A MARK value no slot holds yet."""
    if M[M_EPOCH] >= 2**31 - 2:
        I[MARK, :] = 0
        M[M_EPOCH] = 0
    M[M_EPOCH] += 1
    return M[M_EPOCH]


@njit
def backward(F, I, M, root, sweep):
    """Seed grad[root] = 1 and accumulate (+=) into everything root depends on.

    With sweep and LOW[root] >= 0: one pass down the slots from root, applying
    the rule at each node marked with this epoch. Otherwise Kahn's algorithm:
    count each reachable node's users (AUX), then process a node once all its
    users have been processed. Both are iterative; neither sorts.
    Returns the number of nodes visited.
    """
    e = _next_epoch(I, M)
    F[GRAD, root] = 1.0
    lo = I[LOW, root]
    n = 0
    if sweep and lo >= 0:
        I[MARK, root] = e
        for i in range(root, lo - 1, -1):
            if I[MARK, i] != e:
                continue
            n += 1
            _apply(F, I, i)
            l = I[LHS, i]
            r = I[RHS, i]
            if l >= 0:
                I[MARK, l] = e
            if r >= 0:
                I[MARK, r] = e
        return n
    # Kahn: pass 1 marks the graph and counts users per node.
    I[MARK, root] = e
    I[AUX, root] = 0
    I[STACK, 0] = root
    sp = 1
    while sp > 0:
        sp -= 1
        i = I[STACK, sp]
        for j in (I[LHS, i], I[RHS, i]):
            if j < 0:
                continue
            if I[MARK, j] != e:
                I[MARK, j] = e
                I[AUX, j] = 0
                I[STACK, sp] = j
                sp += 1
            I[AUX, j] += 1
    # Pass 2: a node's gradient is complete once all its users are done.
    I[STACK, 0] = root
    sp = 1
    while sp > 0:
        sp -= 1
        i = I[STACK, sp]
        n += 1
        _apply(F, I, i)
        for j in (I[LHS, i], I[RHS, i]):
            if j < 0:
                continue
            I[AUX, j] -= 1
            if I[AUX, j] == 0:
                I[STACK, sp] = j
                sp += 1
    return n
