"""Optimizers: jitted updates over the parameter slots, state as numpy arrays."""
import math
import numbers

import numpy as np

from . import kernels as K
from . import threads


def _params(params):
    """(Vector, int32 ids) of a Module or a Vector of parameters."""
    from .vector import Vector
    if hasattr(params, "parameters"):
        params = params.parameters()
    if not isinstance(params, Vector):
        raise TypeError(f"optimizers take a Module or a Vector of parameters, not {type(params).__name__}")
    return params, np.ascontiguousarray(params._slots()[1].reshape(-1))


def _number(x, what, lo=None, hi=None, lo_open=False):
    """float(x), checked: a real number within [lo, hi] (lo excluded if lo_open)."""
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        raise TypeError(f"{what} must be a number, not {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi):
        bounds = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise ValueError(f"{what} must be a finite number in {bounds}, got {x!r}")
    return x


class Optimizer:
    def __init__(self, params, lr):
        self.lr = _number(lr, "lr", 0.0, lo_open=True)
        self.params, self._ids = _params(params)
        self._runs = K.runs(self._ids)

    def zero_grad(self):
        K.zero_grad_runs(self.params.arena.F, self._runs[0], self._runs[2])

    def state_dict(self):
        """The optimizer's state as a dict of numpy arrays (saveable with np.savez)."""
        return {k: np.array(v) for k, v in self._state().items()}

    def load_state_dict(self, d):
        """Restore a state_dict; checks every shape before changing anything."""
        mine = self._state()
        for k, v in mine.items():
            if k not in d or np.shape(d[k]) != np.shape(v):
                raise ValueError(f"optimizer state {k!r}: expected shape {np.shape(v)}, "
                                 f"got {None if k not in d else np.shape(d[k])}")
        for k, v in mine.items():
            if isinstance(v, np.ndarray):
                v[...] = d[k]
            else:
                setattr(self, k, type(v)(np.asarray(d[k])))


class SGD(Optimizer):
    """p -= lr * v with v = momentum * v + grad (plain SGD at momentum 0)."""

    def __init__(self, params, lr=0.01, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = _number(momentum, "momentum")
        self.velocity = np.zeros(self._ids.size)

    def step(self):
        K.sgd_step(self.params.arena.F, *self._runs, self.lr, self.momentum, self.velocity)

    def _state(self):
        return {"velocity": self.velocity}


class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba, 2015)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, not {betas!r}")
        self.b1, self.b2 = (_number(b, "each beta", 0.0, 1.0) for b in betas)
        if self.b1 == 1.0 or self.b2 == 1.0:
            raise ValueError("betas must be below 1 (bias correction divides by 1 - beta ** t)")
        self.eps = _number(eps, "eps", 0.0)
        self.t = 0
        self.m = np.zeros(self._ids.size)
        self.v = np.zeros(self._ids.size)
        self._pace = threads.Pace()

    def step(self):
        self.t += 1
        T = threads.update_threads(self.m.size)
        args = (self.params.arena.F, *self._runs, self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v)
        if T == 1:
            K.adam_step(*args)
        else:  # the same bits either way: Pace picks the faster
            self._pace.run(K.adam_step_parallel, K.adam_step, lambda wide: args + (T,) if wide else args, self.m.size)

    def _state(self):
        return {"m": self.m, "v": self.v, "t": self.t}
