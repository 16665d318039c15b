"""The arena against a model (a dict of nodes), under random public calls."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crad
from crad import StaleValueError, Value
from crad import kernels as K

actions = st.lists(st.tuples(st.sampled_from(["leaf", "add", "mul", "exp", "constmul",
                                              "retain", "release", "drop", "backward"]),
                             st.integers(0, 10**6), st.integers(0, 10**6)),
                   max_size=120)


def check_invariants(a):
    """Column invariants: free list, parity, refs, LOW (the lowest slot a
    node reaches if every edge it reaches goes down to a lower slot, else -1;
    computed here from that definition, operands before users)."""
    I, M = a.I, a.M
    top = int(M[K.M_TOP])
    live = (I[K.GEN, :top] & 1).astype(bool)
    assert live.sum() == a.live
    free, i = set(), int(M[K.M_FREE_HEAD])
    for _ in range(int(M[K.M_NFREE])):
        assert not live[i] and i not in free
        free.add(i)
        i = int(I[K.LHS, i])
    assert len(free) + a.live == top
    assert (I[K.REFS, :top][live] >= 1).all()
    low = {}
    for s in np.flatnonzero(live).tolist():
        stack = [s]
        while stack:  # no recursion: graphs may be deep
            i = stack[-1]
            if i in low:
                stack.pop()
                continue
            ops = [int(j) for j in (I[K.LHS, i], I[K.RHS, i]) if I[K.OP, i] != 0 and j >= 0]
            assert all(live[j] for j in ops)  # a live node's operands are live
            todo = [j for j in ops if j not in low]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            low[i] = -1 if any(j >= i or low[j] < 0 for j in ops) else min([i] + [low[j] for j in ops])
        assert I[K.LOW, s] == low[s], f"LOW of slot {s} is {I[K.LOW, s]}, expected {low[s]}"


@settings(max_examples=200, deadline=None)
@given(actions)
def test_model(acts):
    with crad.Arena(capacity=4) as a:
        handles = []      # (handle, node key) of live handles
        stale = []
        ops = {}          # node key -> operand keys: the model's graph
        next_key = [0]

        def new_node(h, operands):
            k = next_key[0]
            next_key[0] += 1
            ops[k] = operands
            handles.append((h, k))

        def step(act, x, y):
            pick = (lambda n: handles[n % len(handles)]) if handles else None
            if act == "leaf" or not handles:
                new_node(Value(float(x % 7)), ())
            elif act in ("add", "mul"):
                (p, kp), (q, kq) = pick(x), pick(y)
                new_node(p + q if act == "add" else p * q, (kp, kq))
            elif act == "exp":
                p, kp = pick(x)
                new_node((p * 0.01).exp(), None)  # const leaf + mul + exp: 3 nodes
                ops[next_key[0] - 1] = ("exp-of-constmul", kp)
            elif act == "constmul":
                p, kp = pick(x)
                new_node(p * 2.0, ("constmul", kp))
            elif act == "retain":
                p, kp = pick(x)
                handles.append((p.retain(), kp))
            elif act == "release":
                h, k = handles.pop(x % len(handles))
                h.release()
                stale.append(h)
            elif act == "drop":
                handles.pop(x % len(handles))
            elif act == "backward":
                pick(x)[0].backward()

        for act, x, y in acts:
            step(act, x, y)
            # expected live nodes: everything reachable from live handles
            seen, stack = set(), [k for _, k in handles]
            extra = 0
            while stack:
                k = stack.pop()
                if k in seen:
                    continue
                seen.add(k)
                o = ops[k]
                if o and o[0] == "constmul":
                    extra += 1  # the constant's leaf
                    stack.append(o[1])
                elif o and o[0] == "exp-of-constmul":
                    extra += 2  # the constant's leaf and the mul
                    stack.append(o[1])
                elif o:
                    stack.extend(o)
            assert a.live == len(seen) + extra
            check_invariants(a)
        for h in stale:
            with pytest.raises(StaleValueError):
                h.data
        handles.clear()
        assert a.live == 0
        check_invariants(a)


def test_growth_keeps_handles_valid():
    with crad.Arena(capacity=1) as a:
        vs = [Value(float(i)) for i in range(1000)]
        assert a.capacity >= 1000
        assert [v.data for v in vs] == [float(i) for i in range(1000)]
        big = crad.leaves(np.arange(5000.0))
        assert big.data[-1] == 4999.0 and vs[999].data == 999.0


def test_free_slots_are_reused(arena):
    x = crad.leaves(np.ones(10))
    cap = arena.capacity
    for _ in range(100):
        s = x.sum()
        s.backward()
        del s
    assert arena.capacity == cap and arena.live == 10 and arena.peak == 19


def test_statistics(arena):
    assert (arena.live, arena.peak, arena.capacity) == (0, 0, 64)
    assert arena.bytes_per_node <= 64
    v = crad.leaves(np.ones(5))
    st_ = arena.stats()
    assert st_["live"] == 5 and st_["made"] == 5 and st_["nbytes"] == arena.nbytes
    del v
    assert arena.stats()["freed"] == 5 and "live=0" in repr(arena)


@pytest.mark.parametrize("bad, exc", [("10", TypeError), (0, ValueError), (-5, ValueError),
                                      (2**40, ValueError), (True, TypeError)])
def test_capacity_validation(bad, exc):
    with pytest.raises(exc):
        crad.Arena(capacity=bad)


def test_nested_arena_exit_order():
    a, b = crad.Arena(), crad.Arena()
    a.__enter__()
    b.__enter__()
    with pytest.raises(RuntimeError, match="reverse order"):
        a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)
