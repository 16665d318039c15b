"""W2: one toy-regression training step, MLP 2 -> 16 -> 16 -> 1, batch 32."""
import time

import numpy as np

import crad
from crad import MLP, losses, optim

from .common import installed, thread_pairs

B, SIZES, LR = 32, [16, 16, 1], 0.05


def _data(seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, (B, 2))
    return X, (X ** 2).sum(1)


def _time_steps(step, n):
    step()  # warm up (compile)
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def crad_batched(n):
    X, y = _data()
    with crad.Arena() as a:
        model = MLP(2, SIZES, seed=0)
        opt = optim.SGD(model, lr=LR)
        nodes = []

        def step():
            loss = losses.mse(model(X), y[:, None])
            nodes.append(a.live - model.num_parameters)
            model.zero_grad()
            loss.backward()
            opt.step()
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        return _time_steps(step, n), nodes[-1], first


def crad_replay(n, batched):
    """W2 by replay: the batch's graph captured once (single), or one sample's
    graph replayed for every sample (batched)."""
    X, y = _data()
    with crad.Arena():
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
        step()
        first = time.perf_counter() - t0
        nodes = tape.computed * (B if batched else 1)
        return _time_steps(step, n), nodes, first


def crad_per_value(n):
    X, y = _data()
    with crad.Arena() as a:
        model = MLP(2, SIZES, seed=0)
        params = model.parameters()
        nodes = []

        def step():
            outs = [model([crad.Value(v) for v in x]) for x in X]
            loss = sum(((o - t) ** 2 for o, t in zip(outs, y)), crad.Value(0.0)) * (1.0 / B)
            nodes.append(a.live - model.num_parameters)
            model.zero_grad()
            loss.backward()
            params.data = params.data - LR * params.grad
        return _time_steps(step, n), nodes[-1], None


def micrograd_step(n):
    import random

    from micrograd.engine import Value
    from micrograd.nn import MLP as MG
    random.seed(0)
    X, y = _data()
    model = MG(2, SIZES)
    counter = [0]

    def step():
        outs = [model([Value(v) for v in x]) for x in X]
        loss = sum(((o - t) ** 2 for o, t in zip(outs, y)), Value(0.0)) * (1.0 / B)
        counter[0] = len(_topo(loss))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= LR * p.grad
    return _time_steps(step, n), counter[0], None


def _topo(root):
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
    return seen


def torch_tensor(n):
    import torch
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
    return _time_steps(step, n), None, None


def w2(quick):
    runs = {"crad batched": (crad_batched, 200 if quick else 2000),
            "crad replay": (lambda n: crad_replay(n, False), 500 if quick else 5000),
            "crad per-Value": (crad_per_value, 3 if quick else 20)}
    if installed("micrograd"):
        runs["micrograd"] = (micrograd_step, 2 if quick else 10)
    if installed("torch"):
        runs["torch tensor"] = (torch_tensor, 200 if quick else 2000)
    rows = [_row(name, *fn(n)) for name, (fn, n) in runs.items()]
    # batched replay at 1 and 2 threads, interleaved (a batch of 32 of this
    # small tape is below crad.threads' thresholds: both run the serial kernel)
    steps = 500 if quick else 5000
    rows[2:2] = thread_pairs(lambda _: _row("crad replay batched", *crad_replay(steps, True)), 3 if quick else 5,
                             "step_ms")
    return rows


def _row(name, t, nodes, first):
    return dict(workload="W2", engine=name, batch=B, nodes=nodes, step_ms=t * 1e3, steps_per_s=1 / t,
                first_step_s=first)
