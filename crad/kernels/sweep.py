"""Backward and the release cascade: sweeps over a graph, never recursion."""
from .._config import njit
from ..ops import LEAF
from ..ops import backward as rule
from .layout import (
    ARG,
    AUX,
    DATA,
    GEN,
    GRAD,
    LHS,
    LOW,
    M_EPOCH,
    M_FREE_HEAD,
    M_FREED,
    M_LIVE,
    M_NFREE,
    MARK,
    OP,
    REFS,
    RHS,
    STACK,
)


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
    return release_counted(F, I, M, root)


@njit
def release_counted(F, I, M, root):
    """Free root, whose count has just reached zero, and what it alone held.
    Returns how many were freed."""
    I[STACK, 0] = root
    return _cascade(F, I, M, 1, root, I[LOW, root])


@njit
def release_many(F, I, M, ids):
    """Drop one reference to each slot of ids (int32, (n,)). Returns how many were freed."""
    return _release_n(F, I, M, ids, ids.shape[0])


@njit
def _release_n(F, I, M, ids, n):
    """release_many over ids[:n] (int32): one cascade for every slot whose
    count reaches zero. Returns how many were freed."""
    sp, hi, lo = 0, -1, I.shape[1]
    for k in range(n):
        i = ids[k]
        I[REFS, i] -= 1
        if I[REFS, i] == 0:
            I[STACK, sp] = i
            sp += 1
            hi = max(hi, i)
            lo = min(lo, I[LOW, i]) if lo >= 0 and I[LOW, i] >= 0 else -1
    return _cascade(F, I, M, sp, hi, lo) if sp else 0


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
