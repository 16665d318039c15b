"""The per-Value facade's write-behind journal: slots claimed in blocks, node
records and releases applied in one call.

A Python operator on Values makes no kernel call. It takes the next slot of
a block claimed in advance (``journal_claim``), writes one record (op,
operands, constant) into the journal's arrays, and returns a handle. A
collected handle queues its release. Whenever anything reads or writes the
columns, the facade applies the journal (``journal_apply``): records and
releases in the order they happened, so values, reference counts, ``live``
and ``peak`` end exactly as eager emission would have left them.

Claimed slots: GEN already odd (a handle made from a record holds the node's
final generation, so stale checks work before the journal is applied), not
counted live, off the free list, REFS 1. They exist only between a
claim and the next apply, which gives the unused ones back: whenever the
facade shows the columns to anyone, the package's invariants hold.
"""
import numpy as np

from .._config import njit
from ..ops import LEAF, POW, forward
from .alloc import _fold_low, _next_slot
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
)
from .sweep import _release_n

# A record whose op is CONST_LEAF is micrograd's constant operand (the 2.0 of
# x * 2.0): a LEAF owned only by the next record, its user. Every other
# record's node is born owned by the handle the facade returned.
CONST_LEAF = -1
# A queued reference change is position << 32 | slot, plus RETAIN for a new
# reference (else it drops one): it happened after `position` records
# (positions are below 2**16, slots below 2**31).
SLOT_MASK = (1 << 32) - 1
RETAIN = 1 << 62
POS_MASK = (1 << 30) - 1


@njit
def journal_claim(F, I, M, res):
    """Claim res.size slots (free-list slots first) into res (int32, (B,)),
    in the order records will use them. Needs room for B nodes."""
    head, nfree, top = M[M_FREE_HEAD], M[M_NFREE], M[M_TOP]
    for t in range(res.shape[0]):
        i, head, nfree, top = _next_slot(I, head, nfree, top)
        I[GEN, i] += 1  # even -> odd: a handle's generation from now on
        I[REFS, i] = 1  # never 0: the release sweep frees live slots whose count is 0
        res[t] = i
    M[M_FREE_HEAD], M[M_NFREE], M[M_TOP] = head, nfree, top


@njit
def journal_apply(F, I, M, res, ops, lhs, rhs, args, k, rel, new):
    """Apply k records and the queued releases, in order; give back the
    claimed slots that no record used.

    res: int32 (B,), the claimed slots; record t makes node res[t].
    ops, lhs, rhs: int32 (B,); args: float64 (B,), POW's exponent or a
    leaf's value (read for those records only). rel: int64 (m,), queued
    retains and releases (position << 32 | slot, | RETAIN), in any order.
    new: bool, (B,) or (0,): when sized, new[t] is set where record t's
    node is still alive afterwards (anomaly mode checks those).
    Returns the number of nodes freed.
    """
    # First give back the claimed slots no record used, last first: the free
    # list hands them out again in claim order, after the slots the releases
    # below free (reused first, as eager emission would).
    head, nfree = M[M_FREE_HEAD], M[M_NFREE]
    for t in range(res.shape[0] - 1, k - 1, -1):
        i = res[t]
        I[GEN, i] += 1  # odd -> even: vacant
        I[LHS, i] = head
        head = i
        nfree += 1
    M[M_FREE_HEAD], M[M_NFREE] = head, nfree
    # The changes that came before record t form segment t (counting sort
    # by position); segment k is what came after the last record, and a
    # stale, larger position from another thread's release lands there too
    # (applying it late is safe, dropping it would leak).
    m = rel.shape[0]
    start = np.zeros(k + 2, np.int64)
    for q in range(m):
        start[min((rel[q] >> 32) & POS_MASK, k) + 1] += 1
    for t in range(k + 1):
        start[t + 1] += start[t]
    seg = np.empty(m, np.int64)
    fill = start[:k + 1].copy()
    for q in range(m):
        p = min((rel[q] >> 32) & POS_MASK, k)
        seg[fill[p]] = rel[q]
        fill[p] += 1
    freed = 0
    live, peak, made = M[M_LIVE], M[M_PEAK], M[M_MADE]
    drop = np.empty(m, np.int32)  # a segment's releases
    for t in range(k + 1):
        # A segment's retains first, then its releases (that order can never
        # free a node too early), then one cascade for all that reached zero.
        n = 0
        for q in range(start[t], start[t + 1]):
            if seg[q] & RETAIN:
                I[REFS, seg[q] & SLOT_MASK] += 1
            else:
                drop[n] = seg[q] & SLOT_MASK
                n += 1
        if n:
            M[M_LIVE] = live
            freed += _release_n(F, I, M, drop, n)
            live = M[M_LIVE]
        if t == k:
            break
        i, op, l, r, c = res[t], ops[t], lhs[t], rhs[t], args[t]
        if op == CONST_LEAF:
            I[OP, i], I[LHS, i], I[RHS, i], I[REFS, i], I[LOW, i] = LEAF, -1, -1, 0, i
            F[DATA, i], F[ARG, i] = c, c
        elif op == LEAF:
            I[OP, i], I[LHS, i], I[RHS, i], I[REFS, i], I[LOW, i] = LEAF, -1, -1, 1, i
            F[DATA, i], F[ARG, i] = c, c
        else:
            if op != POW:
                c = 0.0  # only POW's record carries a constant (the others' cell is not written)
            I[OP, i], I[LHS, i], I[RHS, i], I[REFS, i] = op, l, r, 1
            F[ARG, i] = c
            I[REFS, l] += 1
            y = 0.0
            lo = _fold_low(i, i, l, I[LOW, l])
            if r >= 0:
                I[REFS, r] += 1
                y = F[DATA, r]
                lo = _fold_low(lo, i, r, I[LOW, r])
            F[DATA, i] = forward(op, F[DATA, l], y, c)
            I[LOW, i] = lo
        F[GRAD, i] = 0.0
        live += 1
        made += 1
        peak = max(peak, live)
    M[M_LIVE], M[M_PEAK], M[M_MADE] = live, peak, made
    if new.shape[0] > 0:
        for t in range(k):
            new[t] = (I[GEN, res[t]] & 1) == 1
    return freed
