"""Bulk graph builders: many nodes per call, for Vectors and layers."""
from .._config import njit
from ..ops import ADD, LEAF, MUL, RELU, forward
from .alloc import _finish, _fold_low, _take_many
from .layout import ARG, DATA, LHS, LOW, OP, REFS, RHS, STACK


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
        mv = forward(MUL, F[DATA, a], F[DATA, b], 0.0)
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
        sv = forward(ADD, sv, mv, 0.0)
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


# How emit_map reads its operands.
MAP_UNARY, MAP_NODES, MAP_CONSTS = 0, 1, 2


@njit
def emit_map(F, I, M, op, mode, a, b, c, out):
    """Elementwise nodes, one per k, owned by the caller via out (int32, (n,)).

    a: int32 (n,) first operands. mode MAP_NODES: op(a[k], b[k]), b int32
    (n,). MAP_CONSTS: op(a[k], leaf(c[k])), micrograd's constant operand (a
    leaf first), c float64 (n,). MAP_UNARY: op(a[k]) with ARG c[k] (POW's
    exponent), c float64 (n,). Unused operand arrays may be empty.
    Needs room for n nodes (2n for MAP_CONSTS); n may be 0.
    """
    n = a.shape[0]
    k_new = 2 * n if mode == MAP_CONSTS else n
    _take_many(F, I, M, k_new)
    for k in range(n):
        if mode == MAP_CONSTS:
            z, i = I[STACK, 2 * k], I[STACK, 2 * k + 1]
            I[OP, z], I[LHS, z], I[RHS, z], F[ARG, z] = LEAF, -1, -1, c[k]
            I[OP, i], I[LHS, i], I[RHS, i], F[ARG, i] = op, a[k], z, 0.0
        else:
            i = I[STACK, k]
            I[OP, i], I[LHS, i] = op, a[k]
            I[RHS, i] = b[k] if mode == MAP_NODES else -1
            F[ARG, i] = c[k] if mode == MAP_UNARY else 0.0
        out[k] = i
    _finish(F, I, k_new)
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
                mv = forward(MUL, F[DATA, w], F[DATA, x], 0.0)
                I[OP, m], I[LHS, m], I[RHS, m], F[DATA, m] = MUL, w, x, mv
                I[REFS, w] += 1
                I[REFS, x] += 1
                I[REFS, m] = 1
                lm = _fold_low(_fold_low(m, m, w, I[LOW, w]), m, x, I[LOW, x])
                I[LOW, m] = lm
                v = forward(ADD, v, mv, 0.0)
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
