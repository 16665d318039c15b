"""gradcheck and anomaly mode (drawing is in test_viz.py)."""
import os

import numpy as np
import pytest

import crad
from crad import AnomalyError, Value


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
