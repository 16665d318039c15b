"""nn, losses and optimizers: both forward paths, references, memory, checkpoints."""
import numpy as np
import pytest
from naive import Value as Ref

import crad
from crad import MLP, Value, losses, optim
from crad.nn import CheckpointError


def ref_forward(model, X):
    """The same MLP in the reference engine, from the model's parameter values."""
    params = [Ref(p) for p in model.parameters().data]
    it = iter(params)
    layers = []
    for layer in model.layers:
        neurons = [([next(it) for _ in range(layer.nin)], next(it)) for _ in range(layer.nout)]
        layers.append((neurons, layer.nonlin))
    outs = []
    for x in X:
        h = [Ref(v) for v in x]
        for neurons, nonlin in layers:
            h = [sum((wi * xi for wi, xi in zip(w, h)), b) for w, b in neurons]
            h = [v.relu() for v in h] if nonlin else h
        outs.append(h)
    return params, outs


def test_batched_path_matches_reference_and_per_value_path(arena, backward_path):
    rng = np.random.default_rng(1)
    model = MLP(3, [4, 4, 2], seed=2)
    X = rng.normal(size=(5, 3))
    out = model(X)
    loss = losses.cross_entropy(out, np.array([0, 1, 1, 0, 1]))
    loss.backward()
    g_batched = model.parameters().grad

    params, routs = ref_forward(model, X)
    rows = []
    for o, lab in zip(routs, [0, 1, 1, 0, 1]):
        m = max(v.data for v in o)
        z = [v - m for v in o]
        s = z[0].exp()
        for v in z[1:]:
            s = s + v.exp()
        rows.append(s.log() - z[lab])
    rloss = rows[0]
    for r in rows[1:]:
        rloss = rloss + r
    rloss = rloss * (1.0 / 5)
    rloss.backward()
    np.testing.assert_allclose(out.data, [[v.data for v in o] for o in routs], rtol=1e-13)
    assert loss.data == pytest.approx(rloss.data, rel=1e-13)
    np.testing.assert_allclose(g_batched, [p.grad for p in params], rtol=1e-10, atol=1e-14)

    model.zero_grad()
    xs = [[Value(v) for v in x] for x in X]  # micrograd's path, one operator per node
    per = [model(x) for x in xs]
    np.testing.assert_array_equal([[v.data for v in o] for o in per], out.data)
    total = None
    for o in per:
        for v in o:
            total = v * v if total is None else total + v * v
    total.backward()
    fresh = model(X)  # out's inner nodes still hold the first backward's grads
    sq = (fresh * fresh).sum()
    g_per = model.parameters().grad
    model.zero_grad()
    sq.backward()
    np.testing.assert_allclose(g_per, model.parameters().grad, rtol=1e-12)


def test_micrograd_semantics(arena):
    m = MLP(2, [3, 1], seed=0)
    assert [layer.nonlin for layer in m.layers] == [True, False]
    assert [layer.nonlin for layer in MLP(2, [3, 1], relu_out=True).layers] == [True, True]
    y = m([1.0, -2.0])  # floats accepted; one output -> a single Value
    assert isinstance(y, Value)
    assert len(m.parameters()) == 2 * 3 + 3 + 3 + 1 == m.num_parameters
    assert repr(m.layers[0].neurons[0]) == "ReLUNeuron(2)"
    assert "MLP(2 -> 3 -> 1" in repr(m)
    n = crad.Neuron(3, seed=1)
    assert n([1.0, 2.0, 3.0]).data == pytest.approx(max(0.0, float(n.w.data @ [1, 2, 3])))
    assert n(np.ones((4, 3))).shape == (4,)


def test_init_is_seedable_and_documented(arena):
    a, b = MLP(4, [3], seed=7), MLP(4, [3], seed=7)
    np.testing.assert_array_equal(a.parameters().data, b.parameters().data)
    w = MLP(100, [5], init="he", rng=np.random.default_rng(0)).layers[0].W.data
    assert np.abs(w).max() <= np.sqrt(6 / 100)
    with pytest.raises(ValueError, match="init"):
        MLP(2, [1], init="xavier")


def test_bad_inputs_build_nothing(arena):
    m = MLP(3, [2], seed=0)
    before = arena.live
    for bad in (np.ones((4, 2)), np.ones(5), np.ones((2, 3, 1))):
        with pytest.raises(ValueError, match="shape"):
            m(bad)
    with pytest.raises(TypeError):
        m(np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError):
        m.layers[0].neurons[0]([1.0, 2.0])
    out = m(np.ones((2, 3)))
    with pytest.raises(ValueError):
        losses.cross_entropy(out, np.array([0, 2]))
    with pytest.raises(ValueError):
        losses.cross_entropy(out, np.array([0.5, 1.0]))
    with pytest.raises(ValueError):
        losses.mse(out, np.ones(3))
    del out
    with pytest.raises(ValueError):
        MLP(0, [1])
    with pytest.raises(ValueError):
        MLP(2, [])
    assert arena.live == before


def test_losses_match_reference(arena):
    s = crad.leaves(np.array([0.3, -1.2, 2.0]))
    y = np.array([1.0, -1.0, -1.0])
    h = losses.hinge(s, y, parameters=s, alpha=0.1)
    h.backward()
    rs = [Ref(v) for v in [0.3, -1.2, 2.0]]
    rl = sum(((1 + -yi * si).relu() for yi, si in zip(y, rs)), Ref(0.0)) * (1 / 3)
    rl = rl + sum((p * p for p in rs), Ref(0.0)) * 0.1
    rl.backward()
    assert h.data == pytest.approx(rl.data, rel=1e-14)
    np.testing.assert_allclose(s.grad, [r.grad for r in rs], rtol=1e-13)
    assert losses.accuracy(s, y) == pytest.approx(2 / 3)
    big = crad.leaves(np.array([[1000.0, 0.0]]))  # stable: no overflow
    ce = losses.cross_entropy(big, np.array([1]))
    assert ce.data == pytest.approx(1000.0)


@pytest.mark.parametrize("make", [lambda m: optim.SGD(m, lr=0.1), lambda m: optim.SGD(m, lr=0.05, momentum=0.9),
                                  lambda m: optim.Adam(m, lr=0.01)])
def test_optimizers_reduce_loss_and_memory_returns(arena, make):
    """1,000 steps: the loss falls, and the arena holds the parameters only."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (16, 2))
    y = (X ** 2).sum(1, keepdims=True)
    model = MLP(2, [8, 1], seed=3)
    opt = make(model)
    base = arena.live
    first = None
    for _ in range(1000):
        loss = losses.mse(model(X), y)
        model.zero_grad()
        loss.backward()
        opt.step()
        first = loss.data if first is None else first
    last = loss.data
    del loss
    assert arena.live == base == model.num_parameters  # the optimizer adds references, not nodes
    assert last < 0.5 * first
    state = opt.state_dict()
    opt2 = make(model)
    opt2.load_state_dict(state)
    for k, v in opt2.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    with pytest.raises(ValueError):
        opt2.load_state_dict({})


def test_sgd_is_plain_gradient_descent(arena):
    p = crad.leaves(np.array([1.0, -2.0]))
    p.grad = np.array([0.5, 0.25])
    optim.SGD(p, lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, -2.025])


def test_predict_builds_no_graph(arena):
    m = MLP(3, [5, 2], seed=0)
    X = np.random.default_rng(0).normal(size=(7, 3))
    before = arena.live
    pred = m.predict(X)
    assert arena.live == before
    np.testing.assert_allclose(pred, m(X).data, rtol=1e-12)


def test_save_and_load(arena, tmp_path):
    m = MLP(3, [4, 2], relu_out=True, seed=0)
    path = tmp_path / "m.npz"
    m.save(path, epoch=np.array(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left
    m2 = MLP.load(path)
    np.testing.assert_array_equal(m2.parameters().data, m.parameters().data)
    assert m2.sizes == [3, 4, 2] and m2.relu_out
    other = MLP(3, [4, 2], relu_out=True, seed=1)
    extra = other.load_state(path)
    assert int(extra["epoch"]) == 3
    np.testing.assert_array_equal(other.parameters().data, m.parameters().data)


def test_bad_checkpoints_leave_model_untouched(arena, tmp_path):
    m = MLP(3, [4, 2], seed=0)
    before = m.parameters().data
    good = tmp_path / "good.npz"
    m.save(good)
    raw = good.read_bytes()
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(raw[: len(raw) // 2])
    wrong = tmp_path / "wrong.npz"
    MLP(3, [5, 2], seed=0).save(wrong)
    shapes = tmp_path / "shapes.npz"
    d = dict(np.load(good))
    d["W1"] = np.zeros((2, 3))
    np.savez(shapes, **d)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(3))
    for path, match in ((corrupt, "corrupt|readable"), (wrong, "this model is"), (shapes, "W1"),
                        (foreign, "not a crad model")):
        with pytest.raises(CheckpointError, match=match):
            m.load_state(path)
        np.testing.assert_array_equal(m.parameters().data, before)
    with pytest.raises(CheckpointError):
        MLP.load(corrupt)
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")


def test_parameters_in_micrograd_order(arena):
    """parameters() of a Neuron, a Layer and an MLP: exactly the model's
    parameter nodes (the same slots, not copies), each neuron's w then its b,
    neurons in order, layers in order."""
    def slots(vec):
        return vec._slots()[1].reshape(-1).tolist()

    def neuron_slots(n):
        return slots(n.w) + [n.b._slot()[1]]

    m = MLP(3, [4, 2], seed=0)
    want = [s for layer in m.layers for n in layer.neurons for s in neuron_slots(n)]
    assert len(want) == len(set(want)) == 3 * 4 + 4 + 4 * 2 + 2 == m.num_parameters
    assert slots(m.parameters()) == want
    layer = m.layers[1]
    assert slots(layer.parameters()) == [s for n in layer.neurons for s in neuron_slots(n)]
    n = crad.Neuron(3, seed=1)
    n.b.data = 0.75
    p = n.parameters()
    assert slots(p) == neuron_slots(n) and p.size == n.num_parameters == 4
    np.testing.assert_array_equal(p.data, np.append(n.w.data, 0.75))
    p.data = [1.0, 2.0, 3.0, -4.0]  # the same nodes: writing through parameters() changes the neuron
    assert n([1.0, 1.0, 1.0]).data == 2.0
    for nn_ in layer.neurons:
        np.testing.assert_array_equal(nn_.parameters().data, np.append(nn_.w.data, nn_.b.data))
