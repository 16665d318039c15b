"""Optimizer updates against their reference formulas, step by step.

The kernels and the references below evaluate the same expressions in the
same order in float64 (no fastmath), so they agree to the last bit up to
rounding of b ** t (numba's pow versus Python's): rtol 1e-14 is that bound.
"""
import numpy as np
import pytest

import crad
from crad import MLP, Value, Vector, losses, optim, threads

STEPS = 6


def scattered_parameters():
    """Parameters whose slots are out of order and in several runs (a
    bystander leaf between them), so that the kernels' slot runs and the
    state arrays' parameter order are both exercised."""
    a = crad.leaves(np.array([0.5, -1.5, 2.0]))
    bystander = Value(7.0)
    b = crad.leaves(np.array([-0.25, 3.0]))
    params = Vector([b[1], a[0], a[1], b[0], a[2]])
    return params, bystander


def grads(rng, n):
    """Gradients of mixed sign and size, a zero among them."""
    g = rng.normal(size=(STEPS, n)) * rng.choice([1e-3, 1.0, 30.0], size=(STEPS, n))
    g[2, 1] = 0.0
    return g


def sgd_reference(p, g, lr, momentum):
    p, v, out = p.copy(), np.zeros_like(p), []
    for gt in g:
        v = momentum * v + gt
        p = p - lr * v
        out.append(p)
    return out


def adam_reference(p, g, lr, b1, b2, eps):
    """Kingma and Ba (2015), Algorithm 1, with bias correction."""
    p, m, v, out = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for t, gt in enumerate(g, start=1):
        m = b1 * m + (1.0 - b1) * gt
        v = b2 * v + (1.0 - b2) * gt * gt
        p = p - lr * (m / (1.0 - b1 ** t)) / (np.sqrt(v / (1.0 - b2 ** t)) + eps)
        out.append(p)
    return out


@pytest.mark.parametrize("momentum", [0.0, 0.9, -0.5])
def test_sgd_matches_the_formula_step_by_step(arena, momentum):
    params, bystander = scattered_parameters()
    g = grads(np.random.default_rng(1), params.size)
    want = sgd_reference(params.data, g, 0.05, momentum)
    opt = optim.SGD(params, lr=0.05, momentum=momentum)
    for t in range(STEPS):
        params.grad = g[t]
        opt.step()
        np.testing.assert_allclose(params.data, want[t], rtol=1e-14, atol=0)
    assert bystander.data == 7.0


@pytest.mark.parametrize("betas, eps", [((0.9, 0.999), 1e-8), ((0.5, 0.8), 1e-3)])
@pytest.mark.parametrize("parallel", [False, True])
def test_adam_matches_the_formula_step_by_step(arena, monkeypatch, betas, eps, parallel):
    """On one thread, and (parallel) on every core, the scattered runs of
    slots cut into per-thread parts: the same arithmetic per parameter."""
    if parallel:
        monkeypatch.setattr(threads, "MIN_PARAMS_PER_THREAD", 1)
        monkeypatch.setattr(threads, "_num_threads", threads._most())
    params, bystander = scattered_parameters()
    g = grads(np.random.default_rng(2), params.size)
    want = adam_reference(params.data, g, 0.01, *betas, eps)
    opt = optim.Adam(params, lr=0.01, betas=betas, eps=eps)
    for t in range(STEPS):
        params.grad = g[t]
        opt.step()
        np.testing.assert_allclose(params.data, want[t], rtol=1e-14, atol=0)
    assert opt.t == STEPS and bystander.data == 7.0
    assert bool(opt._pace.runs[True] and opt._pace.runs[False]) == (parallel and threads._most() > 1)


@pytest.mark.parametrize("make", [lambda m: optim.SGD(m, lr=0.05, momentum=0.9),
                                  lambda m: optim.Adam(m, lr=0.01, betas=(0.8, 0.95))])
def test_state_dict_resumes_exactly(arena, make):
    """Training k steps, saving the state, and continuing in a fresh optimizer
    gives the same parameters, bit for bit, as training without a break."""
    X = np.random.default_rng(0).uniform(-1, 1, (8, 2))
    y = X[:, :1] * X[:, 1:]

    def train(model, opt, steps):
        for _ in range(steps):
            model.zero_grad()
            losses.mse(model(X), y).backward()
            opt.step()

    straight = MLP(2, [4, 1], seed=5)
    train(straight, make(straight), 6)
    resumed = MLP(2, [4, 1], seed=5)
    opt = make(resumed)
    train(resumed, opt, 3)
    state = opt.state_dict()
    opt2 = make(resumed)
    opt2.load_state_dict(state)
    train(resumed, opt2, 3)
    np.testing.assert_array_equal(resumed.parameters().data, straight.parameters().data)


def test_zero_grad_clears_only_the_parameters(arena):
    params, bystander = scattered_parameters()
    params.grad = 1.0
    bystander.grad = 2.0
    optim.SGD(params).zero_grad()
    np.testing.assert_array_equal(params.grad, 0.0)
    assert bystander.grad == 2.0
