"""Graph drawing (DOT, crad's own SVG layout, graphviz), notebooks, training plots."""
import os
import shutil
import struct
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest

import crad
from crad import Value, plots, viz
from crad import dag_layout as layout

SVG = "{http://www.w3.org/2000/svg}"
LAYOUTS = ["crad", pytest.param("dot", marks=pytest.mark.skipif(not shutil.which("dot"),
                                                                    reason="graphviz's dot is not installed"))]


def naive_graph(root):
    """Every node of root's graph, found through the public _prev and _op
    (an oracle independent of the kernels): {(data, grad): op} per node, and
    the number of distinct (operand, op) edges."""
    seen, stack, nodes, edges = {root}, [root], [], 0
    while stack:
        v = stack.pop()
        nodes.append(v)
        edges += len(v._prev)
        for p in v._prev:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return nodes, edges


def parse(svg):
    """{title: (shape tags, texts)} for each <g class="node"> and the number
    of edges, from an SVG as crad or graphviz writes it."""
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    nodes, edges = {}, 0
    for g in root.iter(SVG + "g"):
        cls = g.get("class")
        if cls == "node":
            title = g.find(SVG + "title").text
            nodes[title] = ([c.tag[len(SVG):] for c in g if c.tag != SVG + "text" and c.tag != SVG + "title"],
                            [t.text.strip() for t in g.iter(SVG + "text") if t.text])
        elif cls == "edge":
            edges += 1
    return nodes, edges


def expression():
    a, b = Value(2.0), Value(-3.0)
    out = (a * b).tanh() + (a ** 2).log() - b / 4.0
    out.backward()
    return out


@pytest.mark.parametrize("how", LAYOUTS)
def test_draw_has_a_record_per_value_and_an_ellipse_per_op(arena, how):
    out = expression()
    d = viz.draw(out, layout=how)
    assert d.layout == how and d.shown == d.total
    nodes, edges = parse(d.svg)
    values, n_edges = naive_graph(out)
    records = {t: v for t, v in nodes.items() if t.startswith("n")}
    ops = {t: v for t, v in nodes.items() if t.startswith("op")}
    assert len(records) == len(values) == d.total and set(nodes) == set(records) | set(ops)
    assert len(ops) == sum(1 for v in values if v._op)
    for shapes, texts in records.values():
        assert shapes[0] == "polygon" and "ellipse" not in shapes
        assert any(t.startswith("data ") for t in texts) and any(t.startswith("grad ") for t in texts)
    assert all(shapes == ["ellipse"] for shapes, _ in ops.values())
    # The labels carry every value's data and grad (4 significant digits) and every op's symbol.
    labels = sorted(tuple(t for t in texts if t[:5] in ("data ", "grad ")) for _, texts in records.values())
    assert labels == sorted((f"data {v.data:#.4g}", f"grad {v.grad:#.4g}") for v in values)
    assert sorted(texts[0] for _, texts in ops.values()) == sorted(v._op for v in values if v._op)
    assert edges == n_edges + len(ops)  # operand -> op, and op -> its value


def test_labels_use_four_significant_digits(arena):
    a = Value(0.000123456)
    b = a * 1e6
    b.backward()
    texts = [t for _, ts in parse(viz.draw(b, layout="crad").svg)[0].values() for t in ts]
    assert "data 0.0001235" in texts and "grad 1.000e+06" in texts and "data 123.5" in texts


def test_draw_cuts_a_graph_of_a_hundred_thousand_nodes(arena):
    chain = crad.leaves(np.ones(50_001)).sum()  # 50,001 leaves and a chain of 50,000 adds
    v = crad.leaves(np.ones(2 ** 16))  # and a balanced tree: wide ranks
    while len(v) > 1:
        v = v[: len(v) // 2] + v[len(v) // 2:]
    tree = v[0]
    for big, total in ((chain, 100_001), (tree, 2 ** 17 - 1)):
        t0 = time.perf_counter()
        d = viz.draw(big, layout="crad")
        dt = time.perf_counter() - t0
        print(f"draw of {total:,} nodes, {d.shown} shown: {dt * 1e3:.0f} ms")  # -s shows it; not asserted
        nodes, _ = parse(d.svg)
        assert d.total == total and d.shown == 500
        assert sum(t.startswith("n") for t in nodes) == 500 and "cut" in nodes
        assert f"{total - 500} more nodes not shown (max_nodes=500)" in nodes["cut"][1]
        assert f"showing 500 of {total} nodes (max_nodes=500)" in d.svg
    small = viz.draw(tree, max_nodes=7, layout="crad")  # the 7 nodes nearest the root: 3 adds, 4 cut operands
    nodes, edges = parse(small.svg)
    assert sum(t.startswith("op") for t in nodes) == 7 and edges == 7 + 3 * 2 + 4


def test_layered_layout_points_every_edge_right_and_keeps_boxes_apart():
    rng = np.random.default_rng(0)
    n = 300
    edges = [(int(rng.integers(0, k)), k) for k in range(1, n) for _ in range(2)]
    edges += [(0, n - 1)]  # a long edge, through many ranks
    width, height = rng.uniform(20, 120, n), np.full(n, 20.0)
    x, y, paths, (w, h) = layout.layered(width, height, edges)
    for (u, v), pts in zip(edges, paths):
        assert x[u] + width[u] / 2 <= x[v] - width[v] / 2 - layout.COLUMN_GAP + 1e-9
        assert pts[0] == (x[u] + width[u] / 2, y[u]) and pts[-1] == (x[v] - width[v] / 2, y[v])
        assert all(p[0] < q[0] for p, q in zip(pts, pts[1:]))
    for c in np.unique(x):  # boxes in one column do not overlap
        ys = np.sort(y[x == c])
        assert np.all(np.diff(ys) >= height[0] + layout.ROW_GAP - 1e-9)
    for (u, v), pts in zip(edges, paths):  # an edge crosses a column straight, between its boxes
        for (px, py), (qx, qy) in zip(pts, pts[1:]):
            inside = (x - width / 2 < qx - 1e-9) & (x + width / 2 > px + 1e-9)  # boxes the segment passes over
            if py == qy:
                others = inside & (np.arange(n) != u) & (np.arange(n) != v)
                assert not np.any(others & (np.abs(y - py) < height / 2)), (u, v)
            else:  # a curve: only in a gap between columns
                assert not np.any(inside), (u, v)
    assert np.all(x - width / 2 >= 0) and np.all(x + width / 2 <= w + 1e-9)
    assert np.all(y - height / 2 >= -1e-9) and np.all(y + height / 2 <= h + 1e-9)
    with pytest.raises(ValueError, match="cycle"):
        layout.layered([1, 1], [1, 1], [(0, 1), (1, 0)])


def test_layout_order_avoids_crossings():
    # A tree whose operands are listed crosswise (2 and 4 feed 0, 3 and 5 feed 1) is drawn untangled.
    edges = [(2, 0), (3, 1), (4, 0), (5, 1), (0, 6), (1, 6)]
    x, y, _, _ = layout.layered([10.0] * 7, [10.0] * 7, edges)
    mids, leaves = sorted([0, 1], key=lambda k: y[k]), sorted([2, 3, 4, 5], key=lambda k: y[k])
    assert [v for k in leaves for u, v in edges if u == k] == [mids[0], mids[0], mids[1], mids[1]]
    # The crossing count of one pair of ranks (left rank [0, 1], right rank [2, 3]).
    pos = [0.0, 1.0, 0.0, 1.0]
    assert layout._crossings([[2, 3], [0, 1]], [[3], [2], [], []], pos) == 1
    assert layout._crossings([[2, 3], [0, 1]], [[2], [3], [], []], pos) == 0


def test_deep_chain_layout_needs_no_recursion():
    n = 20_000  # far past Python's recursion limit
    x, y, paths, _ = layout.layered([10.0] * n, [10.0] * n, [(k, k + 1) for k in range(n - 1)])
    assert np.all(np.diff(x) > 0) and np.ptp(y) == 0


def test_draw_rejects_bad_input(arena, monkeypatch, tmp_path):
    y = Value(3.0).relu()
    with pytest.raises(TypeError, match="Value"):
        viz.draw(np.ones(3))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_nodes"):
            viz.draw(y, max_nodes=bad)
    with pytest.raises(ValueError, match="layout"):
        viz.draw(y, layout="neato")
    d = viz.draw(y, layout="crad")
    with pytest.raises(ValueError, match=r"\.svg"):
        d.save(tmp_path / "g.png")
    assert not os.listdir(tmp_path)
    assert d.save(tmp_path / "g.svg") == str(tmp_path / "g.svg")
    assert (tmp_path / "g.svg").read_text().strip() == d.svg
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/false")  # a dot that fails
    assert viz.draw(y).layout == "crad"  # auto falls back to crad's layout
    with pytest.raises(RuntimeError, match="dot failed"):
        viz.draw(y, layout="dot")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert viz.draw(y).layout == "crad"
    with pytest.raises(RuntimeError, match="graphviz"):
        viz.draw(y, layout="dot")
    y.release()
    with pytest.raises(crad.StaleValueError):
        viz.draw(y)


def test_notebook_display(arena):
    out = expression()
    assert repr(out).startswith("Value(data=")  # __repr__ is unchanged
    d = viz.draw(out, layout="crad")
    assert d._repr_svg_() == d.svg and d.svg in d._repr_html_() and "overflow:auto" in d._repr_html_()
    html = out._repr_html_()
    assert "<svg" in html and f"data {out.data:#.4g}" in html
    big = crad.leaves(np.ones(50_001)).sum()
    html = big._repr_html_()
    assert f"showing {viz.NOTEBOOK_MAX_NODES} of 100001 nodes" in html and len(html) < 100_000
    big.release()
    assert big._repr_html_() is None  # the notebook falls back to repr: Value(<released>)


def test_to_dot_shows_op_data_and_grad(arena):
    a = Value(2.0)
    b = a * a + 1.0
    b.backward()
    text = viz.to_dot(b)
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    assert 'label="*"' in text and 'label="+"' in text
    assert "data 5.000 | grad 1.000" in text and "data 2.000 | grad 4.000" in text
    assert text.count(f"n{a._i} -> op") == 1  # a * a: one drawn edge
    assert text.count("shape=record") == 4  # a, a*a, the constant 1, the sum


def test_to_dot_cuts_big_graphs(arena):
    s = crad.leaves(np.ones(100)).sum()
    text = viz.to_dot(s, max_nodes=10)
    assert text.count("shape=record") == 10
    # 100 leaves + 99 adds
    assert "189 more nodes not shown (max_nodes=10)" in text and "showing 10 of 199 nodes" in text
    with pytest.raises(ValueError):
        viz.to_dot(s, max_nodes=0)
    with pytest.raises(TypeError):
        viz.to_dot(np.ones(3))


def test_render(arena, tmp_path, monkeypatch):
    y = Value(3.0).relu()
    with pytest.raises(ValueError, match="svg"):
        viz.render(y, tmp_path / "g.txt")
    if shutil.which("dot"):
        path = viz.render(y, tmp_path / "g.svg")
        assert "<svg" in open(path).read()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="install graphviz|Install graphviz"):
        viz.render(y, tmp_path / "h.svg")
    assert not os.path.exists(tmp_path / "h.svg")


@pytest.mark.parametrize("with_dot", [pytest.param(True, marks=pytest.mark.skipif(
    not shutil.which("dot"), reason="graphviz's dot is not installed")), False])
def test_draw_neuron_example(tmp_path, capsys, monkeypatch, with_dot):
    from crad.examples import draw_neuron
    if not with_dot:
        monkeypatch.setattr(shutil, "which", lambda name: None)
    with crad.Arena():
        d = draw_neuron.main([str(tmp_path / "n")])
        assert d.layout == ("dot" if with_dot else "crad")
    nodes, _ = parse((tmp_path / "n.svg").read_text())
    dot = (tmp_path / "n.dot").read_text()
    assert sum(t.startswith("n") for t in nodes) == dot.count("shape=record") == d.shown == 10
    assert [nodes[t][1] for t in nodes if t.startswith("op")].count(["ReLU"]) == 1
    assert "n.svg written" in capsys.readouterr().out


# -- a real browser ---------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def png_pixels(data):
    """RGB(A) pixels of an 8-bit, non-interlaced PNG as a (h, w, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    ch = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * ch
    img = np.zeros((h, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for r in range(h):
        f, line = raw[r * (stride + 1)], np.frombuffer(raw, np.uint8, stride, r * (stride + 1) + 1).astype(np.int64)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average, Paeth depend on the pixel to the left: byte by byte
            cur = np.zeros(stride, np.int64)
            for i in range(stride):
                a = cur[i - ch] if i >= ch else 0
                b, c = prev[i], prev[i - ch] if i >= ch else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        img[r] = prev = cur
    return img.reshape(h, w, ch)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                             "the SVG was not checked in a real browser")
def test_svg_renders_in_headless_chromium(arena, tmp_path):
    d = viz.draw(expression(), layout="crad")
    page = tmp_path / "graph.svg"
    d.save(page)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1400,300", page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists(), "chromium wrote no screenshot"
    rgb = png_pixels(shot.read_bytes())[:, :, :3]
    ink = rgb.min(axis=2) < 128  # dark pixels: outlines, edges and text
    assert ink.mean() > 0.005, "the screenshot is blank"
    cols = np.flatnonzero(ink.any(axis=0))
    width = float(d.svg.split('width="')[1].split('"')[0])
    assert cols[0] < 20 and cols[-1] > min(width, 1400) - 20  # the drawing spans its whole width
    assert not (rgb[ink][:, 0] > rgb[ink][:, 2] + 80).any()  # no red: not an XML error page


# -- training curves ----------------------------------------------------------------
def no_matplotlib(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_training_curve_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    losses = np.exp(-np.linspace(0, 5, 400)) + 0.01 * np.random.default_rng(0).random(400)
    path = plots.training_curve(tmp_path / "c.png", losses, accuracy=[(200, 0.9), (400, 0.95)],
                                title="t", samples=["emma", "olivia"], side=lambda ax: ax.plot([0, 1]))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000
    assert list(plots.smooth([1.0, 2.0, 3.0, 5.0], window=2)) == [1.0, 1.5, 2.5, 4.0]
    assert list(plots.smooth([2.0, 4.0], window=9)) == [2.0, 3.0]
    with pytest.raises(ValueError, match="losses"):
        plots.training_curve(tmp_path / "d.png", [])


def test_without_matplotlib_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    from crad.examples import toy
    no_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'crad\[plot\]'"):
        plots.training_curve(tmp_path / "c.png", [1.0])
    plots.ensure(None)  # no plot asked for: nothing to check
    with crad.Arena() as a, pytest.raises(SystemExit, match=r"--plot .*pip install 'crad\[plot\]'"):
        toy.main(["--steps", "5", "--plot", str(tmp_path / "t.png")])
    assert a.live == 0 and not os.listdir(tmp_path)  # refused before training


@pytest.mark.parametrize("name", ["toy", "moons"])
def test_examples_plot(name, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from importlib import import_module
    path = tmp_path / f"{name}.png"
    with crad.Arena():
        import_module(f"crad.examples.{name}").main(["--steps", "20", "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"written to {path}" in capsys.readouterr().out


# the data root (holding mnist/), as the other tests read it
SHARED = os.environ.get("CRAD_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "mnist")),
                    reason="no MNIST under the data root ($CRAD_DATA_DIR or ../shared/data)")
def test_mnist_plot_has_a_test_accuracy_per_epoch(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from crad.examples import mnist
    seen = {}
    monkeypatch.setattr(plots, "training_curve", lambda path, losses, **kw: seen.update(kw, losses=losses))
    with crad.Arena():
        acc = mnist.main(["--data-dir", SHARED, "--limit", "320", "--epochs", "2", "--checkpoint", "",
                          "--plot", str(tmp_path / "m.png")])
    assert len(seen["losses"]) == 20 and seen["accuracy"] == [(10, pytest.approx(seen["accuracy"][0][1])),
                                                              (20, acc)]
