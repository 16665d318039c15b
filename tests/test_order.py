"""Marks and topological order: Kahn's order, the sweep's order, epoch marks."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import crad
from crad import Value
from crad import kernels as K

edges = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.booleans()), min_size=1, max_size=60)


def build(spec):
    """A random DAG of adds and muls over three leaves, with sharing and a*a."""
    nodes = [Value(1.0), Value(2.0), Value(0.5)]
    for i, j, mul in spec:
        a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
        nodes.append(a * b if mul else a + b)
    return nodes


@settings(max_examples=100, deadline=None)
@given(edges)
def test_order_lists_each_node_once_after_all_its_users(spec):
    with crad.Arena(capacity=4) as a:
        nodes = build(spec)
        root = nodes[-1]._i
        order = np.empty(a.capacity, np.int32)
        n = K.order_of(a.I, a.M, root, order)
        order = order[:n]
        assert len(set(order.tolist())) == n and order[0] == root
        reach, stack = set(), [root]
        while stack:  # what the root reaches, by the model
            i = stack.pop()
            if i not in reach:
                reach.add(i)
                stack.extend(j for j in (a.I[K.LHS, i], a.I[K.RHS, i]) if a.I[K.OP, i] != 0 and j >= 0)
        assert set(order.tolist()) == reach
        pos = {int(s): p for p, s in enumerate(order)}
        for s in order:
            if a.I[K.OP, s] != 0:
                for j in (a.I[K.LHS, s], a.I[K.RHS, s]):
                    if j >= 0:
                        assert pos[int(j)] > pos[int(s)]  # operands after their users


def reach_of(a, root):
    """The slots root's graph holds, by the model (a stack, no recursion)."""
    reach, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i not in reach:
            reach.add(i)
            stack.extend(j for j in (a.I[K.LHS, i], a.I[K.RHS, i]) if a.I[K.OP, i] != 0 and j >= 0)
    return reach


@settings(max_examples=100, deadline=None)
@given(edges, st.lists(st.booleans(), min_size=60, max_size=60), st.booleans())
def test_backward_visits_exactly_the_graph(spec, interleave, sweep):
    """The nodes backward lists are the root's graph, each once, whether it
    sweeps slots (bystander nodes interleaved in the slot range) or follows
    Kahn's order; bystanders keep a zero gradient."""
    with crad.Arena(capacity=4) as a:
        nodes = [Value(1.0), Value(2.0), Value(0.5)]
        bystanders = []
        for (i, j, mul), extra in zip(spec, interleave):
            x, y = nodes[i % len(nodes)], nodes[j % len(nodes)]
            nodes.append(x * y if mul else x + y)
            if extra:  # a node between the graph's slots that uses graph nodes
                bystanders.append(nodes[-1] * 3.0)
        root = nodes[-1]._i
        assert a.I[K.LOW, root] >= 0  # built in slot order: the sweep path is taken when asked
        n = K.backward(a.F, a.I, a.M, root, sweep)
        visited = a.I[K.STACK, :n].tolist()
        assert len(visited) == len(set(visited)) and set(visited) == reach_of(a, root)
        for b in bystanders:
            assert b.grad == 0.0


def test_epoch_marks_wrap_around(arena):
    """When the epoch counter wraps, old marks are cleared: a bystander marked
    at epoch 1 long ago, lying between the graph's slots, is not taken for
    part of the graph when epoch 1 comes round again."""
    a = Value(3.0)
    u = Value(5.0)
    w = u * 2.0  # slots between a and b
    w.backward()  # marks u, its constant and w at the first epoch
    b = a * a
    arena.M[K.M_EPOCH] = 2**31 - 3  # the next backward passes the wrap point
    for _ in range(3):
        b.backward()
        assert arena.I[K.LOW, b._i] >= 0 and K.backward(arena.F, arena.I, arena.M, b._i, True) == 2
    assert 1 <= arena.M[K.M_EPOCH] <= 8 and a.grad == 6 * 6.0
    assert (u.grad, w.grad) == (2.0, 1.0)  # untouched by b's sweeps
