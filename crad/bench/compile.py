"""Compile time apart from the steady state: the same probe in fresh processes
against an empty numba cache (cold), then against the cache it filled (warm)."""
import subprocess
import sys
import tempfile

from .common import python_env

PROBE = r"""
import time
t0 = time.perf_counter()
import numpy as np
import crad
from crad import MLP, losses, optim
t1 = time.perf_counter()
a = crad.Value(2.0); b = (a * a + 1).tanh(); b.backward()
t2 = time.perf_counter()
model = MLP(784, [50, 10], init="he", seed=0); opt = optim.Adam(model)
X = np.random.rand(32, 784)
loss = losses.cross_entropy(model(X), np.zeros(32, np.int64)); loss.backward(); opt.step()
t3 = time.perf_counter()
onehot = np.eye(10)[np.zeros(32, np.int64)]
tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(X[:1]), crad.leaves(onehot[:1]))
tape.batch(X[:, None, :], onehot[:, None, :]); opt.step()
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def fresh_runs(probe):
    """[(state, CompletedProcess)]: probe run in a fresh process against an
    empty numba cache ("cold"), then against the cache it filled ("warm")."""
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(python_env(), NUMBA_CACHE_DIR=cache)
        for state in ("cold", "warm"):
            runs.append((state, subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                               env=env, cwd=cache)))
    return runs


def compile_times(quick):
    """Seconds to import, to the first gradient, to the first MNIST step and to the first batched
    replay, cold then warm. Not a comparison: crad alone, one run each."""
    rows = []
    for state, out in fresh_runs(PROBE):
        if out.returncode != 0:
            rows.append(dict(workload="compile", engine="crad", cache=state,
                             import_s=f"failed: {out.stderr[-200:]}"))
            continue
        t = [float(v) for v in out.stdout.split()]
        rows.append(dict(workload="compile", engine="crad", cache=state, import_s=t[0], first_gradient_s=t[1],
                         first_mnist_step_s=t[2], capture_and_first_replay_s=t[3]))
    return rows
