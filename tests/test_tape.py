"""capture/replay: replayed values and gradients equal a freshly built graph's."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_dag import apply, leaf, step

import crad
from crad import MLP, TapeError, Value, losses

program = st.tuples(st.lists(leaf, min_size=2, max_size=4), st.lists(step, min_size=1, max_size=30),
                    st.lists(leaf, min_size=2, max_size=4))


def build(params, x, steps):
    """The program over parameter Values and input Values (both as Vectors)."""
    nodes = list(params) + list(x)
    for kind, i, j, c in steps:
        nodes.append(apply(kind, nodes[i % len(nodes)], nodes[j % len(nodes)], c))
    out = nodes[-1]
    for n in nodes[len(params) + len(x):-1][::3]:
        out = out + n
    return out


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program, st.lists(leaf, min_size=4, max_size=4))
def test_replay_equals_rebuild_on_random_programs(prog, new_x):
    p0, steps, x0 = prog
    x1 = (new_x * 2)[: len(x0)]
    with crad.Arena(capacity=8) as a, np.errstate(all="ignore"):
        params = crad.leaves(np.array(p0))
        xin = crad.leaves(np.array(x0))
        tape = crad.capture(lambda x: build(params, x, steps), xin)
        tape(np.array(x0), backward=True)  # a first replay: the second must not build on its grads
        params.grad = 0.0
        got = tape(np.array(x1), backward=True)
        g_replay, g_inputs = params.grad, xin.grad
        params.grad = 0.0
        fresh_x = crad.leaves(np.array(x1))
        ref = build(params, fresh_x, steps)
        ref.backward()
        assume(np.isfinite(fresh_x.grad).all() and np.abs(fresh_x.grad).max() < 1e6)
        close(g_inputs, fresh_x.grad)  # an input's grad restarts at zero, as a fresh leaf's would
        assume(np.isfinite([got, ref.data]).all() and np.isfinite(params.grad).all())
        assume(abs(ref.data) < 1e6 and np.abs(params.grad).max() < 1e6)
        close(got, ref.data)
        close(g_replay, params.grad)
        close(tape.root.data, ref.data)  # nodes on the tape read the latest replay
        del ref, fresh_x, tape
        assert a.live == len(p0) + len(x0)


@pytest.mark.parametrize("loss", ["mse", "xent-onehot", "xent-int", "hinge"])
def test_replay_equals_rebuild_on_mlps(arena, loss):
    rng = np.random.default_rng(0)
    nout = 1 if loss in ("mse", "hinge") else 3
    model = MLP(4, [5, nout], seed=1)
    labels = np.array([0, 2, 1, 2, 0, 1])

    def target(X):
        if loss == "mse":
            return np.tanh(X.sum(1, keepdims=True))
        if loss == "hinge":
            return np.where(X[:, 0] > 0, 1.0, -1.0)[:, None]
        return np.eye(3)[labels]

    def objective(X, y):
        out = model(X)
        if loss == "mse":
            return losses.mse(out, y)
        if loss == "hinge":
            return losses.hinge(out, y, parameters=model, alpha=0.01)
        if loss == "xent-int":
            return losses.cross_entropy(out, labels)
        return losses.cross_entropy(out, y)

    X0 = rng.normal(size=(6, 4))
    xv, yv = crad.leaves(X0), crad.leaves(target(X0))
    tape = crad.capture(objective, xv, yv)
    for _ in range(3):
        X = rng.normal(size=(6, 4))
        model.zero_grad()
        got = tape(X, target(X), backward=True)
        g = model.parameters().grad
        model.zero_grad()
        ref = objective(crad.leaves(X), crad.leaves(target(X)))
        ref.backward()
        np.testing.assert_allclose(got, ref.data, rtol=1e-12)
        np.testing.assert_allclose(g, model.parameters().grad, rtol=1e-12, atol=1e-15)
        del ref


def test_batch_replay_equals_single_replays(arena):
    rng = np.random.default_rng(1)
    model = MLP(3, [4, 2], seed=0)
    x1, y1 = crad.leaves(rng.normal(size=(1, 3))), crad.leaves(np.eye(2)[[1]])
    tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), x1, y1)
    X, Y = rng.normal(size=(7, 1, 3)), np.eye(2)[rng.integers(0, 2, 7)][:, None, :]
    model.zero_grad()
    per_sample = tape.batch(X, Y, reduction="sum")
    g_batch = model.parameters().grad
    model.zero_grad()
    singles = [tape(X[b], Y[b], backward=True) for b in range(7)]
    np.testing.assert_allclose(per_sample, singles, rtol=1e-13)
    np.testing.assert_allclose(g_batch, model.parameters().grad, rtol=1e-12, atol=1e-15)
    model.zero_grad()
    tape.batch(X, Y)  # mean
    np.testing.assert_allclose(model.parameters().grad * 7, g_batch, rtol=1e-12, atol=1e-15)


def test_dropping_the_tape_frees_its_graph(arena):
    model = MLP(2, [3, 1], seed=0)
    base = arena.live
    x, y = crad.leaves(np.ones((4, 2))), crad.leaves(np.ones((4, 1)))
    with_inputs = arena.live
    tape = crad.capture(lambda x, y: losses.mse(model(x), y), x, y)
    made = arena.live - with_inputs  # the nodes fn made: computed nodes and constants
    for _ in range(10):
        tape(np.zeros((4, 2)), np.ones((4, 1)), backward=True)
    # per sample 3 neurons * (2 mul + 2 add + relu), then 3 mul + 3 add; mse: 4 * (mul by -1,
    # add, square) + 3 adds + the mean's mul
    assert tape.computed == 4 * (3 * 5 + 6) + 4 * 3 + 3 + 1
    assert made == tape.computed + 4 + 1  # and constants: the -1 of each subtraction, the mean's 1/4
    # the tape lists what it made and every leaf it reads: the 13 parameters and 12 input leaves
    assert tape.nodes == made + model.num_parameters + 12 and model.num_parameters == 13
    assert arena.live == with_inputs + made  # replays allocate nothing
    tape.release()
    assert arena.live == with_inputs
    for use in (lambda: tape(np.zeros((4, 2)), np.ones((4, 1))), tape.backward, tape.check,
                lambda: tape.batch(np.zeros((3, 4, 2)), np.ones((3, 4, 1)))):
        with pytest.raises(crad.StaleValueError):
            use()
    del x, y
    assert arena.live == base


def test_verify_detects_data_dependent_branches(arena):
    def fn(x):
        v = x[0]
        return v * 2.0 if v.data > 0 else v.relu() + v.tanh()
    x = crad.leaves(np.array([1.0]))
    tape = crad.capture(fn, x)
    tape(np.array([3.0]))
    tape.check()  # same branch: fine
    tape(np.array([-1.0]))  # replays the captured branch: wrong for this input
    with pytest.raises(TapeError, match="different graph"):
        tape.check()
    strict = crad.capture(fn, x, verify=1)
    with pytest.raises(TapeError):
        strict(np.array([2.0]))  # captured at x = -1: the other branch


BRANCHES = {  # fn's two branches differ in one thing only
    "exponent": lambda v, p, q: v ** 2 if v.data > 0 else v ** 3,
    "parameter": lambda v, p, q: v * p if v.data > 0 else v * q,
    "constant or parameter": lambda v, p, q: v * 2.0 if v.data > 0 else v * p,
    "input or parameter": lambda v, p, q: v * v if v.data > 0 else v * p,
    "operand order": lambda v, p, q: v * p + v if v.data > 0 else v + v * p,
}


@pytest.mark.parametrize("change", BRANCHES)
def test_check_and_verify_see_every_structural_change(arena, change):
    """Ops, wiring, exponents, which parameter, and constant versus parameter
    versus input are all structure: re-tracing the other branch raises."""
    p, q = Value(1.5), Value(-0.5)
    fn = lambda x: BRANCHES[change](x[0], p, q)  # noqa: E731
    x = crad.leaves(np.array([1.0]))
    tape = crad.capture(fn, x)
    tape(np.array([2.0]))
    tape.check()  # the captured branch: fine
    tape(np.array([-2.0]))
    with pytest.raises(TapeError, match="different graph"):
        tape.check()
    x.data = [1.0]
    strict = crad.capture(fn, x, verify=2)
    strict(np.array([3.0]))  # call 1: not checked
    strict(np.array([4.0]))  # call 2: checked, same branch
    strict(np.array([-5.0]))  # call 3: not checked (a wrong replay, as documented)
    with pytest.raises(TapeError):
        strict(np.array([-5.0]))  # call 4: checked
    assert strict.calls == 3  # a refused call replays nothing and does not count


def test_check_ignores_the_values_of_constants(arena):
    """Constants made from data keep their captured values (documented): the
    row max cross_entropy subtracts changes with the data, and a re-trace
    must not call that a different graph, while the tape still replays the
    right loss (softmax is shift-invariant)."""
    model = MLP(3, [2], seed=0)
    x, t = crad.leaves(np.ones((1, 3))), crad.leaves(np.eye(2)[[0]])
    tape = crad.capture(lambda x, t: losses.cross_entropy(model(x), t), x, t, verify=1)
    for k in range(3):
        X = np.array([[5.0 * k, -3.0, 1.0]])
        got = tape(X, np.eye(2)[[1]])
        want = losses.cross_entropy(model(crad.leaves(X)), np.array([1])).data
        assert got == pytest.approx(want, rel=1e-12)
    assert tape.calls == 3


def test_bad_inputs(arena):
    x = crad.leaves(np.ones(3))
    w = crad.leaves(np.ones(3))
    tape = crad.capture(lambda x: crad.dot(w, x), x)
    before = arena.live
    with pytest.raises(ValueError, match="takes 1 inputs"):
        tape(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        tape(np.ones(4))
    with pytest.raises(TypeError):
        tape(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="batch"):
        tape.batch(np.ones(3))
    with pytest.raises(ValueError, match="leaves"):
        crad.capture(lambda s: s * 2, x.sum())
    with pytest.raises(TypeError):
        crad.capture(lambda x: x, np.ones(3))
    with pytest.raises(TypeError, match="root"):
        crad.capture(lambda x: x * 2, x)
    assert arena.live == before
    assert isinstance(tape(np.arange(3.0)), float) and tape.root.data == 3.0
    assert Value(1.0).data == 1.0


@pytest.mark.parametrize("which", ["param", "const", "input"])
def test_batch_with_a_leaf_root(arena, which):
    """A tape whose root is a leaf has no computed node: the batch still returns
    the leaf's value per sample, and a parameter root gets its gradient."""
    p = crad.leaves([2.5])
    x0 = crad.leaves([[1.0]])
    fn = {"param": lambda x: p[0], "const": lambda x: crad.Value(4.0), "input": lambda x: x[0, 0]}[which]
    tape = crad.capture(fn, x0)
    out = tape.batch(np.array([[[7.0]], [[8.0]]]), reduction="sum")
    want = {"param": [2.5, 2.5], "const": [4.0, 4.0], "input": [7.0, 8.0]}[which]
    np.testing.assert_array_equal(out, want)
    assert p.grad[0] == (2.0 if which == "param" else 0.0)


def test_compile_keeps_one_tape_per_input_shape(arena):
    """A graph whose shape depends on the input's length: one tape per length,
    each replay equal to a rebuilt graph, parameters accumulating across tapes."""
    rng = np.random.default_rng(0)
    w = crad.leaves(rng.normal(size=3))

    def fn(x):  # x: (n, 3); the graph grows with n
        return ((x * w).sum(axis=1).tanh() ** 2).mean()

    f = crad.compile(fn)
    xs = [rng.normal(size=(n, 3)) for n in (2, 5, 2, 7, 5)]
    expect_grad = np.zeros(3)
    for x in xs:
        got = f(x, backward=True)
        accumulated, w.grad = w.grad, 0.0
        ref = fn(crad.leaves(x))  # the same graph, rebuilt
        ref.backward()
        expect_grad += w.grad
        w.grad = accumulated
        assert got == pytest.approx(ref.data, rel=1e-12)
        del ref
    assert sorted(f.tapes) == [((2, 3),), ((5, 3),), ((7, 3),)] and len(f) == 3
    np.testing.assert_allclose(w.grad, expect_grad, rtol=1e-12)
    # what the cache holds: each tape's nodes except the shared parameters
    assert arena.live == 3 + f.nodes == 3 + sum(t.nodes - t.parameters for t in f.tapes.values())
    assert all(t.parameters == 3 for t in f.tapes.values())
    # batched: keyed on the per-sample shape, so it reuses the (5, 3) tape
    X = rng.normal(size=(4, 5, 3))
    per = f.batch(X, reduction="sum")
    assert len(f) == 3 and per == pytest.approx([f(x) for x in X], rel=1e-12)
    f.release()
    assert len(f) == 0 and arena.live == 3


def test_compile_bounds_its_cache_and_checks_inputs(arena):
    w = crad.leaves(np.ones(2))
    f = crad.compile(lambda x: (x * w).sum(), max_tapes=2)
    for n in (1, 2, 3):
        f(np.ones((n, 2)))
    assert sorted(f.tapes) == [((2, 2),), ((3, 2),)]  # (1, 2) was least recently used
    assert arena.live == 2 + f.nodes
    live = arena.live
    with pytest.raises(TypeError, match="numeric"):
        f(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="at least one value"):
        f(np.ones((0, 2)))
    with pytest.raises(ValueError, match="batch axis"):
        f.batch(np.float64(1.0))
    assert arena.live == live and len(f) == 2
    with pytest.raises(ValueError, match="max_tapes"):
        crad.compile(lambda x: x, max_tapes=0)
    with pytest.raises(TypeError, match="function"):
        crad.compile(3)


@pytest.mark.parametrize("ordered", [True, False])
def test_single_replay_in_slot_order_or_kahn_order(arena, ordered):
    """Replay walks slots in order when every operand sits below its user,
    and keeps Kahn's order when freed low slots break that."""
    from crad import kernels as K
    w = crad.leaves(np.array([0.5, -1.5, 2.0]))
    junk = crad.leaves(np.zeros(40))
    x = crad.leaves(np.array([1.0, 2.0, 3.0]))
    if not ordered:
        del junk  # the graph's nodes now take the slots below x
    tape = crad.capture(lambda x: ((x * w).tanh() * x).sum().exp(), x)
    assert (arena.I[K.LOW, tape._root] >= 0) == ordered
    assert ordered == bool(np.all(np.diff(tape._fwd) > 0))
    for v in ([0.3, -0.2, 0.1], [1.0, 1.0, -1.0]):
        w.grad = 0.0
        got = tape(np.array(v), backward=True)
        g = w.grad
        w.grad = 0.0
        ref = ((crad.leaves(np.array(v)) * w).tanh() * crad.leaves(np.array(v))).sum().exp()
        ref.backward()
        assert got == pytest.approx(ref.data, rel=1e-13)
        np.testing.assert_allclose(g, w.grad, rtol=1e-13)


def test_backward_twice_adds_twice(arena):
    """As torch: each backward adds d root / d leaf to every leaf once, so
    parameters and inputs read 2x after two; the tape's nodes read 1x."""
    model = MLP(3, [4, 1], seed=0)
    x = crad.leaves(np.array([[0.5, -1.0, 2.0]]))
    tape = crad.capture(lambda x: losses.mse(model(x), np.ones((1, 1))), x)
    X = np.array([[0.3, 0.2, -0.7]])
    model.zero_grad()
    tape(X, backward=True)
    g, gx, groot = model.parameters().grad, x.grad, tape.root.grad
    tape.backward()
    np.testing.assert_allclose(model.parameters().grad, 2 * g, rtol=1e-14)
    np.testing.assert_allclose(x.grad, 2 * gx, rtol=1e-14)
    assert tape.root.grad == groot == 1.0
    tape(X)  # a replay restarts the inputs, as a rebuilt graph's fresh leaves
    assert (x.grad == 0).all()
    tape.backward()
    np.testing.assert_allclose(model.parameters().grad, 3 * g, rtol=1e-14)
    np.testing.assert_allclose(x.grad, gx, rtol=1e-14)


def test_refused_inputs_are_not_written(arena):
    """A TapeError from verify (or a bad shape) leaves the input leaves as
    they were, and the tape keeps working."""
    def fn(x):
        v = x[0]
        return v * 2.0 if v.data > 0 else v.relu() + v.tanh()
    x = crad.leaves(np.array([1.0]))
    tape = crad.capture(fn, x, verify=1)
    assert tape(np.array([3.0])) == 6.0
    with pytest.raises(TapeError):
        tape(np.array([-2.0]))
    assert x.data[0] == 3.0 and tape.calls == 1
    with pytest.raises(ValueError, match="shape"):
        tape(np.array([5.0, 6.0]))
    assert x.data[0] == 3.0
    assert tape(np.array([4.0])) == 8.0 and tape.calls == 2


def test_capture_refuses_inputs_that_share_leaves(arena):
    """Two inputs holding one leaf would overwrite each other's values on
    every replay: refused, the arena unchanged."""
    x = crad.leaves([1.0, 2.0])
    live = arena.live
    for inputs in ((x, x), (x, x[0:1]), (x[[0, 0]],)):
        with pytest.raises(ValueError, match="share leaves"):
            crad.capture(lambda *v: sum((u * u).sum() for u in v), *inputs)
    assert arena.live == live


def test_compile_captures_again_after_its_tape_was_released(arena):
    w = crad.leaves([2.0, 3.0])
    f = crad.compile(lambda x: (x * w).sum())
    assert f(np.ones(2)) == 5.0
    f.tapes[((2,),)].release()
    assert f(np.array([1.0, 2.0])) == 8.0 and len(f) == 1
    f.release()
    del f
    assert arena.live == 2
