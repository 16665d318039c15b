import gc

import pytest

import crad
import crad.value


@pytest.fixture
def arena():
    """A fresh arena made current for the test; checks nothing leaked into it."""
    with crad.Arena(capacity=64) as a:
        yield a


@pytest.fixture(params=["sweep", "kahn"])
def backward_path(request, monkeypatch):
    """Run a test under both backward algorithms (ordered sweep and Kahn)."""
    monkeypatch.setattr(crad.value, "_BACKWARD_SWEEP", request.param == "sweep")
    return request.param


def collect():
    gc.collect()
