"""W3 (MNIST training step per sample) and W4 (a full MNIST epoch)."""
import os
import time

import numpy as np

import crad
from crad import MLP, losses, optim

from .common import installed, thread_pairs


def data():
    from crad.datasets import load_mnist
    d = load_mnist(os.environ.get("CRAD_DATA_DIR"))
    return (d["x_train"].reshape(-1, 784) / 255.0, d["y_train"].astype(np.int64),
            d["x_test"].reshape(-1, 784) / 255.0, d["y_test"])


def crad_steps(X, y, hidden, batch, steps, lr=1e-3):
    """Seconds per sample and nodes per sample of crad's batched training step."""
    with crad.Arena() as a:
        model = MLP(784, [hidden, 10], init="he", seed=0)
        opt = optim.Adam(model, lr=lr)
        nodes = 0

        def step(k):
            nonlocal nodes
            i = (k * batch) % (len(X) - batch)
            loss = losses.cross_entropy(model(X[i:i + batch]), y[i:i + batch])
            nodes = a.live - model.num_parameters
            model.zero_grad()
            loss.backward()
            opt.step()
        t = time.perf_counter()
        step(0)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(1, steps + 1):
            step(k)
        return (time.perf_counter() - t) / (steps * batch), nodes / batch, first


def crad_replay_steps(X, y, hidden, batch, steps, lr=1e-3):
    """Seconds per sample by replay: batch 1 replays the captured graph of one
    image; larger batches replay it for every image at once (Tape.batch)."""
    onehot = np.eye(10)[y]
    with crad.Arena():
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
        step(0)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(1, steps + 1):
            step(k)
        return (time.perf_counter() - t) / (steps * batch), tape.computed, first


def micrograd_sample(X, y, hidden, samples):
    from micrograd.engine import Value
    from micrograd.nn import MLP as MG
    model = MG(784, [hidden, 10])
    t = time.perf_counter()
    for k in range(samples):
        out = model(list(X[k]))
        m = max(o.data for o in out)
        z = [o - m for o in out]
        s = sum((v.exp() for v in z[1:]), z[0].exp()) if hasattr(Value, "exp") else None
        loss = (s.log() - z[y[k]]) if s is not None else sum((o * o for o in out), Value(0.0))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.01 * p.grad
    return (time.perf_counter() - t) / samples


def torch_sample(X, y, hidden, batch, steps):
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, yt = torch.tensor(X[: steps * batch + batch]), torch.tensor(y[: steps * batch + batch])

    def step(k):
        xb, yb = Xt[k * batch:(k + 1) * batch], yt[k * batch:(k + 1) * batch]
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step(0)
    t = time.perf_counter()
    for k in range(1, steps + 1):
        step(k)
    return (time.perf_counter() - t) / (steps * batch)


def w3(quick):
    X, y, _, _ = data()
    rows = []
    for batch in (1, 32):
        steps = (200 if batch == 1 else 20) if quick else (2000 if batch == 1 else 200)
        t, nodes, first = crad_steps(X, y, 32, batch, steps)
        rows.append(dict(workload="W3", engine="crad batched", batch=batch, nodes_per_sample=nodes,
                         ms_per_sample=t * 1e3, samples_per_s=1 / t, first_step_s=first))
        t, nodes, first = crad_replay_steps(X, y, 32, batch, steps * (10 if batch == 1 else 5))
        rows.append(dict(workload="W3", engine="crad replay", batch=batch, nodes_per_sample=nodes,
                         ms_per_sample=t * 1e3, samples_per_s=1 / t, first_step_s=first))
        if installed("torch"):
            t = torch_sample(X, y, 32, batch, steps)
            rows.append(dict(workload="W3", engine="torch tensor", batch=batch, ms_per_sample=t * 1e3,
                             samples_per_s=1 / t))
    if installed("micrograd"):
        # micrograd 0.1.0 has no exp/log: its step uses a squared-output loss of the same MLP
        t = micrograd_sample(X, y, 32, 2 if quick else 5)
        rows.append(dict(workload="W3", engine="micrograd", batch=1, ms_per_sample=t * 1e3, samples_per_s=1 / t))
    return rows


def _epoch(X, y, Xt, yt, n, replay):
    """One epoch of 784-50-10 over the first n images (shuffled), batch 32,
    on crad.get_num_threads() threads (batched replay)."""
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
            for _ in range(4):  # compile (or load) the batched kernels: one pass, then T threads (threads.Pace)
                tape.batch(X[:batch, None, :], onehot[:batch, None, :])
            model.zero_grad()
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
        acc = float((model.predict(Xt).argmax(1) == yt).mean())
        wide = f"{tape._pace.runs[True]}/{tape._pace.calls}" if replay and tape._pace.calls else None
    return dict(workload="W4", engine="crad replay" if replay else "crad batched", images=n, wide_calls=wide,
                s_per_epoch=dt * len(X) / n, measured_s=dt, capture_s=capture_s if replay else None,
                samples_per_s=n / dt, nodes_per_s=nodes / dt, nodes_per_image=nodes / n, test_accuracy=acc)


def _torch_epoch(X, y, Xt, yt):
    import torch
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
    return dict(workload="W4", engine="torch tensor", images=len(X), s_per_epoch=dt, samples_per_s=len(X) / dt,
                test_accuracy=acc)


def w4(quick):
    """A full epoch of 784-50-10, rebuilt and replayed (quick: the first 6,400
    images rebuilt, extrapolated; the replayed epoch is always full), with
    micrograd's epoch extrapolated from a few images and PyTorch tensor mode."""
    X, y, Xt, yt = data()
    rows = [_epoch(X, y, Xt, yt, 6400 if quick else len(X), replay=False)]
    rows += thread_pairs(lambda n: _epoch(X, y, Xt, yt, len(X), replay=True), 1 if quick else 3, "s_per_epoch")
    if installed("micrograd"):
        k = 2 if quick else 5
        t = micrograd_sample(X, y, 50, k)
        rows.append(dict(workload="W4", engine=f"micrograd ({k} images, extrapolated)", images=k,
                         s_per_epoch=t * len(X), samples_per_s=1 / t))
    if installed("torch"):
        rows.append(_torch_epoch(X, y, Xt, yt))
    return rows
