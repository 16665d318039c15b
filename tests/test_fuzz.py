"""A hypothesis state machine over crad's public API, checked against a model.

Rules build Values and Vectors (leaves, operators with constants and numpy
scalars, slices including empty ones, fancy indexing, reshapes, broadcasting,
sums and means over axes, dot), copy, retain, release and drop handles, run
backward, read and write ``.data`` / ``.grad``, capture and replay tapes
(single replays and batches, leaf roots included), train a small MLP with SGD
and Adam, and nest arenas. After every step the arena is checked against the
plain-Python model (tests/crad_model.py): ``live`` equals the nodes reachable
from what the machine holds, every held node is wired as modelled with the
modelled value and gradient, and the column invariants hold.

The machine runs in a subprocess, so that a crash of the interpreter fails
the test instead of killing pytest. CRAD_FUZZ_EXAMPLES sets the number of
examples (default 50, under a minute here; try 2000 locally).
"""
import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

sys.path.insert(0, os.path.dirname(__file__))
import crad_model as cm  # noqa: E402

import crad  # noqa: E402
from crad import StaleValueError, Value, Vector, optim  # noqa: E402

NUMBERS = st.one_of(st.floats(-3, 3, allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, -1.0, 2, -3, np.float64(0.5),
                                                                       np.int64(2), np.float32(1.5), float("nan"),
                                                                       float("inf"), -float("inf"), 1e300]))
EXPONENTS = st.sampled_from([2.0, -1.0, 0.5, 3, 0.0, -2, np.float64(1.5)])
SMALL = st.floats(-2, 2, allow_nan=False, width=64)
BINARY = ["+", "-", "*", "/"]
UNARY = ["relu", "exp", "log", "tanh", "neg"]


def binop(op, x, y):
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    return x / y


def unop(op, x):
    return -x if op == "neg" else getattr(x, op)()


# Functions a tape records, applied to the crad objects and to the model alike.
def _f_dot(x, w):
    return (((x * w).sum() + 0.5) * (x - w).tanh().sum()).relu()


def _f_mean(x, w):
    return ((x * w[0]).exp().mean() - w.sum()) ** 2


def _f_param_root(x, w):
    return w[0]  # a parameter as the root: a leaf-root tape


def _f_input_root(x, w):
    return x[1]  # an input as the root


TAPE_FNS = [_f_dot, _f_mean, _f_param_root, _f_input_root]


class CradMachine(RuleBasedStateMachine):
    @initialize(cap=st.sampled_from([1, 4, 64]))
    def start(self, cap):
        self.arena = crad.Arena(capacity=cap)
        self.arena.__enter__()
        self.values = []   # (Value, Node)
        self.vectors = []  # (Vector, Vec)
        self.stale = []    # released handles
        self.tapes = []    # (Tape, model dict)
        self.mlp = None    # (MLP, [(W, b, relu) object arrays], optimizer, its model state)

    def teardown(self):
        if not hasattr(self, "arena"):
            return
        failing = sys.exc_info()[0] is not None  # a traceback holds handles: no leak check then
        a = self.arena
        self.values = self.vectors = self.tapes = self.stale = None
        self.mlp = None
        a.__exit__(None, None, None)
        if not failing:
            assert a.live == 0, f"{a.live} nodes leaked after every handle was dropped"
            cm.invariants(a)

    # -- what the machine holds, for the checks -------------------------------
    def held(self):
        h = list(self.values) + list(self.vectors)
        for _, m in self.tapes:
            h.append((None, [m["root"]] + m["inputs"] + m["w"][1].nodes()))  # fn's closure holds w
        if self.mlp is not None:
            h.append((None, self.mlp[1]["params"]))
        return h

    @invariant()
    def consistent(self):
        if hasattr(self, "arena"):
            cm.check(self.arena, self.held())
            cm.invariants(self.arena)

    def _pick(self, pool, k):
        return pool[k % len(pool)]

    # -- making nodes ------------------------------------------------------------
    @rule(x=NUMBERS)
    def value_leaf(self, x):
        self.values.append((Value(x), cm.leaf(float(x))))

    @rule(xs=st.lists(SMALL, min_size=1, max_size=6), shape2=st.booleans())
    def vector_leaves(self, xs, shape2):
        x = np.array(xs)
        if shape2 and x.size % 2 == 0:
            x = x.reshape(2, -1)
        self.vectors.append((crad.leaves(x), cm.Vec.leaves(x)))

    @precondition(lambda self: self.values)
    @rule(op=st.sampled_from(BINARY), i=st.integers(0, 99), j=st.integers(0, 99), const=st.none() | NUMBERS,
          reflected=st.booleans())
    def value_binary(self, op, i, j, const, reflected):
        (p, mp) = self._pick(self.values, i)
        if const is None:
            (q, mq) = self._pick(self.values, j)
        else:
            q = mq = const
        if reflected and const is not None:
            self.values.append((binop(op, q, p), binop(op, mq, mp)))
        else:
            self.values.append((binop(op, p, q), binop(op, mp, mq)))

    @precondition(lambda self: self.values)
    @rule(op=st.sampled_from(UNARY), i=st.integers(0, 99))
    def value_unary(self, op, i):
        p, mp = self._pick(self.values, i)
        self.values.append((unop(op, p), unop(op, mp)))

    @precondition(lambda self: self.values)
    @rule(i=st.integers(0, 99), e=EXPONENTS)
    def value_pow(self, i, e):
        p, mp = self._pick(self.values, i)
        self.values.append((p ** e, mp ** e))

    @precondition(lambda self: self.vectors)
    @rule(i=st.integers(0, 99), key=st.sampled_from(["slice", "empty", "fancy", "neg", "row", "mask", "ellipsis"]))
    def vector_index(self, i, key):
        v, mv = self._pick(self.vectors, i)
        if v.ndim == 0:
            out, mout = v[()], mv[()]
            self.values.append((out, mout))
            return
        n = v.shape[0]
        if n == 0 and key in ("fancy", "neg", "row"):
            with pytest.raises(IndexError):
                v[{"fancy": [0], "neg": -1, "row": 0}[key]]
            return
        k = {"slice": slice(0, None, 2), "empty": slice(n, n), "fancy": [n - 1, 0, n - 1], "neg": -1,
             "row": 0, "mask": np.arange(n) % 2 == 0, "ellipsis": Ellipsis}[key]
        out, mout = v[k], mv[k]
        (self.values if isinstance(out, Value) else self.vectors).append((out, mout))

    @precondition(lambda self: self.vectors)
    @rule(i=st.integers(0, 99))
    def vector_reshape(self, i):
        v, mv = self._pick(self.vectors, i)
        self.vectors.append((v.reshape(-1), mv.reshape(-1)))

    @precondition(lambda self: self.vectors)
    @rule(op=st.sampled_from(BINARY), i=st.integers(0, 99), j=st.integers(0, 99),
          kind=st.sampled_from(["vector", "value", "number", "array", "column"]), reflected=st.booleans(),
          c=NUMBERS)
    def vector_binary(self, op, i, j, kind, reflected, c):
        v, mv = self._pick(self.vectors, i)
        if kind == "vector":
            w, mw = self._pick(self.vectors, j)
        elif kind == "value":
            if not self.values:
                return
            w, mw = self._pick(self.values, j)
        elif kind == "number":
            w = mw = c
        elif kind == "array":  # broadcasts along the last axis
            w = mw = np.linspace(-1.0, 2.0, v.shape[-1] if v.ndim else 1)
        else:  # a column against a 1-d vector: an outer broadcast
            w = mw = np.array([[1.5], [-0.5]])
        try:
            mout = binop(op, mw, mv) if reflected else binop(op, mv, mw)
        except ValueError:  # shapes that do not broadcast: crad must say so, and change nothing
            before = self.arena.live
            with pytest.raises(ValueError, match="broadcast"):
                binop(op, w, v) if reflected else binop(op, v, w)
            assert self.arena.live == before
            return
        out = binop(op, w, v) if reflected else binop(op, v, w)
        assert isinstance(out, Vector) and out.shape == mout.shape
        self.vectors.append((out, mout))

    @precondition(lambda self: self.vectors)
    @rule(op=st.sampled_from(UNARY + ["pow"]), i=st.integers(0, 99), e=EXPONENTS)
    def vector_unary(self, op, i, e):
        v, mv = self._pick(self.vectors, i)
        self.vectors.append((v ** e, mv ** e) if op == "pow" else (unop(op, v), unop(op, mv)))

    @precondition(lambda self: self.vectors)
    @rule(i=st.integers(0, 99), how=st.sampled_from(["sum", "mean"]), axis=st.sampled_from([None, 0, -1]))
    def vector_reduce(self, i, how, axis):
        v, mv = self._pick(self.vectors, i)
        if v.ndim == 0 and axis is not None:
            with pytest.raises(ValueError, match="axis"):
                v.sum(axis)  # (mean raises IndexError here: test_adversarial.py)
            return
        n = v.size if axis is None else v.shape[axis]
        if how == "mean" and n == 0:
            with pytest.raises(ValueError, match="no elements"):
                v.mean(axis)
            return
        out, mout = getattr(v, how)(axis), getattr(mv, how)(axis)
        (self.values if isinstance(out, Value) else self.vectors).append((out, mout))

    @precondition(lambda self: self.vectors)
    @rule(i=st.integers(0, 99), j=st.integers(0, 99))
    def vector_dot(self, i, j):
        (u, mu), (v, mv) = self._pick(self.vectors, i), self._pick(self.vectors, j)
        if u.size != v.size:
            with pytest.raises(ValueError, match="same size"):
                crad.dot(u, v)
            return
        self.values.append((crad.dot(u, v), cm.dot(mu, mv)))

    @precondition(lambda self: self.values)
    @rule(ids=st.lists(st.integers(0, 99), min_size=1, max_size=4))
    def vector_of_values(self, ids):
        pairs = [self._pick(self.values, k) for k in ids]
        self.vectors.append((Vector([p for p, _ in pairs]), cm.Vec([m for _, m in pairs])))

    # -- handles ------------------------------------------------------------------
    @precondition(lambda self: self.values or self.vectors)
    @rule(i=st.integers(0, 99), how=st.sampled_from(["copy", "retain", "deepcopy", "pickle"]), vec=st.booleans())
    def copy_handle(self, i, how, vec):
        pool = self.vectors if vec and self.vectors else self.values or self.vectors
        h, m = self._pick(pool, i)
        if how in ("deepcopy", "pickle"):
            with pytest.raises(TypeError):
                copy.deepcopy(h) if how == "deepcopy" else pickle.dumps(h)
            return
        if isinstance(h, Vector) and h.ndim == 0:
            return  # copy.copy of a 0-d Vector gives a Value: test_adversarial.py
        c = copy.copy(h) if how == "copy" or isinstance(h, Vector) else h.retain()
        assert c is not h
        pool.append((c, m))

    @precondition(lambda self: self.values or self.vectors)
    @rule(i=st.integers(0, 99), vec=st.booleans())
    def release(self, i, vec):
        pool = self.vectors if vec and self.vectors else self.values or self.vectors
        h, _ = pool.pop(i % len(pool))
        h.release()
        self.stale.append(h)

    @precondition(lambda self: self.values or self.vectors)
    @rule(i=st.integers(0, 99), vec=st.booleans())
    def drop(self, i, vec):
        pool = self.vectors if vec and self.vectors else self.values or self.vectors
        pool.pop(i % len(pool))

    @precondition(lambda self: self.stale)
    @rule(i=st.integers(0, 99), what=st.sampled_from(["data", "op", "backward", "release", "index", "retain"]))
    def use_stale(self, i, what):
        h = self._pick(self.stale, i)
        before = self.arena.live
        with pytest.raises(StaleValueError):
            if what == "data":
                h.data
            elif what == "op":
                h * 2.0
            elif what == "backward" and isinstance(h, Value):
                h.backward()
            elif what == "release":
                h.release()
            elif what == "retain" and isinstance(h, Value):
                h.retain()
            elif isinstance(h, Vector):
                h[0:1]
            else:
                h.grad
        assert self.arena.live == before

    @rule()
    def collect(self):
        import gc
        gc.collect()

    # -- data, grad, backward -------------------------------------------------------
    @precondition(lambda self: self.values)
    @rule(i=st.integers(0, 99))
    def backward(self, i):
        p, mp = self._pick(self.values, i)
        p.backward()
        cm.backward(mp)

    @precondition(lambda self: self.values or self.vectors)
    @rule(i=st.integers(0, 99), x=NUMBERS, field=st.sampled_from(["data", "grad"]), vec=st.booleans())
    def write(self, i, x, field, vec):
        pool = self.vectors if vec and self.vectors else self.values or self.vectors
        h, m = self._pick(pool, i)
        setattr(h, field, x)
        for n in cm.model_nodes(m):
            setattr(n, field, float(x))
            if field == "grad":
                n.mag = abs(float(x))

    @precondition(lambda self: self.vectors)
    @rule(i=st.integers(0, 99))
    def write_array(self, i):
        v, mv = self._pick(self.vectors, i)
        if v.ndim == 0:
            return  # .data of a 0-d Vector raises ValueError: test_adversarial.py
        x = np.arange(v.size, dtype=np.float64).reshape(v.shape) - 1.5
        v.data = x
        for n, val in zip(mv.nodes(), x.reshape(-1)):
            n.data = float(val)
        with pytest.raises((ValueError, TypeError)):
            v.data = np.zeros(v.size + 1)
        d = v.data
        with pytest.raises(ValueError):
            d[...] = 1.0  # read-only: a write to a copy must not pass silently

    @precondition(lambda self: self.values or self.vectors)
    @rule(i=st.integers(0, 99), vec=st.booleans())
    def read(self, i, vec):
        pool = self.vectors if vec and self.vectors else self.values or self.vectors
        h, m = self._pick(pool, i)
        if isinstance(h, Vector) and h.ndim == 0:
            return  # .data of a 0-d Vector raises ValueError: test_adversarial.py
        d, g = np.asarray(h.data, float).reshape(-1), np.asarray(h.grad, float).reshape(-1)
        for n, x, y in zip(cm.model_nodes(m), d, g):
            assert cm._close(x, n.data) and cm._close(y, n.grad, n.mag)

    # -- tapes ------------------------------------------------------------------------
    @precondition(lambda self: len(self.tapes) < 3)
    @rule(fn=st.sampled_from(TAPE_FNS), xs=st.lists(SMALL, min_size=3, max_size=3),
          ws=st.lists(SMALL, min_size=3, max_size=3))
    def capture(self, fn, xs, ws):
        w, mw = crad.leaves(ws), cm.Vec.leaves(ws)  # the parameters: held by the tape's graph only
        x, mx = crad.leaves(xs), cm.Vec.leaves(xs)
        before = next(cm._keys)
        tape = crad.capture(lambda x: fn(x, w), x)
        mroot = fn(mx, mw)
        nodes = cm.reachable([mroot])
        inputs = mx.nodes()
        in_keys = {n.key for n in inputs}
        consts = [n for n in nodes.values() if n.op == cm.LEAF and n.key > before and n.key not in in_keys]
        params = [n for n in nodes.values() if n.op == cm.LEAF and n.key < before and n.key not in in_keys]
        self.tapes.append((tape, dict(root=mroot, inputs=inputs, consts=consts, params=params, w=(w, mw),
                                      x=(x, mx), nodes=sorted(nodes.values(), key=lambda n: n.key))))
        if fn in (_f_param_root, _f_input_root):
            return
        self.vectors.append((x, mx))  # hold the inputs too: the tape retains them

    @precondition(lambda self: self.tapes)
    @rule(i=st.integers(0, 99), xs=st.lists(SMALL, min_size=3, max_size=3))
    def replay(self, i, xs):
        tape, m = self._pick(self.tapes, i)
        got = tape(np.array(xs), backward=True)
        for n, x in zip(m["inputs"], xs):
            n.data = float(x)
        computed = [n for n in m["nodes"] if n.op != cm.LEAF]
        for n in computed:
            n.data = cm.forward(n.op, n.l.data, n.r.data if n.r is not None else 0.0, n.c)
            n.grad, n.mag = 0.0, 0.0
        for n in m["inputs"] + m["consts"]:
            n.grad, n.mag = 0.0, 0.0
        m["root"].grad, m["root"].mag = 1.0, 1.0
        cm.apply_rules(computed[::-1])
        assert cm._close(got, m["root"].data)

    @precondition(lambda self: self.tapes)
    @rule(i=st.integers(0, 99), B=st.integers(1, 4), reduction=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 9))
    def batch(self, i, B, reduction, seed):
        tape, m = self._pick(self.tapes, i)
        X = np.random.default_rng(seed).uniform(-1, 1, (B, 3))
        got = tape.batch(X, reduction=reduction)
        # per sample, on copies of the model's values: the arena's node values stay as they were
        want, pgrad = [], {n.key: 0.0 for n in m["params"]}
        for b in range(B):
            val, grad = {}, {}
            for n in m["nodes"]:
                if n.op == cm.LEAF:
                    val[n.key] = float(X[b, m["inputs"].index(n)]) if n in m["inputs"] else n.data
                else:
                    val[n.key] = cm.forward(n.op, val[n.l.key], val[n.r.key] if n.r is not None else 0.0, n.c)
                grad[n.key] = 0.0
            want.append(val[m["root"].key])
            grad[m["root"].key] = 1.0
            for n in reversed(m["nodes"]):
                if n.op == cm.LEAF:
                    continue
                gx, gy = cm.local_grads(n.op, val[n.l.key], val[n.r.key] if n.r is not None else 0.0, n.c,
                                        val[n.key], grad[n.key])
                grad[n.l.key] += gx
                if n.r is not None:
                    grad[n.r.key] += gy
            for n in m["params"]:
                pgrad[n.key] += grad[n.key]
        scale = 1.0 / B if reduction == "mean" else 1.0
        for n in m["params"]:
            n.grad = float(n.grad + scale * pgrad[n.key])
            n.mag += abs(scale * pgrad[n.key]) + 1.0
        assert got.shape == (B,)
        for g, w in zip(got, want):
            assert cm._close(g, w)

    @precondition(lambda self: self.tapes)
    @rule(i=st.integers(0, 99))
    def release_tape(self, i):
        tape, m = self.tapes.pop(i % len(self.tapes))
        tape.release()
        with pytest.raises(StaleValueError):
            tape(np.zeros(3))

    @precondition(lambda self: self.tapes)
    @rule(i=st.integers(0, 99))
    def bad_tape_input(self, i):
        tape, m = self._pick(self.tapes, i)
        before = [n.data for n in m["inputs"]]
        with pytest.raises((ValueError, TypeError)):
            tape(np.zeros(4))
        with pytest.raises(ValueError):
            tape.batch(np.zeros((0, 3)))
        assert [n.data for n in m["inputs"]] == before

    # -- a small MLP and its optimizer -------------------------------------------
    @precondition(lambda self: self.mlp is None)
    @rule(seed=st.integers(0, 9), adam=st.booleans(), momentum=st.sampled_from([0.0, 0.9]))
    def make_mlp(self, seed, adam, momentum):
        model = crad.MLP(2, [3, 1], seed=seed)
        layers = []
        for lay in model.layers:
            W = np.empty(lay.W.shape, object)
            for idx, x in np.ndenumerate(lay.W.data):
                W[idx] = cm.leaf(x)
            b = np.array([cm.leaf(x) for x in lay.b.data], object)
            layers.append((W, b, lay.nonlin))
        params = [n for W, b, _ in layers for j in range(W.shape[0]) for n in list(W[j]) + [b[j]]]
        opt = optim.Adam(model, lr=0.01) if adam else optim.SGD(model, lr=0.05, momentum=momentum)
        state = dict(params=params, layers=layers, adam=adam, momentum=momentum, t=0,
                     m=np.zeros(len(params)), v=np.zeros(len(params)))
        self.mlp = (model, state, opt)

    @precondition(lambda self: self.mlp is not None)
    @rule(seed=st.integers(0, 9), B=st.integers(1, 3))
    def train_step(self, seed, B):
        model, s, opt = self.mlp
        X = np.random.default_rng(seed).uniform(-1, 1, (B, 2))
        y = (X ** 2).sum(axis=1, keepdims=True)
        loss = crad.losses.mse(model(X), y)
        mX = cm.Vec.leaves(X).n
        for W, b, relu in s["layers"]:
            mX = cm.layer(W, b, mX, relu)
        mloss = (cm.Vec(mX) - y) ** 2
        mloss = mloss.mean()
        model.zero_grad()
        for n in s["params"]:
            n.grad, n.mag = 0.0, 0.0
        loss.backward()
        cm.backward(mloss)
        cm.check(self.arena, self.held() + [(loss, mloss)])
        opt.step()
        g = np.array([n.grad for n in s["params"]])
        p = np.array([n.data for n in s["params"]])
        if s["adam"]:
            s["t"] += 1
            b1, b2 = 0.9, 0.999
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g * g
            p = p - 0.01 * (s["m"] / (1 - b1 ** s["t"])) / (np.sqrt(s["v"] / (1 - b2 ** s["t"])) + 1e-8)
        else:
            s["v"] = s["momentum"] * s["v"] + g
            p = p - 0.05 * s["v"]
        got = model.parameters().data
        np.testing.assert_allclose(got, p, rtol=1e-9, atol=1e-12)
        for n, x in zip(s["params"], got):
            n.data = float(x)  # adopt the checked values: tiny differences must not compound
        np.testing.assert_allclose(model.predict(X), model_predict(s, X), rtol=1e-9, atol=1e-12)

    @precondition(lambda self: self.mlp is not None)
    @rule()
    def drop_mlp(self):
        self.mlp = None

    # -- nested arenas ------------------------------------------------------------
    @precondition(lambda self: self.values)
    @rule(i=st.integers(0, 99), x=SMALL)
    def nested_arena(self, i, x):
        p, _ = self._pick(self.values, i)
        outer = self.arena.live
        with crad.Arena(capacity=2) as inner:
            assert crad.current_arena() is inner
            q = (Value(x) * 2.0).exp()
            v = crad.leaves([x, 1.0]) + q
            with pytest.raises(ValueError, match="different arenas"):
                p + q
            with pytest.raises(ValueError, match="different arenas"):
                v * p
            assert inner.live == 4 + 4  # q: leaf, constant, mul, exp; v: two leaves, two adds
            del q, v
            assert inner.live == 0
        assert crad.current_arena() is self.arena and self.arena.live == outer


def model_predict(s, X):
    out = X
    for W, b, relu in s["layers"]:
        Wv = np.vectorize(lambda n: n.data, otypes=[float])(W)
        bv = np.array([n.data for n in b])
        out = out @ Wv.T + bv
        if relu:
            out = np.maximum(out, 0.0)
    return out


def run(examples):
    settings_ = settings(max_examples=examples, stateful_step_count=40, deadline=None, derandomize=False,
                         suppress_health_check=list(HealthCheck), print_blob=True)
    from hypothesis.stateful import run_state_machine_as_test
    run_state_machine_as_test(CradMachine, settings=settings_)


def test_fuzz_public_api_in_a_subprocess():
    """The machine, in a fresh interpreter: a segfault is a failure, not a dead pytest."""
    examples = os.environ.get("CRAD_FUZZ_EXAMPLES", "50")
    proc = subprocess.run([sys.executable, __file__, examples], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=1800)
    assert proc.returncode == 0, (f"fuzz run exited with {proc.returncode} (a negative code is a signal: "
                                  f"the interpreter crashed)\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    assert "fuzz ok" in proc.stdout


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
    print("fuzz ok")
