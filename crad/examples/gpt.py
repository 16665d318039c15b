"""A character GPT on scalar graphs: Karpathy's microgpt model, trained on names.

The model is microgpt's, exactly: token and position embeddings, RMSNorm,
one block of causal multi-head attention and a ReLU MLP (pre-norm, residual
connections), a language-model head, no biases; 16 dimensions, 4 heads,
block 16; Adam (lr 0.01, betas 0.85 and 0.99) with a linear decay of the
learning rate; one name per step.

Every step is the honest scalar graph, one node per scalar op, built here
from Vector operations (a bias-free linear layer is ``(x * W).sum(axis=-1)``:
a mul per weight and a chain of adds). Token and target ids enter as
one-hot input rows (the embedding and the target's probability are one-hot
dot products), so the graph depends only on the name's length: one tape per
length is captured lazily (``crad.compile``) and replayed for every name of
that length. ``scalar_loss`` is the same model written per scalar, as
microgpt writes it, for any micrograd-style ``Value`` class.
"""
import argparse
import os
import tempfile
import time

import numpy as np

import crad
from crad import optim, plots
from crad.arena import arena_arg
from crad.nn import Module, _check_size
from crad.vector import Vector, leaves, stack

FORMAT = "crad-gpt-1"
BETAS, EPS = (0.85, 0.99), 1e-8


def param_shapes(vocab, n_embd, n_layer, block_size):
    """Parameter names and shapes (nout, nin), in microgpt's order."""
    shapes = {"wte": (vocab, n_embd), "wpe": (block_size, n_embd), "lm_head": (vocab, n_embd)}
    for i in range(n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (n_embd, n_embd)
        shapes[f"layer{i}.mlp_fc1"] = (4 * n_embd, n_embd)
        shapes[f"layer{i}.mlp_fc2"] = (n_embd, 4 * n_embd)
    return shapes


class GPT(Module):
    """microgpt's model over the characters ``chars`` (plus BOS, the last id).

    Parameters live in one contiguous block of leaves (``parameters()`` is in
    ``state_dict`` order). ``loss(X, Y)`` builds a name's graph from one-hot
    rows; ``tapes`` caches one captured tape per name length for replay.
    """

    def __init__(self, chars, n_embd=16, n_head=4, n_layer=1, block_size=16, seed=0, *, arena=None,
                 _state=None):
        chars = list(chars)
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters (sorted(set(''.join(docs))))")
        n_embd, n_head = _check_size(n_embd, "n_embd"), _check_size(n_head, "n_head")
        n_layer, block_size = _check_size(n_layer, "n_layer"), _check_size(block_size, "block_size")
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.chars, self.bos, self.vocab = chars, len(chars), len(chars) + 1
        self.n_embd, self.n_head, self.n_layer, self.block_size = n_embd, n_head, n_layer, block_size
        self._index = {c: i for i, c in enumerate(chars)}
        self._eye = np.eye(self.vocab)  # one-hot rows, shared by every name's encoding
        shapes = param_shapes(self.vocab, n_embd, n_layer, block_size)
        if _state is None:
            rng = np.random.default_rng(seed)
            _state = {name: rng.normal(0.0, 0.08, shape) for name, shape in shapes.items()}
        a = arena_arg(arena)
        self._block = leaves(np.concatenate([_state[name].reshape(-1) for name in shapes]), arena=a)
        self.params, offset = {}, 0
        for name, shape in shapes.items():
            size = shape[0] * shape[1]
            self.params[name] = self._block[offset:offset + size].reshape(shape)
            offset += size
        self.tapes = crad.compile(_graph(self.params, n_head), arena=a)

    @classmethod
    def from_state(cls, state, chars, n_head=4, *, arena=None):
        """A model with the weights of ``state`` (name -> float64 array, as
        ``state_dict`` gives); the sizes are read from the shapes."""
        if not isinstance(state, dict) or "wte" not in state or "wpe" not in state:
            raise ValueError("state must map parameter names (wte, wpe, lm_head, layer0.attn_wq, ...) to arrays")
        wte, wpe = np.shape(state["wte"]), np.shape(state["wpe"])
        if len(wte) != 2 or len(wpe) != 2:
            raise ValueError(f"wte and wpe must be matrices, got shapes {wte} and {wpe}")
        n_layer = sum(1 for k in state if k.endswith(".attn_wq"))
        if wte[0] != len(chars) + 1:
            raise ValueError(f"wte has {wte[0]} rows; {len(chars)} chars plus BOS need {len(chars) + 1}")
        shapes = param_shapes(wte[0], wte[1], max(n_layer, 1), wpe[0])
        if set(state) != set(shapes):
            raise ValueError(f"state has {sorted(state)}; a GPT of these sizes needs {sorted(shapes)}")
        clean = {}
        for name, shape in shapes.items():
            x = np.asarray(state[name])
            if x.dtype.kind not in "biuf" or x.shape != shape:
                raise ValueError(f"{name}: expected a numeric array of shape {shape}, got {x.dtype} {x.shape}")
            clean[name] = x.astype(np.float64)
        return cls(chars, wte[1], n_head, n_layer, wpe[0], arena=arena, _state=clean)

    def state_dict(self):
        """Parameter name -> a new float64 array of its values."""
        return {name: p.data for name, p in self.params.items()}

    @property
    def arena(self):
        return self._block.arena

    def _param_ids(self):
        return self._block._slots()[1]

    # -- data -------------------------------------------------------------------
    def encode(self, name):
        """[BOS] + character ids + [BOS]; ValueError for an unknown character."""
        try:
            return [self.bos] + [self._index[c] for c in name] + [self.bos]
        except KeyError as e:
            raise ValueError(f"{name!r} has the character {e.args[0]!r}, which is not in the model's "
                             f"vocabulary") from None

    def window(self, name):
        """The n + 1 tokens a name trains on, n = min(block_size, len(name) + 1):
        n inputs, each followed by its target."""
        tokens = self.encode(name)
        return tokens[:min(self.block_size, len(tokens) - 1) + 1]

    def onehots(self, name):
        """(X, Y): one-hot rows (n, vocab) of the n input and target tokens
        (``window``); ``rows`` of a batch of windows."""
        return self.rows(np.array(self.window(name)))

    def rows(self, windows):
        """(X, Y): one-hot rows (..., n, vocab) of int windows (..., n + 1)."""
        return self._eye[windows[..., :-1]], self._eye[windows[..., 1:]]

    def loss(self, X, Y):
        """The graph of a name's mean loss, from one-hot Vectors X and Y (n, vocab)."""
        return self.tapes.fn(X, Y)

    # -- inference without a graph ---------------------------------------------
    def logits(self, tokens):
        """Logits (n, vocab) at each position of ``tokens``, in numpy from the
        parameter values (no graph is built)."""
        s = self.state_dict()
        n, H = len(tokens), self.n_head
        D = self.n_embd // H

        def rmsnorm(x):
            return x * ((x * x).mean(axis=-1, keepdims=True) + 1e-5) ** -0.5
        x = rmsnorm(s["wte"][tokens] + s["wpe"][:n])
        causal = np.tril(np.ones((n, n), bool))
        for i in range(self.n_layer):
            h = rmsnorm(x)
            q, k, v = ((h @ s[f"layer{i}.attn_w{c}"].T).reshape(n, H, D).transpose(1, 0, 2) for c in "qkv")
            z = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(D), -np.inf)
            w = np.exp(z - z.max(axis=-1, keepdims=True))
            w /= w.sum(axis=-1, keepdims=True)
            x = x + (w @ v).transpose(1, 0, 2).reshape(n, self.n_embd) @ s[f"layer{i}.attn_wo"].T
            x = x + np.maximum(rmsnorm(x) @ s[f"layer{i}.mlp_fc1"].T, 0.0) @ s[f"layer{i}.mlp_fc2"].T
        return x @ s["lm_head"].T

    def __repr__(self):
        return (f"GPT(vocab {self.vocab}, n_embd {self.n_embd}, n_head {self.n_head}, n_layer {self.n_layer}, "
                f"block {self.block_size}: {self.num_parameters:,} parameters)")


def _graph(P, n_head):
    """fn(X, Y) -> the mean loss Value, closing over the parameter Vectors
    only (not the model), so a model and its tape cache form no cycle."""
    n_layer = sum(1 for k in P if k.endswith(".attn_wq"))
    vocab, E = P["wte"].shape
    D = E // n_head

    # Weights are the left operand of each mul, as in microgpt's `wi * xi`
    # (and the batched replay's fast case: a parameter times a row).
    def linear(x, W):  # x (n, nin), W (nout, nin): a mul per weight, a chain of adds per output
        return (W * x.reshape(x.shape[0], 1, x.shape[1])).sum(axis=2)

    def rmsnorm(x):  # x (n, E)
        scale = ((x * x).sum(axis=1) / E + 1e-5) ** -0.5
        return x * scale.reshape(x.shape[0], 1)

    def softmax(s, axis):  # the max is subtracted as a constant (microgpt's max over .data)
        e = (s - s.data.max(axis=axis, keepdims=True)).exp()
        inv = e.sum(axis=axis) ** -1
        return e * (inv.reshape(-1, 1) if axis == 1 else inv)

    def loss(X, Y):
        n = X.shape[0]
        x = rmsnorm((P["wte"] * X.reshape(n, vocab, 1)).sum(axis=1) + P["wpe"][:n])
        for i in range(n_layer):
            residual = x
            h = rmsnorm(x)
            q, k, v = (linear(h, P[f"layer{i}.attn_w{c}"]).reshape(n, n_head, D) for c in "qkv")
            heads = []
            for t in range(n):  # causal: position t attends to 0..t
                w = softmax((k[:t + 1] * q[t]).sum(axis=2) / D ** 0.5, axis=0)  # (t + 1, heads)
                heads.append((w.reshape(t + 1, n_head, 1) * v[:t + 1]).sum(axis=0).reshape(E))
            x = linear(stack(heads), P[f"layer{i}.attn_wo"]) + residual
            x = linear(linear(rmsnorm(x), P[f"layer{i}.mlp_fc1"]).relu(), P[f"layer{i}.mlp_fc2"]) + x
        probs = softmax(linear(x, P["lm_head"]), axis=1)
        return (-(probs * Y).sum(axis=1).log()).mean()  # -log p(target) per position, averaged
    return loss


# -- the same model per scalar, as microgpt writes it ---------------------------------
def _sum(xs):
    """A chain of adds (Python's sum would add a 0 leaf first)."""
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def scalar_params(state, Value):
    """state (name -> array) as nested lists of ``Value`` leaves."""
    return {name: [[Value(float(x)) for x in row] for row in np.asarray(w)] for name, w in state.items()}


def scalar_loss(params, tokens, n_head=4):
    """A name's mean loss built per scalar on any micrograd-style Value
    (``+ - * / **``, ``exp log relu``, ``.data``): microgpt's code, with ids
    indexing the embeddings (no one-hot rows) and each softmax's 1/total
    computed once. ``params`` from ``scalar_params``; tokens from ``encode``."""
    n_layer = sum(1 for k in params if k.endswith(".attn_wq"))
    n = min(len(params["wpe"]), len(tokens) - 1)
    head_dim = len(params["wte"][0]) // n_head

    def linear(x, w):
        return [_sum([wi * xi for wi, xi in zip(wo, x)]) for wo in w]

    def softmax(logits):
        max_val = max(v.data for v in logits)
        exps = [(v - max_val).exp() for v in logits]
        inv = _sum(exps) ** -1
        return [e * inv for e in exps]

    def rmsnorm(x):
        scale = (_sum([xi * xi for xi in x]) / len(x) + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    keys, values, losses = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)], []
    for pos in range(n):
        x = rmsnorm([t + p for t, p in zip(params["wte"][tokens[pos]], params["wpe"][pos])])
        for li in range(n_layer):
            x_residual = x
            x = rmsnorm(x)
            q = linear(x, params[f"layer{li}.attn_wq"])
            keys[li].append(linear(x, params[f"layer{li}.attn_wk"]))
            values[li].append(linear(x, params[f"layer{li}.attn_wv"]))
            x_attn = []
            for h in range(n_head):
                hs = slice(h * head_dim, (h + 1) * head_dim)
                q_h, k_h, v_h = q[hs], [k[hs] for k in keys[li]], [v[hs] for v in values[li]]
                w = softmax([_sum([q_h[j] * k_h[t][j] for j in range(head_dim)]) / head_dim ** 0.5
                             for t in range(len(k_h))])
                x_attn.extend(_sum([w[t] * v_h[t][j] for t in range(len(v_h))]) for j in range(head_dim))
            x = [a + b for a, b in zip(linear(x_attn, params[f"layer{li}.attn_wo"]), x_residual)]
            x_residual = x
            x = linear([xi.relu() for xi in linear(rmsnorm(x), params[f"layer{li}.mlp_fc1"])],
                       params[f"layer{li}.mlp_fc2"])
            x = [a + b for a, b in zip(x, x_residual)]
        losses.append(-softmax(linear(x, params["lm_head"]))[tokens[pos + 1]].log())
    return _sum(losses) * (1.0 / n)


def scalar_adam(params, m, v, step, steps, lr=0.01):
    """microgpt's Adam step over the flat list of parameter Values (step from 0)."""
    lr_t = lr * (1 - step / steps)
    b1, b2 = BETAS
    for i, p in enumerate(params):
        m[i] = b1 * m[i] + (1 - b1) * p.grad
        v[i] = b2 * v[i] + (1 - b2) * p.grad ** 2
        m_hat = m[i] / (1 - b1 ** (step + 1))
        v_hat = v[i] / (1 - b2 ** (step + 1))
        p.data -= lr_t * m_hat / (v_hat ** 0.5 + EPS)
        p.grad = 0.0


# -- training and sampling ------------------------------------------------------------
def batches(model, docs, batch_size, start=0):
    """Endless (X, Y) batches (B, n, vocab) of one-hot rows: docs in order,
    cycling; with batch_size > 1 names are grouped by length n (a name joins
    the bucket of its length; a full bucket is the next batch). ``start``
    skips the batches of that many earlier steps. A batch's rows come from
    one lookup of its (B, n + 1) windows (``GPT.rows``)."""
    buckets, k, made = {}, 0, 0
    while True:
        window = model.window(docs[k % len(docs)])
        k += 1
        bucket = buckets.setdefault(len(window), [])
        bucket.append(window)
        if len(bucket) == batch_size:
            buckets[len(window)] = []
            made += 1
            if made > start:
                yield model.rows(np.array(bucket))


def train(model, docs, steps, *, lr=0.01, batch_size=1, replay=True, progress=True, optimizer=None, start=0,
          stats=None):
    """Train ``model`` for steps ``start .. steps - 1`` and return each step's
    mean loss. Step k uses Adam (``optimizer``, else a new one with microgpt's
    betas) at lr * (1 - k / steps) on one name, ``docs[k % len(docs)]``, or
    with batch_size B > 1 on B names of one length (see ``batches``), their
    gradients averaged. replay=True replays one captured tape per length
    (``model.tapes``, batched with ``Tape.batch``); replay=False builds,
    back-propagates and frees each name's graph. A ``stats`` dict receives
    names, nodes (what the names' graphs hold besides the parameters: ops,
    constants, one-hot inputs) and seconds."""
    from tqdm import tqdm
    steps, batch_size = _check_size(steps, "steps"), _check_size(batch_size, "batch_size")
    if isinstance(docs, str) or not docs or not all(isinstance(d, str) for d in docs):
        raise ValueError("docs must be a non-empty list of names (str)")
    for d in docs:
        model.encode(d)  # every character must be known before anything changes
    if not 0 <= start <= steps:
        raise ValueError(f"start must lie in [0, steps], got {start}")
    opt = optim.Adam(model, lr=lr, betas=BETAS, eps=EPS) if optimizer is None else optimizer
    data = batches(model, docs, batch_size, start)
    arena, out, names, nodes = model.arena, [], 0, 0
    bar = tqdm(range(start, steps), desc="gpt", unit="step", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        X, Y = next(data)
        model.zero_grad()
        if replay:
            tape = model.tapes.tape(X, Y, batched=True)
            out.append(tape(X[0], Y[0], backward=True) if batch_size == 1 else float(tape.batch(X, Y).mean()))
            nodes += (tape.nodes - tape.parameters) * len(X)
        else:
            live = arena.live
            graphs = [model.loss(leaves(x, arena), leaves(y, arena)) for x, y in zip(X, Y)]
            loss = graphs[0] if len(graphs) == 1 else Vector(graphs).mean()
            nodes += arena.live - live
            loss.backward()
            out.append(loss.data)
            del graphs, loss  # frees the step's graph
        opt.lr = lr * (1 - step / steps)
        opt.step()
        names += len(X)
        if progress and (step - start) % 10 == 0:
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{out[-1]:.3f}", names_s=f"{names / dt:,.0f}", nodes_s=f"{nodes / dt / 1e6:.0f}M")
    if stats is not None:
        stats.update(names=names, nodes=nodes, seconds=time.perf_counter() - t0)
    return out


def sample(model, n, temperature=0.5, seed=0):
    """n generated names: from BOS, draw each next character from
    softmax(logits / temperature) until BOS or block_size characters.
    Inference in numpy from the parameter values: no graph, no nodes."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    rng = np.random.default_rng(seed)
    names = []
    for _ in range(n):
        tokens = [model.bos]
        for _ in range(model.block_size):
            z = model.logits(tokens)[-1] / temperature
            p = np.exp(z - z.max())
            token = int(rng.choice(model.vocab, p=p / p.sum()))
            if token == model.bos:
                break
            tokens.append(token)
        names.append("".join(model.chars[t] for t in tokens[1:]))
    return names


# -- checkpoints and the command ------------------------------------------------------
def save(path, model, opt, step):
    """Weights, vocabulary, Adam state and the step, written atomically (.npz)."""
    arrays = {f"state/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in opt.state_dict().items()})
    arrays.update(format=np.array(FORMAT), chars=np.array("".join(model.chars)), step=np.array(step),
                  n_head=np.array(model.n_head))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path, docs_chars=None):
    """(model, Adam state dict, step) from a checkpoint written by ``save``."""
    with np.load(path, allow_pickle=False) as d:
        if "format" not in d.files or str(d["format"]) != FORMAT:
            raise ValueError(f"{path} is not a crad GPT checkpoint ({FORMAT})")
        chars = list(str(d["chars"]))
        if docs_chars is not None and chars != list(docs_chars):
            raise ValueError(f"{path} was trained on another vocabulary ({''.join(chars)!r})")
        state = {k[6:]: d[k] for k in d.files if k.startswith("state/")}
        opt_state = {k[4:]: d[k] for k in d.files if k.startswith("opt/")}
        return GPT.from_state(state, chars, int(d["n_head"])), opt_state, int(d["step"])


def parse(argv):
    ap = argparse.ArgumentParser(prog="gpt", description=__doc__.split("\n\n")[0], epilog=(
        "--batch-size B > 1 groups names of equal length and replays B of them at once (Tape.batch), "
        "averaging their gradients: that optimises differently from microgpt's one name per step."))
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000, as microgpt)")
    ap.add_argument("--batch-size", type=int, default=1, help="names per step (default 1, as microgpt)")
    ap.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate, decayed linearly (default 0.01)")
    ap.add_argument("--seed", type=int, default=0, help="initial weights, order of the names, sampling")
    ap.add_argument("--data-dir", default=None, help="data root holding names/ (default $CRAD_DATA_DIR or "
                                                     "~/.cache/crad)")
    ap.add_argument("--samples", type=int, default=20, help="names to sample after training (default 20)")
    ap.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (default 0.5)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild every name's graph instead of replaying")
    ap.add_argument("--checkpoint", default="", help="write weights and Adam state here after training, "
                                                     "to --resume from (default: none; a run takes seconds)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--plot", metavar="PATH", help="write the loss curve and the sampled names to this PNG "
                    "(needs crad[plot])")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    plots.ensure(args.plot)
    from crad.datasets import load_names
    docs = load_names(args.data_dir)
    chars = sorted(set("".join(docs)))
    docs = [docs[i] for i in np.random.default_rng(args.seed).permutation(len(docs))]  # as microgpt shuffles
    start, opt_state = 0, None
    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):
        model, opt_state, start = load(args.checkpoint, chars)
        print(f"resumed from {args.checkpoint} after step {start}")
    else:
        model = GPT(chars, seed=args.seed)
    opt = optim.Adam(model, lr=args.lr, betas=BETAS, eps=EPS)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    print(f"{len(docs):,} names; {model}")
    st = {}
    losses = train(model, docs, args.steps, lr=args.lr, batch_size=args.batch_size, replay=not args.rebuild,
                   progress=not args.no_progress, optimizer=opt, start=start, stats=st)
    if losses:
        print(f"final loss {losses[-1]:.4f} (mean of the last {min(50, len(losses))} steps "
              f"{np.mean(losses[-50:]):.4f}); {st['names'] / st['seconds']:,.0f} names/s, "
              f"{st['nodes'] / st['names']:,.0f} nodes per name, {len(model.tapes)} tapes")
    if args.checkpoint:
        save(args.checkpoint, model, opt, args.steps)
    names = sample(model, args.samples, args.temperature, args.seed)
    print("samples: " + ", ".join(names))
    if args.plot and losses:
        plots.training_curve(args.plot, losses, samples=names, title=f"microgpt on names, {model.num_parameters:,} "
                             f"parameters, batch {args.batch_size}")
        print(f"loss curve written to {args.plot}")
    return losses
