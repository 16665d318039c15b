"""Losses over a batch, built from the primitives as scalar graphs.

Each is a handful of Vector operations: one kernel call per operation for
the whole batch, one node per scalar op, no Python loop over samples.
"""
import numpy as np

from .value import Value
from .vector import Vector


def _vector(pred, what):
    if isinstance(pred, Value):
        return Vector([pred])
    if not isinstance(pred, Vector):
        raise TypeError(f"{what} must be a Vector (a model's batched output), not {type(pred).__name__}")
    return pred


def mse(pred, target):
    """Mean squared error: mean((pred - target) ** 2). target: numbers of
    pred's shape (constants), or a Vector of that shape (e.g. tape inputs).

    Shapes must match exactly: a (B, 1) prediction against (B,) targets would
    broadcast to a (B, B) graph and a wrong loss, so it is refused."""
    pred = _vector(pred, "pred")
    if isinstance(target, Value):
        target = Vector([target])
    if not isinstance(target, Vector):
        target = np.asarray(target, dtype=np.float64)
    if target.shape != pred.shape:
        raise ValueError(f"target has shape {target.shape}, pred has shape {pred.shape}; they must match "
                         f"(reshape one, e.g. target.reshape({', '.join(map(str, pred.shape))}))")
    return ((pred - target) ** 2).mean()


def cross_entropy(logits, labels):
    """Softmax cross-entropy, averaged over the batch.

    logits: Vector (B, C). labels: ints in [0, C), shape (B,); or a Vector
    (B, C) of one-hot rows, whose graph does not depend on the labels' values
    (what a captured tape needs). Stable: the row max is subtracted as a
    constant, so exp never overflows; the graph is z = logits - max,
    loss_b = log(sum_c exp(z_bc)) - z_b,label (one-hot: - sum_c t_bc z_bc).
    """
    logits = _vector(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, classes), got {logits.shape}")
    B, C = logits.shape
    if isinstance(labels, Vector):
        if labels.shape != (B, C):
            raise ValueError(f"one-hot labels must have shape {(B, C)}, got {labels.shape}")
        z = logits - logits.data.max(axis=1, keepdims=True)
        return (z.exp().sum(axis=1).log() - (z * labels).sum(axis=1)).mean()
    labels = np.asarray(labels)
    if labels.shape != (B,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be {B} ints, got shape {labels.shape} dtype {labels.dtype}")
    if ((labels < 0) | (labels >= C)).any():
        raise ValueError(f"labels must lie in [0, {C})")
    z = logits - logits.data.max(axis=1, keepdims=True)
    lse = z.exp().sum(axis=1).log()
    return (lse - z[np.arange(B), labels]).mean()


def hinge(scores, y, parameters=None, alpha=1e-4):
    """micrograd's demo loss: mean(relu(1 - y * score)) + alpha * sum(p * p).

    scores: Vector (B,) or (B, 1); y: +1 / -1 labels, an array or a Vector
    (tape inputs; then y * -1 is a node, as micrograd's -yi would be). The
    L2 term is added when parameters (a Vector or a Module) are given.
    """
    scores = _vector(scores, "scores")
    y = y if isinstance(y, Vector) else np.asarray(y, dtype=np.float64)
    if y.size != scores.size or (y.ndim > 1 and scores.ndim > 1 and y.shape != scores.shape):
        raise ValueError(f"y must have one label per score: scores have shape {scores.shape}, y {y.shape}")
    scores, y = scores.reshape(-1), y.reshape(-1)
    loss = (scores * -y + 1.0).relu().mean()
    if parameters is not None:
        p = parameters.parameters() if hasattr(parameters, "parameters") else parameters
        loss = loss + (p * p).sum() * alpha
    return loss


def accuracy(scores, y):
    """Share of samples whose score has the sign of y (for hinge-style labels)."""
    s = scores.data.reshape(-1) if isinstance(scores, Vector) else np.asarray(scores).reshape(-1)
    return float(((s > 0) == (np.asarray(y).reshape(-1) > 0)).mean())
