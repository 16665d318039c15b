"""The primitive ops: one code each, forward and backward rule side by side.

Order of the codes (stored in the arena's ``op`` column, never renumber):
LEAF has no operands; ADD and MUL are binary; the rest are unary on ``lhs``.
POW's constant exponent lives in the ``arg`` column. Subtraction, division
and negation are built from these, exactly as micrograd builds them.
"""
from enum import IntEnum
from math import exp as math_exp
from math import log as math_log
from math import tanh as math_tanh

from ._config import njit

LEAF, ADD, MUL, POW, EXP, LOG, RELU, TANH = range(8)
N_OPS = 8


class Op(IntEnum):
    LEAF = LEAF
    ADD = ADD
    MUL = MUL
    POW = POW
    EXP = EXP
    LOG = LOG
    RELU = RELU
    TANH = TANH


# What micrograd's ``_op`` shows for each code (POW adds its exponent).
SYMBOL = {LEAF: "", ADD: "+", MUL: "*", POW: "**", EXP: "exp", LOG: "log",
          RELU: "ReLU", TANH: "tanh"}
BINARY = (ADD, MUL)


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
    """(d out/dx * g, d out/dy * g) for a node with upstream gradient g."""
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

