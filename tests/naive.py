"""Plain-Python reference engine: micrograd's rules and node structure, no arena.

Every test compares crad against this (values and gradients), so it stays as
simple as possible: one object per node, closures for the chain rule, an
iterative topological sort.

Arithmetic is the engine's specification: Python float semantics (C's libm
through ``math``, which numba's kernels call too), with IEEE results where
``math`` would raise (0 ** -1 = inf, log(0) = -inf, log(-1) = nan). numpy's
own ``power``/``exp`` round differently in the last bit (``np.power(x, -1)``
is ``1 / x``), which is a different specification, not a tolerance.
"""
import math

import numpy as np


def _f(x):
    return np.float64(x)


def _ieee(fn, fallback, *args):
    """fn (from math) on floats; where math raises (a pole, a domain error,
    overflow), numpy's IEEE answer, which is exact there (inf, -inf, nan)."""
    try:
        return _f(fn(*map(float, args)))
    except (ValueError, OverflowError, ZeroDivisionError):
        with np.errstate(all="ignore"):
            return _f(fallback(*map(np.float64, args)))


class Value:
    def __init__(self, data, _children=(), _op=""):
        self.data = _f(data)
        self.grad = _f(0.0)
        self._backward = lambda: None
        self._prev = tuple(_children)
        self._op = _op

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, c):
        out = Value(_ieee(math.pow, np.power, self.data, c), (self,), f"**{c}")

        def _backward():
            with np.errstate(all="ignore"):
                self.grad += _f(c) * _ieee(math.pow, np.power, self.data, _f(c) - 1) * out.grad if c else 0.0
        out._backward = _backward
        return out

    def _unary(self, value, local, op):
        out = Value(value, (self,), op)

        def _backward():
            with np.errstate(all="ignore"):
                self.grad += local(out) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        return self._unary(_f(0.0) if self.data < 0 else self.data,
                           lambda o: _f(1.0) if o.data > 0 else _f(0.0), "ReLU")

    def exp(self):
        return self._unary(_ieee(math.exp, np.exp, self.data), lambda o: o.data, "exp")

    def log(self):
        return self._unary(_ieee(math.log, np.log, self.data), lambda o: 1.0 / self.data, "log")

    def tanh(self):
        return self._unary(_ieee(math.tanh, np.tanh, self.data), lambda o: 1.0 - o.data * o.data, "tanh")

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        if isinstance(other, Value):
            return self * other ** -1
        return self * (1.0 / other if other else math.copysign(math.inf, other))

    def __rtruediv__(self, other):
        return other * self ** -1

    def topo(self):
        """Nodes in topological order (operands first), without recursion."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            v, done = stack.pop()
            if done:
                order.append(v)
            elif id(v) not in seen:
                seen.add(id(v))
                stack.append((v, True))
                stack.extend((c, False) for c in v._prev if id(c) not in seen)
        return order

    def backward(self):
        self.grad = _f(1.0)
        with np.errstate(all="ignore"):
            for v in reversed(self.topo()):
                v._backward()
