"""Tapes: a recorded graph replayed without allocation, single or batched."""
import numpy as np
from numba import prange

from .._config import njit
from ..ops import ADD, LEAF, MUL, READS_OUT, READS_X, READS_Y, forward
from ..ops import backward as rule
from .layout import ARG, AUX, DATA, GRAD, LHS, OP, RHS
from .sweep import _apply_order


@njit
def tape_forward(F, I, fwd, fresh):
    """Recompute the non-leaf slots fwd (int32, (m,), operands first) and
    restart their grads at 0, and the grads of fresh (int32, (k,): the tape's
    input and constant leaves), as a rebuilt graph's new nodes would start."""
    for k in range(fresh.shape[0]):
        F[GRAD, fresh[k]] = 0.0
    for t in range(fwd.shape[0]):
        i = fwd[t]
        l, r = I[LHS, i], I[RHS, i]
        y = F[DATA, r] if r >= 0 else 0.0
        F[DATA, i] = forward(I[OP, i], F[DATA, l], y, F[ARG, i])
        F[GRAD, i] = 0.0


@njit
def tape_backward(F, I, bwd, root, again):
    """Backward over a recorded graph: grad[root] = 1, then the rule along
    bwd (int32, (m,), the non-leaf nodes, users first); every leaf
    accumulates. again: a backward already ran since the last tape_forward,
    so the nodes of bwd restart at 0 first (each backward then adds
    d root / d leaf once, as torch's does)."""
    if again:
        for t in range(bwd.shape[0]):
            F[GRAD, bwd[t]] = 0.0
    F[GRAD, root] = 1.0
    _apply_order(F, I, bwd, bwd.shape[0])


@njit
def tape_compile(F, I, order, ops, lpos, rpos, args):
    """Positions for a batched tape: position p = n - 1 - t for order[t], so
    operands come before users and the root is last. Fills ops, lpos, rpos
    (int32, (n,); -1 for no operand) and args (float64, (n,): POW's exponent,
    a leaf's value). Uses AUX as a slot -> position map."""
    n = order.shape[0]
    for t in range(n):
        I[AUX, order[t]] = n - 1 - t
    for t in range(n):
        i, p = order[t], n - 1 - t
        l, r = I[LHS, i], I[RHS, i]
        ops[p] = I[OP, i]
        lpos[p] = I[AUX, l] if l >= 0 else -1
        rpos[p] = I[AUX, r] if r >= 0 else -1
        args[p] = F[DATA, i] if ops[p] == LEAF else F[ARG, i]


# The kinds of node on a batched tape, which say how a user reads it: a
# computed node has a row of V and a grad row in G; a parameter is a scalar
# whose grad is summed into the arena; a constant is a scalar without grad;
# an input has a row of V, its grad not needed.
ROW, PARAM, CONST, INPUT = 0, 1, 2, 3

# A compiled batched tape is a program P: int32, (N_PROG, n), one column per
# position p (operands before users, the root last), one row per field:
# the op; the operands' positions (-1 for none); the node's arena slot; its
# input column in X (-1 unless INPUT); its rows of V and G (-1 for none);
# its kind; whether p's backward makes the first contribution to its
# left / right operand's grad row (which must then start at zero); and a
# parameter's index among the tape's parameters (-1 for other kinds), which
# addresses a thread's gradient accumulator.
P_OP, P_L, P_R, P_SLOT, P_COL, P_VROW, P_GROW, P_KIND, P_LFIRST, P_RFIRST, P_ACC = range(11)
N_PROG = 11


@njit
def tape_rows(P):
    """Register allocation for a batched tape: fills P's VROW, GROW, LFIRST
    and RFIRST rows from its OP, L, R and KIND rows. Returns (rows of V,
    rows of G).

    A value keeps its row through the backward pass only if some backward
    rule reads it (``ops.READS_*``) or it is the root; otherwise its row is
    reused once its last user has run. A grad row lives from its node's
    first user's backward to the node's own.
    """
    n = P.shape[1]
    op, lpos, rpos, kind = P[P_OP], P[P_L], P[P_R], P[P_KIND]
    vrow, grow, lfirst, rfirst = P[P_VROW], P[P_GROW], P[P_LFIRST], P[P_RFIRST]
    keep = np.zeros(n, np.bool_)
    last = np.full(n, -1, np.int64)
    for p in range(n):
        l, r = lpos[p], rpos[p]
        if READS_OUT[op[p]]:
            keep[p] = True
        if l >= 0:
            keep[l] |= READS_X[op[p]]
            last[l] = max(last[l], p)
        if r >= 0:
            keep[r] |= READS_Y[op[p]]
            last[r] = max(last[r], p)
    keep[n - 1] = True
    free = np.empty(n, np.int64)
    nfree = 0
    nv = 0
    for p in range(n):
        vrow[p] = -1
        if kind[p] == PARAM or kind[p] == CONST:
            continue
        if nfree > 0:
            nfree -= 1
            vrow[p] = free[nfree]
        else:
            vrow[p] = nv
            nv += 1
        if op[p] == LEAF:
            continue
        l, r = lpos[p], rpos[p]
        for j in (l, r):  # an operand used twice (h + h) is freed once
            if j >= 0 and kind[j] == ROW and not keep[j] and last[j] == p and (j != r or l != r):
                free[nfree] = vrow[j]
                nfree += 1
    nfree = 0
    ng = 1
    grow[:] = -1
    lfirst[:] = 0
    rfirst[:] = 0
    grow[n - 1] = 0
    for p in range(n - 1, -1, -1):
        if op[p] == LEAF:
            continue
        l, r = lpos[p], rpos[p]
        if l >= 0 and kind[l] == ROW and grow[l] < 0:
            if nfree > 0:
                nfree -= 1
                grow[l] = free[nfree]
            else:
                grow[l] = ng
                ng += 1
            lfirst[p] = 1
        if r >= 0 and kind[r] == ROW and grow[r] < 0:
            if nfree > 0:
                nfree -= 1
                grow[r] = free[nfree]
            else:
                grow[r] = ng
                ng += 1
            rfirst[p] = 1
        if grow[p] >= 0:
            free[nfree] = grow[p]
            nfree += 1
    return nv, ng


@njit
def _replay(F, P, args, X, b0, bn, V, G, seed, acc, acc_at, out):
    """Forward and backward of a compiled tape (``tape_compile``, then P
    filled by the facade and ``tape_rows``) for samples b0 .. b0 + bn - 1.

    P: int32 (N_PROG, n), the program. args: float64 (n,), POW's exponent or
    a leaf's value per position. X: float64 (B, n_in), all inputs. V: float64
    (>= rows of V, >= bn); G: float64 (>= rows of G, >= bn): column b holds
    sample b0 + b, laid out (row, sample) so each node is decoded once per bn
    samples and the inner loops over samples vectorise. seed: d(objective) /
    d(root) for each sample. acc: float64 (T, k), acc_at: int32 (n,): the
    samples form T chunks (chunk t: samples t*bn//T .. (t+1)*bn//T - 1), and
    a parameter at position p accumulates its gradient summed over chunk t
    into acc[t, acc_at[p]]. Each sample's arithmetic, and each chunk's sum,
    is the same whichever call holds the chunk. out: float64 (B,), receives
    the root's value of each sample.

    A shared operand (PARAM or CONST) is a scalar read from the arena; the
    others are rows of V.
    """
    n = P.shape[1]
    op, lpos, rpos, slot, col = P[P_OP], P[P_L], P[P_R], P[P_SLOT], P[P_COL]
    vrow, grow, kind, lfirst, rfirst = P[P_VROW], P[P_GROW], P[P_KIND], P[P_LFIRST], P[P_RFIRST]
    for p in range(n):
        o = op[p]
        if o == LEAF:
            if col[p] >= 0:
                v = vrow[p]
                for b in range(bn):
                    V[v, b] = X[b0 + b, col[p]]
            continue
        l, r, c, v = lpos[p], rpos[p], args[p], vrow[p]
        lshared = kind[l] == PARAM or kind[l] == CONST
        rshared = r >= 0 and (kind[r] == PARAM or kind[r] == CONST)
        wl = F[DATA, slot[l]] if lshared else 0.0
        wr = F[DATA, slot[r]] if rshared else 0.0
        vl = vrow[l]
        vr = vrow[r] if r >= 0 else 0
        # The hot cases of a layer (weight * input, chain link + product)
        # have no per-sample branch, so that they vectorise.
        if o == MUL and lshared and not rshared:
            for b in range(bn):
                V[v, b] = forward(MUL, wl, V[vr, b], c)
        elif o == ADD and not lshared and not rshared:
            for b in range(bn):
                V[v, b] = forward(ADD, V[vl, b], V[vr, b], c)
        else:
            for b in range(bn):
                V[v, b] = forward(o, wl if lshared else V[vl, b], wr if rshared else V[vr, b], c)
    root = n - 1
    for b in range(bn):
        out[b0 + b] = V[vrow[root], b] if vrow[root] >= 0 else F[DATA, slot[root]]
        G[0, b] = seed
    SL, SR = np.empty(bn), np.empty(bn)  # a shared operand's gradient per sample
    T = acc.shape[0]
    cut = np.empty(T + 1, np.int64)  # chunk t: samples cut[t] .. cut[t + 1] - 1
    for t in range(T + 1):
        cut[t] = t * bn // T
    if kind[root] == PARAM:  # a parameter as its own objective: d root / d root = 1 per sample
        for t in range(T):
            acc[t, acc_at[root]] += seed * (cut[t + 1] - cut[t])
    for p in range(n - 1, -1, -1):
        o = op[p]
        if o == LEAF:
            continue
        l, r, c, gp = lpos[p], rpos[p], args[p], grow[p]
        lk, rk = kind[l], kind[r] if r >= 0 else -1
        gl = grow[l] if lk == ROW else 0
        gr = grow[r] if rk == ROW else 0
        if lfirst[p]:  # a whole row: columns past bn are unused
            G[gl, :] = 0.0
        if rfirst[p]:
            G[gr, :] = 0.0
        lshared = lk == PARAM or lk == CONST
        rshared = rk == PARAM or rk == CONST
        wl = F[DATA, slot[l]] if lshared else 0.0
        wr = F[DATA, slot[r]] if rshared else 0.0
        vl = vrow[l] if vrow[l] >= 0 else 0
        vr = vrow[r] if r >= 0 and vrow[r] >= 0 else 0
        vp = vrow[p] if vrow[p] >= 0 else 0
        # Hot cases first, each without a per-sample branch (they vectorise).
        # A shared operand's gradient per sample goes to SL / SR, summed per
        # chunk below (in sample order, so every split gives the same sums).
        if o == MUL and lk == PARAM and rk == INPUT:
            for b in range(bn):
                SL[b] = rule(MUL, wl, V[vr, b], c, 0.0, G[gp, b])[0]
        elif o == MUL and lk == PARAM and rk == ROW:
            for b in range(bn):
                gx, gy = rule(MUL, wl, V[vr, b], c, 0.0, G[gp, b])
                SL[b] = gx
                G[gr, b] += gy
        elif o == ADD and lk == ROW and rk == ROW:
            for b in range(bn):
                G[gl, b] += G[gp, b]
                G[gr, b] += G[gp, b]
        else:
            for b in range(bn):
                x = wl if lshared else V[vl, b]
                y = wr if rshared else V[vr, b]
                gx, gy = rule(o, x, y, c, V[vp, b], G[gp, b])
                if lk == ROW:
                    G[gl, b] += gx
                else:
                    SL[b] = gx
                if rk == ROW:
                    G[gr, b] += gy
                else:
                    SR[b] = gy
        for j, S in ((l, SL), (r, SR)):
            if j >= 0 and kind[j] == PARAM:
                for t in range(T):
                    s = 0.0
                    for b in range(cut[t], cut[t + 1]):
                        s += S[b]
                    acc[t, acc_at[j]] += s


@njit
def tape_batch(F, P, args, X, V, G, seed):
    """A batched replay on one thread (see ``_replay``): V (rows of V, B) and
    G (rows of G, B), float64; parameters accumulate straight into the
    arena's grads. Returns the root's value per sample (float64 (B,))."""
    out = np.empty(X.shape[0])
    _replay(F, P, args, X, 0, X.shape[0], V, G, seed, F[GRAD:GRAD + 1], P[P_SLOT], out)
    return out


@njit
def _reduce(F, P, A):
    """Add each chunk's parameter gradients (A: float64 (T, parameters on the
    tape), indexed by P's ACC row) to the arena, in chunk order."""
    kind, slot, acc_at = P[P_KIND], P[P_SLOT], P[P_ACC]
    for p in range(P.shape[1]):
        if kind[p] == PARAM:
            s = 0.0
            for t in range(A.shape[0]):
                s += A[t, acc_at[p]]
            F[GRAD, slot[p]] += s


@njit
def tape_batch_chunked(F, P, args, X, V, G, A, seed):
    """tape_batch_parallel's result, bit for bit, on the calling thread: one
    pass over the program for all B samples (V (rows of V, B), G (rows of G,
    B)) with T = A.shape[0] chunk sums per parameter. For when the cores are
    busy (``threads.Pace``)."""
    out = np.empty(X.shape[0])
    A[:, :] = 0.0
    _replay(F, P, args, X, 0, X.shape[0], V, G, seed, A, P[P_ACC], out)
    _reduce(F, P, A)
    return out


@njit(parallel=True)
def tape_batch_parallel(F, P, args, X, V, G, A, seed):
    """A batched replay split into T chunks of consecutive samples, one per
    thread (T = V.shape[0]; chunk t is samples t*B//T .. (t+1)*B//T - 1).

    V: float64 (T, rows of V, ceil(B/T)); G: float64 (T, rows of G,
    ceil(B/T)): each chunk's own rows. A: float64 (T, parameters on the
    tape), each chunk's own parameter-gradient accumulator, indexed by P's
    ACC row. Chunks share only reads (F, P, args, X); out is written at
    disjoint samples. The accumulators are then added to the arena in chunk
    order, so the result depends on T, never on the scheduling.
    Returns the root's value per sample (float64 (B,)).
    """
    T, B = V.shape[0], X.shape[0]
    out = np.empty(B)
    for t in prange(T):
        b0 = t * B // T
        for k in range(A.shape[1]):  # a loop, not A[t, :] = 0, which numba would make a nested parfor
            A[t, k] = 0.0
        _replay(F, P, args, X, b0, (t + 1) * B // T - b0, V[t], G[t], seed, A[t:t + 1], P[P_ACC], out)
    _reduce(F, P, A)
    return out
