"""The benchmark suite: its pure-Python peer is correct, its ratios come from interleaved rounds,
and ``crad bench`` runs from an installed copy outside the source tree."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import crad
from crad.bench import WORKLOADS, common
from crad.bench.__main__ import select
from crad.bench.pyvalue import Value as PyValue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _expression(a, b):
    """Every op of the peer, its reflected forms and constants."""
    c = a * b + 2 - a / b + (a ** 3).tanh() + (b * b).exp().log() + (3 - a).relu() + 2 / a - b * 2 + (-a)
    return c * c + (a * 0.5).relu() * 4


@pytest.mark.parametrize("x, y", [(1.5, -0.7), (-0.3, 2.2)])
def test_pyvalue_gradients_match_central_differences(x, y):
    a, b = PyValue(x), PyValue(y)
    out = _expression(a, b)
    out.backward()
    h = 1e-6
    da = (_expression(PyValue(x + h), PyValue(y)).data - _expression(PyValue(x - h), PyValue(y)).data) / (2 * h)
    db = (_expression(PyValue(x), PyValue(y + h)).data - _expression(PyValue(x), PyValue(y - h)).data) / (2 * h)
    assert a.grad == pytest.approx(da, rel=1e-6) and b.grad == pytest.approx(db, rel=1e-6)
    with crad.Arena():  # the same graph as crad's: the same value, and the same node count
        ca, cb = crad.Value(x), crad.Value(y)
        ref = _expression(ca, cb)
        ref.backward()
        assert out.data == pytest.approx(ref.data, rel=1e-12)
        assert (a.grad, b.grad) == pytest.approx((ca.grad, cb.grad), rel=1e-12)
        del ca, cb
        assert crad.current_arena().live == _graph_size(out)


def _graph_size(root):
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(v._prev)
    return len(seen)


def test_pyvalue_shared_operands_and_a_deep_chain_without_recursion():
    a = PyValue(3.0)
    (a * a + a).backward()  # d/da (a^2 + a) = 2a + 1, through a diamond
    assert a.grad == 7.0
    x = PyValue(0.5)
    y = x
    for _ in range(200_000):  # 200x the default recursion limit
        y = (y * 1.0001 + 0.001).relu()
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 200_000, rel=1e-9)
    with pytest.raises(TypeError, match="constant"):
        a ** a


def test_interleave_alternates_the_order():
    calls = []
    engines = {n: (lambda n=n: calls.append(n) or {}) for n in ("crad", "peer", "other")}
    common.interleave(engines, 3)
    assert calls == ["crad", "peer", "other", "other", "peer", "crad", "crad", "peer", "other"]


def test_summarize_takes_the_median_of_per_round_ratios():
    samples = {"crad x": [dict(rate=10.0, note="a"), dict(rate=40.0, note="b"), dict(rate=9.0, note="c")],
               "peer": [dict(rate=1.0, note="p"), dict(rate=2.0, note="q"), dict(rate=3.0, note="r")],
               "broken": [dict(rate=None), dict(rate=None), dict(rate=None)]}
    rows = {r["engine"]: r for r in common.summarize(samples, "rate", workload="T", N=5)}
    crad_row = rows["crad x"]
    assert crad_row["rate"] == 10.0 and crad_row["note"] == "a" and crad_row["N"] == 5
    # per round: 10/1, 40/2, 9/3 -> median 10, spread 3..20 (the ratio of medians would also be 10/2 = 5)
    assert crad_row["ratios"]["peer"] == dict(median=10.0, min=3.0, max=20.0, pairs=3)
    assert crad_row["x peer"] == "10.0x (3.0-20.0)"
    assert "x broken" not in crad_row and "ratios" not in rows["peer"]
    slower = common.summarize({"crad": [dict(s=2.0)], "peer": [dict(s=500.0)]}, "s", higher_is_better=False)
    assert slower[0]["x peer"] == "250x (250-250)"
    table = common.table(list(rows.values()))
    assert table.splitlines()[0].endswith("| x peer |")  # ratio columns last


def test_only_selects_registered_workloads():
    assert select("w0", quick=False) == ["W0", "W0 memory"]
    assert select("W2,compile", quick=True) == ["compile", "W2"]
    assert select(None, quick=True) == [n for n, w in WORKLOADS.items() if w.quick]
    assert "W4" not in select(None, quick=True) and "W4" in select(None, quick=False)
    with pytest.raises(SystemExit, match="W9"):
        select("W9", quick=False)


def test_load_probe_measures_bandwidth():
    assert common.load_probe(0.05) > 0.01  # GB/s: any machine copies faster than 10 MB/s
    assert "GB/s" in common.load_line()


def test_crad_bench_runs_from_an_installed_copy(tmp_path):
    """pip-install a copy of the project into a directory, then run its console script from
    elsewhere: the suite must ship in the package and report ratios to its peers."""
    src = tmp_path / "src"  # a clean copy: building in the checkout would leave build/ behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "crad"), src / "crad", ignore=shutil.ignore_patterns("__pycache__", "*.nb?"))
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # an isolated build (pip's default): a fresh venv's own setuptools may be older than pyproject asks
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(src)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([str(target / "bin" / "crad"), "bench", "--quick", "--only", "W0", "--rounds", "1"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert f"from {target / 'crad'}" in out  # the installed copy ran, not the checkout
    assert "load before the run:" in out and "GB/s" in out
    bulk = next(line for line in out.splitlines() if line.startswith("| crad bulk | 10,000 |"))
    assert re.search(r"\| [\d,.]+x \([\d,.]+-[\d,.]+\) \|", bulk), bulk  # a ratio with its spread
    assert "## W0 memory" in out
