"""W0 (build + backward + free of a dot product), its memory per node, and W1 (a deep chain)."""
import gc
import subprocess
import sys
import threading
import time

import numpy as np

import crad

from . import common
from .common import Clock, installed, interleave, repeat_for, summarize
from .pyvalue import Value as PyValue


def _python_w0(make, x, y, backward, settle=None):
    """W0 through one Python operator per node, for any micrograd-like engine.
    settle: what the engine must still do for the free to be complete (crad's
    facade applies the releases its handles queued when the arena is next read)."""
    c = Clock()
    a = [make(v) for v in x]
    b = [make(v) for v in y]
    s = a[0] * b[0]
    for i in range(1, len(a)):
        s = s + a[i] * b[i]
    c.lap("build")
    backward(s)
    c.lap("backward")
    del s, a, b
    gc.collect()  # micrograd's closures form cycles: only the collector frees them
    if settle is not None:
        settle()
    c.lap("free")
    return c.phases


def _crad_bulk_w0(x, y):
    c = Clock()
    u, v = crad.leaves(x), crad.leaves(y)
    s = crad.dot(u, v)
    c.lap("build")
    s.backward()
    c.lap("backward")
    del s, u, v
    c.lap("free")
    return c.phases


def _in_big_stack(fn):
    """Run fn in a thread with a 1 GiB stack and a high recursion limit.

    micrograd's recursive topological sort needs this for W0's N-deep chain of
    adds; without it micrograd cannot run W0 beyond N ~ 300 at all."""
    result = {}
    old_limit, old_size = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(10**7)
    threading.stack_size(1 << 30)
    try:
        t = threading.Thread(target=lambda: result.update(out=fn()))
        t.start()
        t.join()
    finally:
        threading.stack_size(old_size)
        sys.setrecursionlimit(old_limit)
    return result["out"]


def _torch_leaf():
    """A maker of PyTorch scalar leaves (float64, requiring grad)."""
    torch = common.torch()
    return lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)


def engines():
    """name -> W0 runner(x, y) -> phases, for what is installed."""
    def backward(s):
        s.backward()
    out = {"crad bulk": _crad_bulk_w0,
           "crad facade": lambda x, y: _python_w0(crad.Value, x, y, backward, lambda: crad.current_arena().live),
           "python Value": lambda x, y: _python_w0(PyValue, x, y, backward)}
    if installed("micrograd"):
        from micrograd.engine import Value as MG
        out["micrograd"] = lambda x, y: _in_big_stack(lambda: _python_w0(MG, x, y, backward))
    if installed("torch"):
        leaf = _torch_leaf()
        out["torch scalar"] = lambda x, y: _python_w0(leaf, x, y, backward)
    return out


def w0(quick):
    """W0 rows: the engines interleaved at each size (quick: N = 10^4 only); ratios of nodes/s."""
    return [row for n in ([10**4] if quick else [10**4, 10**5, 10**6]) for row in _w0_at(n, engines())]


def _w0_at(n, runners):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n)
    nodes = 4 * n - 1  # 2n leaves, n muls, n - 1 adds
    measures, warmup = {}, {}
    for name, run in runners.items():
        t = time.perf_counter()
        run(x[:8], y[:8])  # compile / warm up
        warmup[name] = time.perf_counter() - t

        def measure(run=run):
            ph = repeat_for(lambda: run(x, y))
            total = sum(ph.values())
            return dict(build_ns=ph["build"] / nodes * 1e9, backward_ns=ph["backward"] / nodes * 1e9,
                        free_ns=ph["free"] / nodes * 1e9, total_s=total, nodes_per_s=nodes / total)
        measures[name] = measure
    rows = summarize(interleave(measures, common.ROUNDS), "nodes_per_s", workload="W0", N=n, nodes=nodes)
    for r in rows:
        r["warmup_s"] = warmup[r["engine"]]
    return rows


_MEMORY_PROBE = """
import gc, sys
import numpy as np
from crad.bench.common import rss_bytes
n = {n}
rng = np.random.default_rng(1)
x, y = rng.normal(size=n), rng.normal(size=n)
engine = {engine!r}
if engine == "crad":
    import crad
    arena = crad.Arena(capacity=4 * n)  # no doubling slack; np.zeros maps pages as they are touched
elif engine == "micrograd":
    from micrograd.engine import Value as make
elif engine == "python Value":
    from crad.bench.pyvalue import Value as make
else:
    import torch
    make = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)
def build(x, y):
    if engine == "crad":
        return crad.dot(crad.leaves(x, arena=arena), crad.leaves(y, arena=arena))
    a = [make(v) for v in x]; b = [make(v) for v in y]
    s = a[0] * b[0]
    for i in range(1, len(a)):
        s = s + a[i] * b[i]
    return s, a, b
warm = build(x[:10], y[:10])  # load compiled code and caches before measuring
gc.collect(); gc.disable()
before = rss_bytes()
graph = build(x, y)
grown = rss_bytes() - before
print(grown / (4 * n - 1))
"""


def w0_memory(quick):
    """Bytes per node for W0: RSS growth while the graph is built, each engine in a fresh
    process (so no engine reuses another's pages). Not a timing: no rounds."""
    n = 10**5 if quick else 10**6
    engines = ["crad", "python Value"] + [e for e, mod in (("micrograd", "micrograd"), ("torch scalar", "torch"))
                                          if installed(mod)]
    rows = []
    for e in engines:
        code = _MEMORY_PROBE.format(n=n, engine=e)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=common.python_env())
        value = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else f"failed: {out.stderr[-200:]}"
        rows.append(dict(workload="W0 memory", engine=e, N=n, nodes=4 * n - 1, bytes_per_node=value))
    rows[0]["arena_bytes_per_slot"] = crad.Arena(capacity=1).bytes_per_node
    return rows


def _chain(make, depth):
    x = make(0.5)
    y = x
    for _ in range(depth):
        y = (y * 1.0001 + 0.001).relu()
    return x, y


def w1(quick):
    """W1: which engines survive a deep chain (build, backward, free), and how long it takes."""
    makers = {"crad facade": crad.Value, "python Value": PyValue}
    if installed("micrograd"):
        from micrograd.engine import Value as MG
        makers["micrograd"] = MG
    if installed("torch"):
        makers["torch scalar"] = _torch_leaf()
    rows = []
    for depth in [10**4, 10**5] if quick else [10**5, 10**6]:
        samples = interleave({name: lambda make=make, depth=depth: _chain_run(make, depth)
                              for name, make in makers.items()}, common.ROUNDS)
        rows += summarize(samples, "total_s", higher_is_better=False, workload="W1", depth=depth, nodes=5 * depth + 1)
    return rows


def _chain_run(make, depth):
    c = Clock()
    try:
        x, y = _chain(make, depth)
        c.lap("build")
        y.backward()
        c.lap("backward")
        del x, y
        gc.collect()
        if make is crad.Value:
            crad.current_arena().columns()  # the releases crad's handles queued
        c.lap("free")
    except RecursionError:
        gc.collect()
        return dict(status=f"RecursionError (limit {sys.getrecursionlimit()})", total_s=None)
    return dict(status="ok", total_s=sum(c.phases.values()))
