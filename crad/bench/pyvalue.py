"""A minimal pure-Python scalar ``Value``: the peer that shows what one Python object per node costs.

micrograd's API, written as a careful Python programmer would without an engine: ``__slots__``
(no per-object dict); each op stores its operands and its local derivatives when it is built, so
there are no closures and no reference cycles (reference counting alone frees a graph); backward is
iterative. It builds the same graph as micrograd and ``crad.Value`` (a constant operand of + and *
becomes a leaf, ``a - b`` is ``a + (-b)``, ``a / b`` is ``a * b ** -1``), so node counts agree.
It is meant to be the fastest plain-Python shape, so that a ratio to it measures the engine
rather than a slow baseline. Like plain Python, ``log`` of a non-positive number raises.
"""
import math

__all__ = ["Value"]


class Value:
    """A scalar node: ``data``, ``grad``, its operands ``_prev`` and the local derivative
    d(self)/d(operand) for each operand in ``_local`` (same length as ``_prev``)."""

    __slots__ = ("data", "grad", "_prev", "_local")

    def __init__(self, data, _prev=(), _local=()):
        self.data = float(data)
        self.grad = 0.0
        self._prev = _prev
        self._local = _local

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError("only constant (int or float) exponents are supported")
        return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))

    def relu(self):
        x = self.data
        return Value(x if x > 0 else 0.0, (self,), (1.0 if x > 0 else 0.0,))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,))

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        return self * (other ** -1 if isinstance(other, Value) else 1.0 / other)

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return (-self) + other

    def __rtruediv__(self, other):
        return self ** -1 * other

    def backward(self):
        """Set this node's grad to 1 and accumulate (+=) the chain rule into every node it
        depends on. Iterative: an explicit stack gives a post-order (operands before their
        users), so a 10^6-deep chain needs no recursion limit."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            v, done = stack.pop()
            if done:
                order.append(v)
            elif v not in seen:
                seen.add(v)
                stack.append((v, True))
                stack.extend((c, False) for c in v._prev if c not in seen)
        self.grad = 1.0
        for v in reversed(order):
            g = v.grad
            for c, d in zip(v._prev, v._local):
                c.grad += d * g
