"""Graph drawing with micrograd's look: a record per value (data and grad),
an ellipse per op, edges from operands to the op to its result, left to right.

- ``draw(value)``: an SVG picture that notebooks show inline and ``.save()``
  writes; crad lays the graph out itself (``crad.dag_layout``), or lets graphviz's
  ``dot`` do it when that is installed.
- ``to_dot(value)``: DOT text, no dependency; ``render(value, path)``: SVG, PNG
  or PDF through ``dot``.

Big graphs are cut at ``max_nodes`` values (the ones nearest the root are
kept) and the picture says how many were left out.
"""
import html
import os
import shutil
import subprocess

import numpy as np

from . import kernels as K
from .arena import StaleValueError
from .dag_layout import layered
from .ops import LEAF, POW, SYMBOL
from .value import Value

NOTEBOOK_MAX_NODES = 60  # a Value shown in a notebook draws at most this many values
_NO_DOT = ("graphviz's 'dot' program is not installed. crad.viz.draw(...) needs nothing and writes SVG; "
           "for PNG or PDF install graphviz (apt install graphviz, brew install graphviz, conda install "
           "graphviz), or save crad.viz.to_dot(...) to a .dot file and render it elsewhere")


class _Graph:
    """What a drawing shows, whoever lays it out: records (slot, fields),
    ops (slot, symbol), edges between node names ('n<slot>' for a value,
    'op<slot>' for an op, 'cut' for the note), and the cut note's text."""

    def __init__(self, value, max_nodes):
        if not isinstance(value, Value):
            raise TypeError(f"crad.viz draws a Value's graph, not {type(value).__name__}")
        if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
            raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
        a, root = value._slot()
        order = np.empty(a.capacity, np.int32)
        total = K.order_of(a.I, a.M, root, order)
        # Kahn's order lists users before operands, so the kept prefix holds
        # every user of each kept node: only operand edges are cut.
        slots = [int(s) for s in order[:min(total, max_nodes)]]
        shown = set(slots)
        F, I = a.F, a.I
        self.total, self.max_nodes = total, max_nodes
        self.records, self.ops, self.edges = [], [], []
        for s in slots:
            self.records.append((s, (f"#{s}", f"data {F[K.DATA, s]:#.4g}", f"grad {F[K.GRAD, s]:#.4g}")))
            op = int(I[K.OP, s])
            if op == LEAF:
                continue
            self.ops.append((s, f"**{F[K.ARG, s]:g}" if op == POW else SYMBOL[op]))
            self.edges.append((f"op{s}", f"n{s}"))
            operands = [f"n{j}" if j in shown else "cut" for j in (int(I[K.LHS, s]), int(I[K.RHS, s])) if j >= 0]
            self.edges += [(u, f"op{s}") for u in dict.fromkeys(operands)]  # a * a: one edge
        self.note = (f"{total - len(slots)} more nodes not shown (max_nodes={max_nodes})"
                     if total > len(slots) else None)

    @property
    def shown(self):
        return len(self.records)

    @property
    def caption(self):
        return f"showing {self.shown} of {self.total} nodes (max_nodes={self.max_nodes})"

    def dot(self, rankdir="LR"):
        lines = ["digraph crad {", f"  rankdir={rankdir};", "  node [fontname=Helvetica, fontsize=10];"]
        if self.note:
            lines.append(f'  label="{self.caption}"; labelloc=t; labeljust=l; fontname=Helvetica; fontsize=10;')
            lines.append(f'  cut [shape=note, label="{self.note}"];')
        lines += [f'  n{s} [shape=record, label="{{ {" | ".join(f)} }}"];' for s, f in self.records]
        lines += [f'  op{s} [label="{sym}"];' for s, sym in self.ops]
        lines += [f"  {u} -> {v}{' [style=dashed]' if u == 'cut' else ''};" for u, v in self.edges]
        lines.append("}")
        return "\n".join(lines)

    def svg(self):
        """The picture as SVG, laid out by crad.dag_layout (structured like
        graphviz's output: a <g class="node"> with a <title> per node)."""
        names, width, height = [], [], []
        for s, fields in self.records:
            names.append(f"n{s}")
            width.append(sum(_field_width(t) for t in fields))
            height.append(_ROW)
        for s, sym in self.ops:
            names.append(f"op{s}")
            width.append(max(_ROW * 1.6, _text_width(sym) + 24))
            height.append(_ROW)
        if self.note:
            names.append("cut")
            width.append(_field_width(self.note) + 10)
            height.append(_ROW)
        index = {name: k for k, name in enumerate(names)}
        x, y, paths, (w, h) = layered(width, height, [(index[u], index[v]) for u, v in self.edges])
        top = _MARGIN + (_CAPTION if self.note else 0)
        x, y = x + _MARGIN, y + top
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 2 * _MARGIN:.0f}" '
               f'height="{h + top + _MARGIN:.0f}" viewBox="0 0 {w + 2 * _MARGIN:.0f} {h + top + _MARGIN:.0f}" '
               f'font-family="Helvetica,Arial,sans-serif" font-size="{_FONT}">',
               '<rect width="100%" height="100%" fill="white"/>']
        if self.note:
            out.append(f'<text x="{_MARGIN}" y="{_MARGIN + _FONT}" fill="#555">{self.caption}</text>')
        for (u, _), pts in zip(self.edges, paths):
            out.append(_edge([(px + _MARGIN, py + top) for px, py in pts], dashed=u == "cut"))
        k = 0
        for s, fields in self.records:
            out.append(_record(f"n{s}", x[k], y[k], width[k], fields))
            k += 1
        for s, sym in self.ops:
            out.append(_ellipse(f"op{s}", x[k], y[k], width[k] / 2, sym))
            k += 1
        if self.note:
            out.append(_note(x[k], y[k], width[k], self.note))
        out.append("</svg>")
        return "\n".join(out)


class Drawing:
    """A graph's picture as SVG text (``.svg``). Jupyter and IPython display
    it inline; ``save(path)`` writes it. ``shown`` and ``total`` count value
    nodes; ``layout`` says who laid it out ('crad' or 'dot')."""

    def __init__(self, svg, shown, total, layout):
        self.svg, self.shown, self.total, self.layout = svg, shown, total, layout

    def _repr_svg_(self):
        return self.svg

    def _repr_html_(self):
        # Scrolls inside the cell instead of stretching the notebook.
        return f'<div style="max-width:100%;max-height:520px;overflow:auto">{self.svg}</div>'

    def save(self, path):
        """Write the SVG to path (a .svg file); returns path."""
        path = os.fspath(path)
        if not path.lower().endswith(".svg"):
            raise ValueError(f"Drawing.save writes SVG: give a path ending in .svg, not {path!r} "
                             "(for PNG or PDF use crad.viz.render, which needs graphviz)")
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg + "\n")
        return path

    def __repr__(self):
        return f"<crad.viz.Drawing: {self.shown} of {self.total} nodes, laid out by {self.layout}>"


def draw(value, max_nodes=500, layout="auto"):
    """value's graph as a Drawing (inline in notebooks, ``.save("g.svg")``).

    Each value is a record ``#slot | data | grad`` (4 significant digits),
    each op an ellipse, left to right as in micrograd's ``draw_dot``. Graphs
    of more than max_nodes values are cut, keeping the nodes nearest the
    root, and a note says how many were left out. layout: 'crad' (crad's own
    layered layout, no dependency), 'dot' (graphviz; RuntimeError if it is
    not installed or fails) or 'auto' (dot when it is installed and works,
    else crad).
    """
    if layout not in ("auto", "crad", "dot"):
        raise ValueError(f"layout must be 'auto', 'crad' or 'dot', not {layout!r}")
    g = _Graph(value, max_nodes)
    if layout != "crad" and (layout == "dot" or shutil.which("dot")):
        try:
            svg = _run_dot(g.dot(), "svg").decode()
            return Drawing(svg[svg.index("<svg"):], g.shown, g.total, "dot")
        except (RuntimeError, subprocess.TimeoutExpired):
            if layout == "dot":
                raise  # asked for dot by name; 'auto' falls back to crad's layout
    return Drawing(g.svg(), g.shown, g.total, "crad")


def to_dot(value, max_nodes=500, rankdir="LR"):
    """DOT text of value's graph: each node shows its op, data and grad.

    Graphs larger than max_nodes are cut (the nodes nearest the root are
    kept) and the drawing says how many nodes were left out.
    """
    return _Graph(value, max_nodes).dot(rankdir)


def render(value, path, max_nodes=500):
    """Write value's graph to path (.svg, .png or .pdf) with graphviz's ``dot``.

    Raises RuntimeError saying what to install when ``dot`` is not on PATH
    (``draw`` writes SVG without it).
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render writes .svg, .png or .pdf files, not {path!r}")
    image = _run_dot(to_dot(value, max_nodes), fmt)
    with open(path, "wb") as f:
        f.write(image)
    return path


def notebook_html(value):
    """What a notebook shows for a Value: its graph, cut at NOTEBOOK_MAX_NODES
    values; None (so the plain repr is shown) for a released Value."""
    try:
        value._slot()
    except StaleValueError:
        return None
    return draw(value, max_nodes=NOTEBOOK_MAX_NODES)._repr_html_()


def _run_dot(text, fmt):
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(_NO_DOT)
    done = subprocess.run([dot, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


# -- SVG pieces (sizes in px) -------------------------------------------------
_FONT, _ROW, _PAD, _MARGIN, _CAPTION, _ARROW = 12, 26.0, 7.0, 8.0, 18.0, 8.0


def _text_width(text):
    return 0.6 * _FONT * len(text)  # Helvetica's average advance; generous for digits


def _field_width(text):
    return _text_width(text) + 2 * _PAD


def _text(x, y, text):
    return f'<text x="{x:.1f}" y="{y + _FONT * 0.35:.1f}" text-anchor="middle">{html.escape(text)}</text>'


def _record(name, cx, cy, width, fields):
    x0, y0, y1 = cx - width / 2, cy - _ROW / 2, cy + _ROW / 2
    parts = [f'<g class="node"><title>{name}</title>',
             f'<polygon fill="white" stroke="black" points="{x0:.1f},{y0:.1f} {x0 + width:.1f},{y0:.1f} '
             f'{x0 + width:.1f},{y1:.1f} {x0:.1f},{y1:.1f}"/>']
    for k, t in enumerate(fields):
        fw = _field_width(t)
        if k:
            parts.append(f'<polyline fill="none" stroke="black" points="{x0:.1f},{y0:.1f} {x0:.1f},{y1:.1f}"/>')
        parts.append(_text(x0 + fw / 2, cy, t))
        x0 += fw
    parts.append("</g>")
    return "".join(parts)


def _ellipse(name, cx, cy, rx, text):
    return (f'<g class="node"><title>{name}</title><ellipse fill="white" stroke="black" cx="{cx:.1f}" '
            f'cy="{cy:.1f}" rx="{rx:.1f}" ry="{_ROW / 2:.1f}"/>{_text(cx, cy, text)}</g>')


def _note(cx, cy, width, text):
    x0, y0, x1, y1, f = cx - width / 2, cy - _ROW / 2, cx + width / 2, cy + _ROW / 2, 8
    return (f'<g class="node"><title>cut</title><polygon fill="#fff8dc" stroke="black" points="{x0:.1f},{y0:.1f} '
            f'{x1 - f:.1f},{y0:.1f} {x1:.1f},{y0 + f:.1f} {x1:.1f},{y1:.1f} {x0:.1f},{y1:.1f}"/>'
            f'{_text(cx, cy, text)}</g>')


def _edge(pts, dashed):
    """A smooth path through pts (horizontal tangents at each point), ending
    in an arrowhead whose tip is the last point."""
    tx, ty = pts[-1]
    pts = [p for p in pts[:-1] if p[0] < tx - _ARROW] + [(tx - _ARROW, ty)]  # the arrowhead replaces the end
    d = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for (px, py), (qx, qy) in zip(pts, pts[1:]):
        dx = (qx - px) / 2
        d.append(f"C{px + dx:.1f},{py:.1f} {qx - dx:.1f},{qy:.1f} {qx:.1f},{qy:.1f}")
    dash = ' stroke-dasharray="5,3"' if dashed else ""
    return (f'<g class="edge"><path fill="none" stroke="black"{dash} d="{" ".join(d)}"/>'
            f'<polygon fill="black" stroke="black" points="{tx:.1f},{ty:.1f} {tx - _ARROW:.1f},{ty - 3.5:.1f} '
            f'{tx - _ARROW:.1f},{ty + 3.5:.1f}"/></g>')
