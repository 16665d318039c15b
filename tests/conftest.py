import gc

import pytest

import crad
import crad.value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each phase's report on the item (the arena fixture reads it)."""
    rep = (yield).get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def arena(request):
    """A fresh arena made current for the test; checks nothing leaked into it.

    After a passing test (whose locals are gone): collect cycles, then every
    node must have been freed and the columns' invariants must hold. A
    failing test keeps its frames (and nodes) alive in the traceback, so the
    leak check is skipped then: the test's own failure is the news.
    """
    from test_arena import check_invariants
    with crad.Arena(capacity=64) as a:
        yield a
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        gc.collect()
        assert a.live == 0, f"{a.live} nodes leaked: still alive after the test"
        check_invariants(a)


@pytest.fixture(params=["sweep", "kahn"])
def backward_path(request, monkeypatch):
    """Run a test under both backward algorithms (ordered sweep and Kahn)."""
    monkeypatch.setattr(crad.value, "_BACKWARD_SWEEP", request.param == "sweep")
    return request.param

