"""Batched tapes on random programs: the register allocator's oracle.

``tape.batch`` runs a compiled program whose values and gradients live in
rows that ``kernels.tape_rows`` reuses. Random programs stress exactly what
a wrong allocation breaks: shared subexpressions, a node used as both
operands (h + h, h * h), values read again far from where they were made,
leaf roots, and every op. Each sample of a batch must give what a single
replay and a rebuilt graph give.

Exactness: a batch computes each sample's values with the same forward rule
in the same order as a replay, so values agree bit for bit. Gradients too at
B = 1. At B > 1 a parameter's gradient sums the same terms in another order
(per op over the batch, instead of per sample over the ops); with leaves 0
or >= 1e-3 and every node's value and gradient below 1e6 (as in test_dag), that moves
only the last bits: rtol = atol = 1e-9.
"""
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from test_dag import BINARY, UNARY, apply, leaf

import crad

SELF = ["self_add", "self_mul"]  # h + h and h * h: one node as both operands

# An operand, counted back from the newest node: one just made (its row is
# freed right after this use, the allocator's hard case) or any (far reuse).
back = st.one_of(st.integers(0, 2), st.integers(0, 10**6))
# Ops that do not read their operands (add; exp, relu, tanh read their own
# output) let operand rows be reused during the forward pass: drawn more often.
REUSING = ["add", "self_add", "exp", "relu", "tanh"]
# a + p * b with p a parameter: a product used once, by an add (a linear
# layer's shape), which the batched kernel runs as one fused instruction.
FMA = ["fma"]
step = st.tuples(st.sampled_from(UNARY + BINARY + SELF + REUSING * 3 + FMA * 4), back, back,
                 st.sampled_from([-2.0, -0.5, 0.5, 1.0, 3.0]))
program = st.fixed_dictionaries({
    "params": st.lists(leaf, min_size=1, max_size=3),
    "inputs": st.lists(leaf, min_size=1, max_size=3),
    "steps": st.lists(step, min_size=0, max_size=30),
    # the newest node; a fan-in of intermediates (which keeps rows alive to the end); or any node, leaves too
    "root": st.one_of(st.just("last"), st.just("fan-in"), st.integers(0, 10**6)),
    "batch": st.sampled_from([1, 3]),
})


def build(params, x, prog, nodes=None):
    """The program over parameter and input Values: each step reads earlier
    nodes. Appends every node it makes to ``nodes`` if given."""
    nodes = [] if nodes is None else nodes
    nodes += list(params) + list(x)
    for kind, i, j, c in prog["steps"]:
        a, b = (nodes[len(nodes) - 1 - k % len(nodes)] for k in (i, j))
        if kind in SELF:
            nodes.append(a + a if kind == "self_add" else a * a)
        elif kind == "fma":
            nodes.append(a + params[i % len(params)] * b)
        else:
            nodes.append(apply(kind, a, b, c))
    if prog["root"] == "last":
        return nodes[-1]
    if prog["root"] != "fan-in":
        return nodes[prog["root"] % len(nodes)]
    out = nodes[-1]
    for n in nodes[len(params) + len(x):-1][::3]:  # fan-in: the root uses several intermediates
        out = out + n
    return out


def small(*arrays):
    return all(np.isfinite(a).all() and (np.abs(a) < 1e6).all() for a in arrays)


# h = x + p; s = h + h (the last use of h, whose row must be freed once);
# u = tanh(s) and v = exp(s) then need two rows; root u + v.
H_PLUS_H = {"params": [0.5], "inputs": [0.25], "root": "last", "batch": 1,
            "steps": [("add", 0, 1, 1.0), ("self_add", 0, 0, 1.0), ("tanh", 0, 0, 1.0), ("exp", 1, 0, 1.0),
                      ("add", 0, 1, 1.0)]}


@settings(max_examples=300, deadline=None)
@given(program, st.lists(leaf, min_size=9, max_size=9))
@example(H_PLUS_H, [0.75] * 9)
@example(dict(H_PLUS_H, steps=[(k.replace("add", "mul"), i, j, c) for k, i, j, c in H_PLUS_H["steps"]]),
         [0.75] * 9)  # h * h
# h = x + p used by two parameter products p * h (the batched kernel's fused
# param-times-row case): the second backward adds to h's grad row.
@example({"params": [0.5], "inputs": [0.25], "root": "last", "batch": 3,
          "steps": [("add", 0, 1, 1.0), ("mul", 2, 0, 1.0), ("mul", 3, 1, 1.0), ("add", 0, 1, 1.0)]},
         [0.75, -1.5, 2.0] * 3)
# m = p * x (x an input) used only by exp(p) + m: the replay fuses the pair
# into one instruction that also gives p its share of the gradient.
@example({"params": [0.5], "inputs": [0.25], "root": "last", "batch": 3,
          "steps": [("mul", 1, 0, 1.0), ("exp", 2, 0, 1.0), ("add", 0, 1, 1.0)]},
         [0.75, -1.5, 2.0] * 3)
# s = h + p * x fused, with h = x + p also used by the root s * h: h's grad
# row is not the add's to hand on, so the fused backward adds s's grad to it.
@example({"params": [0.5], "inputs": [0.25, 0.75], "root": "last", "batch": 3,
          "steps": [("add", 1, 2, 1.0), ("fma", 0, 2, 1.0), ("mul", 0, 1, 1.0)]},
         [0.75, -1.5, 2.0] * 3)
# m = 3 * h (h = x + p a computed row) used only by exp(h) + m: the add runs
# m's backward too (FMA_RB, a constant w), adding to h's grad row before
# exp's backward does.
@example({"params": [0.5], "inputs": [0.25], "root": "last", "batch": 3,
          "steps": [("add", 0, 1, 1.0), ("rmul", 0, 0, 3.0), ("exp", 1, 0, 1.0), ("add", 0, 1, 1.0)]},
         [0.75, -1.5, 2.0] * 3)
# h + p * h with h = x + p used by nothing else: the add hands its grad row
# on to h, which is also the fused product's u, so u's update runs in place.
@example({"params": [0.5], "inputs": [0.25], "root": "last", "batch": 3,
          "steps": [("add", 0, 1, 1.0), ("fma", 0, 0, 1.0)]},
         [0.75, -1.5, 2.0] * 3)
def test_batch_equals_single_replays_and_rebuilt_graphs(prog, data):
    B, k = prog["batch"], len(prog["inputs"])
    X = np.array(data[: B * k]).reshape(B, k)
    with crad.Arena(capacity=8) as a, np.errstate(all="ignore"):
        params = crad.leaves(np.array(prog["params"]))
        tape = crad.capture(lambda x: build(params, x, prog), crad.leaves(np.array(prog["inputs"])))
        # rebuilt graphs, one per sample: the reference values and gradients
        want, want_grads, bounded = [], [], True
        for b in range(B):
            params.grad = 0.0
            nodes = []
            ref = build(params, crad.leaves(X[b]), prog, nodes)
            ref.backward()
            want.append(ref.data)
            want_grads.append(params.grad)
            bounded &= small([n.data for n in nodes] + [ref.data], [n.grad for n in nodes])
            del ref, nodes
        singles, g_singles = [], 0.0
        for b in range(B):  # each from zero: a parameter root's grad is set to 1, not accumulated
            params.grad = 0.0
            singles.append(tape(X[b], backward=True))
            g_singles = g_singles + params.grad
        params.grad = 0.0
        got = tape.batch(X, reduction="sum")
        g_batch = params.grad
        np.testing.assert_array_equal(got, singles)
        np.testing.assert_array_equal(got, want)
        if B == 1:
            # The same terms, but the batched kernel sums a parameter's uses per
            # chunk (crad.threads) before adding them to its grad, a single replay
            # one by one: equal up to the rounding of a reordered sum, a few ulps of
            # the terms (here at most |value| * |grad| <= 1e6: 1e-9 covers it).
            np.testing.assert_allclose(g_batch, g_singles, rtol=1e-12, atol=1e-9)
        assume(bounded)
        np.testing.assert_allclose(g_batch, g_singles, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g_batch, np.sum(want_grads, axis=0), rtol=1e-9, atol=1e-9)
        params.grad = 0.0
        mean = tape.batch(X)  # reduction="mean": the same values, gradients / B
        np.testing.assert_array_equal(mean, got)
        np.testing.assert_allclose(params.grad * B, g_batch, rtol=1e-12, atol=1e-12)
        del tape
        assert a.live == len(prog["params"])  # the tape, inputs and rebuilt graphs all freed


def test_a_chain_of_h_plus_h_reuses_its_rows():
    """h + h reads one row twice; the row is freed once, after its last use,
    so a chain of them needs a few rows, not one per node."""
    with crad.Arena():
        w = crad.leaves(np.array([1.0]))

        def doubled(v):
            h = (v * w).sum()
            for _ in range(50):
                h = h + h
            return h
        tape = crad.capture(doubled, crad.leaves(np.array([0.5])))
        np.testing.assert_array_equal(tape.batch(np.array([[1.0], [0.25]]), reduction="sum"), [2.0**50, 2.0**48])
        assert w.grad[0] == 2.0**50 * 1.25  # d/dw of 2^50 w x, summed over x = 1 and 0.25
        assert tape._rows[0] <= 4


@pytest.mark.parametrize("B", [2, 5, 9, 33])
@pytest.mark.parametrize("shape", ["w*x", "w*w*x"])
def test_a_non_finite_sample_reaches_the_parameter_sum(B, shape):
    """A parameter's gradient sums its per-sample terms in a vectorised,
    reassociated order (w * x: the fast path's dot product; w * w: the
    generic rule's row sum). A NaN term still gives NaN, and an infinite
    term among finite ones that cannot overflow gives that infinity, at
    batch sizes around the vector width."""
    with crad.Arena():
        w = crad.leaves(np.array([1.5]))
        fn = (lambda x: w[0] * x[0]) if shape == "w*x" else (lambda x: w[0] * w[0] * x[0])
        tape = crad.capture(fn, crad.leaves(np.zeros(1)))
        for bad, want in ((np.nan, np.nan), (-np.inf, -np.inf), (np.inf, np.inf)):
            for j in (0, B // 2, B - 1):
                X = np.linspace(-1.0, 1.0, B)[:, None]
                X[j] = bad
                w.grad = np.zeros(1)
                tape.batch(X, reduction="sum")
                np.testing.assert_array_equal(w.grad, [want])
        X = np.linspace(-1.0, 1.0, B)[:, None]
        w.grad = np.zeros(1)
        tape.batch(X, reduction="sum")
        dterm = X[:, 0] if shape == "w*x" else 2 * 1.5 * X[:, 0]
        np.testing.assert_allclose(w.grad, [dterm.sum()], rtol=1e-12, atol=1e-15)


def test_a_product_of_a_row_runs_inside_its_add():
    """A linear layer over computed rows (a GPT's shape): each product p * h
    that only an add uses is moved next to that add (``kernels.sink``), and
    the add runs its backward too (FMA_RB), so the products' instructions are
    dropped. Batched and single replays agree."""
    from crad.kernels.replay import FMA_RB, MUL, Q_CODE
    with crad.Arena():
        W = crad.leaves(np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        c = crad.leaves(np.array([0.3, -0.7, 1.1]))

        def fn(x):
            h = [v.tanh() for v in x + c]  # computed rows
            out = [(W[i, 0] * h[0] + W[i, 1] * h[1] + W[i, 2] * h[2]).tanh() for i in range(2)]
            return out[0] * 3.0 + out[1] * 3.0
        tape = crad.capture(fn, crad.leaves(np.zeros(3)))
        X = np.array([[0.1, 0.2, 0.3], [-1.0, 0.5, 2.0], [0.0, 0.0, 0.0]])
        got = tape.batch(X, reduction="sum")
        Q = tape._compiled[0]
        case, op = (Q[:, Q_CODE] >> 13) & 7, Q[:, Q_CODE] & 31
        # Each row's first add joins two products: the right one fuses (the left
        # is the chain's start); so does its second add's, and the root's
        # right product by 3 (a constant w).
        assert (case == FMA_RB).sum() == 2 * 2 + 1
        assert (op == MUL).sum() == 2 + 1
        g_batch = np.concatenate([W.grad.reshape(-1), c.grad])
        W.grad, c.grad = np.zeros((2, 3)), np.zeros(3)
        want = [tape(x, backward=True) for x in X]  # the parameters' grads accumulate over the samples
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(g_batch, np.concatenate([W.grad.reshape(-1), c.grad]), rtol=1e-12, atol=1e-15)
