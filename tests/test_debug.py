"""viz (DOT, rendering), gradcheck and anomaly mode."""
import os
import shutil

import numpy as np
import pytest

import crad
from crad import AnomalyError, Value, viz


def test_to_dot_shows_op_data_and_grad(arena):
    a = Value(2.0)
    b = a * a + 1.0
    b.backward()
    text = viz.to_dot(b)
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    assert 'label="*"' in text and 'label="+"' in text
    assert "data 5.0000 | grad 1.0000" in text and "data 2.0000 | grad 4.0000" in text
    assert text.count(f"n{a._i} -> op") == 1  # a * a: one drawn edge
    assert text.count("shape=record") == 4  # a, a*a, the constant 1, the sum


def test_to_dot_cuts_big_graphs(arena):
    s = crad.leaves(np.ones(100)).sum()
    text = viz.to_dot(s, max_nodes=10)
    assert text.count("shape=record") == 10
    assert "190 more nodes not shown (max_nodes=10)" not in text  # 100 leaves + 99 adds = 199
    assert "189 more nodes not shown (max_nodes=10)" in text and "// cut: 10 of 199" in text
    with pytest.raises(ValueError):
        viz.to_dot(s, max_nodes=0)
    with pytest.raises(TypeError):
        viz.to_dot(np.ones(3))


def test_render(arena, tmp_path, monkeypatch):
    y = Value(3.0).relu()
    with pytest.raises(ValueError, match="svg"):
        viz.render(y, tmp_path / "g.txt")
    if shutil.which("dot"):
        path = viz.render(y, tmp_path / "g.svg")
        assert "<svg" in open(path).read()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="install graphviz|Install graphviz"):
        viz.render(y, tmp_path / "h.svg")
    assert not os.path.exists(tmp_path / "h.svg")


def test_draw_neuron_example(tmp_path, capsys):
    from crad.examples import draw_neuron
    with crad.Arena():
        text = draw_neuron.main([str(tmp_path / "n")])
    assert (tmp_path / "n.dot").read_text().strip() == text
    assert "ReLU" in text and "values" in capsys.readouterr().out


def test_gradcheck_passes_and_fails(arena):
    a, b = Value(0.7), crad.leaves(np.array([0.5, -1.5, 2.0]))
    res = crad.gradcheck(lambda a, v: (v * a).tanh().sum() + (a ** 3).log(), [a, b])
    assert res.ok and len(res) == 2 and res[1]["max_abs_err"] < 1e-7
    assert "ok" in repr(res)
    z = Value(0.0)
    bad = crad.gradcheck(lambda z: z.relu(), [z])  # relu'(0) = 0, the central difference says 0.5
    assert not bad.ok and bad[0]["max_abs_err"] == pytest.approx(0.5)
    with pytest.raises(TypeError):
        crad.gradcheck(lambda z: z, [1.0])
    with pytest.raises(TypeError):
        crad.gradcheck(lambda v: v * 2, [b])


def test_anomaly_forward_names_op_operands_and_line(arena):
    x = Value(0.0)
    before = arena.live
    with crad.detect_anomaly():
        with pytest.raises(AnomalyError) as e:
            x.log()
        assert arena.live == before
        with pytest.raises(AnomalyError, match="log"):
            crad.leaves(np.array([1.0, 0.0])).log()
        model = crad.MLP(2, [2], seed=0)
        with pytest.raises(AnomalyError, match="leaf"):  # an inf input is itself the first bad node
            model(np.array([[np.inf, 1.0]]))
        model.layers[0].W.data = np.full((2, 2), 1e200)
        with pytest.raises(AnomalyError, match=r"\(mul\), operands' values: 1e\+200, 1e\+200"):
            model(np.array([[1e200, 1.0]]))  # the layer kernel's product overflows
        assert arena.live == before + model.num_parameters
    msg = str(e.value)
    assert "-inf" in msg and "(log)" in msg and "0.0" in msg
    assert f"{os.path.basename(__file__)}:" in msg and "test_anomaly_forward_names_op_operands_and_line" in msg
    assert Value(0.0).log().data == -np.inf  # outside the block: IEEE, no error


def test_anomaly_backward_names_the_rule(arena):
    z = Value(0.0)
    with crad.detect_anomaly():
        w = (z ** 0.5) * 2.0
        with pytest.raises(AnomalyError, match="gradient inf") as e:
            w.backward()
    assert "pow 0.5" in str(e.value) and "produced by the backward" in str(e.value)
