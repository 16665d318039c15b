"""Deep graphs (no recursion anywhere) and exact memory accounting."""
import numpy as np
import pytest
from naive import Value as Ref

import crad
from crad import Value


def test_million_deep_chain_through_the_facade(backward_path):
    """DESIGN W1: y = relu(y * 1.0001 + 0.001), 10^6 times; build, backward, free."""
    with crad.Arena() as a:
        x = Value(0.5)
        y = x
        for _ in range(10**6):
            y = (y * 1.0001 + 0.001).relu()
        assert a.live == 1 + 5 * 10**6
        y.backward()
        # closed form: y_n = 1.0001^n (x + 10) - 10, dy/dx = 1.0001^n (all relus open)
        assert x.grad == pytest.approx(1.0001 ** 10**6, rel=1e-9)
        assert y.data == pytest.approx(1.0001 ** 10**6 * 10.5 - 10, rel=1e-9)
        del y
        assert a.live == 1


def test_million_deep_bulk_chain(backward_path):
    """A 10^6-long chain of adds from one kernel call: backward and release."""
    with crad.Arena() as a:
        v = crad.leaves(np.full(10**6, 0.5))
        s = v.sum()
        s.backward()
        assert s.data == 0.5 * 10**6 and (v.grad == 1.0).all()
        del s
        assert a.live == 10**6
        del v
        assert a.live == 0


def test_unordered_slots_take_the_general_path(backward_path):
    """Reused slots below their operands: LOW = -1, Kahn is used, results agree."""
    with crad.Arena(capacity=16) as a:
        junk = [Value(float(i)) for i in range(8)]
        p = Value(2.0)   # sits above the junk slots
        del junk         # frees slots below p
        assert a.live == 1  # (reading the arena applies the queued releases)
        q = p * 3.0      # lands in a freed slot below p
        assert q._i < p._i and a.I[crad.kernels.LOW, q._i] == -1
        r = (q * p).tanh() + q
        r.backward()
        rp = Ref(2.0)
        rr = (rp * 3.0 * rp).tanh() + rp * 3.0
        rr.backward()
        assert (r.data, p.grad) == pytest.approx((rr.data, rp.grad), rel=1e-14)
        del q, r
        assert a.live == 1


def test_live_count_returns_after_graph_is_dropped(arena):
    params = crad.leaves(np.linspace(-1, 1, 20))
    base = arena.live
    for step in range(50):
        x = crad.leaves(np.full(20, step / 50))
        loss = (crad.dot(params, x) * 0.5).tanh() ** 2
        loss.backward()
        del x, loss
        assert arena.live == base


def test_training_graphs_stay_ordered(arena):
    """Release frees dense graphs in slot order, so the next step's graph is
    allocated in ascending slots again and backward takes the sweep."""
    params = crad.leaves(np.ones(30))
    for _ in range(5):
        x = crad.leaves(np.ones(30))
        loss = crad.dot(params, x).relu()
        assert arena.I[crad.kernels.LOW, loss._i] >= 0
        del x, loss


def test_release_across_a_wide_gap_falls_back_to_the_stack(arena):
    """An ordered graph whose freed nodes lie far apart, with live nodes between:
    the sweep gives up after a bounded scan and the stack finishes the job."""
    x = Value(1.0)                        # slot 0
    big = crad.leaves(np.ones(10_000))    # live nodes in between
    y = x * 2.0                           # above them; x becomes unowned once its handle goes
    xi = x._i
    del x
    assert arena.live == 10_003
    del y
    assert arena.live == 10_000 and not (arena.I[crad.kernels.GEN, xi] & 1)
    big.release()
    assert arena.live == 0
