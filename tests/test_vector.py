"""Vector, leaves and dot: bulk building in one kernel call."""
import numpy as np
import pytest
from naive import Value as Ref

import crad
from crad import StaleValueError, Value, Vector


def test_leaves_shape_data_grad(arena):
    x = np.arange(6.0).reshape(2, 3)
    v = crad.leaves(x)
    assert v.shape == (2, 3) and len(v) == 2 and v.size == 6 and arena.live == 6
    np.testing.assert_array_equal(v.data, x)
    np.testing.assert_array_equal(v.grad, np.zeros((2, 3)))
    v.data = x * 2
    np.testing.assert_array_equal(v.data, x * 2)
    v.grad = 1.0
    np.testing.assert_array_equal(v.grad, np.ones((2, 3)))


def test_indexing_and_iteration(arena):
    v = crad.leaves(np.arange(6.0).reshape(2, 3))
    e = v[1, 2]
    assert isinstance(e, Value) and e.data == 5.0 and e.ref_count == 2
    row = v[1]
    assert isinstance(row, Vector) and row.shape == (3,)
    np.testing.assert_array_equal(row.data, [3, 4, 5])
    assert [r.shape for r in v] == [(3,), (3,)]
    assert [x.data for x in v[0]] == [0.0, 1.0, 2.0]
    assert v[-1, -1].data == 5.0
    with pytest.raises(IndexError, match="shape"):
        v[2]


def test_dot_matches_reference(arena, backward_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    u, v = crad.leaves(x), crad.leaves(y)
    s = crad.dot(u, v)
    assert arena.live == 100 + 99
    s.backward()
    rx, ry = [Ref(t) for t in x], [Ref(t) for t in y]
    rs = rx[0] * ry[0]
    for a, b in zip(rx[1:], ry[1:]):
        rs = rs + a * b
    rs.backward()
    assert s.data == rs.data  # same nodes, same order: bit-identical
    np.testing.assert_array_equal(u.grad, [r.grad for r in rx])
    np.testing.assert_array_equal(v.grad, [r.grad for r in ry])
    del s
    assert arena.live == 100


def test_sum_and_vector_of_values(arena):
    a, b, c = Value(1.0), Value(2.0), Value(3.0)
    v = Vector([a, b, c])
    assert a.ref_count == 2
    s = v.sum()
    s.backward()
    assert s.data == 6.0 and (a.grad, b.grad, c.grad) == (1.0, 1.0, 1.0)
    assert crad.leaves([4.0]).sum().data == 4.0


def test_bad_input_leaves_arena_unchanged(arena):
    u = crad.leaves(np.ones(3))
    w = crad.leaves(np.ones(4))
    other = crad.Arena()
    z = crad.leaves(np.ones(3), arena=other)
    before = arena.live
    with pytest.raises(ValueError, match="same size"):
        crad.dot(u, w)
    with pytest.raises(ValueError, match="different arenas"):
        crad.dot(u, z)
    with pytest.raises(TypeError):
        crad.dot(u, np.ones(3))
    with pytest.raises(TypeError, match="numeric"):
        crad.leaves(["a", "b"])
    with pytest.raises(ValueError):
        crad.leaves([])
    with pytest.raises(ValueError, match="does not fit"):
        u.data = np.ones(4)
    with pytest.raises(TypeError):
        Vector([Value(1.0), 2.0])
    with pytest.raises(ValueError):
        Vector([])
    assert arena.live == before


def test_released_vector_is_stale(arena):
    u = crad.leaves(np.ones(3))
    u.release()
    assert arena.live == 0
    with pytest.raises(StaleValueError):
        u.data
    with pytest.raises(StaleValueError):
        crad.dot(u, u)
    assert repr(u) == "Vector(<released>)"


def test_stack_puts_vectors_together_without_new_nodes(arena):
    u, v = crad.leaves(np.array([1.0, 2.0])), crad.leaves(np.array([3.0, 4.0]))
    live = arena.live
    s = crad.stack([u, v])
    assert s.shape == (2, 2) and arena.live == live
    np.testing.assert_array_equal(s.data, [[1.0, 2.0], [3.0, 4.0]])
    (s * s).sum().backward()
    np.testing.assert_array_equal(u.grad, [2.0, 4.0])
    del u, v
    assert arena.live == live  # the stacked vector keeps the nodes
    with pytest.raises(ValueError, match="shape"):
        crad.stack([s[0], s])
    with pytest.raises(TypeError, match="Vectors"):
        crad.stack([])
    with crad.Arena():
        other = crad.leaves(np.ones(2))
    with pytest.raises(ValueError, match="arena"):
        crad.stack([s[0], other])
    del s
    assert arena.live == 0


def test_division_by_signed_zero_follows_ieee(arena):
    x = np.array([3.0, -3.0, 3.0, -3.0])
    zeros = np.array([0.0, 0.0, -0.0, -0.0])
    want = np.array([np.inf, -np.inf, -np.inf, np.inf])
    v = crad.leaves(x)
    np.testing.assert_array_equal((v / zeros).data, want)  # an array of constants
    np.testing.assert_array_equal((v / crad.leaves(zeros)).data, want)  # a Vector
    np.testing.assert_array_equal((v / -0.0).data, -np.sign(x) * np.inf)  # a scalar constant
    np.testing.assert_array_equal((v / 0.0).data, np.sign(x) * np.inf)
    np.testing.assert_array_equal((v / Value(-0.0)).data, -np.sign(x) * np.inf)  # a Value


def test_sum_and_mean_over_each_axis_match_numpy(arena):
    x = np.arange(1.0, 25.0).reshape(2, 3, 4) ** 1.5
    v = crad.leaves(x)
    for axis in (None, 0, 1, 2, -1):
        np.testing.assert_allclose(np.asarray(v.sum(axis).data), x.sum(axis), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(v.mean(axis).data), x.mean(axis), rtol=1e-14)
    m = v.mean(axis=1)
    m.sum().backward()
    np.testing.assert_allclose(v.grad, np.full(x.shape, 1 / 3), rtol=1e-15)  # d mean / d x = 1 / n along the axis
