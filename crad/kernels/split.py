"""Splitting a batched tape's instructions over threads.

A batch split by samples (``tape_batch_parallel``) decodes every
instruction once per thread, so at a few samples per thread the decoding
dominates and two threads gain little. Many graphs instead have a wide
front of independent chains (an MLP's first layer: one chain of
multiply-adds per neuron) that only a short tail joins. ``plan`` finds such
a front, deals its chains out to T bins of about equal size, and reorders
and re-lowers the tape so that each bin is a contiguous run of instructions
(``replay``'s split program): each thread then runs its bin over every
sample, and no instruction is decoded twice.
"""
import numpy as np

from .._config import njit
from ..ops import LEAF
from .replay import INPUT, P_GROW, P_KIND, P_L, P_OP, P_R, P_VROW, ROW, lower, tape_rows


@njit
def _find(parent, p):
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit
def _join(parent, size, p, q):
    """Union of p's and q's sets; returns the size of the union."""
    p, q = _find(parent, p), _find(parent, q)
    if p != q:
        if size[p] < size[q]:
            p, q = q, p
        parent[q] = p
        size[p] += size[q]
    return size[p]


@njit
def _chains(P, stop, parent, size):
    """Union-find over the computed positions < stop of P (int32, (N_PROG,
    n)), joined through their ROW operands (parameters, constants and inputs
    are read-only in the forward pass and summed per thread in the backward,
    so they join nothing). parent, size: int64 (n,), overwritten. Returns
    the largest set's size after each position (int64 (stop,))."""
    op, lpos, rpos, kind = P[P_OP], P[P_L], P[P_R], P[P_KIND]
    big = np.zeros(stop, np.int64)
    most = 0
    for p in range(stop):
        parent[p], size[p] = p, 1
        if op[p] != LEAF:
            for j in (lpos[p], rpos[p]):
                if j >= 0 and kind[j] == ROW:
                    most = max(most, _join(parent, size, p, j))
            most = max(most, 1)
        big[p] = most
    return big


@njit
def _bins(P, T):
    """The front of P and its bins: returns (bin, span). bin: int64 (n,),
    for each computed position its bin 0 .. T - 1, or T for the tail (-1 for
    leaves). The front is the prefix of positions that minimises span, the
    instructions on the longest path through the bins and then the tail
    (inputs' loads aside: they split evenly). The root is always in the tail."""
    n = P.shape[1]
    computed = np.cumsum(P[P_OP] != LEAF)  # computed positions <= p
    parent, size = np.empty(n, np.int64), np.empty(n, np.int64)
    big = _chains(P, n - 1, parent, size)
    total = computed[n - 1]
    span, stop = total, 0  # no front: everything in the tail
    for p in range(n - 1):
        front = computed[p]
        s = max(big[p], (front + T - 1) // T) + total - front
        if s < span:
            span, stop = s, p + 1
    _chains(P, stop, parent, size)
    bin_ = np.full(n, -1, np.int64)
    if stop > 0:  # deal the sets out largest first, each to the least-loaded bin
        roots = np.full(n, -1, np.int64)
        for p in range(stop):
            if P[P_OP, p] != LEAF:
                roots[p] = _find(parent, p)
        sizes = np.zeros(n, np.int64)
        for p in range(stop):
            if roots[p] == p:
                sizes[p] = size[p]
        load = np.zeros(T, np.int64)
        home = np.full(n, -1, np.int64)
        for r in np.argsort(-sizes):
            if sizes[r] == 0:
                break
            b = np.argmin(load)
            home[r] = b
            load[b] += sizes[r]
        span = load.max() + total - computed[stop - 1]
        for p in range(stop):
            if roots[p] >= 0:
                bin_[p] = home[roots[p]]
    for p in range(stop, n):
        if P[P_OP, p] != LEAF:
            bin_[p] = T
    return bin_, span


def plan(P, args, T):
    """A split program for T threads from a compiled tape (P: int32 (N_PROG,
    n) with OP, L, R, SLOT, COL and KIND set; args: float64 (n,)). Returns
    (program, sec, rows, span): program is ``lower``'s (Q, C, shared,
    root) for the reordered tape; sec (int64, (2T + 1,)) its sections
    (``replay``'s split program); rows (rows of V, rows of G); span the
    instructions on the longest path, to compare with the tape's computed
    nodes (a sample split's span, at fewer samples per instruction)."""
    n = P.shape[1]
    bin_, span = _bins(P, T)
    inputs = np.flatnonzero(P[P_KIND] == INPUT)
    key = np.where(bin_ >= 0, T + bin_, 0)  # leaves first; bins; the tail
    key[inputs] = np.arange(inputs.size) * T // max(inputs.size, 1)  # the loads, in T parts
    order = np.argsort(key, kind="stable")  # stable: each section keeps the tape's order
    P = P[:, order]
    key = key[order]
    at = np.empty(n, np.int64)
    at[order] = np.arange(n)
    for row in (P_L, P_R):
        P[row] = np.where(P[row] >= 0, at[np.maximum(P[row], 0)], -1)
    fence = np.zeros(n, np.bool_)
    starts = np.searchsorted(key, np.arange(T, 2 * T + 1))
    fence[starts[starts < n]] = True  # where each bin, and the tail, starts
    nv, ng = tape_rows(P, fence)
    bin_ = np.where((key >= T) & (key < 2 * T), key - T, -1)
    nv, ng = (_regroup(P[row], n_rows, bin_, T) for row, n_rows in ((P_VROW, nv), (P_GROW, ng)))
    *program, pos = lower(P, args[order])
    sec = np.searchsorted(key[pos], np.arange(2 * T + 1)).astype(np.int64)
    return tuple(program), sec, (nv, ng), int(span)


# Rows apart between bins: the bins' rows sit in separate blocks. Rows
# allocated in one pass interleave the bins' rows (a row freed by the tail
# goes to whichever bin asks next), and two cores writing rows of the same
# page slowed MNIST's bins by a third (the hardware prefetchers fetch
# neighbouring lines, so the cores take lines from each other).
PAD_ROWS = 64


def _regroup(rows, n_rows, bin_, T):
    """Renumber rows (P's VROW or GROW row, in place; -1: none) so that
    those used by no bin come first (row 0 stays 0) and
    then bin 0's, bin 1's, ..., each block starting at a multiple of
    PAD_ROWS. bin_: each position's bin, -1 outside the bins. Returns the
    number of rows."""
    group = np.full(n_rows, -1, np.int64)
    used = rows >= 0
    binned = used & (bin_ >= 0)
    group[rows[binned]] = bin_[binned]  # a row the tail and a bin share goes with the bin (never two bins)
    group[:1] = -1  # row 0: the root's grad row, where the seed goes (a bin may reuse it: a layout choice only)
    new = np.empty(n_rows, np.int64)
    top = 0
    for g in range(-1, T):
        mine = np.flatnonzero(group == g)
        new[mine] = top + np.arange(mine.size)
        top += -(-mine.size // PAD_ROWS) * PAD_ROWS
    rows[used] = new[rows[used]]
    return int(top)
