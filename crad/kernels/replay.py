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
# computed node has a row of V and a grad row in G; an input has a row of V,
# its grad not needed; a parameter is a scalar whose grad is summed into the
# arena; a constant is a scalar without grad. Ordered so that kind >= PARAM
# means a shared scalar (NONE, past them: no operand, in ``lower``'s code).
ROW, INPUT, PARAM, CONST, NONE = range(5)

# A compiled batched tape is a program P: int32, (N_PROG, n), one column per
# position p (operands before users, the root last), one row per field:
# the op; the operands' positions (-1 for none); the node's arena slot; its
# input column in X (-1 unless INPUT); its rows of V and G (-1 for none);
# its kind; whether p's backward makes the first contribution to its
# left / right operand's grad row (which must then start at zero).
# ``lower`` turns it into the instructions a replay runs.
P_OP, P_L, P_R, P_SLOT, P_COL, P_VROW, P_GROW, P_KIND, P_LFIRST, P_RFIRST = range(10)
N_PROG = 10


@njit
def tape_rows(P, fence):
    """Register allocation for a batched tape: fills P's VROW, GROW, LFIRST
    and RFIRST rows from its OP, L, R and KIND rows. Returns (rows of V,
    rows of G).

    A value keeps its row through the backward pass only if some backward
    rule reads it (``ops.READS_*``) or it is the root; otherwise its row is
    reused once its last user has run. A grad row lives from its node's
    first user's backward to the node's own. fence: bool (n,), True where a
    section of a split program starts (all False otherwise): a row freed in
    one section is never reused in another, since sections may run at once.
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
        if fence[p]:
            nfree = 0
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
        for side in range(2):  # an operand used twice (h + h) is freed once, as the left one
            j = l if side == 0 else r
            if j >= 0 and kind[j] == ROW and not keep[j] and last[j] == p and (side == 0 or l != r):
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
        passed = False  # p's grad row handed on to an operand, not freed
        if op[p] == ADD and grow[p] >= 0:  # an add passes its grad on unchanged: the first operand
            j = l if l >= 0 and kind[l] == ROW and grow[l] < 0 else r  # that needs a row takes p's
            if j >= 0 and kind[j] == ROW and grow[j] < 0:  # (a chain of adds shares one row, no copies)
                grow[j] = grow[p]
                passed = True
                if j == l:
                    lfirst[p] = 1
                else:
                    rfirst[p] = 1
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
        if grow[p] >= 0 and not passed:
            free[nfree] = grow[p]
            nfree += 1
        if fence[p]:
            nfree = 0
    return nv, ng


# A lowered program: what a batched replay executes, every lookup resolved
# ahead (``lower``). One instruction per computed node and per input leaf,
# operands first; an instruction is a row of Q (int32, (m, 8)):
Q_CODE, Q_X, Q_Y, Q_V, Q_G, Q_GX, Q_GY, Q_W = range(8)
N_Q = 8  # 32 bytes: two instructions per cache line
# CODE packs op | lkind << 5 | rkind << 8 | lfirst << 11 | rfirst << 12 |
# case << 13 | wparam << 16 | skip << 17. An operand's kind says where X / Y
# point: a row of V (ROW, which has a grad row GX / GY, or INPUT, without
# one) or an index k into the shared scalars, at arena slot shared[k]
# (PARAM, whose gradient goes to the same index of an accumulator or to the
# slot's grad, or CONST); NONE: no operand. An
# input leaf's instruction (op LEAF) loads X's column X into row V. lfirst /
# rfirst: this backward makes the first contribution to the operand's grad
# row (assign, not add). case names a hot shape, run
# without per-sample branches so that it vectorises; ``lower`` puts the
# shared operand of an add or mul on the left (both commute exactly in IEEE
# arithmetic, rules included, except for which NaN NaN + NaN returns: x86
# returns the first operand's, and compilers order operands freely, so a
# NaN's sign may differ from a single replay's even without the swap).
#
# Fused pairs: an add whose operand m = w * u (w shared, m used by nothing
# else) computes acc + w * u itself (FMA_*: X = acc, Y = u, W = w's index,
# wparam: w is a parameter; the same two roundings as the pair). m's own
# instruction is then skipped in the forward pass (SKIP_FWD): no backward
# rule reads m's value, and u's row outlives the add (a mul reads u in its
# backward, so u's row is never reused). When u is an input (FMA_IN) the
# add also runs m's backward (m's gradient is the add's), and ``lower``
# drops m's instruction (SKIP_BWD: nothing left to do); with u a computed
# row, the add runs m's backward too (FMA_RB: w's gradient and u's, with
# GY and rfirst m's, for u) when m's instruction comes right before the
# add's (``sink`` puts it there), so that in the backward pass, which runs
# the add then m, nothing comes between them: u's grad row sees its
# contributions in the order ``tape_rows`` planned, and m's instruction is
# dropped. (u's grad row is the add's own only when u is acc, h + w * h,
# the add's row handed on to h: then u's update runs in place, each element
# read before it is written, after w's gradient has read the row. In a
# split program m may end the last non-empty bin and the add start the
# tail: the tail runs alone, so m's part runs there safely, and u's row, a
# bin's, is no other node's meanwhile.) Otherwise (FMA_ROW) the backward is
# the add's and then m's, as unfused.
GENERIC, MUL_SR, ADD_RR, FMA_IN, FMA_ROW, FMA_RB = range(6)
SKIP_FWD, SKIP_BWD = 1 << 17, 1 << 18


def lower(P, args):
    """The lowered program of a compiled tape (P after ``tape_rows``):
    (Q, C, shared, root, at). C: float64 (m,), each instruction's constant
    (POW's exponent). shared: int32 (s,), the arena slots of the shared
    scalars, parameters first (index k < number of parameters is parameter
    k). root: int64 (2,), the root's kind and its row or shared index.
    at: int64 (m,), each instruction's position in P. Plain numpy, so it
    costs no compile time."""
    n = P.shape[1]
    op, kind = P[P_OP], P[P_KIND]
    params, consts = np.flatnonzero(kind == PARAM), np.flatnonzero(kind == CONST)
    sidx = np.full(n, -1, np.int64)
    sidx[params] = np.arange(params.size)
    sidx[consts] = params.size + np.arange(consts.size)
    pos = np.flatnonzero((op != LEAF) | (kind == INPUT))

    def operand(j):  # kind, X/Y index and grad row of operand positions j (-1: none)
        there = j >= 0
        js = np.where(there, j, 0)
        k = np.where(there, kind[js], NONE)
        where = np.where((k == ROW) | (k == INPUT), P[P_VROW, js], np.where(k == NONE, -1, sidx[js]))
        return k, where, np.where(k == ROW, P[P_GROW, js], -1)

    o = op[pos].astype(np.int64)
    (lk, x, gx), (rk, y, gy) = operand(P[P_L, pos]), operand(P[P_R, pos])
    lf, rf = P[P_LFIRST, pos].astype(np.int64), P[P_RFIRST, pos].astype(np.int64)
    shared_l, shared_r = lk >= PARAM, (rk == PARAM) | (rk == CONST)
    _swap(((o == ADD) | (o == MUL)) & ~shared_l & shared_r, lk, rk, x, y, gx, gy, lf, rf)
    shared_l, shared_r = lk >= PARAM, (rk == PARAM) | (rk == CONST)
    case = np.full(pos.size, GENERIC)
    case[(o == MUL) & shared_l & ~shared_r] = MUL_SR
    case[(o == ADD) & ~shared_l & ~shared_r] = ADD_RR
    w, wparam, skip = np.zeros(pos.size, np.int64), np.zeros(pos.size, np.int64), np.zeros(pos.size, np.int64)
    _fuse(P, pos, case, lk, rk, x, y, gx, gy, lf, rf, w, wparam, skip)
    inputs = o == LEAF
    x[inputs] = P[P_COL, pos[inputs]]
    Q = np.zeros((pos.size, N_Q), np.int32)
    Q[:, Q_CODE] = o | lk << 5 | rk << 8 | lf << 11 | rf << 12 | case << 13 | wparam << 16 | skip
    Q[:, Q_X], Q[:, Q_Y], Q[:, Q_V], Q[:, Q_G] = x, y, P[P_VROW, pos], P[P_GROW, pos]
    Q[:, Q_GX], Q[:, Q_GY], Q[:, Q_W] = gx, gy, w
    shared = P[P_SLOT, np.concatenate([params, consts])].astype(np.int32)
    rk_, ri, _ = operand(np.array([n - 1]))
    run = skip != SKIP_FWD | SKIP_BWD  # an instruction with nothing left to do is dropped
    return Q[run], args[pos][run], shared, np.array([rk_[0], ri[0]], np.int64), pos[run]


def sink(P, args):
    """A compiled tape (P: int32 (N_PROG, n) with OP, L, R and the rows
    before VROW set; args: float64 (n,)) with each product that only an add
    uses moved to just before that add: returns (P, args), reordered (the
    same arrays when nothing moves). Still operands first: a product's
    operands precede it, and its one user follows it. The tape's order
    (Kahn's, from the root) tends to put a layer's products long before
    their adds; next to its add, a product's backward can run inside the
    add's (FMA_RB). When both of an add's operands are such products, the
    right one goes last (``_fuse`` fuses the right one first). Plain numpy."""
    n = P.shape[1]
    op, lpos, rpos = P[P_OP], P[P_L], P[P_R]
    uses = _uses(P)
    key = np.arange(n, dtype=np.float64)
    for side, row in ((0.5, lpos), (0.25, rpos)):
        users = np.flatnonzero((row >= 0) & (op == ADD))
        q = row[users]
        moved = (op[q] == MUL) & (uses[q] == 1) & (lpos[users] != rpos[users])
        key[q[moved]] = users[moved] - side
    order = np.argsort(key, kind="stable")
    if (order == np.arange(n)).all():
        return P, args
    at = np.empty(n, np.int64)
    at[order] = np.arange(n)
    P = np.ascontiguousarray(P[:, order])
    for row in (P_L, P_R):
        P[row] = np.where(P[row] >= 0, at[np.maximum(P[row], 0)], -1)
    return P, args[order]


def _uses(P):
    """How many operand slots of P's positions name each position (int64,
    (n,): h + h counts twice)."""
    operands = np.concatenate([P[P_L], P[P_R]])
    return np.bincount(operands[operands >= 0], minlength=P.shape[1])


def _swap(which, lk, rk, x, y, gx, gy, lf, rf):
    """Exchange the left and right operands' fields of the instructions
    ``which`` (a mask or indices into ``lower``'s per-instruction arrays)."""
    for a, b in ((lk, rk), (x, y), (gx, gy), (lf, rf)):
        a[which], b[which] = b[which], a[which].copy()


def _fuse(P, pos, case, lk, rk, x, y, gx, gy, lf, rf, w, wparam, skip):
    """Mark the fused pairs (see FMA_IN above) in ``lower``'s per-instruction
    arrays (index k: the instruction at position pos[k]), in place."""
    n = P.shape[1]
    at = np.full(n, -1, np.int64)  # position -> instruction
    at[pos] = np.arange(pos.size)
    uses = _uses(P)
    adds = np.flatnonzero(case == ADD_RR)
    lpos, rpos = P[P_L, pos[adds]], P[P_R, pos[adds]]

    def fusable(q, other):  # w * u, used by nothing but this add (not m + m)
        return (at[q] >= 0) & (case[at[q]] == MUL_SR) & (uses[q] == 1) & (q != other)

    right = fusable(rpos, lpos)
    left = ~right & fusable(lpos, rpos)
    _swap(adds[left], lk, rk, x, y, gx, gy, lf, rf)  # put m on the right (an add commutes exactly)
    a = adds[right | left]
    m = at[np.where(right, rpos, lpos)[right | left]]
    y[a], w[a], wparam[a] = y[m], x[m], lk[m] == PARAM  # acc + w * u; GY, rfirst stay m's
    u_input = rk[m] == INPUT
    takes = ~u_input & (m + 1 == a)  # FMA_RB: the add runs m's backward
    gy[a[takes]], rf[a[takes]] = gy[m[takes]], rf[m[takes]]  # u's grad row, and whether m's is its first term
    case[a] = np.where(u_input, FMA_IN, np.where(takes, FMA_RB, FMA_ROW))
    skip[m] = np.where(u_input | takes, SKIP_FWD | SKIP_BWD, SKIP_FWD)


# A replay runs a list of segments, each an int64 row of 4: the
# instructions lo .. hi - 1, the pass (FWD, FWD_SEED: the forward pass that
# ends the program, then the seed; BWD), and the row of A that takes the
# parameters' sums (-1: the arena's grads directly).
SEG_LO, SEG_HI, SEG_MODE, SEG_ROW = range(4)
FWD, FWD_SEED, BWD = range(3)


# A parameter's gradient in a batched replay is a sum over samples. These
# two sums may be reassociated (fastmath "reassoc", on their own operations
# only; no contraction into fused multiply-adds), which lets LLVM vectorise
# them into several interleaved partial sums: twice as fast as a sum in
# sample order, which waits for each addition before the next. The order
# LLVM fixes depends on the number of samples n and on the CPU numba
# compiles for, so on one machine a sum has the same bits on any thread. A
# NaN term gives NaN; an infinite term gives that infinity unless partial
# sums overflow to the other one (then NaN), as in any order of summation.
@njit(fastmath={"reassoc"})
def _dot(U, i, W, j, n):
    """U[i, :n] . W[j, :n] (float64 2-D arrays)."""
    s = 0.0
    for b in range(n):
        s += U[i, b] * W[j, b]
    return s


@njit(fastmath={"reassoc"})
def _rowsum(U, i, n):
    """U[i, :n].sum() (a float64 2-D array)."""
    s = 0.0
    for b in range(n):
        s += U[i, b]
    return s


@njit
def _pass(Q, C, F, shared, root, X, b0, bn, V, G, seed, A, out, segs):
    """The segments segs (int64 (k, 4), in order) of a lowered program
    (``lower``), for samples b0 .. b0 + bn - 1. A FWD_SEED segment then puts
    the root's value per sample into out, and seed, d(objective) /
    d(root), into G's row 0. (Every replay kernel calls this from one call
    site: each call site costs its own optimisation, seconds of cold compile.)

    Q: int32 (m, N_Q), the instructions. C: float64 (m,), their constants.
    F: the arena's float64 (3, capacity) columns, where the shared scalars'
    values are read (and the parameters' grads added; see A). shared: int32
    (s,), the shared scalars' slots. root: int64 (2,), the root's kind and
    index. X: float64 (B, n_in), all inputs. V: float64 (>= rows of
    V, >= bn); G: float64 (>= rows of G, >= bn): column b holds sample
    b0 + b, laid out (row, sample) so each instruction is decoded once per bn
    samples and the loops over samples vectorise. A: float64 (rows,
    parameters): a segment of row r adds parameter k's gradient summed over
    the samples to A[r, k]; with r = -1, straight to F[GRAD, shared[k]]
    instead, for segments whose parameters no other thread touches
    meanwhile.
    out: float64 (B,).
    """
    SP = np.empty((2, bn))  # per sample, the gradient of the left / right parameter operand
    for seg in range(segs.shape[0]):
        lo, hi, mode = segs[seg, SEG_LO], segs[seg, SEG_HI], segs[seg, SEG_MODE]
        r0 = segs[seg, SEG_ROW]
        if mode != BWD:
            for i in range(lo, hi):
                code, x, y, v = Q[i, Q_CODE], Q[i, Q_X], Q[i, Q_Y], Q[i, Q_V]
                o, case = code & 31, (code >> 13) & 7
                if code & SKIP_FWD:
                    continue
                if case >= FMA_IN:  # FMA_IN, FMA_ROW, FMA_RB
                    w = F[DATA, shared[Q[i, Q_W]]]
                    for b in range(bn):
                        V[v, b] = V[x, b] + w * V[y, b]
                elif o == LEAF:
                    for b in range(bn):
                        V[v, b] = X[b0 + b, x]
                elif case == MUL_SR:
                    w = F[DATA, shared[x]]
                    for b in range(bn):
                        V[v, b] = w * V[y, b]
                elif case == ADD_RR:
                    for b in range(bn):
                        V[v, b] = V[x, b] + V[y, b]
                else:
                    lk, rk, c = (code >> 5) & 7, (code >> 8) & 7, C[i]
                    sl, sr = lk >= PARAM, rk >= PARAM
                    wl = F[DATA, shared[x]] if sl else 0.0
                    wr = F[DATA, shared[y]] if sr and rk != NONE else 0.0
                    xr, yr = 0 if sl else x, 0 if sr else y
                    if o == MUL and not sl and not sr:  # h * h (attention's products)
                        for b in range(bn):
                            V[v, b] = V[x, b] * V[y, b]
                    else:
                        for b in range(bn):
                            V[v, b] = forward(o, wl if sl else V[xr, b], wr if sr else V[yr, b], c)
            if mode == FWD_SEED:
                rk, ri = root[0], root[1]
                for b in range(bn):
                    out[b0 + b] = F[DATA, shared[ri]] if rk >= PARAM else V[ri, b]
                    G[0, b] = seed
                if rk == PARAM:  # a parameter as its own objective: d root / d root = 1 per sample
                    if r0 < 0:
                        F[GRAD, shared[ri]] += seed * bn
                    else:
                        A[r0, ri] += seed * bn
        else:
            for i in range(hi - 1, lo - 1, -1):
                code = Q[i, Q_CODE]
                o = code & 31
                if o == LEAF:
                    continue
                x, y, v, gp, gx, gy = Q[i, Q_X], Q[i, Q_Y], Q[i, Q_V], Q[i, Q_G], Q[i, Q_GX], Q[i, Q_GY]
                lk, rk, case = (code >> 5) & 7, (code >> 8) & 7, (code >> 13) & 7
                lfirst, rfirst = (code >> 11) & 1, (code >> 12) & 1
                passed = lk != ROW or gx == gp and lfirst  # the left operand's grad needs nothing
                k1 = k2 = j1 = j2 = -1
                f1 = f2 = 0
                s1 = s2 = 1.0
                fused = case == FMA_IN or case == FMA_RB  # the add runs w * u's backward
                if fused and (code >> 16) & 1 or case == MUL_SR and lk == PARAM:
                    # The hot shapes, an MLP's and a GPT's bulk: acc + w * u and w * u,
                    # u's row at Y, without the general decoding below; w's gradient
                    # is V[u] . G[gp].
                    k = Q[i, Q_W] if fused else x
                    s = _dot(V, y, G, gp, bn)
                    if r0 < 0:
                        F[GRAD, shared[k]] += s
                    else:
                        A[r0, k] += s
                    if case == FMA_IN and passed or case == MUL_SR and rk != ROW:
                        continue
                    # then the operand rows below: acc's (not handed on) and u's, or h's in w * h
                    if fused:
                        j1, f1 = gx, lfirst
                        if case == FMA_RB:
                            j2, f2, s2 = gy, rfirst, F[DATA, shared[k]]
                    else:
                        j1, f1, s1 = gy, rfirst, F[DATA, shared[x]]
                # Each shape gives up to two operand rows, G[j] = or += s * G[gp] (=
                # for the first contribution, so h + h, one row as both operands,
                # assigns then adds; s * G[gp] with s = 1 is exact, so each shape
                # keeps the generic rules' bits); the generic rule also fills SP for
                # up to two parameters k1, k2. Written out here, not as helpers, as is
                # each "A[r0, k] or F[GRAD, shared[k]] += s" below: an inlined helper
                # that writes to an array argument costs atomic reference counts per
                # call in this loop (such an add-the-gradient helper took MNIST's batch
                # from 0.88 to 2.0 ms); the read-only _dot and _rowsum add none (the
                # same counts in the IR). (Each shape's loops cost compile time too,
                # ~0.2 s each, cold: rarer shapes take the generic rule.)
                elif case == MUL_SR:  # c * h
                    if rk == ROW:
                        j1, f1, s1 = gy, rfirst, F[DATA, shared[x]]
                elif fused:  # acc + c * u
                    if lk == ROW:
                        j1, f1 = gx, lfirst
                    if case == FMA_RB:
                        j2, f2, s2 = gy, rfirst, F[DATA, shared[Q[i, Q_W]]]
                elif case != GENERIC:  # ADD_RR, FMA_ROW
                    if lk == ROW:
                        j1, f1 = gx, lfirst
                    if rk == ROW:
                        j2, f2 = gy, rfirst
                if case != GENERIC:
                    for j, f, s in ((j1, f1, s1), (j2, f2, s2)):
                        if j < 0 or j == gp and f:  # tape_rows handed the add's grad row on: in place already
                            continue
                        if f:
                            for b in range(bn):
                                G[j, b] = s * G[gp, b]
                        else:
                            for b in range(bn):
                                G[j, b] += s * G[gp, b]
                else:
                    c = C[i]
                    sl, sr = lk >= PARAM, rk >= PARAM
                    wl = F[DATA, shared[x]] if sl else 0.0
                    wr = F[DATA, shared[y]] if sr and rk != NONE else 0.0
                    xr, yr = 0 if sl else x, 0 if sr else y
                    for b in range(bn):
                        gl, gr = rule(o, wl if sl else V[xr, b], wr if sr else V[yr, b], c, V[v, b], G[gp, b])
                        if lk == ROW:
                            G[gx, b] = gl if lfirst else G[gx, b] + gl
                        SP[0, b] = gl
                        if rk == ROW:  # after the left: h * h adds to the row the left just set
                            G[gy, b] = gr if rfirst else G[gy, b] + gr
                        SP[1, b] = gr
                    if lk == PARAM:
                        k1 = x
                    if rk == PARAM:
                        k2 = y
                # The parameters' sums of their SP rows, as above.
                for r in range(2):
                    k = k1 if r == 0 else k2
                    if k < 0:
                        continue
                    s = _rowsum(SP, r, bn)
                    if r0 < 0:
                        F[GRAD, shared[k]] += s
                    else:
                        A[r0, k] += s


@njit
def _reduce(F, shared, A, lo, hi):
    """Add each chunk's gradients of parameters lo .. hi - 1 (A: float64
    (T, parameters)) to the arena, in chunk order."""
    for k in range(lo, hi):
        s = 0.0
        for t in range(A.shape[0]):
            s += A[t, k]
        F[GRAD, shared[k]] += s


@njit
def tape_batch(F, Q, C, shared, root, X, V, G, A, seed, segs, chunks):
    """A batched replay on the calling thread: the segments segs (int64,
    (k, 4), see ``_pass``) over the B samples in chunks chunks of
    consecutive samples, one after another (chunk t is samples t*B//chunks
    .. (t+1)*B//chunks - 1; V: float64 (rows of V, >= B/chunks); G:
    float64 (rows of G, >= B/chunks)), then A (float64 (T, parameters),
    zeroed first; 0 x 0 when every segment adds to the grads directly)
    added to the parameters' grads in row order. A plain program's segments
    are its forward and backward passes: in T chunks, chunk t summing into
    A[t], they give tape_batch_parallel's result bit for bit. A split
    program's are its phases, in one chunk (tape_split_parallel's result).
    ``threads.Pace`` runs it when the cores are busy. Returns the root's
    value per sample (float64 (B,))."""
    B = X.shape[0]
    out = np.empty(B)
    A[:, :] = 0.0
    for t in range(chunks):
        b0 = t * B // chunks
        _pass(Q, C, F, shared, root, X, b0, (t + 1) * B // chunks - b0, V, G, seed, A[t:] if chunks > 1 else A, out,
              segs)
    _reduce(F, shared, A, 0, A.shape[1])
    return out


@njit(parallel=True)
def tape_batch_parallel(F, Q, C, shared, root, X, V, G, A, seed, segs):
    """A batched replay split into T chunks of consecutive samples, one per
    thread (T = V.shape[0]; chunk t is samples t*B//T .. (t+1)*B//T - 1).

    V: float64 (T, rows of V, ceil(B/T)); G: float64 (T, rows of G,
    ceil(B/T)): each chunk's own rows. A: float64 (T, parameters), each
    chunk's own parameter-gradient accumulator. segs: the program's forward
    and backward pass (int64 (2, 4), row 0). Chunks share
    only reads (F, the program, X); out is written at disjoint samples. The
    accumulators are then added to the arena in chunk order, so the result
    depends on T, never on the scheduling. Returns the root's value per
    sample (float64 (B,)).
    """
    T, B = V.shape[0], X.shape[0]
    out = np.empty(B)
    for t in prange(T):
        b0 = t * B // T
        for k in range(A.shape[1]):  # a loop, not A[t, :] = 0, which numba would make a nested parfor
            A[t, k] = 0.0
        _pass(Q, C, F, shared, root, X, b0, (t + 1) * B // T - b0, V[t], G[t], seed, A[t:t + 1], out, segs)
    _reduce(F, shared, A, 0, A.shape[1])
    return out


# A split program (``split.plan``) runs each sample's instructions on T
# threads at once. Its instructions are the input loads (in T parts), T
# bins of computed nodes and the tail (the root last), which uses the bins'
# results. A bin's nodes use no other bin's rows of V or G, so the bins run
# concurrently, each over all B samples as one chunk; the tail runs on one
# thread. Its segments (int64, (5, T, 4)) are, per phase and thread: the
# loads, the bins' forward passes, the tail's forward pass (thread 0; the
# others empty), the tail's backward pass, the bins' backward passes. When
# no parameter is used by two bins, every segment adds its parameters'
# sums to the arena's grads directly (no thread touches another's
# parameters while the bins run; the tail runs alone). Otherwise bin t and
# the loads' part t sum into A[t], the tail into A[0], and the accumulators
# are added to the arena in row order. Either way the result depends on T,
# never on the scheduling, and tape_batch on the segments in order gives
# the same bits on one thread.
@njit(parallel=True)
def tape_split_parallel(F, Q, C, shared, root, X, V, G, A, seed, segs):
    """A batched replay of a split program (see above; segs: int64 (5, T,
    4)), each phase's parts on T threads. V (rows of V, >= B), G (rows of
    G, >= B), A (T, parameters, or 0 x 0 when the segments add to the
    arena's grads directly): float64. Returns the root's value per sample
    (float64 (B,))."""
    T, B, P = segs.shape[1], X.shape[0], A.shape[1]
    out = np.empty(B)
    for phase in range(segs.shape[0]):  # a bound known only at run time: the loop is not unrolled
        for t in prange(T):
            if phase == 0:  # a clean accumulator
                for k in range(P):
                    A[t, k] = 0.0
            _pass(Q, C, F, shared, root, X, 0, B, V, G, seed, A, out, segs[phase, t:t + 1])
    for t in prange(T):
        _reduce(F, shared, A, t * P // T, (t + 1) * P // T)
    return out
