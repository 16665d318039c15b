"""Each primitive's forward value and gradient, against float64 central differences."""
import math

import numpy as np
import pytest

from crad import Value

H = 1e-6
GRID = [-3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.5]

UNARY = {
    "relu": (lambda v: v.relu(), lambda x: max(x, 0.0), lambda x: x != 0.0),
    "exp": (lambda v: v.exp(), math.exp, lambda x: True),
    "log": (lambda v: v.log(), lambda x: math.log(x), lambda x: x > 1e-2),
    "tanh": (lambda v: v.tanh(), math.tanh, lambda x: True),
}
for c in (2, 3, -1, 0.5, -1.5, 0):
    UNARY[f"pow{c}"] = (lambda v, c=c: v ** c, lambda x, c=c: x ** c,
                        lambda x, c=c: (x > 1e-2) if c != int(c) or c < 0 else True)


def central(f, x):
    return (f(x + H) - f(x - H)) / (2 * H)


# Points where the op is smooth; the others are checked exactly in test_edges.
SMOOTH = [(name, x) for name in sorted(UNARY) for x in GRID if UNARY[name][2](x)]


@pytest.mark.parametrize("name, x", SMOOTH)
def test_unary_gradient(arena, backward_path, name, x):
    build, ref, _ = UNARY[name]
    v = Value(x)
    y = build(v)
    y.backward()
    assert y.data == pytest.approx(ref(x), rel=1e-15, abs=0)
    assert v.grad == pytest.approx(central(ref, x), rel=1e-6, abs=1e-8)


PAIRS = [(op, x, y) for op in "+*-/" for x in GRID for y in GRID if op != "/" or abs(y) > 1e-2]


@pytest.mark.parametrize("op, x, y", PAIRS)
def test_binary_gradient(arena, backward_path, op, x, y):
    f = {"+": lambda p, q: p + q, "*": lambda p, q: p * q,
         "-": lambda p, q: p - q, "/": lambda p, q: p / q}[op]
    a, b = Value(x), Value(y)
    out = f(a, b)
    out.backward()
    assert out.data == pytest.approx(f(x, y), rel=1e-15)
    assert a.grad == pytest.approx(central(lambda t: f(t, y), x), rel=1e-6, abs=1e-8)
    assert b.grad == pytest.approx(central(lambda t: f(x, t), y), rel=1e-6, abs=1e-8)


def test_edges(arena):
    """IEEE and numpy semantics, and no exception from inside a kernel."""
    assert Value(0.0).log().data == -math.inf
    assert math.isnan(Value(-1.0).log().data)
    assert math.isnan((Value(-8.0) ** (1 / 3)).data)
    assert (Value(0.0) ** -1).data == math.inf
    assert Value(1000.0).exp().data == math.inf
    assert math.isnan(Value(math.nan).relu().data)
    assert (Value(1.0) / 0).data == math.inf
    z = Value(0.0)
    r = z.relu()
    r.backward()
    assert r.data == 0.0 and z.grad == 0.0  # relu'(0) = 0
    w = Value(0.0)
    lg = w.log()
    lg.backward()
    assert w.grad == math.inf  # d log(x) / dx = 1 / x at 0
    n = Value(-1.0)
    s = n ** 0.5
    s.backward()
    assert math.isnan(s.data) and math.isnan(n.grad)


def test_ops_match_numpy_on_grid(arena):
    xs = np.array(GRID)
    for x in xs:
        with np.errstate(all="ignore"):
            assert Value(x).exp().data == np.exp(x)
            assert Value(x).tanh().data == np.tanh(x)
            got, want = Value(x).log().data, np.log(x)
            assert got == want or (math.isnan(got) and math.isnan(want))


def test_reads_table_matches_each_backward_rule():
    """ops.TABLE says what each backward rule reads (the batched tape frees
    every other value row early): NaN in anything else must not reach the result."""
    from crad.ops import READS_OUT, READS_X, READS_Y, TABLE, Op
    from crad.ops import backward as rule
    nan = math.nan
    for code, (name, _, _) in enumerate(TABLE):
        assert Op[name] == code
        x = 0.7 if READS_X[code] else nan
        y = -1.3 if READS_Y[code] else nan
        out = 0.4 if READS_OUT[code] else nan
        gx, gy = rule.py_func(code, x, y, 2.0, out, 1.5)
        assert math.isfinite(gx) and math.isfinite(gy), name
