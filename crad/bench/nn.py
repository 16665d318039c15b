"""W2: one toy-regression training step, MLP 2 -> 16 -> 16 -> 1, batch 32.

Every engine is set up (and compiled) first, then timed in interleaved rounds. The per-Value
engines (crad's per-Value path, micrograd, the pure-Python Value) run micrograd-style code, one
Python operator per node, and report ns per node for each phase of the step. Their free phase
ends with a forced collection, as W0's does: only the collector frees micrograd's cycles, and with
the objects that predate the rounds frozen (``common.interleave``) each engine pays to collect its
own garbage and nothing else. (Left to automatic collection in a process of its own, micrograd's
step took about 1.6x longer in steady state, its uncollected cycles traversed again and again: this
is the conservative figure.)
"""
import gc
import random
import time

import numpy as np

import crad
from crad import MLP, losses, optim

from . import common
from .common import Clock, in_arena, installed, interleave, repeat_for, summarize
from .pyvalue import Value as PyValue

B, SIZES, LR = 32, [16, 16, 1], 0.05


def _data(seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, (B, 2))
    return X, (X ** 2).sum(1)


def _timed_steps(step, first_s, nodes):
    """A measure() for a step that is not split into phases: ms per step over at least MIN_S."""
    def measure():
        n, t0 = 0, time.perf_counter()
        while not n or time.perf_counter() - t0 < common.MIN_S:
            step()
            n += 1
        t = (time.perf_counter() - t0) / n
        return dict(nodes=nodes, step_ms=t * 1e3, steps_per_s=1 / t, first_step_s=first_s)
    return measure


def crad_batched():
    X, y = _data()
    a = crad.Arena()
    with a:
        model = MLP(2, SIZES, seed=0)
    opt = optim.SGD(model, lr=LR)

    def step():
        loss = losses.mse(model(X), y[:, None])
        model.zero_grad()
        loss.backward()
        opt.step()
        return a.live - model.num_parameters
    step = in_arena(a, step)
    t0 = time.perf_counter()
    nodes = step()
    return _timed_steps(step, time.perf_counter() - t0, nodes)


def crad_replay(batched):
    """W2 by replay: the batch's graph captured once (single), or one sample's
    graph replayed for every sample (batched)."""
    X, y = _data()
    a = crad.Arena()
    with a:
        model = MLP(2, SIZES, seed=0)
        opt = optim.SGD(model, lr=LR)
        t0 = time.perf_counter()
        if batched:
            tape = crad.capture(lambda x, t: losses.mse(model(x), t), crad.leaves(X[:1]), crad.leaves(y[:1, None]))
            Xb, yb = X[:, None, :], y[:, None, None]

            def step():
                model.zero_grad()
                tape.batch(Xb, yb)
                opt.step()
        else:
            tape = crad.capture(lambda x, t: losses.mse(model(x), t), crad.leaves(X), crad.leaves(y[:, None]))
            yc = y[:, None]

            def step():
                model.zero_grad()
                tape(X, yc, backward=True)
                opt.step()
    step = in_arena(a, step)
    step()
    return _timed_steps(step, time.perf_counter() - t0, tape.computed * (B if batched else 1))


class ScalarMLP:
    """micrograd.nn's MLP for any micrograd-like Value class: a neuron is
    ``sum(w_i * x_i, b)``, ReLU on every layer but the last."""

    def __init__(self, Value, nin, nouts, seed=0):
        rng, sz = random.Random(seed), [nin] + nouts
        self.layers = [[([Value(rng.uniform(-1, 1)) for _ in range(sz[i])], Value(0.0)) for _ in range(sz[i + 1])]
                       for i in range(len(nouts))]

    def __call__(self, x):
        for k, layer in enumerate(self.layers):
            x = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
            if k < len(self.layers) - 1:
                x = [v.relu() for v in x]
        return x[0] if len(x) == 1 else x

    def parameters(self):
        return [p for layer in self.layers for w, b in layer for p in w + [b]]


def _graph_size(root):
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
    return len(seen)


def per_value(engine):
    """micrograd's training step, one Python operator per node, timed per phase.

    engine: "crad per-Value" (crad.engine.Value and crad.nn), "micrograd" (micrograd.engine and
    micrograd.nn) or "python Value" (the pure-Python Value and the same MLP code)."""
    X, y = _data()
    if engine == "crad per-Value":
        a = crad.Arena()
        with a:
            model = MLP(2, SIZES, seed=0)
        Value, params, nparams = crad.Value, model.parameters(), model.num_parameters

        def zero_grad():
            model.zero_grad()

        def update():
            params.data = params.data - LR * params.grad
    else:
        if engine == "micrograd":
            from micrograd.engine import Value
            from micrograd.nn import MLP as MG
            random.seed(0)
            model = MG(2, SIZES)
        else:
            Value, model = PyValue, ScalarMLP(PyValue, 2, SIZES)
        a, params = None, model.parameters()
        nparams = len(params)

        def zero_grad():
            for p in params:
                p.grad = 0.0

        def update():
            for p in params:
                p.data -= LR * p.grad

    built = [0]  # nodes the last step built

    def step():
        c = Clock(collect=False)  # interleave collected before the turn
        outs = [model([Value(v) for v in x]) for x in X]
        loss = sum(((o - t) ** 2 for o, t in zip(outs, y)), Value(0.0)) * (1.0 / B)
        if a is not None:
            a.columns()  # crad's facade writes behind: applying the records is part of the build
        c.lap("build")
        built[0] = a.live - nparams if a is not None else _graph_size(loss) - nparams
        c.skip()  # counting nodes is not part of the step
        zero_grad()
        loss.backward()
        c.lap("backward")
        update()
        c.lap("update")
        del loss, outs
        gc.collect()
        if a is not None:
            a.columns()  # and applying the queued releases is part of the free
        c.lap("free")
        return c.phases

    if a is not None:
        step = in_arena(a, step)
    t0 = time.perf_counter()
    step()
    first_s = time.perf_counter() - t0

    def measure():
        ph = repeat_for(step)
        total, nodes = sum(ph.values()), built[0]
        return dict(nodes=nodes, step_ms=total * 1e3, steps_per_s=1 / total, first_step_s=first_s,
                    **{f"{k}_ns": v / nodes * 1e9 for k, v in ph.items()})
    return measure


def torch_tensor():
    torch = common.torch()
    X, y = _data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                torch.nn.ReLU(), torch.nn.Linear(16, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    Xt, yt = torch.tensor(X), torch.tensor(y)[:, None]

    def step():
        loss = ((model(Xt) - yt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    step()
    return _timed_steps(step, time.perf_counter() - t0, None)


def w2(quick):
    setups = {"crad batched": crad_batched,
              "crad replay": lambda: crad_replay(False),
              "crad replay batched 1 thread": lambda: common.on_threads(1, crad_replay(True)),
              "crad replay batched 2 threads": lambda: common.on_threads(2, crad_replay(True)),
              "crad per-Value": lambda: per_value("crad per-Value"),
              "python Value": lambda: per_value("python Value")}
    if installed("micrograd"):
        setups["micrograd"] = lambda: per_value("micrograd")
    if installed("torch"):
        setups["torch tensor"] = torch_tensor
    measures = {name: setup() for name, setup in setups.items()}
    samples = interleave(measures, common.ROUNDS)
    rows = summarize(samples, "steps_per_s", workload="W2", batch=B)
    return common.thread_speedup(samples, rows, "crad replay batched 1 thread", "crad replay batched 2 threads",
                                 "steps_per_s", higher_is_better=True)
