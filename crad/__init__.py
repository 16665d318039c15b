"""crad: a fast scalar-valued autograd engine (micrograd's API, numba kernels)."""
from .arena import Arena, StaleValueError, current_arena, default_arena
from .ops import Op
from .value import Value
from .vector import Vector, dot, leaves
from . import losses, nn, optim  # noqa: E402  (submodules as attributes)
from .nn import MLP, Layer, Neuron

__version__ = "0.1.0"

__all__ = ["MLP", "Layer", "Neuron", "losses", "nn", "optim", "Arena", "Op", "StaleValueError", "Value", "Vector", "current_arena",
           "default_arena", "dot", "leaves", "__version__"]
