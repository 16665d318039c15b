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

from ..ops import LEAF
from .replay import (
    BWD,
    FWD,
    FWD_SEED,
    INPUT,
    P_GROW,
    P_KIND,
    P_L,
    P_OP,
    P_R,
    P_VROW,
    PARAM,
    Q_CODE,
    Q_W,
    Q_X,
    Q_Y,
    ROW,
    SEG_HI,
    SEG_LO,
    SEG_MODE,
    SEG_ROW,
    lower,
    tape_rows,
)


def _chains(op, lpos, rpos, kind, stop):
    """Union-find over the positions < stop of a compiled tape (op, lpos,
    rpos, kind: P's rows, int32 (n,)): computed nodes joined through their
    ROW operands. Parameters, constants and inputs join nothing: they are
    read-only in the forward pass, and each thread sums its own parameter
    gradients. Returns (largest set's size after each position, each
    position's set: its smallest member), int64 (stop,) each; a leaf is a
    set of its own, of size 0.

    Plain Python (about 0.6 us a position: 70 ms for MNIST's tape, once per
    tape and thread count), not numba: compiling it would cost more than a
    second of cold start."""
    op, lpos, rpos, kind = (a[:stop].tolist() for a in (op, lpos, rpos, kind))
    parent, size, big = list(range(stop)), [0] * stop, [0] * stop
    most = 0
    for p in range(stop):
        if op[p] != LEAF:
            r, n = p, 1  # p's set so far: its root (smallest member) and size
            for j in (lpos[p], rpos[p]):
                if j >= 0 and kind[j] == ROW:
                    while parent[j] != j:  # j's root, halving the path
                        parent[j] = j = parent[parent[j]]
                    if j != r:  # the larger root joins the smaller
                        lo, hi = (j, r) if j < r else (r, j)
                        parent[hi] = lo
                        r, n = lo, n + size[j]
            size[r] = n
            if n > most:
                most = n
        big[p] = most
    for p in range(stop):
        parent[p] = parent[parent[p]]  # roots: a parent's parent is its root, once ascending positions are settled
    return np.array(big, np.int64), np.array(parent, np.int64)


def front(P, T):
    """(stop, span): the front of a compiled tape P for T threads, the
    positions < stop, and an estimate of the span, the instructions on the
    longest path through the bins and then the tail (inputs' loads aside:
    they split evenly). The front is the prefix of positions that
    minimises the span; the root is always in the tail. stop 0: no front."""
    n = P.shape[1]
    computed = np.cumsum(P[P_OP] != LEAF)  # computed positions <= p
    total = int(computed[-1])
    big, _ = _chains(P[P_OP], P[P_L], P[P_R], P[P_KIND], n - 1)
    spans = np.maximum(big, -(-computed[:-1] // T)) + total - computed[:-1]  # front: positions <= p
    if n < 2 or spans.min() >= total:
        return 0, total
    return int(np.argmin(spans)) + 1, int(spans.min())


def _bins(P, T, stop):
    """The bins of the front (positions < stop): returns (bin, span). bin:
    int64 (n,), for each computed position its bin 0 .. T - 1, or T for the
    tail (-1 for leaves); span as ``front``'s, once the chains are dealt out."""
    computed = np.cumsum(P[P_OP] != LEAF)
    bin_ = np.where(P[P_OP] != LEAF, T, -1)
    if not stop:
        return bin_, int(computed[-1])
    _, root = _chains(P[P_OP], P[P_L], P[P_R], P[P_KIND], stop)
    computed_front = np.flatnonzero(P[P_OP, :stop] != LEAF)
    sets, members = np.unique(root[computed_front], return_counts=True)
    load, home = [0] * T, np.empty(sets.size, np.int64)
    for k in np.argsort(-members, kind="stable"):  # largest first, each to the least-loaded bin
        b = load.index(min(load))
        home[k] = b
        load[b] += int(members[k])
    bin_[computed_front] = home[np.searchsorted(sets, root[computed_front])]
    return bin_, max(load) + int(computed[-1] - computed[stop - 1])


def plan(P, args, T, stop=None):
    """A split program for T threads from a compiled tape (P: int32 (N_PROG,
    n) with OP, L, R, SLOT, COL and KIND set; args: float64 (n,)), for the
    front that ``front`` chooses (or ends at stop). Returns
    (program, segs, rows, span): program is ``lower``'s (Q, C, shared,
    root) for the reordered tape; segs (int64, (5, T, 4)) its segments
    (``replay``'s split program); rows (rows of V, rows of G); span the
    instructions on the longest path, to compare with the tape's computed
    nodes (a sample split's span, at fewer samples per instruction)."""
    n = P.shape[1]
    bin_, span = _bins(P, T, front(P, T)[0] if stop is None else stop)
    inputs = np.flatnonzero(P[P_KIND] == INPUT)
    key = np.where(bin_ >= 0, T + bin_, 0)  # leaves first; bins; the tail
    key[inputs] = np.arange(inputs.size) * T // max(inputs.size, 1)  # the loads, in T parts
    order = np.argsort(key, kind="stable")  # stable: each section keeps the tape's order
    P = np.ascontiguousarray(P[:, order])  # C order, as tape_rows was compiled for
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
    sec = np.searchsorted(key[pos], np.arange(2 * T + 1))
    return tuple(program), _segments(sec, pos.size, T, _owned(program[0], sec, T)), (nv, ng), span


def _owned(Q, sec, T):
    """Whether no parameter is used by two bins of a lowered split program
    (Q: int32 (m, N_Q); bin t is instructions sec[T + t] .. sec[T + t + 1] - 1)."""
    code = Q[:, Q_CODE]
    uses = (((code >> 5) & 7) == PARAM, Q_X), (((code >> 8) & 7) == PARAM, Q_Y), (((code >> 16) & 1) == 1, Q_W)
    params = np.concatenate([Q[mask, field] for mask, field in uses])
    at = np.concatenate([np.flatnonzero(mask) for mask, _ in uses])
    bins = np.searchsorted(sec[T:], at, side="right") - 1
    inside = (bins >= 0) & (bins < T)
    pairs = np.unique(np.stack([params[inside], bins[inside]]), axis=1)
    return np.unique(pairs[0]).size == pairs.shape[1]


def _segments(sec, m, T, direct):
    """A split program's segments (``replay``) from its sections: the
    loads' part t is instructions sec[t] .. sec[t + 1] - 1, bin t sec[T + t]
    .., the tail sec[2T] .. m - 1. Part t sums into A[t] (the tail into
    A[0]), or with direct straight into the arena's grads."""
    segs = np.zeros((5, T, 4), np.int64)
    t = np.arange(T)
    segs[:, :, SEG_ROW] = -1 if direct else t
    segs[0, :, SEG_LO], segs[0, :, SEG_HI], segs[0, :, SEG_MODE] = sec[t], sec[t + 1], FWD
    for phase, mode in ((1, FWD), (4, BWD)):
        segs[phase, :, SEG_LO], segs[phase, :, SEG_HI], segs[phase, :, SEG_MODE] = sec[T + t], sec[T + t + 1], mode
    for phase, mode in ((2, FWD_SEED), (3, BWD)):  # the tail, on thread 0; the others' parts empty
        segs[phase, :, SEG_LO] = segs[phase, :, SEG_HI] = m
        segs[phase, 0] = sec[2 * T], m, mode, -1 if direct else 0
    segs[2, 1:, SEG_MODE] = FWD  # an empty part never seeds
    return segs


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
