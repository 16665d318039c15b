"""Parallel batched replay: thread settings, agreement with one thread,
determinism, concurrent launches, fork, and the serial path for small batches."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_tape import build, program

import crad
from crad import MLP, losses, threads
from crad import kernels as K
from crad.tape import _plain

MOST = numba.config.NUMBA_NUM_THREADS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def parallel(monkeypatch):
    """Every batch of at least 2 samples runs on the parallel kernel."""
    monkeypatch.setattr(threads, "MIN_SAMPLES_PER_THREAD", 1)
    monkeypatch.setattr(threads, "MIN_WORK_PER_THREAD", 1)
    n = threads.get_num_threads()
    yield
    threads.set_num_threads(n)


def run_python(code, **env):
    """Run code in a fresh interpreter (a crash fails the test, not pytest)."""
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "tests"), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_thread_settings():
    n = threads.get_num_threads()
    try:
        assert crad.get_num_threads() == n
        crad.set_num_threads(1)
        assert crad.get_num_threads() == 1
        crad.set_num_threads(np.int64(MOST))
        assert crad.get_num_threads() == MOST
        for bad, error in [(0, ValueError), (-1, ValueError), (MOST + 1, ValueError), ("2", TypeError),
                           (2.0, TypeError), (True, TypeError), (None, TypeError)]:
            with pytest.raises(error, match="threads|from 1"):
                crad.set_num_threads(bad)
            assert crad.get_num_threads() == MOST  # unchanged
    finally:
        threads.set_num_threads(n)


def test_default_and_environment():
    code = "import crad, numba; print(crad.get_num_threads(), numba.config.NUMBA_NUM_THREADS)"
    got, most = run_python(code, **{threads.ENV: ""}).stdout.split()
    assert got == most  # default: every core numba sees
    assert run_python(code, **{threads.ENV: "1"}).stdout.split()[0] == "1"
    for bad in ("two", "0", str(MOST + 1)):
        done = run_python(code, **{threads.ENV: bad})
        assert done.returncode != 0 and "ValueError" in done.stderr and "CRAD_NUM_THREADS" in done.stderr


def mlp_tape(seed=0):
    model = MLP(5, [7, 3], seed=seed)
    tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(np.zeros((1, 5))),
                        crad.leaves(np.eye(3)[[0]]))
    return model, tape


def batch_grads(model, tape, X, Y, reduction="sum"):
    model.zero_grad()
    out = tape.batch(X, Y, reduction=reduction)
    return out, model.parameters().grad


@pytest.mark.parametrize("B", [2, 3, 7, 32, 101])
def test_parallel_equals_one_thread_on_mlps(arena, parallel, B):
    rng = np.random.default_rng(B)
    model, tape = mlp_tape()
    X, Y = rng.normal(size=(B, 1, 5)), np.eye(3)[rng.integers(0, 3, B)][:, None, :]
    threads.set_num_threads(1)
    out1, g1 = batch_grads(model, tape, X, Y)
    assert list(tape._scratch) == [(B, 1, False)]
    threads.set_num_threads(MOST)
    outn, gn = batch_grads(model, tape, X, Y)
    assert MOST > 1 and {k[:2] for k in tape._scratch} == {(B, 1), (B, min(MOST, B))}
    np.testing.assert_array_equal(outn, out1)  # each sample's forward is the same arithmetic
    np.testing.assert_allclose(gn, g1, rtol=1e-12, atol=1e-15)
    again = batch_grads(model, tape, X, Y)[1]
    np.testing.assert_array_equal(again, gn)  # deterministic
    model.zero_grad()
    tape.batch(X, Y)  # mean, and accumulation into grads already there
    tape.batch(X, Y)
    np.testing.assert_allclose(model.parameters().grad, 2 * g1 / B, rtol=1e-12, atol=1e-15)


def test_more_chunks_than_threads(arena):
    """The kernel's result depends on the number of chunks only: chunk counts
    above the core count (a laptop's 8 threads on this machine) agree too."""
    rng = np.random.default_rng(3)
    model, tape = mlp_tape()
    X, Y = rng.normal(size=(11, 1, 5)), np.eye(3)[rng.integers(0, 3, 11)][:, None, :]
    ref, g1 = batch_grads(model, tape, X, Y)
    prog = tape._compiled
    nv, ng, nparams = tape._rows
    m = prog[0].shape[0]
    Xf = np.ascontiguousarray(X.reshape(11, -1))
    Xall = np.hstack([Xf, Y.reshape(11, -1)])
    for T in (2, 3, 4, 11):
        c = -(-11 // T)
        runs = []
        for wide in (True, True, False):  # twice on T threads, then in one pass (tape_batch, T chunk sums)
            model.zero_grad()
            A = np.full((T, nparams), np.nan)
            if wide:
                out = K.tape_batch_parallel(arena.F, *prog, Xall, np.empty((T, nv, c)), np.empty((T, ng, c)), A, 1.0,
                                            _plain(m))
            else:
                out = K.tape_batch(arena.F, *prog, Xall, np.empty((nv, c)), np.empty((ng, c)), A, 1.0, _plain(m), T)
            np.testing.assert_array_equal(out, ref)
            runs.append(model.parameters().grad)
        np.testing.assert_array_equal(runs[0], runs[1])
        np.testing.assert_array_equal(runs[0], runs[2])
        np.testing.assert_allclose(runs[0], g1, rtol=1e-12, atol=1e-15)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program, st.integers(2, 9), st.randoms(use_true_random=False))
def test_parallel_equals_one_thread_on_random_programs(parallel, prog, B, rnd):
    p0, steps, x0 = prog
    X = np.array([[rnd.choice([-1.5, -0.5, 0.25, 1.0, 2.0]) * v for v in x0] for _ in range(B)])
    with crad.Arena(capacity=8), np.errstate(all="ignore"):
        params = crad.leaves(np.array(p0))
        tape = crad.capture(lambda x: build(params, x, steps), crad.leaves(np.array(x0)))
        threads.set_num_threads(1)
        outs, scale = [], np.zeros(len(p0))  # each sample alone, and the magnitudes summed
        for b in range(B):
            params.grad = 0.0
            outs.append(tape.batch(X[b:b + 1], reduction="sum"))
            scale += np.abs(params.grad)
        params.grad = 0.0
        out1 = tape.batch(X, reduction="sum")
        g1 = params.grad
        threads.set_num_threads(MOST)
        params.grad = 0.0
        outn = tape.batch(X, reduction="sum")
        gn = params.grad
        assume(np.isfinite(out1).all() and np.isfinite(scale).all())
        np.testing.assert_array_equal(out1, np.concatenate(outs))
        np.testing.assert_array_equal(outn, out1)
        # The same terms summed in another order: within 1e-12 of their summed
        # magnitudes, plus a few ulps of 1 (2.2e-16 each) for cancellation inside a
        # sample, whose terms (inputs and parameters of magnitude <= 2 through at
        # most 5 ops) can be O(1) while their sum is small (seen: 3e-5 off by 1 ulp of 1).
        assert (np.abs(gn - g1) <= 1e-12 * scale + 1e-14).all()
        del tape


def test_small_batches_stay_serial(arena):
    """Below the measured sizes a batch runs the serial kernel on the calling thread."""
    assert threads.chunks(1, 10**9) == 1
    assert threads.chunks(10**6, threads.MIN_WORK_PER_THREAD) == 1
    assert threads.chunks(2 * threads.MIN_SAMPLES_PER_THREAD - 1, 10**9) == 1
    n = threads.get_num_threads()
    try:
        threads.set_num_threads(MOST)
        assert threads.chunks(10**6, 10**12) == MOST
        threads.set_num_threads(1)
        assert threads.chunks(10**6, 10**12) == 1
    finally:
        threads.set_num_threads(n)


def test_parallel_kernel_compiles_only_when_used():
    """Time to the first gradient does not grow: small batches never load the
    parallel kernel or a threading layer."""
    done = run_python("""
        import numpy as np, numba, crad
        from crad import MLP, losses
        from crad import kernels as K
        model = MLP(3, [4, 1], seed=0)
        tape = crad.capture(lambda x: losses.mse(model(x), np.zeros((1, 1))), crad.leaves(np.zeros((1, 3))))
        tape.batch(np.ones((8, 1, 3)))
        assert not K.tape_batch_parallel.signatures, "compiled"
        try:
            numba.threading_layer()
        except ValueError:
            print("no layer")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no layer"


CONCURRENT = """
    import threading, numpy as np, crad
    from crad import MLP, losses, threads
    threads.MIN_SAMPLES_PER_THREAD = threads.MIN_WORK_PER_THREAD = 1

    def setup(seed):  # built in the thread that uses it: an arena belongs to its thread
        with crad.Arena():
            model = MLP(6, [8, 2], seed=seed)
            tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(np.zeros((1, 6))),
                                crad.leaves(np.eye(2)[[0]]))
        tape._pace.wide = lambda: True  # parallel launches whatever the load
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(64, 1, 6)), np.eye(2)[rng.integers(0, 2, 64)][:, None, :]
        model.zero_grad()
        tape.batch(X, Y)
        return model, tape, X, Y, model.parameters().grad

    def job(seed):
        model, tape, X, Y, want = setup(seed)
        go.wait(timeout=60)
        for _ in range(200):
            model.zero_grad()
            tape.batch(X, Y)
            results.append(np.array_equal(model.parameters().grad, want))

    results = []
    go = threading.Barrier(3)
    ts = [threading.Thread(target=job, args=(k,)) for k in range(3)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    import numba
    print(numba.threading_layer(), len(results), all(results))
"""


@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_concurrent_batches_from_python_threads(layer):
    """Three Python threads replaying batches at once: no abort (workqueue
    aborts on concurrent launches without the lock) and bit-identical results."""
    done = run_python(CONCURRENT, NUMBA_THREADING_LAYER=layer)
    assert done.returncode == 0, done.stderr[-2000:]
    name, n, ok = done.stdout.split()
    assert (name == "workqueue") == (layer == "workqueue") and n == "600" and ok == "True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_after_a_parallel_replay():
    """GNU OpenMP terminates a forked child that launches a parallel region
    after its parent did; crad's child runs the chunks in one pass (the same bits)."""
    done = run_python("""
        import os, numpy as np, crad, numba
        from crad import MLP, losses, threads
        threads.MIN_SAMPLES_PER_THREAD = threads.MIN_WORK_PER_THREAD = 1
        model = MLP(4, [5, 1], seed=0)
        tape = crad.capture(lambda x: losses.mse(model(x), np.ones((1, 1))), crad.leaves(np.zeros((1, 4))))
        X = np.random.default_rng(0).normal(size=(16, 1, 4))
        tape._pace.wide = lambda: True  # on 2 threads whatever the load
        model.zero_grad(); want = tape.batch(X); want_grad = model.parameters().grad
        pid = os.fork()
        if pid == 0:
            model.zero_grad(); got = tape.batch(X)
            os._exit(0 if np.array_equal(got, want) and np.array_equal(model.parameters().grad, want_grad) else 3)
        _, status = os.waitpid(pid, 0)
        print(numba.threading_layer(), os.waitstatus_to_exitcode(status))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == "0", done.stdout + done.stderr


def test_info_shows_threads(capsys):
    from crad import cli
    cli.main(["info"])
    text = capsys.readouterr().out
    assert f"threads: {threads.get_num_threads()}" in text
    assert any(f"layer {name}" in text for name in ("omp", "tbb", "workqueue"))


def test_pace_runs_the_faster_way_and_probes_the_other():
    pace = threads.Pace()
    cost = {True: 1.0, False: 3.0}

    def calls(k):
        ways = []
        for _ in range(k):
            ways.append(pace.wide())
            pace.record(ways[-1], cost[ways[-1]])
        return ways
    assert calls(4) == [False, False, True, True]  # each way: a warm-up call (may compile), then a timed one
    assert pace.cost == {True: 1.0, False: 3.0}
    ways = calls(500)  # calls 5 .. 504: two-call probes of the slower way, the gap doubling from 16
    assert [k + 5 for k, w in enumerate(ways) if not w] == [16, 17, 49, 50, 114, 115, 243, 244, 500, 501]
    assert pace.gap == 512
    cost[True] = 5.0  # the cores got busy: one pass becomes faster, and the gap starts again
    ways = calls(100)  # calls 505 .. 604: the median flips after two slow calls; probes at 522, then 555
    assert [505 + k for k, w in enumerate(ways) if w] == [505, 506, 522, 523, 555, 556] and pace.gap == 64
    assert pace.runs == {True: 2 + 490 + 6, False: 2 + 10 + 94}


def test_pace_ignores_one_slow_call_and_forgets_stale_timings():
    """A single slow call (a collection, a preempted thread) does not flip the
    choice; a probe replaces the other way's stale timings (an early spike
    must not keep the faster way out for the rest of a run)."""
    pace = threads.Pace()
    for way, t in ((False, 0), (False, 3.0), (True, 0), (True, 1.0)):
        assert pace.wide() == way
        pace.record(way, t)
    assert pace.wide() is True
    pace.record(True, 50.0)  # one spike
    for t in (1.0, 1.0, 9.0, 9.0):  # the spike leaves the window; then two slow calls of three
        assert pace.wide() is True and pace.cost[True] == 1.0
        pace.record(True, t)
    assert pace.choice is False  # one pass is now faster
    while pace.wide() is False:  # until the probe; the wide timings (1, 9, 9) are stale by then
        pace.record(False, 3.0)
    pace.record(True, 1.0)
    assert pace.wide() is True  # the probe's second call
    pace.record(True, 1.0)
    assert pace.choice is True and pace.cost[True] == 1.0 and pace.gap == threads.Pace.PROBE


@pytest.mark.parametrize("wide", [True, False])
def test_wide_and_narrow_give_the_same_bits(arena, parallel, monkeypatch, wide):
    """The chunks, and so the result, depend on the thread count only, not on
    whether they run on that many threads or one after another."""
    rng = np.random.default_rng(5)
    model, tape = mlp_tape()
    X, Y = rng.normal(size=(40, 1, 5)), np.eye(3)[rng.integers(0, 3, 40)][:, None, :]
    threads.set_num_threads(MOST)
    ref = batch_grads(model, tape, X, Y)
    monkeypatch.setattr(tape._pace, "wide", lambda: wide)
    for _ in range(3):
        got = batch_grads(model, tape, X, Y)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
