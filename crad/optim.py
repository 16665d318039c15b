"""Optimizers: jitted updates over the parameter slots, state as numpy arrays."""
import numpy as np

from . import kernels as K


def _params(params):
    """(Vector, int32 ids) of a Module or a Vector of parameters."""
    from .vector import Vector
    if hasattr(params, "parameters"):
        params = params.parameters()
    if not isinstance(params, Vector):
        raise TypeError(f"optimizers take a Module or a Vector of parameters, not {type(params).__name__}")
    return params, np.ascontiguousarray(params._slots()[1].reshape(-1))


class Optimizer:
    def __init__(self, params, lr):
        self.params, self._ids = _params(params)
        self._runs = K.runs(self._ids)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr = float(lr)

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
        self.momentum = float(momentum)
        self.velocity = np.zeros(self._ids.size)

    def step(self):
        K.sgd_step(self.params.arena.F, *self._runs, self.lr, self.momentum, self.velocity)

    def _state(self):
        return {"velocity": self.velocity}


class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba, 2015)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.t = 0
        self.m = np.zeros(self._ids.size)
        self.v = np.zeros(self._ids.size)

    def step(self):
        self.t += 1
        K.adam_step(self.params.arena.F, *self._runs, self.lr, self.b1, self.b2, self.eps, self.t,
                    self.m, self.v)

    def _state(self):
        return {"m": self.m, "v": self.v, "t": self.t}
