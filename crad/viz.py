"""Graph drawing: DOT text with no dependency, SVG or PNG through graphviz's dot.

Like micrograd's ``draw_dot``: a record per value (its data and grad), a
small node per op, edges from operands to the op to its result.
"""
import os
import shutil
import subprocess

import numpy as np

from . import kernels as K
from .ops import LEAF, POW, SYMBOL
from .value import Value


def _graph(value, max_nodes):
    """(slots to draw, in users-first order; total nodes in the graph)."""
    if not isinstance(value, Value):
        raise TypeError(f"to_dot draws a Value's graph, not {type(value).__name__}")
    if not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
    a, root = value._slot()
    order = np.empty(a.capacity, np.int32)
    n = K.order_of(a.I, a.M, root, order)
    return a, order[:min(n, max_nodes)], n


def to_dot(value, max_nodes=500, rankdir="LR"):
    """DOT text of value's graph: each node shows its op, data and grad.

    Graphs larger than max_nodes are cut (the nodes nearest the root are
    kept) and the drawing says how many nodes were left out.
    """
    a, slots, total = _graph(value, max_nodes)
    shown = set(int(s) for s in slots)
    lines = ["digraph crad {", f"  rankdir={rankdir};", "  node [fontname=Helvetica, fontsize=10];"]
    if total > len(slots):
        lines.insert(1, f"  // cut: {len(slots)} of {total} nodes shown (max_nodes={max_nodes})")
        lines.append(f'  cut [shape=note, label="{total - len(slots)} more nodes not shown '
                     f'(max_nodes={max_nodes})"];')
    F, I = a.F, a.I
    for s in slots:
        s = int(s)
        op = int(I[K.OP, s])
        lines.append(f'  n{s} [shape=record, label="{{ #{s} | data {F[K.DATA, s]:.4f} | grad {F[K.GRAD, s]:.4f} }}"];')
        if op == LEAF:
            continue
        label = f"**{F[K.ARG, s]:g}" if op == POW else SYMBOL[op]
        lines.append(f'  op{s} [shape=circle, label="{label}"];')
        lines.append(f"  op{s} -> n{s};")
        for j in (int(I[K.LHS, s]), int(I[K.RHS, s])):
            if j >= 0:
                lines.append(f"  n{j} -> op{s};" if j in shown else f"  cut -> op{s} [style=dashed];")
    lines.append("}")
    return "\n".join(dict.fromkeys(lines))  # an operand used twice (a * a) draws one edge


def render(value, path, max_nodes=500):
    """Write value's graph to path (.svg, .png or .pdf) with graphviz's ``dot``.

    Raises RuntimeError saying what to install when ``dot`` is not on PATH
    (to_dot() needs nothing: its text can be rendered anywhere).
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render writes .svg, .png or .pdf files, not {path!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("graphviz's 'dot' program is not installed, so crad cannot render images. "
                           "Install graphviz (apt install graphviz, brew install graphviz, conda install "
                           "graphviz), or save crad.viz.to_dot(...) to a .dot file and render it elsewhere")
    text = to_dot(value, max_nodes)
    done = subprocess.run([dot, f"-T{fmt}", "-o", path], input=text.encode(), capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return path
