"""Optimizer updates and zero_grad over runs of parameter slots."""
import numpy as np
from numba import prange

from .._config import njit
from .layout import DATA, GRAD


def runs(ids):
    """ids (int32, (n,)) as runs of consecutive slots: (slot starts, offsets
    into ids, lengths), int32 each. Parameters allocated together form one
    run, which lets the update kernels below work on contiguous memory."""
    ids = np.asarray(ids, np.int64)
    if ids.size == 0:
        return (np.empty(0, np.int32),) * 3
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    offsets = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([offsets, [ids.size]]))
    return ids[offsets].astype(np.int32), offsets.astype(np.int32), lengths.astype(np.int32)


@njit
def zero_grad_runs(F, starts, lengths):
    """grad = 0 over runs of slots (int32 (k,) starts and lengths)."""
    for k in range(starts.shape[0]):
        F[GRAD, starts[k]:starts[k] + lengths[k]] = 0.0


# The update kernels loop over 1-D views of each run: with that simple
# addressing LLVM vectorises the loop (Adam over MNIST's 39,760 parameters:
# 50 us, where indexing F per parameter gives 180 us).
@njit
def sgd_step(F, starts, offsets, lengths, lr, momentum, velocity):
    """v = momentum * v + grad; p -= lr * v (plain SGD at momentum 0), over
    runs of parameter slots (int32 (k,) each; see ``runs``). velocity:
    float64 (n,), in parameter order, updated in place."""
    for k in range(starts.shape[0]):
        s, o, n = starts[k], offsets[k], lengths[k]
        g, p, vel = F[GRAD, s:s + n], F[DATA, s:s + n], velocity[o:o + n]
        for j in range(n):
            vj = momentum * vel[j] + g[j]
            vel[j] = vj
            p[j] -= lr * vj


@njit
def _adam(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v, lo, hi):
    """Adam over parameters lo .. hi - 1 (positions in parameter order)."""
    # The bias corrections once per call, lr / c1 and 1 / sqrt(c2) (PyTorch
    # divides by sqrt(c2): a few ulp apart): one division and one square
    # root per parameter, which bound the vectorised loop (1.3 ns a
    # parameter, against 2.3 ns dividing m by c1 and v by c2; v / c2 also
    # overflowed for huge gradients, sqrt(v) * (1 / sqrt(c2)) does not).
    step = lr / (1.0 - b1 ** t)
    inv = 1.0 / np.sqrt(1.0 - b2 ** t)
    for k in range(starts.shape[0]):
        o0, o1 = max(offsets[k], lo), min(offsets[k] + lengths[k], hi)  # this run's part of lo .. hi - 1
        if o0 >= o1:
            continue
        s, n = starts[k] + o0 - offsets[k], o1 - o0
        g, p, mm, vv = F[GRAD, s:s + n], F[DATA, s:s + n], m[o0:o1], v[o0:o1]
        for j in range(n):
            gj = g[j]
            mk = b1 * mm[j] + (1.0 - b1) * gj
            vk = b2 * vv[j] + (1.0 - b2) * gj * gj
            mm[j] = mk
            vv[j] = vk
            p[j] -= step * mk / (np.sqrt(vk) * inv + eps)


@njit
def adam_step(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v):
    """Adam (Kingma & Ba) over runs of parameter slots (see ``runs``); m, v:
    float64 (n,) in parameter order, in place; t is the step number, from 1."""
    _adam(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v, 0, m.shape[0])


@njit(parallel=True)
def adam_step_parallel(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v, T):
    """adam_step with the parameters in T consecutive parts, one per thread
    (each parameter's update is the same arithmetic on any thread)."""
    n = m.shape[0]
    for part in prange(T):
        _adam(F, starts, offsets, lengths, lr, b1, b2, eps, t, m, v, part * n // T, (part + 1) * n // T)
