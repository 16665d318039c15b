"""The primitive ops: one table, and each op's forward and backward rule side by side.

``TABLE`` is the only list of ops: their codes (row order, stored in the
arena's ``op`` column, never renumber), micrograd's ``_op`` symbol, and which
inputs the backward rule reads (the batched tape keeps exactly those values
alive through its backward pass). LEAF has no operands; ADD and MUL are
binary; the rest are unary on ``lhs``. POW's constant exponent lives in the
``arg`` column. Subtraction, division and negation are built from these,
exactly as micrograd builds them.

Adding an op: a row here, its branch in ``forward`` and ``backward``, and its
method on the facade (``DerivedOps``).
"""
from enum import IntEnum
from math import exp as math_exp
from math import log as math_log
from math import tanh as math_tanh

import numpy as np

from ._config import njit

# name, micrograd's symbol, what backward reads: "x"/"y" the operands' values, "out" the node's own
TABLE = (
    ("LEAF", "", ""),
    ("ADD", "+", ""),
    ("MUL", "*", "xy"),
    ("POW", "**", "x"),  # the exponent (ARG) too, which is not a node
    ("EXP", "exp", "out"),
    ("LOG", "log", "x"),
    ("RELU", "ReLU", "out"),
    ("TANH", "tanh", "out"),
)
Op = IntEnum("Op", [(name, code) for code, (name, _, _) in enumerate(TABLE)])
Op.__doc__ = "The primitive ops, by their codes in the arena's op column."
# Plain ints for the kernels (numba folds module-level ints into constants).
LEAF, ADD, MUL, POW, EXP, LOG, RELU, TANH = map(int, Op)
N_OPS = len(TABLE)
SYMBOL = {code: symbol for code, (_, symbol, _) in enumerate(TABLE)}
# Indexed by op code (numba freezes global arrays as constants).
READS_X = np.array(["x" in reads for _, _, reads in TABLE])
READS_Y = np.array(["y" in reads for _, _, reads in TABLE])
READS_OUT = np.array(["out" in reads for _, _, reads in TABLE])


@njit(inline="always")
def forward(op, x, y, c):
    """Value of a node from its operands' values x, y and its constant c.

    IEEE semantics throughout, never an exception: log(0) = -inf,
    log(-1) = nan, (-8) ** (1/3) = nan, 0 ** -1 = inf.
    """
    if op == ADD:
        return x + y
    if op == MUL:
        return x * y
    if op == POW:
        return x ** c
    if op == EXP:
        return math_exp(x)
    if op == LOG:
        return math_log(x)
    if op == RELU:
        return 0.0 if x < 0.0 else x  # micrograd's rule; NaN passes through
    if op == TANH:
        return math_tanh(x)
    return x  # LEAF: its own value


@njit(inline="always")
def backward(op, x, y, c, out, g):
    """(d out/dx * g, d out/dy * g) for a node with upstream gradient g.

    Reads only what TABLE says (a test feeds NaN to everything else)."""
    if op == ADD:
        return g, g
    if op == MUL:
        return y * g, x * g
    if op == POW:  # x ** 0 is constant: 0, not 0 * inf, at x = 0 (as PyTorch)
        return (c * x ** (c - 1.0) * g if c != 0.0 else 0.0), 0.0
    if op == EXP:
        return out * g, 0.0
    if op == LOG:
        return g / x, 0.0
    if op == RELU:
        return (g if out > 0.0 else 0.0), 0.0  # relu'(0) = 0, as micrograd
    if op == TANH:
        return (1.0 - out * out) * g, 0.0
    return 0.0, 0.0
