"""Issue 13's repros, each a regression test: a clear exception or the right
answer, with the arena's invariants intact afterwards."""
import copy
import pickle
import threading

import numpy as np
import pytest
from test_arena import check_invariants

import crad
from crad import MLP, ArenaThreadError, StaleValueError, Value, losses, optim
from crad.nn import CheckpointError


def test_empty_slices_sum_mean_dot(arena):
    v = crad.leaves([1.0, 2.0, 3.0])
    assert v[:0].sum().data == 0.0  # Python's sum([]); this used to segfault
    with pytest.raises(ValueError, match="no elements"):
        v[:0].mean()
    d = crad.dot(v[:0], v[:0])
    assert d.data == 0.0 and arena.live == 4
    del d
    w = crad.leaves([100.0])
    assert list(v.data) == [1.0, 2.0, 3.0] and list(w.data) == [100.0]
    m = crad.leaves(np.ones((2, 3)))[:0]
    assert m.sum(axis=1).shape == (0,) and m.sum(axis=0).data.tolist() == [0.0, 0.0, 0.0]
    assert (v[:0] * 2.0).shape == (0,) and (v[:0].exp()).size == 0
    check_invariants(arena)


def test_no_silent_broadcast_of_empty_operands(arena):
    v = crad.leaves([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="broadcast"):
        v + np.array([])
    with pytest.raises(ValueError, match="broadcast"):
        v * []
    assert arena.live == 3
    check_invariants(arena)


def test_copy_copy_retains(arena):
    x = Value(3.0)
    y = x * 2
    c = copy.copy(x)
    assert c == x and c is not x
    del c, x
    z = Value(-7.0)
    y.backward()
    assert z.grad == 0.0 and y.data == 6.0
    vc = copy.copy(crad.leaves([1.0, 2.0]))
    assert list(vc.data) == [1.0, 2.0]
    check_invariants(arena)


@pytest.mark.parametrize("obj", ["value", "vector", "mlp"])
def test_deepcopy_and_pickle_are_refused(arena, obj):
    o = {"value": lambda: Value(1.0), "vector": lambda: crad.leaves([1.0]), "mlp": lambda: MLP(2, [3, 1])}[obj]()
    live = arena.live
    with pytest.raises(TypeError, match="copy|pickle"):
        copy.deepcopy(o)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(o)
    assert arena.live == live
    check_invariants(arena)


def test_released_parameters_are_stale_in_every_path(arena):
    m = MLP(2, [2, 1], seed=0)
    m.layers[0].b.release()
    crad.leaves([123.0, 123.0])
    X = np.ones((3, 2))
    for call in (lambda: m(X), lambda: m.predict(X), lambda: m.parameters(), lambda: m.zero_grad(),
                 lambda: m.state(), lambda: m([1.0, 2.0])):
        with pytest.raises(StaleValueError):
            call()
    check_invariants(arena)


def test_mse_refuses_shapes_that_would_broadcast(arena):
    pred = crad.leaves(np.zeros((32, 1)))
    with pytest.raises(ValueError, match="must match"):
        losses.mse(pred, np.ones(32))
    assert arena.live == 32
    assert losses.mse(pred, np.ones((32, 1))).data == 1.0


def test_hinge_refuses_a_label_count_mismatch(arena):
    with pytest.raises(ValueError, match="one label per score"):
        losses.hinge(crad.leaves(np.zeros((4, 1))), np.ones(3))


def test_numpy_on_the_left_defers_to_crad(arena):
    v = crad.leaves([1.0, 2.0, 3.0])
    out = np.ones(3) * v
    assert isinstance(out, crad.Vector) and list(out.data) == [1.0, 2.0, 3.0]
    s = np.float64(2.0) * Value(4.0)
    assert isinstance(s, Value) and s.data == 8.0


def test_data_and_grad_arrays_are_read_only(arena):
    v = crad.leaves([1.0, 2.0])
    with pytest.raises(ValueError, match="read-only"):
        v.data[0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        v.grad[:] = 0.0
    v.data = [5.0, 6.0]
    assert list(v.data) == [5.0, 6.0]


def test_checkpoint_without_relu_out_is_a_checkpoint_error(tmp_path, arena):
    m = MLP(2, [2, 1], seed=0)
    d = m.state()
    del d["relu_out"]
    path = tmp_path / "m.npz"
    np.savez(path, **d)
    with pytest.raises(CheckpointError, match="relu_out"):
        MLP.load(path)


@pytest.mark.parametrize("kwargs", [dict(lr="x"), dict(lr=-1.0), dict(lr=float("nan")), dict(betas=(0.9,)),
                                    dict(betas=(1.0, 0.999)), dict(eps="e")])
def test_bad_optimizer_settings(arena, kwargs):
    m = MLP(2, [1], seed=0)
    with pytest.raises((TypeError, ValueError)) as e:
        optim.Adam(m, **kwargs)
    assert any(k in str(e.value) for k in ("lr", "beta", "eps"))


def test_two_threads_each_in_their_own_arena():
    errors, results = [], {}

    def work(k):
        try:
            with crad.Arena() as a:
                x = Value(float(k))
                y = (x * x + 1.0).tanh()
                y.backward()
                results[k] = (x.grad, a.live)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, (g, live) in results.items():
        # live: x, x * x, the leaf 1.0, +, tanh
        assert g == pytest.approx(2 * k * (1 - np.tanh(k * k + 1.0) ** 2)) and live == 5


def test_an_arena_used_from_another_thread_raises(arena):
    x = Value(2.0)
    caught = []

    def other():
        for use in (lambda: x * x, lambda: x + 1.0, lambda: x.backward(), lambda: crad.leaves([1.0], arena=arena),
                    lambda: x.retain()):
            try:
                use()
            except ArenaThreadError as e:
                caught.append(str(e))
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(caught) == 5 and "thread" in caught[0]
    assert arena.live == 1 and x.data == 2.0
    check_invariants(arena)


def test_a_handle_dropped_in_another_thread_is_released(arena):
    vs = [Value(float(i)) * 2.0 for i in range(10)]
    t = threading.Thread(target=vs.clear)
    t.start()
    t.join()
    assert arena.live == 0
    check_invariants(arena)
