"""crad: a fast scalar-valued autograd engine (micrograd's API, numba kernels)."""
from . import datasets, debug, engine, losses, nn, optim, threads, viz
from .anomaly import AnomalyError, detect_anomaly
from .arena import Arena, ArenaThreadError, StaleValueError, current_arena, default_arena
from .debug import gradcheck
from .nn import MLP, Layer, Neuron
from .ops import Op
from .tape import Compiled, Tape, TapeError, capture
from .tape import compile as compile  # noqa: A004 (crad.compile; see __all__)
from .threads import get_num_threads, set_num_threads
from .value import Value
from .vector import Vector, dot, leaves, stack

__version__ = "0.1.0"

# crad.compile is left out of __all__: a star import must not shadow the builtin compile
__all__ = [
    "AnomalyError", "Arena", "ArenaThreadError", "Compiled", "Layer", "MLP", "Neuron", "Op", "StaleValueError",
    "Tape", "TapeError", "Value", "Vector", "capture", "current_arena", "datasets", "debug", "default_arena",
    "detect_anomaly", "dot", "engine", "get_num_threads", "gradcheck", "leaves", "losses", "nn", "optim",
    "set_num_threads", "stack", "threads", "viz", "__version__",
]
