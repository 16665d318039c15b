"""Moons: micrograd's own two-moons demo loop, verbatim but for the import.

The loop of micrograd's demo notebook (an MLP 2 -> 16 -> 16 -> 1, 100 points, hinge loss with
L2, plain SGD written as ``p.data -= lr * p.grad`` over ``model.parameters()``) runs on
``micrograd.engine``/``micrograd.nn`` and, with only the import changed, on ``crad.engine``/
``crad.nn``. Both start from the same weights. Each step ends with a forced collection (only the
collector frees micrograd's cycles) and, for crad, with its journal applied, so each engine pays
for freeing its own step's graph.
"""
import gc
import random
import time

from crad.examples.moons import make_moons

from . import common
from .common import installed, interleave, summarize

DEMO = '''
from {pkg}.engine import Value
from {pkg}.nn import MLP

def loss(model, X, y):
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)

def step(model, X, y, k):
    total_loss, acc = loss(model, X, y)
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9*k/100
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, acc
'''


def _engine(pkg, weights, X, y):
    """A measure() of one demo step on ``pkg`` ("crad" or "micrograd"), from ``weights``."""
    import crad
    ns = {}
    exec(DEMO.format(pkg=pkg), ns)
    arena = crad.Arena() if pkg == "crad" else None
    with arena or _nothing():
        model = ns["MLP"](2, [16, 16, 1])
        for p, w in zip(model.parameters(), weights):
            p.data = w
    k = [0]

    def measure():
        with arena or _nothing():
            t0 = time.perf_counter()
            loss, acc = ns["step"](model, X, y, k[0])
            gc.collect()
            if arena is not None:
                arena.columns()  # the releases its handles queued
            t = time.perf_counter() - t0
        k[0] += 1
        return dict(step_ms=t * 1e3, steps_per_s=1 / t, loss=loss, accuracy=acc)
    return measure


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def w_moons(quick):
    X, y = make_moons(n=100)
    X, y = X.tolist(), y.tolist()
    random.seed(0)
    weights = [random.uniform(-1, 1) for _ in range(2 * 16 + 16 + 16 * 16 + 16 + 16 + 1)]
    engines = {"crad per-Value": _engine("crad", weights, X, y)}
    if installed("micrograd"):
        engines["micrograd"] = _engine("micrograd", weights, X, y)
    return summarize(interleave(engines, common.ROUNDS), "steps_per_s", workload="moons", nodes=_nodes(weights, X, y))


def _nodes(weights, X, y):
    """Nodes in one step's graph (counted on crad: what the step makes besides the parameters)."""
    import crad
    ns = {}
    exec(DEMO.format(pkg="crad"), ns)
    with crad.Arena() as a:
        model = ns["MLP"](2, [16, 16, 1])
        before = a.live
        loss, _ = ns["loss"](model, X, y)
        n = a.live - before
        del loss
    return n
