"""crad: a fast scalar-valued autograd engine (micrograd's API, numba kernels)."""
from . import datasets, losses, nn, optim
from .arena import Arena, StaleValueError, current_arena, default_arena
from .nn import MLP, Layer, Neuron
from .ops import Op
from .tape import Tape, TapeError, capture
from .value import Value
from .vector import Vector, dot, leaves

__version__ = "0.1.0"

__all__ = ["MLP", "Layer", "Neuron", "datasets", "losses", "nn", "optim", "Arena", "Op",
           "StaleValueError", "Value", "Vector", "current_arena",
           "default_arena", "dot", "leaves", "capture", "Tape", "TapeError", "__version__"]
