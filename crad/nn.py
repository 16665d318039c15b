"""Neuron, Layer and MLP with micrograd's semantics, plus a batched forward.

Two forward paths build the same graph:

- ``model([Value or number, ...])``: micrograd's idiom, one Python operator
  per node (each neuron is ``b + w0*x0 + w1*x1 + ...``, then ReLU).
- ``model(X)`` with a numpy array or Vector of shape (B, nin): the same nodes
  for all B samples, one kernel call per layer. Returns a Vector (B, nout).

Initialisation (``init=``): ``"micrograd"`` draws weights from U(-1, 1) and
zero biases, as micrograd does; ``"he"`` draws from U(-sqrt(6/nin),
sqrt(6/nin)), which keeps ReLU activations in range for wide inputs (MNIST).
Pass ``seed=`` or ``rng=`` (a numpy Generator) for reproducible weights.
"""
import os
import tempfile

import numpy as np

from . import anomaly
from . import kernels as K
from .arena import arena_arg
from .value import Value
from .vector import Vector, leaves

FORMAT = "crad-mlp-1"


class CheckpointError(ValueError):
    """A model file is unreadable, corrupt, or does not match the model."""


def _rng(seed, rng):
    if rng is not None and seed is not None:
        raise ValueError("pass seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _init_weights(rng, init, nout, nin):
    if init == "micrograd":
        bound = 1.0
    elif init == "he":
        bound = np.sqrt(6.0 / nin)
    else:
        raise ValueError(f"init must be 'micrograd' or 'he', not {init!r}")
    return rng.uniform(-bound, bound, size=(nout, nin))


def _check_size(n, what):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return int(n)


class Module:
    """Base of the nn modules: parameters live in the arena, owned here."""

    def parameters(self):
        """All parameters as a Vector (micrograd's order: each neuron's w, then b)."""
        a, ids = self.arena, self._param_ids()
        K.retain_many(a.columns()[1], ids)
        return Vector._adopt(a, ids.copy())

    def zero_grad(self):
        """Set every parameter's grad to 0."""
        ids = self._param_ids()  # checks that the parameters are alive
        if getattr(self, "_runs", None) is None:
            self._runs = K.runs(ids)
        K.zero_grad_runs(self.arena.F, self._runs[0], self._runs[2])

    @property
    def num_parameters(self):
        return int(self._param_ids().size)

    def _param_ids(self):
        raise NotImplementedError


class Layer(Module):
    """``nout`` neurons over ``nin`` inputs; ReLU after each unless nonlin=False."""

    def __init__(self, nin, nout, nonlin=True, *, init="micrograd", seed=None, rng=None, arena=None):
        nin, nout = _check_size(nin, "nin"), _check_size(nout, "nout")
        a = arena_arg(arena)
        self.nonlin = bool(nonlin)
        # One block (nout, nin + 1), bias last: row-major slots are then
        # micrograd's parameter order (each neuron's w, then b), contiguous,
        # so updates and zero_grad run over consecutive memory.
        block = leaves(np.column_stack([_init_weights(_rng(seed, rng), init, nout, nin), np.zeros(nout)]),
                       arena=a)
        self.W, self.b = block[:, :nin], block[:, nin]
        self._ids = block._ids.reshape(-1).copy()

    @property
    def arena(self):
        return self.W.arena

    @property
    def nin(self):
        return self.W.shape[1]

    @property
    def nout(self):
        return self.W.shape[0]

    def _param_ids(self):
        self.W._slots(), self.b._slots()  # StaleValueError once either was released
        return self._ids

    @property
    def neurons(self):
        """The neurons, as micrograd's Layer lists them (views of W and b,
        made once: the per-Value path runs through them at every call)."""
        self._param_ids()
        if getattr(self, "_neurons", None) is None:
            self._neurons = [Neuron._view(self.W[j], self.b[j], self.nonlin) for j in range(self.nout)]
        return self._neurons

    def __call__(self, x):
        if isinstance(x, (list, tuple)):  # micrograd's per-Value path
            out = [n(x) for n in self.neurons]
            return out[0] if len(out) == 1 else out
        X = _batch(x, self.nin, self.arena)
        return self._forward(X)

    def _forward(self, X):
        """The batched kernel: X Vector (B, nin) -> Vector (B, nout)."""
        a, xi = X._slots()
        (_, W), (_, b) = self.W._slots(), self.b._slots()
        B = xi.shape[0]
        out = np.empty((B, self.nout), np.int32)
        _, new = a.build(B * self.nout * (2 * self.nin + self.nonlin), K.emit_layer, W, b, xi, self.nonlin, out)
        return anomaly.checked(Vector._adopt(a, out), new)

    def __repr__(self):
        return f"Layer({self.nin} -> {self.nout}, {'ReLU' if self.nonlin else 'linear'})"


class Neuron(Module):
    """micrograd's Neuron: ``sum(w_i * x_i) + b``, then ReLU if nonlin."""

    def __init__(self, nin, nonlin=True, *, init="micrograd", seed=None, rng=None, arena=None):
        layer = Layer(nin, 1, nonlin, init=init, seed=seed, rng=rng, arena=arena)
        self.w, self.b, self.nonlin = layer.W[0], layer.b[0], layer.nonlin

    @classmethod
    def _view(cls, w, b, nonlin):
        n = object.__new__(cls)
        n.w, n.b, n.nonlin = w, b, nonlin
        return n

    @property
    def arena(self):
        return self.w.arena

    def _param_ids(self):
        return np.append(self.w._slots()[1], np.int32(self.b._slot()[1]))

    def __call__(self, x):
        if isinstance(x, (list, tuple)):
            if len(x) != self.w.size:
                raise ValueError(f"this neuron takes {self.w.size} inputs, got {len(x)}")
            self.w._slots()  # StaleValueError once the weights were released
            if getattr(self, "_wl", None) is None:
                self._wl = list(self.w)  # handles made once (each owns a reference)
            act = self.b  # micrograd's sum((wi * xi ...), self.b), node for node
            for wi, xi in zip(self._wl, x):
                act = act + wi * xi
            return act.relu() if self.nonlin else act
        a = self.arena
        X = _batch(x, self.w.size, a)
        layer = object.__new__(Layer)
        layer.W, layer.b, layer.nonlin = self.w.reshape(1, -1), Vector([self.b]), self.nonlin
        return layer._forward(X).reshape(-1)

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({self.w.size})"


class MLP(Module):
    """A multi-layer perceptron: ``MLP(2, [16, 16, 1])``.

    Hidden layers use ReLU. The output layer is linear, as in micrograd,
    unless ``relu_out=True`` (microcrad's semantics: ReLU on every neuron).
    """

    def __init__(self, nin, nouts, *, relu_out=False, init="micrograd", seed=None, rng=None, arena=None):
        nin = _check_size(nin, "nin")
        if isinstance(nouts, (int, np.integer)):
            nouts = [nouts]
        nouts = [_check_size(n, "layer width") for n in nouts]
        if not nouts:
            raise ValueError("nouts must list at least one layer width")
        g = _rng(seed, rng)
        a = arena_arg(arena)
        sz = [nin] + nouts
        self.relu_out = bool(relu_out)
        self.init = init
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=relu_out or i != len(nouts) - 1, init=init,
                             rng=g, arena=a) for i in range(len(nouts))]
        self._ids = np.concatenate([layer._ids for layer in self.layers])

    @property
    def arena(self):
        return self.layers[0].arena

    @property
    def sizes(self):
        return [self.layers[0].nin] + [layer.nout for layer in self.layers]

    def _param_ids(self):
        for layer in self.layers:
            layer._param_ids()
        return self._ids

    def __call__(self, x):
        if isinstance(x, (list, tuple)):
            for layer in self.layers:
                x = layer(x if isinstance(x, list) else [x])
            return x
        X = _batch(x, self.sizes[0], self.arena)
        for layer in self.layers:
            X = layer._forward(X)
        return X

    def predict(self, X):
        """Outputs for a numpy batch (B, nin), computed from the parameter
        values without building a graph (inference: no nodes, no gradients)."""
        X = _as_batch_array(X, self.sizes[0])
        F = self.arena.F
        for layer in self.layers:
            X = X @ F[K.DATA][layer.W._slots()[1]].T + F[K.DATA][layer.b._slots()[1]]
            if layer.nonlin:
                X = np.maximum(X, 0.0)
        return X

    def __repr__(self):
        arrows = " -> ".join(str(s) for s in self.sizes)
        out = "ReLU" if self.relu_out else "linear"
        return f"MLP({arrows}, ReLU hidden, {out} output, {self.num_parameters} parameters)"

    # -- checkpoints ---------------------------------------------------------
    def state(self):
        """The architecture and parameter values as a dict of numpy arrays."""
        F = self.arena.F
        d = {"format": np.array(FORMAT), "sizes": np.array(self.sizes, np.int64),
             "relu_out": np.array(self.relu_out)}
        for k, layer in enumerate(self.layers):
            d[f"W{k}"] = F[K.DATA][layer.W._slots()[1]]
            d[f"b{k}"] = F[K.DATA][layer.b._slots()[1]]
        return d

    def save(self, path, **extra):
        """Write the model to ``path`` (.npz, no pickle), atomically: a
        temporary file in the same directory, renamed over the target.
        ``extra`` numpy arrays (optimizer state, epoch) are stored beside it."""
        path = os.fspath(path)
        d = self.state()
        for k, v in extra.items():
            d[f"extra/{k}"] = np.asarray(v)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".crad-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **d)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @staticmethod
    def _read(path):
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise
        except Exception as e:  # zipfile, zlib, format errors: all mean "corrupt"
            raise CheckpointError(f"{path}: not a readable crad model file ({type(e).__name__}: {e})") from e
        if d.get("format") is None or str(d["format"]) != FORMAT:
            raise CheckpointError(f"{path}: not a crad model file (format key missing or not {FORMAT!r})")
        sizes = d.get("sizes")
        if sizes is None or sizes.ndim != 1 or sizes.size < 2 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
            raise CheckpointError(f"{path}: 'sizes' must list at least two positive ints")
        relu_out = d.get("relu_out")
        if relu_out is None or relu_out.shape != () or relu_out.dtype.kind not in "bi":
            raise CheckpointError(f"{path}: 'relu_out' must be a boolean flag")
        for k in range(sizes.size - 1):
            for name, shape in ((f"W{k}", (sizes[k + 1], sizes[k])), (f"b{k}", (sizes[k + 1],))):
                v = d.get(name)
                if v is None or v.shape != tuple(shape) or v.dtype.kind != "f":
                    got = None if v is None else (v.shape, str(v.dtype))
                    raise CheckpointError(f"{path}: {name} should be float of shape {tuple(shape)}, got {got}")
        return d

    @classmethod
    def load(cls, path, *, arena=None):
        """A new MLP from a file written by ``save``. Raises CheckpointError
        (a ValueError naming the file) when it is corrupt or malformed."""
        d = cls._read(path)
        sizes = [int(s) for s in d["sizes"]]
        model = cls(sizes[0], sizes[1:], relu_out=bool(d["relu_out"]), seed=0, arena=arena)
        model._write(d)
        return model

    def load_state(self, path):
        """Load parameter values saved from a model of the same architecture.
        Checks everything first: on any error this model is left untouched."""
        d = self._read(path)
        if [int(s) for s in d["sizes"]] != self.sizes or bool(d["relu_out"]) != self.relu_out:
            raise CheckpointError(f"{path}: holds an MLP {list(d['sizes'])} (relu_out={bool(d['relu_out'])}), "
                                  f"this model is {self.sizes} (relu_out={self.relu_out})")
        self._write(d)
        return {k[6:]: v for k, v in d.items() if k.startswith("extra/")}

    def _write(self, d):
        F = self.arena.F
        for k, layer in enumerate(self.layers):
            F[K.DATA][layer.W._slots()[1]] = d[f"W{k}"]
            F[K.DATA][layer.b._slots()[1]] = d[f"b{k}"]


def _as_batch_array(x, nin):
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"inputs must be numeric, not {x.dtype}")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != nin:
        raise ValueError(f"expected inputs of shape (batch, {nin}), got {np.shape(x)}")
    return x.astype(np.float64, copy=False)


def _batch(x, nin, arena):
    """Inputs for the batched path: a Vector (B, nin) of leaves (or the given one)."""
    if isinstance(x, Vector):
        b, ids = x._slots()
        if b is not arena:
            raise ValueError("inputs belong to a different arena than the model")
        if ids.ndim == 1:
            x = x.reshape(1, -1)
            ids = x._ids
        if ids.ndim != 2 or ids.shape[1] != nin:
            raise ValueError(f"expected inputs of shape (batch, {nin}), got {ids.shape}")
        return x
    if isinstance(x, Value):
        raise TypeError("pass a list of Values (micrograd's path) or an array (B, nin)")
    return leaves(_as_batch_array(x, nin), arena=arena)


__all__ = ["CheckpointError", "Layer", "MLP", "Module", "Neuron"]
