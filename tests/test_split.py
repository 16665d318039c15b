"""Split programs (``kernels.split``): a batch's instructions dealt out to
threads in independent bins, each bin run over every sample.

The oracle is the serial kernel on the unsplit program: the same values bit
for bit, gradients within the rounding of a reordered sum. What the serial
comparison cannot see, two threads writing the same row at once, is checked
on the program itself: no bin reads or writes a row another bin writes.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_batch import H_PLUS_H, build, program
from test_dag import leaf
from test_threads import MOST, mlp_tape

import crad
from crad import MLP, losses, threads
from crad import kernels as K
from crad.kernels.replay import (
    FMA_IN,
    INPUT,
    PARAM,
    Q_CODE,
    Q_G,
    Q_GX,
    Q_GY,
    Q_V,
    Q_W,
    Q_X,
    Q_Y,
    ROW,
    SEG_LO,
    SEG_ROW,
    SKIP_FWD,
)


def rows_used(Q, lo, hi):
    """(V rows written, V rows read, G rows touched) by instructions lo .. hi - 1."""
    q = Q[lo:hi]
    code = q[:, Q_CODE]
    lk, rk, case = (code >> 5) & 7, (code >> 8) & 7, (code >> 13) & 7
    written = set(q[(code & SKIP_FWD) == 0, Q_V])
    read = set(q[(lk == ROW) | (lk == INPUT), Q_X]) | set(q[(rk == ROW) | (rk == INPUT), Q_Y])
    read |= set(q[case >= FMA_IN, Q_Y])  # FMA_IN, FMA_ROW, FMA_RB: u
    grads = set(q[q[:, Q_G] >= 0, Q_G]) | set(q[lk == ROW, Q_GX]) | set(q[rk == ROW, Q_GY])
    return written, read, grads


def params_used(Q, lo, hi):
    """The parameters (indices into the shared scalars) instructions lo .. hi - 1 add gradients to."""
    q = Q[lo:hi]
    code = q[:, Q_CODE]
    return (set(q[(code >> 5) & 7 == PARAM, Q_X]) | set(q[(code >> 8) & 7 == PARAM, Q_Y])
            | set(q[(code >> 16) & 1 == 1, Q_W]))


def check_direct(Q, segs, T):
    """The segments add to the arena's grads directly (SEG_ROW -1) exactly
    when no parameter is used by two bins (bins run at once)."""
    sec = sections(segs)
    bins = [params_used(Q, sec[T + t], sec[T + t + 1]) for t in range(T)]
    shared = any(bins[t] & bins[u] for t in range(T) for u in range(t + 1, T))
    rows = segs[:, :, SEG_ROW]
    assert (rows < 0).all() if not shared else (rows >= 0).all()
    return not shared


def sections(segs):
    """The first instruction of each part of the loads, of each bin and of the tail."""
    return np.concatenate([segs[0, :, SEG_LO], segs[1, :, SEG_LO], segs[2, :1, SEG_LO]])


def check_bins_apart(Q, sec, T):
    """Bins may run at once: none touches a row another writes (or a grad row of another)."""
    bins = [rows_used(Q, sec[T + t], sec[T + t + 1]) for t in range(T)]
    for t in range(T):
        for u in range(t + 1, T):
            (w1, r1, g1), (w2, r2, g2) = bins[t], bins[u]
            assert not w1 & (w2 | r2) and not w2 & r1, (t, u)
            assert not g1 & g2, (t, u)
    loads = Q[sec[0]:sec[T]]
    assert (loads[:, Q_CODE] & 31 == 0).all()  # LEAF: the input loads, nothing else
    assert not (Q[sec[T]:, Q_CODE] & 31 == 0).any()


def run_split(arena, tape, X, T, parallel_kernel):
    program, segs, (nv, ng), _ = K.plan(tape._P, tape._args, T)
    A = np.full((T, tape._rows[2]), np.nan)  # the kernel zeroes what it uses
    kernel, segs = (K.tape_split_parallel, (segs,)) if parallel_kernel else (K.tape_batch, (segs.reshape(-1, 4), 1))
    return kernel(arena.F, *program, np.ascontiguousarray(X), np.full((nv, len(X)), np.nan),
                  np.full((ng, len(X)), np.nan), A, 1.0, *segs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program, st.lists(leaf, min_size=9, max_size=9), st.sampled_from([2, 3, 5]))
@example(H_PLUS_H, [0.75] * 9, 2)
@example(dict(H_PLUS_H, root=0), [0.75] * 9, 2)  # a parameter as the root
def test_split_equals_serial_on_random_programs(prog, data, T):
    B, k = 3, len(prog["inputs"])
    X = np.array((data * 2)[: B * k]).reshape(B, k)
    with crad.Arena(capacity=8) as a, np.errstate(all="ignore"):
        params = crad.leaves(np.array(prog["params"]))
        tape = crad.capture(lambda x: build(params, x, prog), crad.leaves(np.array(prog["inputs"])))
        threads.set_num_threads(1)
        params.grad = 0.0
        want = tape.batch(X, reduction="sum")
        g_want = params.grad
        program_, segs, _, _ = K.plan(tape._P, tape._args, T)
        check_bins_apart(program_[0], sections(segs), T)
        check_direct(program_[0], segs, T)
        got = []
        for parallel_kernel in (False, True, True):
            params.grad = 0.0
            out = run_split(a, tape, X, T, parallel_kernel)
            np.testing.assert_array_equal(out, want)
            got.append(params.grad)
        np.testing.assert_array_equal(got[0], got[1])  # threads.Pace's two ways: the same bits
        np.testing.assert_array_equal(got[1], got[2])  # deterministic
        assume(np.isfinite(g_want).all() and (np.abs(g_want) < 1e6).all())
        np.testing.assert_allclose(got[0], g_want, rtol=1e-9, atol=1e-9)
        del tape


def test_plan_splits_an_mlp_into_balanced_bins(arena):
    """An MLP's first layer is one chain of multiply-adds per neuron: the
    bins share them out, and only the later layers and the loss are left."""
    model = MLP(64, [12, 3], seed=0)  # 12 neurons: as many per bin for T = 2 and 3
    tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(np.zeros((1, 64))),
                        crad.leaves(np.eye(3)[[0]]))
    tape.batch(np.zeros((2, 1, 64)), np.zeros((2, 1, 3)))  # compiles
    for T in (2, 3):
        (Q, *_), segs, _, span = K.plan(tape._P, tape._args, T)
        sec = sections(segs)
        check_bins_apart(Q, sec, T)
        sizes = np.diff(sec[T:])  # T bins, then the tail's start
        assert sizes.min() > 0.9 * sizes.max() and (sizes > 0).all()
        assert Q.shape[0] - sec[2 * T] < 0.2 * Q.shape[0]  # the tail: layer 2 and the loss
        assert span < 0.75 * tape.computed
        loads = np.diff(sec[:T + 1])
        assert loads.sum() == 64 + 3 and loads.max() - loads.min() <= 1


def test_bins_sharing_a_parameter_sum_into_accumulators(arena):
    """Chains that share a weight (s below, in every neuron) land in
    different bins, which run at once: their gradients go through each
    bin's accumulator, added in bin order, not straight to the grads."""
    rng = np.random.default_rng(3)
    W, s = crad.leaves(rng.normal(size=(8, 16))), crad.leaves(np.array([0.7]))

    def f(x):
        return sum(((W[j] * x).sum() + s[0] * x[0]).relu() for j in range(8))

    tape = crad.capture(f, crad.leaves(np.zeros(16)))
    X = rng.normal(size=(5, 16))
    W.grad, s.grad = 0.0, 0.0
    want = tape.batch(X, reduction="sum")
    g_want = np.concatenate([W.grad.ravel(), s.grad])
    for T in (2, 3):
        (Q, *_), segs, _, _ = K.plan(tape._P, tape._args, T)
        assert not check_direct(Q, segs, T)
        got = []
        for parallel_kernel in (False, True):
            W.grad, s.grad = 0.0, 0.0
            np.testing.assert_array_equal(run_split(arena, tape, X, T, parallel_kernel), want)
            got.append(np.concatenate([W.grad.ravel(), s.grad]))
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_allclose(got[0], g_want, rtol=1e-12, atol=1e-12)
    model = MLP(16, [8, 2], seed=0)  # an MLP's weights each belong to one neuron: straight to the grads
    tape = crad.capture(lambda x: model(x).sum(), crad.leaves(np.zeros(16)))
    tape.batch(np.zeros((2, 16)))  # compiles
    (Q, *_), segs, _, _ = K.plan(tape._P, tape._args, 2)
    assert check_direct(Q, segs, 2)


def test_plan_leaves_a_chain_unsplit(arena):
    """A graph with no independent chains has no bins: all of it is the tail."""
    x = crad.leaves(np.array([0.5]))
    tape = crad.capture(lambda v: ((v * 2.0).tanh() * 3.0).exp().sum(), x)
    tape.batch(np.ones((2, 1)))
    (Q, *_), segs, _, span = K.plan(tape._P, tape._args, 2)
    sec = sections(segs)
    assert span == tape.computed and sec[2] == sec[4] == 1  # one load, empty bins, the rest the tail
    assert tape._split_for(64, 2) is None  # batch() splits the samples instead


@pytest.mark.parametrize("B", [4, 32])
def test_batch_uses_a_split_program_when_it_pays(arena, B):
    """tape.batch on T threads picks the split program for a wide first
    layer (threads.DECODE_SAMPLES), with the one-thread values and gradients."""
    saved = threads.MIN_SAMPLES_PER_THREAD, threads.MIN_WORK_PER_THREAD, threads.get_num_threads()
    threads.MIN_SAMPLES_PER_THREAD = threads.MIN_WORK_PER_THREAD = 1
    try:
        rng = np.random.default_rng(B)
        model = MLP(64, [12, 3], seed=1)
        tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(np.zeros((1, 64))),
                            crad.leaves(np.eye(3)[[0]]))
        X, Y = rng.normal(size=(B, 1, 64)), np.eye(3)[rng.integers(0, 3, B)][:, None, :]
        threads.set_num_threads(1)
        model.zero_grad()
        out1, g1 = tape.batch(X, Y), model.parameters().grad
        threads.set_num_threads(MOST)
        runs = []
        for _ in range(4):  # both of threads.Pace's ways, twice each
            model.zero_grad()
            np.testing.assert_array_equal(tape.batch(X, Y), out1)
            runs.append(model.parameters().grad)
        assert (B, MOST, "split") in tape._scratch
        assert tape._pace.runs[True] and tape._pace.runs[False]
        for g in runs:
            np.testing.assert_array_equal(g, runs[0])
        np.testing.assert_allclose(runs[0], g1, rtol=1e-12, atol=1e-15)
    finally:
        threads.MIN_SAMPLES_PER_THREAD, threads.MIN_WORK_PER_THREAD = saved[:2]
        threads.set_num_threads(saved[2])


def test_split_programs_shared_by_mlp_tapes_agree_across_thread_counts(arena):
    """The split program's result depends on T only: T above the core count agrees too."""
    model, tape = mlp_tape()
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(9, 1, 5)), np.eye(3)[rng.integers(0, 3, 9)][:, None, :]
    model.zero_grad()
    tape.batch(X, Y, reduction="sum")
    g1 = model.parameters().grad
    Xall = np.hstack([X.reshape(9, -1), Y.reshape(9, -1)])
    for T in (2, 3, 4, 8):
        model.zero_grad()
        run_split(arena, tape, Xall, T, True)
        np.testing.assert_allclose(model.parameters().grad, g1, rtol=1e-12, atol=1e-15)
