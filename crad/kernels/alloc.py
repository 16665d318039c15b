"""Slots: taking them, wiring single nodes, and the bookkeeping every emitter shares."""
from .._config import njit
from ..ops import LEAF, forward
from .layout import (
    ARG,
    DATA,
    GEN,
    GRAD,
    LHS,
    LOW,
    M_FREE_HEAD,
    M_LIVE,
    M_MADE,
    M_NFREE,
    M_PEAK,
    M_TOP,
    OP,
    REFS,
    RHS,
    STACK,
)


@njit(inline="always")
def _next_slot(I, head, nfree, top):
    """The next vacant slot: the free list's head while it has one, else the
    first never-used slot. Returns it and the allocator's counters after it
    (kept in the caller's locals: M may alias nothing, but LLVM cannot know
    that)."""
    if nfree > 0:
        return head, I[LHS, head], nfree - 1, top
    return top, head, nfree, top + 1


@njit
def _take_many(F, I, M, k):
    """Make k vacant slots live (no reference yet, zero grad) and list them in
    I[STACK, :k], in the order they must be wired. Needs room for k.

    Free-list slots come first.
    """
    head, nfree, top = M[M_FREE_HEAD], M[M_NFREE], M[M_TOP]
    for t in range(k):
        i, head, nfree, top = _next_slot(I, head, nfree, top)
        I[STACK, t] = i
        I[GEN, i] += 1  # even -> odd: live
        I[REFS, i] = 0
        F[GRAD, i] = 0.0
    _commit(M, head, nfree, top, k)


@njit
def _commit(M, head, nfree, top, k):
    """Store the allocator's counters after k slots were taken."""
    M[M_FREE_HEAD], M[M_NFREE], M[M_TOP] = head, nfree, top
    M[M_LIVE] += k
    M[M_MADE] += k
    M[M_PEAK] = max(M[M_PEAK], M[M_LIVE])


@njit(inline="always")
def _fold_low(lo, i, j, low_j):
    """Fold operand j (whose LOW is low_j) into node i's LOW so far."""
    if lo < 0 or j < 0:
        return lo
    if low_j < 0 or j >= i:
        return -1
    return min(lo, low_j)


@njit
def _finish(F, I, k):
    """Complete the k nodes listed in I[STACK, :k], whose OP, LHS, RHS and ARG
    are wired (a LEAF's value in ARG): retain operands, compute each value
    (in list order, so operands made in the same batch come first) and LOW."""
    for t in range(k):
        i = I[STACK, t]
        op, l, r, c = I[OP, i], I[LHS, i], I[RHS, i], F[ARG, i]
        x = F[DATA, l] if l >= 0 else 0.0
        y = F[DATA, r] if r >= 0 else 0.0
        if l >= 0:
            I[REFS, l] += 1
        if r >= 0:
            I[REFS, r] += 1
        F[DATA, i] = forward(op, x, y, c) if op != LEAF else c
        I[LOW, i] = _fold_low(_fold_low(i, i, l, I[LOW, l] if l >= 0 else 0), i, r,
                              I[LOW, r] if r >= 0 else 0)


@njit
def emit(F, I, M, op, l, r, c):
    """One node owned by the caller: op(l, r), or a LEAF of value c.

    Returns its slot, or -1 when the arena is full (nothing was changed).
    """
    if M[M_NFREE] + I.shape[1] - M[M_TOP] < 1:
        return -1
    _take_many(F, I, M, 1)
    i = I[STACK, 0]
    I[OP, i], I[LHS, i], I[RHS, i], F[ARG, i] = op, l, r, c
    _finish(F, I, 1)
    I[REFS, i] = 1
    return i


@njit
def emit_const(F, I, M, op, l, c):
    """op(l, leaf(c)): micrograd's way with a constant operand.

    Returns the op node's slot, owned by the caller, or -1 when full.
    """
    if M[M_NFREE] + I.shape[1] - M[M_TOP] < 2:
        return -1
    _take_many(F, I, M, 2)
    k, i = I[STACK, 0], I[STACK, 1]
    I[OP, k], I[LHS, k], I[RHS, k], F[ARG, k] = LEAF, -1, -1, c
    I[OP, i], I[LHS, i], I[RHS, i], F[ARG, i] = op, l, k, 0.0
    _finish(F, I, 2)
    I[REFS, i] = 1
    return i


@njit
def emit_leaves(F, I, M, x, out):
    """Leaves of values x (float64, (n,)); their slots into out (int32, (n,)).

    Each leaf is owned by the caller. Needs room for n nodes. One pass
    (taking the slots in a separate pass, as ``_take_many`` would, costs 25%
    of a leaf's time, and every batch starts with leaves).
    """
    n = x.shape[0]
    head, nfree, top = M[M_FREE_HEAD], M[M_NFREE], M[M_TOP]
    for t in range(n):
        i, head, nfree, top = _next_slot(I, head, nfree, top)
        I[STACK, t] = i
        I[GEN, i] += 1  # even -> odd: live
        F[GRAD, i] = 0.0
        v = x[t]
        I[OP, i], I[LHS, i], I[RHS, i], I[LOW, i], I[REFS, i] = LEAF, -1, -1, i, 1
        F[ARG, i] = v
        F[DATA, i] = v
        out[t] = i
    _commit(M, head, nfree, top, n)


@njit
def retain_many(I, ids):
    """Add one reference to each slot of ids (int32, (n,))."""
    for k in range(ids.shape[0]):
        I[REFS, ids[k]] += 1
