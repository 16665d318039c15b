"""W5: microgpt's character GPT on makemore's names, trained one name per step.

Every engine trains the same model (crad.examples.gpt) on the same few names
(repeated for the fast engines), from the same initial weights, with Adam;
times are per name (forward, backward, update) and every ratio is measured
in this run. The per-scalar rows run one piece of code, ``gpt.scalar_loss``
(microgpt's model written per scalar), on a minimal pure-Python Value and on
crad.engine.Value. Nodes per name count what a name's graph adds besides the
parameters (ops, constants and, for crad's Vector graph, the one-hot rows).
"""
import math
import os
import time

import numpy as np

import crad
from crad.datasets import load_names
from crad.examples import gpt

from .common import installed


class PyValue:
    """A minimal pure-Python Value (microgpt's): __slots__, local gradients
    stored at build time, an iterative topological sort in backward. The
    peer of the issue's targets (bench/pyvalue.py is meant to replace it)."""

    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data, self.grad = data, 0.0
        self._children, self._local_grads = children, local_grads

    def __add__(self, other):
        other = other if isinstance(other, PyValue) else PyValue(other)
        return PyValue(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, PyValue) else PyValue(other)
        return PyValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, c):
        return PyValue(self.data ** c, (self,), (c * self.data ** (c - 1),))

    def log(self):
        return PyValue(math.log(self.data), (self,), (1.0 / self.data,))

    def exp(self):
        e = math.exp(self.data)
        return PyValue(e, (self,), (e,))

    def relu(self):
        return PyValue(max(0.0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other ** -1

    def backward(self):
        topo, seen, stack = [], set(), [(self, False)]
        while stack:
            v, done = stack.pop()
            if done:
                topo.append(v)
            elif id(v) not in seen:
                seen.add(id(v))
                stack.append((v, True))
                stack.extend((c, False) for c in v._children)
        self.grad = 1.0
        for v in reversed(topo):
            for c, g in zip(v._children, v._local_grads):
                c.grad += g * v.grad


def _names():
    docs = load_names(os.environ.get("CRAD_DATA_DIR"), progress=False)
    chars = sorted(set("".join(docs)))
    docs = [docs[i] for i in np.random.default_rng(0).permutation(len(docs))]  # as `crad train gpt` does
    return docs, chars


def scalar_per_name(Value, state, model, names, steps=1000):
    """Seconds per name of the per-scalar model on ``Value``: build, backward, Adam."""
    P = gpt.scalar_params(state, Value)
    flat = [p for name in state for row in P[name] for p in row]
    m, v = [0.0] * len(flat), [0.0] * len(flat)
    t = time.perf_counter()
    for step, name in enumerate(names):
        loss = gpt.scalar_loss(P, model.encode(name))
        loss.backward()
        gpt.scalar_adam(flat, m, v, step, steps)
        del loss
    return (time.perf_counter() - t) / len(names)


def scalar_nodes(state, model, names):
    """Nodes per name of the per-scalar graph (counted on crad.engine.Value)."""
    with crad.Arena() as a:
        P = gpt.scalar_params(state, crad.Value)
        live, total = a.live, 0
        for name in names:
            loss = gpt.scalar_loss(P, model.encode(name))
            total += a.live - live
            del loss
    return total / len(names)


def crad_per_name(chars, names, steps, batch_size=1, replay=True):
    """(seconds per name, nodes per name, capture seconds) training a fresh
    model on ``names`` cycled for ``steps`` steps; tapes captured first."""
    with crad.Arena():
        model = gpt.GPT(chars, seed=0)
        t = time.perf_counter()
        if replay:  # capture every length the names need, then time the replays only
            for name in set(names):
                X, Y = model.onehots(name)
                if batch_size > 1:
                    model.tapes.batch(X[None], Y[None])
                else:
                    model.tapes(X, Y)
        capture = time.perf_counter() - t
        stats = {}
        gpt.train(model, names, steps, batch_size=batch_size, replay=replay, progress=False, stats=stats)
        return stats["seconds"] / stats["names"], stats["nodes"] / stats["names"], capture


# In a fresh process: seconds to capture a tape for every length 1..block_size
# and replay each once (single and batched), after crad's import and a model.
CAPTURE_PROBE = r"""
import time
import numpy as np
import crad
from crad.examples import gpt
model = gpt.GPT(sorted("abcdefghijklmnopqrstuvwxyz"), seed=0)
t = time.perf_counter()
for n in range(1, model.block_size + 1):
    X = np.eye(model.vocab)[:n]
    model.tapes(X, X, backward=True)
    model.tapes.batch(X[None], X[None])
print(time.perf_counter() - t, len(model.tapes))
"""


def capture_all():
    """{"cold": s, "warm": s}: every length's tape captured and first replayed,
    in fresh processes with an empty numba cache, then with the filled one."""
    from .compile import fresh_runs
    out = {}
    for state, run in fresh_runs(CAPTURE_PROBE):
        out[state] = float(run.stdout.split()[0]) if run.returncode == 0 else f"failed: {run.stderr[-200:]}"
    return out


def torch_per_name(state, model, names, steps):
    """Seconds per name of the model as PyTorch tensor code (float64, one name per step)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds synchronisation (40x slower under load)
    try:
        return _torch_per_name(torch, state, model, names, steps)
    finally:
        torch.set_num_threads(threads)


def _torch_per_name(torch, state, model, names, steps):
    W = {k: torch.tensor(v, requires_grad=True) for k, v in state.items()}
    opt = torch.optim.Adam(W.values(), lr=0.01, betas=gpt.BETAS, eps=gpt.EPS)
    H, E = model.n_head, model.n_embd
    D = E // H

    def rmsnorm(x):
        return x * ((x * x).mean(dim=-1, keepdim=True) + 1e-5) ** -0.5

    def loss_of(tokens):
        n = min(model.block_size, len(tokens) - 1)
        tok, tgt = torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])
        x = rmsnorm(W["wte"][tok] + W["wpe"][:n])
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        for i in range(model.n_layer):
            h = rmsnorm(x)
            q, k, v = ((h @ W[f"layer{i}.attn_w{c}"].T).view(n, H, D).transpose(0, 1) for c in "qkv")
            att = torch.softmax((q @ k.transpose(1, 2) / D ** 0.5).masked_fill(~mask, float("-inf")), dim=-1)
            x = x + (att @ v).transpose(0, 1).reshape(n, E) @ W[f"layer{i}.attn_wo"].T
            x = x + torch.relu(rmsnorm(x) @ W[f"layer{i}.mlp_fc1"].T) @ W[f"layer{i}.mlp_fc2"].T
        return torch.nn.functional.cross_entropy(x @ W["lm_head"].T, tgt)

    encoded = [model.encode(n) for n in names]
    for step in range(-3, steps):  # three untimed warm-up steps (PyTorch's first calls initialise)
        if step == 0:
            t = time.perf_counter()
        loss = loss_of(encoded[step % len(encoded)])
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = 0.01 * (1 - max(step, 0) / steps)
        opt.step()
    return (time.perf_counter() - t) / steps


def w5(quick):
    """The W5 rows: crad replayed (batch 1 and B=32), rebuilt, per-Value;
    the pure-Python peer; PyTorch tensor; the 1,000-step default run."""
    docs, chars = _names()
    k = 2 if quick else 5  # names the slow per-scalar engines train on
    names = docs[:k]
    with crad.Arena():
        model = gpt.GPT(chars, seed=0)
        state = model.state_dict()
    rows = []
    scalar_n = scalar_nodes(state, model, names)

    def row(engine, batch, s, nodes, **extra):
        rows.append(dict(workload="W5", engine=engine, batch=batch, names=k, nodes_per_name=nodes,
                         ms_per_name=s * 1e3, names_per_s=1 / s, **extra))
    row("pure-Python Value (per scalar)", 1, scalar_per_name(PyValue, state, model, names), scalar_n)
    row("crad per-Value (per scalar)", 1, scalar_per_name(crad.Value, state, model, names), scalar_n)
    reps = 40 if quick else 200
    s, n, cap = crad_per_name(chars, names, k * reps)
    row("crad replay", 1, s, n, capture_s=cap)
    s, n, cap = crad_per_name(chars, names * 32, k * reps // 8, batch_size=32)
    row("crad replay batched", 32, s, n, capture_s=cap)
    s, n, _ = crad_per_name(chars, names, k * (5 if quick else 20), replay=False)
    row("crad rebuilt", 1, s, n)
    if installed("torch"):
        row("torch tensor (1 thread)", 1, torch_per_name(state, model, names, k * (20 if quick else 100)), None)
    base = {r["engine"]: r["ms_per_name"] for r in rows}
    for r in rows:
        for peer in ("pure-Python Value (per scalar)", "torch tensor (1 thread)"):
            if peer in base and r["engine"].startswith("crad"):
                x = base[peer] / r["ms_per_name"]
                r[f"x {peer.split(' (')[0]}"] = f"{x:,.1f}x" if x >= 1 else f"{x:.2g}x"
    times = capture_all()
    for state, s in times.items():
        rows.append(dict(workload="W5", engine=f"crad: capture + first replay of all 16 lengths ({state} numba cache)",
                         capture_s=s))
    rows.append(_default_run(docs, chars, 200 if quick else 1000))
    rows.append(_default_run(docs, chars, 20 if quick else 100, batch_size=32))
    return rows


def _default_run(docs, chars, steps, batch_size=1):
    """`crad train gpt`'s run on the names (captures included): loss after
    `steps` steps, throughput, samples."""
    with crad.Arena():
        model = gpt.GPT(chars, seed=0)
        stats = {}
        losses = gpt.train(model, docs, steps, batch_size=batch_size, progress=False, stats=stats)
        names = gpt.sample(model, 5, seed=0)
    return dict(workload="W5", engine=f"crad train gpt --steps {steps} --batch-size {batch_size}", batch=batch_size,
                names=stats["names"], nodes_per_name=stats["nodes"] / stats["names"],
                ms_per_name=stats["seconds"] / stats["names"] * 1e3, names_per_s=stats["names"] / stats["seconds"],
                note=f"loss {losses[-1]:.3f} (last 50 mean {np.mean(losses[-50:]):.3f}); samples {', '.join(names)}")
