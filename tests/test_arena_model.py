"""The arena against a model under random interleavings (test_arena.py's
test_model, extended to the journal): Value ops, handle drops, retains and
releases, ``.data`` / ``.grad`` reads and writes, backward, Vector ops, and
growth from a capacity of 1. After every read the columns are compared with
the model: wiring, values, gradients and exact reference counts
(tests/crad_model.py)."""
import os
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import crad_model as cm  # noqa: E402

import crad  # noqa: E402
from crad import Value  # noqa: E402

ACTIONS = ["leaf", "add", "mul", "sub", "div", "const", "rconst", "pow", "unary", "retain", "release", "drop",
           "read", "write_data", "write_grad", "backward", "leaves", "vmap", "vsum", "vindex", "vdot", "vdrop",
           "vread", "vwrite", "big"]
steps = st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 10**6), st.integers(0, 10**6),
                           st.sampled_from([0.5, -2.0, 3, 0.0, 1e-3])), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_journal_against_the_model(acts):
    with crad.Arena(capacity=1) as a:
        vals, vecs = [], []  # (handle, model twin) pairs; each handle owns one reference per node

        def compare():  # every held node: slot, wiring, value, gradient, exact REFS; `live`
            cm.check(a, vals + vecs, exact_refs=True)
            cm.invariants(a)

        def step(act, x, y, c):  # a function: its locals (handles) die with each step
            def pick(pool, n):
                return pool[n % len(pool)]

            if act == "leaf" or (not vals and act in ("add", "mul", "sub", "div", "const", "rconst", "pow",
                                                      "unary", "retain", "release", "drop", "read", "write_data",
                                                      "write_grad", "backward")):
                vals.append((Value(c * (x % 5)), cm.leaf(c * (x % 5))))
            elif act in ("add", "mul", "sub", "div"):
                (p, mp), (q, mq) = pick(vals, x), pick(vals, y)
                f = {"add": lambda u, v: u + v, "mul": lambda u, v: u * v, "sub": lambda u, v: u - v,
                     "div": lambda u, v: u / v}[act]
                vals.append((f(p, q), f(mp, mq)))
            elif act in ("const", "rconst"):
                p, mp = pick(vals, x)
                f = [lambda u: u * c, lambda u: c - u, lambda u: u / c, lambda u: c / u][y % 4]
                vals.append((f(p), f(mp)))
            elif act == "pow":
                p, mp = pick(vals, x)
                vals.append((p ** c, mp ** c))
            elif act == "unary":
                p, mp = pick(vals, x)
                name = ["relu", "exp", "log", "tanh"][y % 4]
                vals.append((getattr(p, name)(), getattr(mp, name)()))
            elif act == "retain":
                p, mp = pick(vals, x)
                vals.append((p.retain(), mp))
            elif act == "release":
                p, _ = vals.pop(x % len(vals))
                p.release()
                compare()  # release applies at once
            elif act == "drop":
                vals.pop(x % len(vals))
            elif act == "read":
                p, mp = pick(vals, x)
                assert cm._close(p.data, mp.data) and cm._close(p.grad, mp.grad, mp.mag)
                compare()
            elif act == "write_data":
                p, mp = pick(vals, x)
                p.data = mp.data = float(c)
                compare()
            elif act == "write_grad":
                p, mp = pick(vals, x)
                p.grad = mp.grad = float(c)
                mp.mag = abs(c)
                compare()
            elif act == "backward":
                p, mp = pick(vals, x)
                p.backward()
                cm.backward(mp)
                compare()
            elif act == "leaves":
                xs = np.linspace(-1, 2, 1 + x % 4) * c
                vecs.append((crad.leaves(xs), cm.Vec.leaves(xs)))
            elif vecs and act == "vmap":
                (v, mv) = pick(vecs, x)
                other = [lambda: pick(vecs, y), lambda: pick(vals, y) if vals else (c, c), lambda: (c, c)][y % 3]()
                w, mw = other
                if isinstance(w, crad.Vector) and w.shape != v.shape:
                    w, mw = c, c
                f = [lambda u, z: u + z, lambda u, z: u * z, lambda u, z: u - z, lambda u, z: z - u][x % 4]
                vecs.append((f(v, w), f(mv, mw)))
            elif vecs and act == "vsum":
                v, mv = pick(vecs, x)
                vals.append((v.sum(), mv.sum()))
            elif vecs and act == "vindex":
                v, mv = pick(vecs, x)
                key = [slice(None, None, -1), [0, 0], slice(0, 0)][y % 3]
                vecs.append((v[key], mv[key]))
                if v.size:
                    vals.append((v[-1], mv[-1]))
            elif vecs and act == "vdot":
                (u, mu), (v, mv) = pick(vecs, x), pick(vecs, y)
                if u.size == v.size:
                    vals.append((crad.dot(u, v), cm.dot(mu, mv)))
            elif vecs and act == "vdrop":
                v, _ = vecs.pop(x % len(vecs))
                if y % 2:
                    v.release()
                    compare()
            elif vecs and act == "vread":
                v, mv = pick(vecs, x)
                for n, d, g in zip(mv.nodes(), v.data.reshape(-1), v.grad.reshape(-1)):
                    assert cm._close(d, n.data) and cm._close(g, n.grad, n.mag)
                compare()
            elif vecs and act == "vwrite":
                v, mv = pick(vecs, x)
                v.data = c
                for n in mv.nodes():
                    n.data = float(c)
                compare()
            elif act == "big":  # grow the arena while handles and pending records are held
                if vals:
                    p, mp = pick(vals, x)
                    vals.append((p * 1.5, mp * 1.5))  # a pending record across the growth
                big = crad.leaves(np.ones(a.capacity + 1))
                del big

        for act, x, y, c in acts:
            step(act, x, y, c)
        compare()
        vals.clear()
        vecs.clear()
        assert a.live == 0
        cm.invariants(a)
