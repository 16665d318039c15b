"""W0 (build + backward + free of a dot product) and W1 (deep chain)."""
import gc
import sys
import threading
import time

import numpy as np

import crad

from .common import Clock, installed, median_phases


def _python_w0(make, x, y, backward):
    """W0 through one Python operator per node, for any micrograd-like engine."""
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


def engines():
    """name -> W0 runner(x, y) -> phases, for what is installed."""
    out = {"crad bulk": _crad_bulk_w0}

    def facade(x, y):
        return _python_w0(crad.Value, x, y, lambda s: s.backward())
    out["crad facade"] = facade
    if installed("micrograd"):
        from micrograd.engine import Value as MG

        def micro(x, y):
            return _in_big_stack(lambda: _python_w0(MG, x, y, lambda s: s.backward()))
        out["micrograd"] = micro
    if installed("torch"):
        import torch

        def make(v):
            return torch.tensor(v, dtype=torch.float64, requires_grad=True)

        def scalar(x, y):
            return _python_w0(make, x, y, lambda s: s.backward())
        out["torch scalar"] = scalar
    return out


def w0(sizes, repeats, peer_max):
    """Rows for W0. Peers slower than crad's bulk path run up to N = peer_max."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        x, y = rng.normal(size=n), rng.normal(size=n)
        nodes = 4 * n - 1  # 2n leaves, n muls, n - 1 adds
        for name, run in engines().items():
            if name != "crad bulk" and n > peer_max:
                continue
            first = time.perf_counter()
            run(x[:8], y[:8])  # compile / warm up
            warm = time.perf_counter() - first
            ph = median_phases(lambda run=run, x=x, y=y: run(x, y), repeats if name.startswith("crad") else 1)
            total = sum(ph.values())
            rows.append(dict(workload="W0", engine=name, N=n, nodes=nodes, warmup_s=warm,
                             build_ns=ph["build"] / nodes * 1e9, backward_ns=ph["backward"] / nodes * 1e9,
                             free_ns=ph["free"] / nodes * 1e9, total_s=total, nodes_per_s=nodes / total))
    return rows


_MEMORY_PROBE = """
import gc, sys
import numpy as np
from bench.common import rss_bytes
n = {n}
rng = np.random.default_rng(1)
x, y = rng.normal(size=n), rng.normal(size=n)
engine = {engine!r}
if engine == "crad":
    import crad
    arena = crad.Arena(capacity=4 * n)  # no doubling slack; np.zeros maps pages as they are touched
    make = None
elif engine == "micrograd":
    from micrograd.engine import Value as make
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


def w0_memory(n):
    """Bytes per node for W0 at size n: RSS growth while the graph is built,
    each engine in a fresh process (so no engine reuses another's pages)."""
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    engines = ["crad"] + [e for e, mod in (("micrograd", "micrograd"), ("torch scalar", "torch")) if installed(mod)]
    rows = []
    for e in engines:
        code = _MEMORY_PROBE.format(n=n, engine=e)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                             env=dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", "")))
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


def w1(depths):
    """W1: which engines survive a deep chain, and how long it takes."""
    rows = []
    runs = {"crad facade": crad.Value}
    if installed("micrograd"):
        from micrograd.engine import Value as MG
        runs["micrograd"] = MG
    if installed("torch"):
        import torch
        runs["torch scalar"] = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)
    for depth in depths:
        for name, make in runs.items():
            c = Clock()
            try:
                x, y = _chain(make, depth)
                c.lap("build")
                y.backward()
                c.lap("backward")
                del x, y
                gc.collect()
                c.lap("free")
                status = "ok"
            except RecursionError:
                status = f"RecursionError (limit {sys.getrecursionlimit()})"
            rows.append(dict(workload="W1", engine=name, depth=depth, nodes=5 * depth + 1, status=status,
                             total_s=sum(c.phases.values()) if status == "ok" else None))
            gc.collect()
    return rows
