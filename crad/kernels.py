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
  (``Arena.reserve``), except ``emit`` and ``emit_const``, which return -1.
  It leaves the k nodes it made listed in I[STACK, :k] (anomaly mode reads them).

Performance rule: a helper that takes arrays costs an atomic incref/decref
of each array per call (numba's NRT), so per-node helpers take scalars only
(``ops.forward``, ``ops.backward``) and array helpers run once per kernel
call, over a batch of slots listed in the STACK row.
"""
import numpy as np

from ._config import njit
from .ops import ADD, EXP, LEAF, LOG, MUL, POW, RELU, TANH, forward
from .ops import backward as rule

DATA, GRAD, ARG = 0, 1, 2
OP, LHS, RHS, REFS, GEN, MARK, LOW, STACK, AUX = range(9)
N_FLOAT_ROWS, N_INT_ROWS = 3, 9
M_TOP, M_FREE_HEAD, M_NFREE, M_LIVE, M_PEAK, M_EPOCH, M_MADE, M_FREED = range(8)
N_META = 8


@njit
def _take_many(F, I, M, k):
    """Make k vacant slots live (no reference yet, zero grad) and list them in
    I[STACK, :k], in the order they must be wired. Needs room for k.

    Free-list slots come first. The counters live in locals for the loop:
    M may alias nothing, but LLVM cannot know that.
    """
    head, nfree, top = M[M_FREE_HEAD], M[M_NFREE], M[M_TOP]
    for t in range(k):
        if nfree > 0:
            i = head
            head = I[LHS, i]
            nfree -= 1
        else:
            i = top
            top += 1
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

    Each leaf is owned by the caller. Needs room for n nodes. One pass, the
    slots taken as in ``_take_many`` (its loop, repeated here on purpose: a
    separate pass costs 25% of a leaf's time, and every batch starts with
    leaves).
    """
    n = x.shape[0]
    head, nfree, top = M[M_FREE_HEAD], M[M_NFREE], M[M_TOP]
    for t in range(n):
        if nfree > 0:
            i = head
            head = I[LHS, i]
            nfree -= 1
        else:
            i = top
            top += 1
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
def emit_dot(F, I, M, u, v):
    """sum_k u[k] * v[k] as a scalar graph: one MUL per pair, a chain of ADDs.

    u, v: int32, (n,), n >= 1, live slots. Returns the root, owned by the
    caller. Needs room for 2n - 1 nodes. Wiring and finishing are fused (as
    in emit_layer): each new node has exactly one user.
    """
    n = u.shape[0]
    _take_many(F, I, M, 2 * n - 1)
    s, sv, lo = -1, 0.0, 0
    for k in range(n):  # list order: m0, m1, s1, m2, s2, ...
        m = I[STACK, max(2 * k - 1, 0)]
        a, b = u[k], v[k]
        mv = F[DATA, a] * F[DATA, b]
        I[OP, m], I[LHS, m], I[RHS, m], I[REFS, m] = MUL, a, b, 1
        F[DATA, m] = mv
        I[REFS, a] += 1
        I[REFS, b] += 1
        lm = _fold_low(_fold_low(m, m, a, I[LOW, a]), m, b, I[LOW, b])
        I[LOW, m] = lm
        if k == 0:
            s, sv, lo = m, mv, lm
            continue
        t = I[STACK, 2 * k]
        sv = sv + mv
        I[OP, t], I[LHS, t], I[RHS, t], I[REFS, t] = ADD, s, m, 1
        F[DATA, t] = sv
        lo = _fold_low(_fold_low(t, t, s, lo), t, m, lm)
        I[LOW, t] = lo
        s = t
    return s


@njit
def emit_sum(F, I, M, u):
    """u[0] + u[1] + ... as a chain of ADDs (micrograd's ``sum`` without the 0).

    u: int32, (n,), n >= 2, live slots. Returns the root, owned by the
    caller. Needs room for n - 1 nodes.
    """
    n = u.shape[0]
    _take_many(F, I, M, n - 1)
    s = u[0]
    for k in range(1, n):
        a = I[STACK, k - 1]
        I[OP, a], I[LHS, a], I[RHS, a] = ADD, s, u[k]
        s = a
    _finish(F, I, n - 1)
    I[REFS, s] += 1
    return s


@njit
def _cascade(F, I, M, sp, hi, lo):
    """Free the nodes listed in I[STACK, :sp] (their counts are zero) and,
    iteratively, every operand whose count that brings to zero.

    hi: the highest listed slot; lo: the lowest LOW among them, or -1 if any
    is unordered. For an ordered graph every operand sits below its user, so
    one descending sweep from hi frees everything, and stops as soon as no
    discovered node is pending; nodes are then freed in descending slot order,
    the LIFO free list gives them back in ascending order, and the next graph
    built from them is ordered again. A sweep that scans far more slots than it
    frees (a small graph over a wide range) falls back to the explicit stack,
    which lists every discovered node (freed ones are skipped by parity).
    Returns the number freed.
    """
    head = M[M_FREE_HEAD]
    n = 0
    pending = sp  # discovered (count zero), not yet freed; all are on STACK
    sweeping = lo >= 0
    i = hi + 1
    while pending > 0:
        if sweeping:  # next candidate: the next slot down
            i -= 1
            if i < lo or hi - i > 4 * (n + pending) + 64:
                sweeping = False
                continue
            if I[REFS, i] != 0 or not (I[GEN, i] & 1):
                continue
            j = i
        else:  # next candidate: the stack (already freed entries are skipped)
            sp -= 1
            j = I[STACK, sp]
            if not (I[GEN, j] & 1):
                continue
        pending -= 1
        l, r = I[LHS, j], I[RHS, j]
        I[GEN, j] += 1  # odd -> even: vacant; every handle to it is now stale
        I[LHS, j] = head
        head = j
        n += 1
        if l >= 0:
            I[REFS, l] -= 1
            if I[REFS, l] == 0:
                I[STACK, sp] = l
                sp += 1
                pending += 1
        if r >= 0:
            I[REFS, r] -= 1
            if I[REFS, r] == 0:
                I[STACK, sp] = r
                sp += 1
                pending += 1
    M[M_FREE_HEAD] = head
    M[M_NFREE] += n
    M[M_LIVE] -= n
    M[M_FREED] += n
    return n


@njit
def release(F, I, M, root):
    """Drop one reference to the live slot root. Returns how many were freed."""
    I[REFS, root] -= 1
    if I[REFS, root] > 0:
        return 0
    I[STACK, 0] = root
    return _cascade(F, I, M, 1, root, I[LOW, root])


@njit
def release_many(F, I, M, ids):
    """Drop one reference to each slot of ids (int32, (n,)). Returns how many were freed."""
    sp, hi, lo = 0, -1, I.shape[1]
    for k in range(ids.shape[0]):
        i = ids[k]
        I[REFS, i] -= 1
        if I[REFS, i] == 0:
            I[STACK, sp] = i
            sp += 1
            hi = max(hi, i)
            lo = min(lo, I[LOW, i]) if lo >= 0 and I[LOW, i] >= 0 else -1
    return _cascade(F, I, M, sp, hi, lo) if sp else 0


@njit
def retain_many(I, ids):
    """Add one reference to each slot of ids (int32, (n,))."""
    for k in range(ids.shape[0]):
        I[REFS, ids[k]] += 1


@njit
def _next_epoch(I, M):
    """A MARK value no slot holds yet."""
    if M[M_EPOCH] >= 2**31 - 2:
        I[MARK, :] = 0
        M[M_EPOCH] = 0
    M[M_EPOCH] += 1
    return M[M_EPOCH]


@njit
def _order(I, M, root):
    """List root's graph in I[STACK, :n], users before operands; return n.

    Kahn's algorithm: count each node's users in AUX (pass 1, a DFS on
    STACK, with epoch marks instead of a visited set), then queue a node once
    all its users are queued (pass 2; the queue is the list itself). The order
    depends only on the graph's structure, never on slot numbers.
    """
    e = _next_epoch(I, M)
    I[MARK, root] = e
    I[AUX, root] = 0
    I[STACK, 0] = root
    sp = 1
    while sp > 0:
        sp -= 1
        i = I[STACK, sp]
        for j in (I[LHS, i], I[RHS, i]):
            if j >= 0:
                if I[MARK, j] != e:
                    I[MARK, j] = e
                    I[AUX, j] = 0
                    I[STACK, sp] = j
                    sp += 1
                I[AUX, j] += 1
    I[STACK, 0] = root
    n = 1
    q = 0
    while q < n:
        i = I[STACK, q]
        q += 1
        for j in (I[LHS, i], I[RHS, i]):
            if j >= 0:
                I[AUX, j] -= 1
                if I[AUX, j] == 0:
                    I[STACK, n] = j
                    n += 1
    return n


@njit
def _apply_order(F, I, order, n):
    """Apply the chain rule at each node of order[:n] (int32), users first."""
    for t in range(n):
        i = order[t]
        op = I[OP, i]
        if op == LEAF:
            continue
        l, r = I[LHS, i], I[RHS, i]
        y = F[DATA, r] if r >= 0 else 0.0
        gx, gy = rule(op, F[DATA, l], y, F[ARG, i], F[DATA, i], F[GRAD, i])
        F[GRAD, l] += gx
        if r >= 0:
            F[GRAD, r] += gy


@njit
def backward(F, I, M, root, sweep):
    """Seed grad[root] = 1 and accumulate (+=) the chain rule into everything
    root depends on. Returns n; the nodes visited are left in I[STACK, :n],
    users first.

    With sweep and LOW[root] >= 0, the rule is applied during the marking
    sweep itself (descending slots are a reverse topological order: a node's
    gradient is complete when the sweep reaches it). Otherwise Kahn's order
    (``_order``), then the rule along it.
    """
    F[GRAD, root] = 1.0
    lo = I[LOW, root]
    if not (sweep and lo >= 0):
        n = _order(I, M, root)
        _apply_order(F, I, I[STACK], n)
        return n
    e = _next_epoch(I, M)
    I[MARK, root] = e
    n = 0
    for i in range(root, lo - 1, -1):
        if I[MARK, i] != e:
            continue
        I[STACK, n] = i
        n += 1
        op = I[OP, i]
        if op == LEAF:
            continue
        l, r = I[LHS, i], I[RHS, i]
        y = F[DATA, r] if r >= 0 else 0.0
        gx, gy = rule(op, F[DATA, l], y, F[ARG, i], F[DATA, i], F[GRAD, i])
        F[GRAD, l] += gx
        I[MARK, l] = e
        if r >= 0:
            F[GRAD, r] += gy
            I[MARK, r] = e
    return n


@njit
def order_of(I, M, root, out):
    """Kahn's order of root's graph (users first) into out (int32, (cap,)).

    Two traces of the same computation list their nodes at the same
    positions (``capture`` compares re-traces this way). Returns n.
    """
    n = _order(I, M, root)
    for t in range(n):
        out[t] = I[STACK, t]
    return n


@njit
def tape_forward(F, I, fwd):
    """Recompute the non-leaf slots fwd (int32, (m,), operands first) and
    restart their grads at 0, as a rebuilt graph's fresh nodes would."""
    for t in range(fwd.shape[0]):
        i = fwd[t]
        l, r = I[LHS, i], I[RHS, i]
        y = F[DATA, r] if r >= 0 else 0.0
        F[DATA, i] = forward(I[OP, i], F[DATA, l], y, F[ARG, i])
        F[GRAD, i] = 0.0


@njit
def tape_backward(F, I, bwd, zero, root):
    """A rebuilt graph's backward on a recorded one (after tape_forward):
    grads of zero (int32, (k,): the tape's input and constant leaves) restart
    at 0, grad[root] = 1, then the rule is applied along bwd (int32, (m,),
    the non-leaf nodes, users first). Parameters accumulate."""
    for k in range(zero.shape[0]):
        F[GRAD, zero[k]] = 0.0
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


@njit
def tape_rows(ops, lpos, rpos, kind, vrow, grow, lfirst, rfirst):
    """Register allocation for a batched tape (positions from tape_compile).

    kind: int32 (n,), ROW (computed), PARAM, CONST or INPUT per position.
    Fills vrow, grow (int32 (n,), -1 for none), lfirst, rfirst (int32 (n,),
    1 where this node makes the first contribution to an operand's grad row,
    which must then be zeroed). Returns (rows of V, rows of G).

    A value keeps its row through the backward pass only if backward reads it
    (an operand of MUL, POW or LOG; the output of EXP, TANH, RELU; the root);
    otherwise its row is reused once its last user has run. A grad row lives
    from its node's first user's backward to the node's own.
    """
    n = ops.shape[0]
    keep = np.zeros(n, np.bool_)
    last = np.full(n, -1, np.int64)
    for p in range(n):
        op, l, r = ops[p], lpos[p], rpos[p]
        if op == EXP or op == TANH or op == RELU:
            keep[p] = True
        if op == MUL:
            keep[l] = True
            keep[r] = True
        if op == POW or op == LOG:
            keep[l] = True
        if l >= 0:
            last[l] = max(last[l], p)
        if r >= 0:
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
        if ops[p] == LEAF:
            continue
        l, r = lpos[p], rpos[p]
        for j in (l, r):
            if j >= 0 and kind[j] == ROW and not keep[j] and last[j] == p and (j != r or l != r):
                free[nfree] = vrow[j]
                nfree += 1
    nfree = 0
    ng = 1
    for p in range(n):
        grow[p] = -1
    grow[n - 1] = 0
    for p in range(n - 1, -1, -1):
        if ops[p] == LEAF:
            continue
        l, r = lpos[p], rpos[p]
        lfirst[p] = 0
        rfirst[p] = 0
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
def tape_batch(F, ops, lpos, rpos, args, slot, col, vrow, grow, kind, lfirst, rfirst, X, V, G, seed):
    """Forward and backward of a compiled tape (tape_compile, tape_rows) over
    B samples at once.

    int32 (n,) each: ops, lpos, rpos, slot (arena slot per position), col
    (input column), vrow, grow, kind, lfirst, rfirst. args: float64
    (n,). X: float64 (B, n_in) inputs. V: float64 (rows of V, B); G: float64
    (rows of G, B): laid out (row, sample) so each node is decoded once per B
    samples and the inner loops over samples vectorise. seed: d(objective) /
    d(root) for each sample. Parameters accumulate their gradient, summed over
    the batch, into the arena. Returns the root's value per sample (float64 (B,)).
    """
    B = X.shape[0]
    n = ops.shape[0]
    for p in range(n):
        op = ops[p]
        if op == LEAF:
            if col[p] >= 0:
                v = vrow[p]
                for b in range(B):
                    V[v, b] = X[b, col[p]]
            continue
        l, r, c, v = lpos[p], rpos[p], args[p], vrow[p]
        lm, rm = kind[l], kind[r] if r >= 0 else -1
        lsh = lm == PARAM or lm == CONST
        rsh = r >= 0 and (rm == PARAM or rm == CONST)
        wl = F[DATA, slot[l]] if lsh else 0.0
        wr = F[DATA, slot[r]] if rsh else 0.0
        vl = vrow[l]
        vr = vrow[r] if r >= 0 else 0
        # The hot cases of a layer (weight * input, chain link + product)
        # have no per-sample branch, so that they vectorise.
        if op == MUL and lsh and not rsh:
            for b in range(B):
                V[v, b] = wl * V[vr, b]
        elif op == ADD and not lsh and not rsh:
            for b in range(B):
                V[v, b] = V[vl, b] + V[vr, b]
        elif op == ADD:
            for b in range(B):
                V[v, b] = (wl if lsh else V[vl, b]) + (wr if rsh else V[vr, b])
        elif op == MUL:
            for b in range(B):
                V[v, b] = (wl if lsh else V[vl, b]) * (wr if rsh else V[vr, b])
        else:
            for b in range(B):
                V[v, b] = forward(op, wl if lsh else V[vl, b], 0.0, c)
    out = np.empty(B)
    for b in range(B):
        out[b] = V[vrow[n - 1], b]
        G[0, b] = seed
    for p in range(n - 1, -1, -1):
        op = ops[p]
        if op == LEAF:
            continue
        l, r, c = lpos[p], rpos[p], args[p]
        lm, rm = kind[l], kind[r] if r >= 0 else -1
        gp = grow[p]
        gl_ = grow[l] if lm == ROW else 0
        gr_ = grow[r] if r >= 0 and rm == ROW else 0
        if lfirst[p]:
            for b in range(B):
                G[gl_, b] = 0.0
        if rfirst[p]:
            for b in range(B):
                G[gr_, b] = 0.0
        lsh = lm == PARAM or lm == CONST
        rsh = r >= 0 and (rm == PARAM or rm == CONST)
        wl = F[DATA, slot[l]] if lsh else 0.0
        wr = F[DATA, slot[r]] if rsh else 0.0
        vl = vrow[l] if vrow[l] >= 0 else 0
        vr = vrow[r] if r >= 0 and vrow[r] >= 0 else 0
        sl = 0.0  # a shared operand's gradient, summed over the batch
        sr = 0.0
        if op == MUL and lm == PARAM and rm == INPUT:
            for b in range(B):
                sl += V[vr, b] * G[gp, b]
        elif op == MUL and lm == PARAM and rm == ROW:
            for b in range(B):
                sl += V[vr, b] * G[gp, b]
                G[gr_, b] += wl * G[gp, b]
        elif op == ADD and lm == ROW and rm == ROW:
            for b in range(B):
                G[gl_, b] += G[gp, b]
                G[gr_, b] += G[gp, b]
        elif op == ADD:
            for b in range(B):
                g = G[gp, b]
                if lm == ROW:
                    G[gl_, b] += g
                else:
                    sl += g
                if r >= 0:
                    if rm == ROW:
                        G[gr_, b] += g
                    else:
                        sr += g
        elif op == MUL:
            for b in range(B):
                g = G[gp, b]
                x = wl if lsh else V[vl, b]
                y = wr if rsh else V[vr, b]
                if lm == ROW:
                    G[gl_, b] += y * g
                else:
                    sl += y * g
                if rm == ROW:
                    G[gr_, b] += x * g
                else:
                    sr += x * g
        else:
            for b in range(B):
                gx, _ = rule(op, wl if lsh else V[vl, b], 0.0, c, V[vrow[p], b] if vrow[p] >= 0 else 0.0, G[gp, b])
                if lm == ROW:
                    G[gl_, b] += gx
                else:
                    sl += gx
        if lm == PARAM:
            F[GRAD, slot[l]] += sl
        if r >= 0 and rm == PARAM:
            F[GRAD, slot[r]] += sr
    return out


@njit
def emit_map(F, I, M, op, a, b, c, out):
    """Elementwise nodes, one per k, owned by the caller via out (int32, (n,)).

    a: int32 (n,) first operands. b: int32 (n,) second operands, or empty.
    c: float64 (n,) constants, or empty. With b: op(a[k], b[k]). With c and
    a binary op: op(a[k], leaf(c[k])), micrograd's constant (a leaf first).
    With c and a unary op: op(a[k]) with ARG c[k] (POW's exponent).
    Needs room for n nodes (2n with constant leaves).
    """
    n = a.shape[0]
    leaf = c.shape[0] > 0 and (op == ADD or op == MUL)
    _take_many(F, I, M, 2 * n if leaf else n)
    for k in range(n):
        if leaf:
            z, i = I[STACK, 2 * k], I[STACK, 2 * k + 1]
            I[OP, z], I[LHS, z], I[RHS, z], F[ARG, z] = LEAF, -1, -1, c[k]
            I[OP, i], I[LHS, i], I[RHS, i], F[ARG, i] = op, a[k], z, 0.0
        else:
            i = I[STACK, k]
            I[OP, i], I[LHS, i] = op, a[k]
            I[RHS, i] = b[k] if b.shape[0] > 0 else -1
            F[ARG, i] = c[k] if c.shape[0] > 0 else 0.0
        out[k] = i
    _finish(F, I, 2 * n if leaf else n)
    for k in range(n):
        I[REFS, out[k]] = 1


@njit
def emit_rowsum(F, I, M, u, out):
    """Row sums of u (int32, (R, C), C >= 2) as chains of ADDs, roots into
    out (int32, (R,)), owned by the caller. Needs room for R * (C - 1)."""
    R, C = u.shape
    _take_many(F, I, M, R * (C - 1))
    t = 0
    for row in range(R):
        s = u[row, 0]
        for k in range(1, C):
            a = I[STACK, t]
            t += 1
            I[OP, a], I[LHS, a], I[RHS, a] = ADD, s, u[row, k]
            s = a
        out[row] = s
    _finish(F, I, R * (C - 1))
    for row in range(R):
        I[REFS, out[row]] += 1


@njit
def emit_layer(F, I, M, W, b, X, relu, out):
    """A dense layer over a batch, micrograd's Neuron graph per (sample, neuron):
    b[j] + W[j,0]*X[s,0] + W[j,1]*X[s,1] + ... then RELU if relu.

    W: int32 (nout, nin), b: int32 (nout,), X: int32 (B, nin), all live.
    out: int32 (B, nout), owned by the caller. Needs room for
    B * nout * (2 * nin + relu) nodes.

    The bulk of every training graph comes from here, so wiring and
    finishing are fused into one pass (values, counts and LOW computed
    inline, as ``_finish`` would): each new node has exactly one user.
    """
    B, nin = X.shape
    nout = W.shape[0]
    k = B * nout * (2 * nin + (1 if relu else 0))
    _take_many(F, I, M, k)
    t = 0
    for s in range(B):
        for j in range(nout):
            acc = b[j]
            v = F[DATA, acc]
            lo = I[LOW, acc]
            I[REFS, acc] += 1
            for q in range(nin):
                w, x = W[j, q], X[s, q]
                m, a = I[STACK, t], I[STACK, t + 1]
                t += 2
                mv = F[DATA, w] * F[DATA, x]
                I[OP, m], I[LHS, m], I[RHS, m], F[DATA, m] = MUL, w, x, mv
                I[REFS, w] += 1
                I[REFS, x] += 1
                I[REFS, m] = 1
                lm = _fold_low(_fold_low(m, m, w, I[LOW, w]), m, x, I[LOW, x])
                I[LOW, m] = lm
                v = v + mv
                I[OP, a], I[LHS, a], I[RHS, a], F[DATA, a] = ADD, acc, m, v
                lo = _fold_low(_fold_low(a, a, acc, lo), a, m, lm)
                I[LOW, a] = lo
                if q > 0:
                    I[REFS, acc] = 1
                acc = a
            if relu:
                z = I[STACK, t]
                t += 1
                I[REFS, acc] = 1
                I[OP, z], I[LHS, z], I[RHS, z] = RELU, acc, -1
                F[DATA, z] = forward(RELU, v, 0.0, 0.0)
                I[LOW, z] = _fold_low(z, z, acc, lo)
                acc = z
            I[REFS, acc] = 1
            out[s, j] = acc


def runs(ids):
    """ids (int32, (n,)) as runs of consecutive slots: (slot starts, offsets
    into ids, lengths), int32 each. Parameters allocated together form one
    run, which lets the update kernels below work on contiguous memory."""
    ids = np.asarray(ids, np.int64)
    if ids.size == 0:
        return (np.empty(0, np.int32),) * 3
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    offsets = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([offsets, [ids.size]]))
    return ids[offsets].astype(np.int32), offsets.astype(np.int32), lengths.astype(np.int32)


@njit
def zero_grad_runs(F, starts, lengths):
    """grad = 0 over runs of slots (int32 (k,) starts and lengths)."""
    for k in range(starts.shape[0]):
        F[GRAD, starts[k]:starts[k] + lengths[k]] = 0.0


# The update kernels loop over 1-D views of each run: with that simple
# addressing LLVM vectorises the loop (Adam: 16 us instead of 120 us for
# 25k parameters, sqrt and divisions included).
@njit
def sgd_step(F, starts, offsets, lengths, lr, momentum, velocity):
    """v = momentum * v + grad; p -= lr * v (plain SGD at momentum 0), over
    runs of parameter slots (int32 (k,) each; see ``runs``). velocity:
    float64 (n,), in parameter order, updated in place."""
    for k in range(starts.shape[0]):
        s, o, n = starts[k], offsets[k], lengths[k]
        g, p, vel = F[GRAD, s:s + n], F[DATA, s:s + n], velocity[o:o + n]
        for j in range(n):
            vj = momentum * vel[j] + g[j]
            vel[j] = vj
            p[j] -= lr * vj


@njit
def adam_step(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v):
    """Adam (Kingma & Ba) over runs of parameter slots (see ``runs``); m, v:
    float64 (n,) in parameter order, in place; t is the step number, from 1."""
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    for k in range(starts.shape[0]):
        s, o, n = starts[k], offsets[k], lengths[k]
        g, p, mm, vv = F[GRAD, s:s + n], F[DATA, s:s + n], m[o:o + n], v[o:o + n]
        for j in range(n):
            gj = g[j]
            mk = b1 * mm[j] + (1.0 - b1) * gj
            vk = b2 * vv[j] + (1.0 - b2) * gj * gj
            mm[j] = mk
            vv[j] = vk
            p[j] -= lr * (mk / c1) / (np.sqrt(vk / c2) + eps)
