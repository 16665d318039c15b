"""micrograd's demo training loop, verbatim but for the imports, runs on crad
(and, when micrograd is installed, gives micrograd's numbers)."""
import importlib
import random

import numpy as np
import pytest

import crad
from crad.bench.moons import DEMO  # micrograd's demo loop, verbatim but for the import: loss() and step()
from crad.examples.moons import make_moons


def demo(pkg, weights=None):
    ns = {}
    exec(DEMO.format(pkg=pkg), ns)
    X, y = make_moons(n=20)
    model = ns["MLP"](2, [8, 8, 1])
    if weights is not None:
        for p, w in zip(model.parameters(), weights):
            p.data = float(w)
    initial = [p.data for p in model.parameters()]
    return model, initial, [ns["step"](model, X.tolist(), y.tolist(), k) for k in range(4)]


def test_micrograd_demo_runs_on_crad():
    # Seeded weights: at micrograd's lr of 1.0 an unlucky draw can raise the loss
    # in the first steps (8 failures in 200 unseeded runs).
    weights = np.random.default_rng(0).uniform(-1, 1, 8 * 3 + 8 * 9 + 9)
    with crad.Arena() as a:
        model, _, history = demo("crad", weights)
        assert len(history) == 4 and history[-1][0] < history[0][0]
        assert isinstance(model, crad.nn.MLP)
        del history
        assert a.live == model.num_parameters  # every graph of the loop was freed


def test_micrograd_demo_gives_micrograds_numbers():
    if importlib.util.find_spec("micrograd") is None:
        pytest.skip("micrograd is not installed (pip install 'crad[bench]')")
    random.seed(0)
    _, weights, mg_history = demo("micrograd")
    with crad.Arena():
        _, _, history = demo("crad", weights)
    np.testing.assert_allclose([h[0] for h in history], [h[0] for h in mg_history], rtol=1e-12)
    assert [h[1] for h in history] == [h[1] for h in mg_history]
