"""Trying to crash or corrupt crad from its public API.

Each test states what a user could do and what must hold afterwards (a clear
exception, the right answer, the arena's invariants). Bugs found are marked
``xfail(strict=True)`` with a minimal repro in the reason until fixed (all are, now).
Anything that could take the interpreter down runs in a subprocess.
"""
import gc
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crad_model as cm  # noqa: E402

import crad  # noqa: E402
from crad import StaleValueError, Value  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_isolated(code, timeout=600):
    """Run code in a fresh interpreter; returns (returncode, stdout + stderr)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


# -- bugs found: minimal repros ---------------------------------------------------
GC_REENTRY = """
    import crad
    from crad import Value
    g = Value(3.0)

    class Cyclic:                      # a user object in a reference cycle...
        def __init__(self):
            self.me = self
        def __del__(self):             # ...that reads a Value when the collector frees it
            g.data

    x = Value(2.0)
    for i in range(20000):
        Cyclic()
        y = (x * 1.5).tanh()
    del y
    a = crad.default_arena()
    print(a.live)
"""


def test_gc_inside_journal_apply_keeps_the_arena_exact():
    rc, out = run_isolated(GC_REENTRY)
    assert rc == 0, out
    assert out.split()[-1] == "2", out


def test_handles_collected_during_apply_are_released():
    rc, out = run_isolated("""
        import gc, crad
        from crad import Value
        drops = [Value(float(i)) for i in range(500)]
        def cb(phase, info):
            if phase == "start" and drops:
                drops.pop()
        gc.callbacks.append(cb)
        gc.set_threshold(1)
        x = Value(2.0)
        for i in range(2000):
            y = x * 1.5 + 1.0
            y.data
        gc.set_threshold(700)
        gc.callbacks.remove(cb)
        del y
        print(len(drops), crad.default_arena().live)
    """)
    n, live = map(int, out.split()[-2:])
    assert live == n + 1, out


def test_capture_of_a_root_in_another_arena_raises():
    rc, out = run_isolated("""
        import numpy as np, crad
        x = crad.leaves([1.0])
        with crad.Arena(capacity=1 << 20):
            far = crad.leaves(np.zeros(100000))
            other = far[99999] * 2.0
        try:
            crad.capture(lambda x: other, x)
        except ValueError as e:
            print("refused:", e)
    """)
    assert rc == 0 and "refused" in out, f"exit code {rc}\n{out}"


def test_tape_after_its_root_was_released(arena):
    w = crad.leaves([2.0, 3.0])
    x = crad.leaves([1.0, 1.0])
    t = crad.capture(lambda x: (w * x).sum().tanh(), x)
    t.root.release()
    junk = crad.leaves(np.full(10, 7.0))
    try:
        t(np.array([5.0, 5.0]), backward=True)
    except StaleValueError:
        pass
    assert (junk.data == 7.0).all() and (junk.grad == 0.0).all(), (junk.data, junk.grad)


def test_tape_after_its_input_was_released(arena):
    w = crad.leaves([2.0])
    x = crad.leaves([1.0, 1.0])
    t = crad.capture(lambda x: w.sum() * 1.0, x)
    del x
    t.inputs[0].release()
    junk = crad.leaves(np.full(5, 7.0))
    try:
        t(np.array([5.0, 5.0]))
    except StaleValueError:
        pass
    assert (junk.data == 7.0).all(), junk.data


def test_zero_d_vector_data(arena):
    s = crad.leaves([1.0, 2.0]).sum(axis=0)
    assert s.shape == () and float(s.data) == 3.0 and float(s.grad) == 0.0


def test_sum_over_an_empty_axis(arena):
    m = crad.leaves([1.0])[:0].reshape(0, 1) * np.ones(3)
    assert m.sum(axis=0).data.tolist() == [0.0] * 3 and m.sum(axis=1).shape == (0,)


def test_copy_of_a_zero_d_vector_is_a_vector(arena):
    import copy
    s = crad.leaves([1.0, 2.0]).sum(axis=0)
    assert isinstance(copy.copy(s), crad.Vector) and isinstance(s[...], crad.Vector)


def test_mean_with_a_bad_axis_says_so(arena):
    v = crad.leaves(np.ones((2, 3)))
    for axis in (5, 1.5):
        with pytest.raises(ValueError, match="axis"):
            v.mean(axis=axis)


def test_arena_argument_is_validated():
    with pytest.raises(TypeError, match="arena"):
        Value(1.0, arena=5)
    with pytest.raises(TypeError, match="arena"):
        crad.leaves([1.0], arena="x")
    with pytest.raises(TypeError, match="arena"):
        crad.MLP(2, [1], arena=3)


# -- hardening that holds ------------------------------------------------------------
def test_deep_chain_of_python_operators_with_drops_between(arena):
    """A 2 * 10^5-deep chain through the journal, with blocks claimed and
    given back many times; backward and release iterate (no recursion)."""
    x = Value(0.5)
    y = x
    for k in range(200_000):
        y = y * 1.0000001 + 0.0
        if k % 50_000 == 0:
            y.data  # applies the journal mid-chain
    assert arena.live == 1 + 4 * 200_000
    y.backward()
    assert x.grad == pytest.approx(1.0000001 ** 200_000, rel=1e-9)
    del y
    assert arena.live == 1
    cm.invariants(arena)


def test_nan_and_inf_propagate_without_exceptions(arena):
    a, b = Value(math.nan), Value(math.inf)
    vals = [(a + 1.0).data, (b - b).data, (b * 0.0).data, Value(0.0).log().data, Value(-1.0).log().data,
            (Value(0.0) ** -1).data, (Value(-8.0) ** (1 / 3)).data, Value(1e300).exp().data,
            (Value(1.0) / 0).data, (Value(1.0) / -0.0).data]
    assert math.isnan(vals[0]) and math.isnan(vals[1]) and math.isnan(vals[2])
    assert vals[3] == -math.inf and math.isnan(vals[4]) and vals[5] == math.inf and math.isnan(vals[6])
    assert vals[7] == math.inf and vals[8] == math.inf and vals[9] == -math.inf
    v = crad.leaves([math.nan, math.inf, -math.inf, 0.0])
    s = (v * 2.0).tanh().sum()
    s.backward()
    assert math.isnan(s.data)
    cm.invariants(arena)


def test_empty_inputs_everywhere(arena):
    v = crad.leaves([1.0, 2.0, 3.0])
    e = v[:0]
    assert e.shape == (0,) and (e + 1.0).shape == (0,) and (e * e).shape == (0,) and e.exp().shape == (0,)
    assert e.sum().data == 0.0 and crad.dot(e, e).data == 0.0
    with pytest.raises(ValueError, match="no elements"):
        e.mean()
    with pytest.raises(ValueError, match="broadcast"):
        v + np.array([])
    with pytest.raises(ValueError):
        crad.leaves([])
    with pytest.raises(ValueError):
        crad.Vector([])
    m = v[:0].reshape(0, 1) * np.ones(3)
    assert m.shape == (0, 3) and m.sum(axis=1).shape == (0,) and m.mean(axis=1).shape == (0,)
    assert arena.live == 3  # v's leaves: empty operands made no nodes, and the temporaries were freed
    cm.invariants(arena)


def test_bad_input_leaves_the_arena_unchanged(arena):
    x = Value(2.0)
    v = crad.leaves([1.0, 2.0])
    before = (arena.live, arena.stats()["made"])
    bad = [lambda: x + "a", lambda: x ** x, lambda: 2 ** x, lambda: Value("1"), lambda: Value(1.0, (x,)),
           lambda: v + np.array(["a", "b"]), lambda: v[5], lambda: v.reshape(3), lambda: v ** v,
           lambda: crad.dot(v, crad.leaves([1.0, 2.0, 3.0])), lambda: v.sum(axis=2), lambda: x + [1.0],
           lambda: setattr(v, "data", np.zeros(3)), lambda: setattr(x, "data", "1"),
           lambda: setattr(v, "grad", np.array(["x", "y"])), lambda: crad.leaves(["a"]),
           lambda: crad.capture(lambda x: x, x * 2.0), lambda: crad.capture(lambda x: 3.0, v)]
    for f in bad:
        with pytest.raises((TypeError, ValueError, IndexError)):
            f()
    gc.collect()
    made = (before[0], before[1] + 5)  # x * 2.0's two nodes and dot's three leaves, all freed
    assert (arena.live, arena.stats()["made"]) == made
    cm.invariants(arena)


def test_exception_mid_expression_frees_the_partial_graph(arena):
    x = Value(1.0)
    for _ in range(100):
        with pytest.raises(TypeError):
            ((x * 2.0 + x).tanh() - "oops")
        with pytest.raises(ValueError):
            crad.leaves([1.0, 2.0]) * 2.0 + crad.leaves([1.0, 2.0, 3.0])
    assert arena.live == 1
    cm.invariants(arena)


def test_growth_while_handles_and_views_are_held():
    """Arena growth (columns copied: in the journal's claims and in kernel
    calls) between taking a handle, reading and writing through it."""
    with crad.Arena(capacity=1) as a:
        x = Value(1.0)
        vs = [x * float(k) for k in range(3000)]  # growth during the journal's claims
        big = crad.leaves(np.arange(20000.0))     # growth in a kernel call
        x.data = 5.0
        assert x.data == 5.0 and vs[7].data == 7.0
        s = big.sum() + vs[-1]
        s.backward()
        assert x.grad == 2999.0 and (big.grad == 1.0).all()
        assert a.capacity >= 20000 + 6000
        del vs, s
        assert a.live == 1 + 20000
        cm.invariants(a)


def test_mixed_arenas_refused_both_ways_and_unchanged():
    a, b = crad.Arena(), crad.Arena()
    x, y = Value(1.0, arena=a), Value(2.0, arena=b)
    u, w = crad.leaves([1.0], arena=a), crad.leaves([1.0], arena=b)
    before = (a.live, b.live)
    for f in (lambda: x + y, lambda: y * x, lambda: u + w, lambda: u * y, lambda: x - w, lambda: crad.dot(u, w),
              lambda: crad.Vector([x, y]), lambda: crad.losses.mse(u, w)):
        with pytest.raises(ValueError, match="arena"):
            f()
    gc.collect()
    assert (a.live, b.live) == before
    cm.invariants(a)
    cm.invariants(b)


def test_stale_handles_of_every_kind(arena):
    x = Value(1.0)
    y = x * 2.0
    c = x.retain()
    v = crad.leaves([1.0, 2.0])
    model = crad.MLP(2, [2, 1], seed=0)
    opt = crad.optim.SGD(model, lr=0.1)
    x.release()
    v.release()
    model.layers[0].W.release()
    for f in (lambda: x.data, lambda: x + 1.0, lambda: x.backward(), lambda: x.release(), lambda: v.data,
              lambda: v + 1.0, lambda: v[0], lambda: model(np.zeros((1, 2))), lambda: model.zero_grad(),
              lambda: model.predict(np.zeros((1, 2))), lambda: model.parameters()):
        with pytest.raises(StaleValueError):
            f()
    assert c.data == 1.0 and y.data == 2.0  # the other handles of x's node are intact
    opt.step()  # the optimizer owns references of its own
    y = c = opt = model = f = None
    assert arena.live == 0
    cm.invariants(arena)


def test_copies_hold_their_own_references(arena):
    import copy
    x = Value(3.0)
    y = x * 2.0
    c = copy.copy(x)
    del c, x
    z = Value(-7.0)
    y.backward()
    assert z.grad == 0.0 and y.data == 6.0
    m = crad.MLP(2, [2], seed=0)
    with pytest.raises(TypeError):
        copy.deepcopy(m)
    import pickle
    with pytest.raises(TypeError):
        pickle.dumps(m)
    cm.invariants(arena)


def test_user_del_that_drops_handles_outside_the_journal(arena):
    """A __del__ that only drops crad handles (no crad call) is safe: the
    release is queued and applied in order."""
    class Holder:
        def __init__(self, v):
            self.v = v

    x = Value(2.0)
    for _ in range(2000):
        h = Holder(x * 3.0)
        h.me = h  # a cycle: freed by the collector at some later allocation
    del h
    gc.collect()
    assert arena.live == 1
    cm.invariants(arena)


def test_anomaly_mode_reports_user_line_through_the_journal(arena):
    x = Value(0.0)
    with crad.detect_anomaly():
        y = x + 1.0
        with pytest.raises(crad.AnomalyError, match=r"log.*test_adversarial.py"):
            (x * 1.0).log()
        assert y.data == 1.0
    gc.collect()
    assert arena.live == 1 + 2 + 0  # x, y and its constant; the failed node and its operands were freed
    cm.invariants(arena)


def test_tape_backward_twice_accumulates_like_a_graph(arena):
    x, w = crad.leaves([1.0, 2.0]), crad.leaves([3.0, 4.0])
    t = crad.capture(lambda x: (x * w).sum(), x)
    t(np.ones(2))
    t.backward()
    t.backward()
    assert w.grad.tolist() == [2.0, 2.0]
