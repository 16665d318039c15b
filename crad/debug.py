"""Debugging aids: gradient checking, and (from crad.anomaly) an anomaly mode."""
import numpy as np

from .anomaly import AnomalyError, detect_anomaly
from .value import Value
from .vector import Vector

__all__ = ["AnomalyError", "GradcheckResult", "detect_anomaly", "gradcheck"]


# -- gradcheck -----------------------------------------------------------------
class GradcheckResult(list):
    """One dict per input: worst absolute and relative error against float64
    central differences, and whether it is within tolerance. ``ok`` is True
    when every input passed."""

    @property
    def ok(self):
        return all(r["ok"] for r in self)

    def __repr__(self):
        rows = [f"input {r['input']}: max abs err {r['max_abs_err']:.3g}, max rel err {r['max_rel_err']:.3g}"
                f" at element {r['worst_element']} -> {'ok' if r['ok'] else 'FAIL'}" for r in self]
        return "\n".join(rows)


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Compare crad's gradients of ``fn(*inputs)`` against central differences.

    fn: builds a scalar graph (returns a Value) from inputs, a list of Values
    or Vectors of leaves. The inputs' grads are set to 0 first and hold crad's
    gradient afterwards. Returns a GradcheckResult with the worst error per
    input (``result.ok`` tells whether all are within tolerance).
    """
    inputs = list(inputs)
    for k, x in enumerate(inputs):
        if not isinstance(x, (Value, Vector)):
            raise TypeError(f"gradcheck inputs are Values or Vectors, not {type(x).__name__} (input {k})")

    def evaluate():
        out = fn(*inputs)
        if not isinstance(out, Value):
            raise TypeError(f"fn must return a Value, not {type(out).__name__}")
        return out

    for x in inputs:
        x.grad = 0.0 if isinstance(x, Value) else np.zeros(x.shape)
    out = evaluate()
    out.backward()
    del out
    result = GradcheckResult()
    for k, x in enumerate(inputs):
        base = np.atleast_1d(np.array(x.data, dtype=np.float64))
        engine = np.atleast_1d(np.array(x.grad, dtype=np.float64)).reshape(-1)
        numeric = np.empty(base.size)
        flat = base.reshape(-1)
        for e in range(flat.size):
            vals = []
            for sign in (1.0, -1.0):
                bumped = flat.copy()
                bumped[e] += sign * eps
                x.data = bumped[0] if isinstance(x, Value) else bumped.reshape(base.shape)
                vals.append(evaluate().data)
            numeric[e] = (vals[0] - vals[1]) / (2 * eps)
        x.data = flat[0] if isinstance(x, Value) else base.reshape(np.shape(x.data))
        abs_err = np.abs(engine - numeric)
        rel_err = abs_err / np.maximum(np.abs(numeric), 1e-300)
        worst = int(np.argmax(abs_err - rtol * np.abs(numeric)))
        result.append(dict(input=k, max_abs_err=float(abs_err.max()), max_rel_err=float(rel_err.max()),
                           worst_element=worst, ok=bool(np.all(abs_err <= atol + rtol * np.abs(numeric)))))
    return result
