"""crad: a fast scalar-valued autograd engine (micrograd's API, numba kernels)."""
from . import datasets, debug, engine, losses, nn, optim, viz
from .anomaly import AnomalyError, detect_anomaly
from .arena import Arena, ArenaThreadError, StaleValueError, current_arena, default_arena
from .debug import gradcheck
from .nn import MLP, Layer, Neuron
from .ops import Op
from .tape import Compiled, Tape, TapeError, capture, compile
from .value import Value
from .vector import Vector, dot, leaves, stack

__version__ = "0.1.0"

__all__ = [
    "AnomalyError", "Arena", "ArenaThreadError", "Compiled", "Layer", "MLP", "Neuron", "Op", "StaleValueError",
    "Tape", "TapeError", "Value", "Vector", "capture", "compile", "current_arena", "datasets", "debug",
    "default_arena", "detect_anomaly", "dot", "engine", "gradcheck", "leaves", "losses", "nn", "optim", "stack",
    "viz", "__version__",
]
