"""W5: microgpt's character GPT on makemore's names, trained one name per step.

Every engine trains the same model (crad.examples.gpt) on the same few names (repeated for the
fast engines), from the same initial weights, with Adam; times are per name (forward, backward,
update), the engines interleaved round by round. The per-scalar rows run one piece of code,
``gpt.scalar_loss`` (microgpt's model written per scalar), on the minimal pure-Python Value
(``pyvalue.py``) and on crad.engine.Value. Nodes per name count what a name's graph adds besides
the parameters (ops, constants and, for crad's Vector graph, the one-hot rows). Not in --quick.
"""
import time

import numpy as np

import crad
from crad import optim
from crad.datasets import load_names
from crad.examples import gpt

from . import common
from .common import in_arena, installed, interleave, summarize
from .pyvalue import Value as PyValue


def _names():
    docs = load_names(progress=False)
    chars = sorted(set("".join(docs)))
    docs = [docs[i] for i in np.random.default_rng(0).permutation(len(docs))]  # as `crad train gpt` does
    return docs, chars


def _per_name(seconds, names, nodes, batch=1, **extra):
    s = seconds / names
    return dict(batch=batch, names=names, nodes_per_name=nodes, ms_per_name=s * 1e3, names_per_s=1 / s, **extra)


def scalar_engine(Value, state, model, names, nodes):
    """A measure() of the per-scalar model on ``Value``: each round trains on ``names`` (build,
    backward, microgpt's Adam), the parameters and Adam's moments carried over."""
    P = gpt.scalar_params(state, Value)
    flat = [p for name in state for row in P[name] for p in row]
    m, v, done = [0.0] * len(flat), [0.0] * len(flat), [0]

    def measure():
        t = time.perf_counter()
        for name in names:
            loss = gpt.scalar_loss(P, model.encode(name))
            loss.backward()
            gpt.scalar_adam(flat, m, v, done[0], 10**9)  # a far horizon: the rate stays lr
            done[0] += 1
            del loss
        return _per_name(time.perf_counter() - t, len(names), nodes)
    return measure


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


def crad_engine(chars, names, steps, batch_size=1, replay=True):
    """A measure() of `crad train gpt`'s loop: each round trains ``steps`` steps on ``names``
    (one Adam carried over); with replay, every length's tape is captured first (capture_s)."""
    a = crad.Arena()
    with a:
        model = gpt.GPT(chars, seed=0)
        t = time.perf_counter()
        if replay:
            for name in set(names):
                X, Y = model.onehots(name)
                if batch_size > 1:
                    model.tapes.batch(X[None], Y[None])
                else:
                    model.tapes(X, Y)
        capture = time.perf_counter() - t if replay else None
        opt = optim.Adam(model, lr=0.01, betas=gpt.BETAS, eps=gpt.EPS)

    def measure():
        stats = {}
        gpt.train(model, names, steps, batch_size=batch_size, replay=replay, progress=False, optimizer=opt,
                  stats=stats)
        return _per_name(stats["seconds"], stats["names"], stats["nodes"] / stats["names"], batch_size,
                         capture_s=capture)
    measure = in_arena(a, measure)
    measure()  # compile and warm up
    return measure


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


def torch_engine(state, model, names, steps):
    """A measure() of the model as PyTorch tensor code (float64, one name per step, 1 thread)."""
    torch = common.torch()
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

    def run(count):
        for step in range(count):
            loss = loss_of(encoded[step % len(encoded)])
            opt.zero_grad()
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = 0.01 * (1 - step / count)
            opt.step()

    run(3)  # PyTorch's first calls initialise

    def measure():
        t = time.perf_counter()
        run(steps)
        return _per_name(time.perf_counter() - t, steps, None)
    return measure


def w5(quick):
    """The W5 rows: crad replayed (batch 1 and B=32), rebuilt, per-Value; the pure-Python
    peer; PyTorch tensor, interleaved; then capture times and the default runs."""
    docs, chars = _names()
    k = 2 if quick else 5  # names the slow per-scalar engines train on per round
    names = docs[:k]
    with crad.Arena():
        model = gpt.GPT(chars, seed=0)
        state = model.state_dict()
    scalar_n = scalar_nodes(state, model, names)
    reps = 40 if quick else 200
    a = crad.Arena()  # the per-Value engine's parameters and graphs
    per_value = in_arena(a, lambda: scalar_engine(crad.Value, state, model, names, scalar_n))()
    measures = {"python Value": scalar_engine(PyValue, state, model, names, scalar_n),
                "crad per-Value": in_arena(a, per_value),
                "crad replay": crad_engine(chars, names, k * reps),
                "crad rebuilt": crad_engine(chars, names, k * (5 if quick else 20), replay=False)}
    for n in (1, 2):  # batched replay splits its samples over the threads: both counts, interleaved
        measures[f"crad replay batched {n} thread{'s' * (n > 1)}"] = common.on_threads(
            n, crad_engine(chars, names * 32, k * reps // 8, batch_size=32))
    if installed("torch"):
        measures["torch tensor"] = torch_engine(state, model, names, k * (20 if quick else 100))
    samples = interleave(measures, common.ROUNDS)
    rows = summarize(samples, "names_per_s", workload="W5")
    common.thread_speedup(samples, rows, "crad replay batched 1 thread", "crad replay batched 2 threads", "ms_per_name")
    for state_, s in capture_all().items():
        rows.append(dict(workload="W5", engine=f"crad: capture + first replay of all 16 lengths ({state_} numba "
                                               "cache)", capture_s=s))
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
