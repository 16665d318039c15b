"""W3 (MNIST training step per sample) and W4 (a full MNIST epoch).

The data comes from ``crad.datasets.load_mnist()`` ($CRAD_DATA_DIR or the cache; downloaded once).
micrograd 0.1.0 has no exp or log: its step uses a squared-output loss on the same MLP.
"""
import gc
import time

import numpy as np

import crad
from crad import MLP, losses, optim

from . import common
from .common import in_arena, installed, interleave, summarize


def data():
    from crad.datasets import load_mnist
    d = load_mnist()
    return (d["x_train"].reshape(-1, 784) / 255.0, d["y_train"].astype(np.int64),
            d["x_test"].reshape(-1, 784) / 255.0, d["y_test"])


def _per_sample(step, batch, first_s, nodes):
    """A measure() for a training step: steps over at least MIN_S; time per sample."""
    k = [0]

    def measure():
        n, t0 = 0, time.perf_counter()
        while not n or time.perf_counter() - t0 < common.MIN_S:
            k[0] += 1
            step(k[0])
            n += 1
        t = (time.perf_counter() - t0) / (n * batch)
        return dict(nodes_per_sample=nodes, ms_per_sample=t * 1e3, samples_per_s=1 / t, first_step_s=first_s)
    return measure


def crad_steps(X, y, hidden, batch, lr=1e-3):
    """crad's rebuilt training step: the batch's graph built, back-propagated and freed."""
    a = crad.Arena()
    with a:
        model = MLP(784, [hidden, 10], init="he", seed=0)
    opt = optim.Adam(model, lr=lr)

    def step(k):
        i = (k * batch) % (len(X) - batch)
        loss = losses.cross_entropy(model(X[i:i + batch]), y[i:i + batch])
        nodes = a.live - model.num_parameters
        model.zero_grad()
        loss.backward()
        opt.step()
        return nodes
    step = in_arena(a, step)
    t = time.perf_counter()
    nodes = step(0)
    return _per_sample(step, batch, time.perf_counter() - t, nodes / batch)


def crad_replay_steps(X, y, hidden, batch, lr=1e-3):
    """crad's step by replay: batch 1 replays the captured graph of one image; larger
    batches replay it for every image at once (Tape.batch)."""
    onehot = np.eye(10)[y]
    a = crad.Arena()
    with a:
        model = MLP(784, [hidden, 10], init="he", seed=0)
        opt = optim.Adam(model, lr=lr)
        t = time.perf_counter()
        tape = crad.capture(lambda x, t: losses.cross_entropy(model(x), t), crad.leaves(X[:1]),
                            crad.leaves(onehot[:1]))

    def step(k):
        i = (k * batch) % (len(X) - batch)
        model.zero_grad()
        if batch == 1:
            tape(X[i:i + 1], onehot[i:i + 1], backward=True)
        else:
            tape.batch(X[i:i + batch, None, :], onehot[i:i + batch, None, :])
        opt.step()
    step = in_arena(a, step)
    step(0)
    first = time.perf_counter() - t
    for k in range(1, 4):  # untimed: threads.Pace tries both ways, the parallel kernel compiled on first use
        step(k)
    return _per_sample(step, batch, first, tape.computed)


def micrograd_sample(X, y, hidden):
    """A measure() of micrograd's per-sample step (squared-output loss: 0.1.0 has no exp/log)."""
    from micrograd.engine import Value
    from micrograd.nn import MLP as MG
    model = MG(784, [hidden, 10])
    k = [0]

    def measure():
        t = time.perf_counter()
        out = model(list(X[k[0]]))
        loss = sum((o * o for o in out), Value(0.0))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.01 * p.grad
        del out, loss
        gc.collect()  # its graph's cycles: micrograd pays to free its own garbage, as in W0 and W2
        t = time.perf_counter() - t
        k[0] += 1
        return dict(ms_per_sample=t * 1e3, samples_per_s=1 / t)
    return measure


def torch_steps(X, y, hidden, batch):
    torch = common.torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def step(k):
        i = (k * batch) % (len(X) - batch)
        loss = torch.nn.functional.cross_entropy(model(Xt[i:i + batch]), yt[i:i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = time.perf_counter()
    step(0)
    return _per_sample(step, batch, time.perf_counter() - t, None)


def w3(quick):
    X, y, _, _ = data()
    rows = []
    for batch in (1, 32):
        measures = {"crad batched": crad_steps(X, y, 32, batch),
                    "crad replay": crad_replay_steps(X, y, 32, batch)}
        if installed("torch"):
            measures["torch tensor"] = torch_steps(X, y, 32, batch)
        if installed("micrograd") and batch == 1:
            measures["micrograd"] = micrograd_sample(X, y, 32)
        rows += summarize(interleave(measures, common.ROUNDS), "samples_per_s", workload="W3", batch=batch)
    return rows


def _epoch(X, y, Xt, yt, n, replay):
    """One epoch of 784-50-10 over the first n images (shuffled), batch 32, from a fresh model;
    test accuracy only when n is the whole training set."""
    batch = 32
    onehot = np.eye(10)[y]
    with crad.Arena() as a:
        model = MLP(784, [50, 10], init="he", seed=0)
        opt = optim.Adam(model, lr=1e-3)
        order = np.random.default_rng(0).permutation(n)
        t0 = time.perf_counter()
        if replay:
            tape = crad.capture(lambda x, t: losses.cross_entropy(model(x), t), crad.leaves(X[:1]),
                                crad.leaves(onehot[:1]))
            for _ in range(4):  # compile (or load) the batched kernels: one pass, then threads (threads.Pace)
                tape.batch(X[:batch, None, :], onehot[:batch, None, :])
        model.zero_grad()
        warm = optim.Adam(model, lr=1e-3)
        for _ in range(4):  # Adam's kernels too, the parallel one compiled on first use: zero grads move nothing
            warm.step()
        capture_s = time.perf_counter() - t0
        nodes = 0
        t = time.perf_counter()
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            model.zero_grad()
            if replay:
                tape.batch(X[idx][:, None, :], onehot[idx][:, None, :])
                nodes += tape.computed * len(idx)
            else:
                loss = losses.cross_entropy(model(X[idx]), y[idx])
                nodes += a.live - model.num_parameters
                loss.backward()
                del loss
            opt.step()
        dt = time.perf_counter() - t
        acc = float((model.predict(Xt).argmax(1) == yt).mean()) if n == len(X) else None
        wide = f"{tape._pace.runs[True]}/{tape._pace.calls}" if replay and tape._pace.calls else None
    return dict(images=n, wide_calls=wide, s_per_epoch=dt * len(X) / n, capture_s=capture_s if replay else None,
                samples_per_s=n / dt, nodes_per_s=nodes / dt, nodes_per_image=nodes / n, test_accuracy=acc)


def _torch_epoch(X, y, Xt, yt, threads=1):
    torch = common.torch(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xs, ys = torch.tensor(X), torch.tensor(y)
    order = torch.tensor(np.random.default_rng(0).permutation(len(X)))
    t = time.perf_counter()
    for i in range(0, len(X), 32):
        idx = order[i:i + 32]
        loss = torch.nn.functional.cross_entropy(model(Xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t
    with torch.no_grad():
        acc = float((model(torch.tensor(Xt)).argmax(1).numpy() == yt).mean())
    return dict(images=len(X), s_per_epoch=dt, samples_per_s=len(X) / dt, test_accuracy=acc, threads=threads)


def w4(quick):
    """A full epoch of 784-50-10 per round: replayed in full; rebuilt on the first 3,200 (quick)
    or 16,000 images and micrograd on 2 (quick) or 4 images, both extrapolated to 60,000;
    PyTorch's tensor epoch in full, on 1 thread and on 2."""
    X, y, Xt, yt = data()
    rebuilt, k = (3200, 2) if quick else (16000, 4)
    replay = lambda: _epoch(X, y, Xt, yt, len(X), replay=True)  # noqa: E731
    measures = {"crad replay 1 thread": common.on_threads(1, replay),
                "crad replay 2 threads": common.on_threads(2, replay),
                "crad batched": lambda: _epoch(X, y, Xt, yt, rebuilt, replay=False)}
    if installed("micrograd"):
        sample = micrograd_sample(X, y, 50)

        def micrograd_epoch():
            t = sum(1e-3 * sample()["ms_per_sample"] for _ in range(k))
            return dict(images=k, s_per_epoch=t * len(X) / k, samples_per_s=k / t)
        measures["micrograd"] = micrograd_epoch
    if installed("torch"):  # on 1 thread, as crad's 1-thread row, and on 2, as its 2-thread row
        measures["torch tensor"] = lambda: _torch_epoch(X, y, Xt, yt)
        measures["torch tensor 2 threads"] = lambda: _torch_epoch(X, y, Xt, yt, threads=2)
    samples = interleave(measures, common.ROUNDS)
    rows = summarize(samples, "s_per_epoch", higher_is_better=False, workload="W4")
    return common.thread_speedup(samples, rows, "crad replay 1 thread", "crad replay 2 threads", "s_per_epoch")
