"""Threads: every thread has its own default arena; an arena refuses other
threads; handles dropped in another thread are released by the owner."""
import gc
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crad_model as cm  # noqa: E402

import crad  # noqa: E402
from crad import Value  # noqa: E402
from crad.arena import ArenaThreadError  # noqa: E402


def run_threads(target, n):
    """Run target(k) in n threads; re-raise the first exception any raised."""
    errors = []

    def wrapped(k):
        try:
            target(k)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=wrapped, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def test_threads_hammer_their_own_default_arenas():
    results = {}

    def work(k):
        a = crad.current_arena()
        assert a is crad.default_arena() and a is not results.get("main")
        x, w = Value(0.5 + k), crad.leaves(np.arange(1.0, 5.0))
        for step in range(300):
            y = (x * 2.0 + 1.0).tanh() * (x ** 2)  # journal records
            z = (w * x).sum() + y                  # kernels between records
            if step % 3 == 0:
                z.backward()
            del y, z                               # drops queued behind records
            if step % 50 == 0:
                gc.collect()
        y = x * 3.0 + x
        x.grad = 0.0
        y.backward()
        gc.collect()
        results[k] = (x.grad, a.live)
        cm.invariants(a)

    results["main"] = crad.default_arena()
    run_threads(work, 4)
    for k in range(4):
        assert results[k] == (4.0, 1 + 4 + 3)  # x, w, and y's graph: constant leaf, mul, add


def test_two_threads_each_in_its_own_with_block():
    barrier = threading.Barrier(2)
    seen = {}

    def work(k):
        with crad.Arena(capacity=2) as a:
            barrier.wait()  # both blocks open at once
            v = crad.leaves([float(k), 1.0])
            s = (v * v).sum()
            barrier.wait()
            s.backward()
            assert crad.current_arena() is a
            seen[k] = (s.data, v.grad.tolist(), a.live)
            del s, v
            assert a.live == 0
        assert crad.current_arena() is crad.default_arena()

    run_threads(work, 2)
    assert seen == {0: (1.0, [0.0, 2.0], 5), 1: (2.0, [2.0, 2.0], 5)}


def test_a_value_used_in_another_thread_raises_and_changes_nothing(arena):
    x = Value(2.0)
    v = crad.leaves([1.0, 2.0])
    y = x * 3.0
    before = (arena.live, arena.stats()["made"])
    other = {}

    def work(_):
        mine = Value(1.0)
        other["arena"] = crad.current_arena()
        for f in (lambda: x + 1.0, lambda: x * x, lambda: y.backward(), lambda: x.retain(), lambda: v * 2.0,
                  lambda: v[0], lambda: v.data, lambda: crad.dot(v, v), lambda: x.exp(),
                  lambda: Value(1.0, arena=arena), lambda: crad.leaves([1.0], arena=arena), lambda: arena.live,
                  lambda: arena.__enter__(), lambda: crad.MLP(2, [1], arena=arena),
                  # a handle of this thread's arena mixed with one of the other's
                  lambda: Value(1.0) * x, lambda: Value(1.0) + y, lambda: crad.leaves([1.0, 2.0]) * v,
                  lambda: crad.dot(crad.leaves([1.0, 2.0]), v), lambda: crad.stack([crad.leaves([1.0, 2.0]), v]),
                  lambda: crad.capture(lambda a, b: (a * b).sum(), crad.leaves([1.0, 2.0]), v)):
            with pytest.raises(ArenaThreadError, match="another thread"):
                f()
        other["live"] = other["arena"].live
        del mine

    run_threads(work, 1)
    assert (arena.live, arena.stats()["made"]) == before
    assert other["live"] == 1
    assert y.data == 6.0 and x.data == 2.0
    cm.invariants(arena)


def test_handles_dropped_in_another_thread_are_released(arena):
    x = Value(1.0)
    made = [x * float(k) for k in range(500)] + [crad.leaves([1.0, 2.0]) for _ in range(50)]
    assert arena.live == 1 + 2 * 500 + 100

    def work(_):
        made.clear()  # the handles die in this thread: their releases are queued
        gc.collect()

    run_threads(work, 1)
    assert arena.live == 1
    cm.invariants(arena)


def test_releases_from_another_thread_while_the_owner_keeps_building():
    """The owner applies its journal over and over while another thread drops
    handles of its arena: every release must land, whenever it was queued."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for _ in range(3):  # the interleaving is up to the scheduler: several tries
            with crad.Arena() as arena:
                x = Value(1.0)
                pool = [x * float(k) for k in range(3000)]

                def dropper(_, pool=pool):
                    while pool:
                        try:
                            pool.pop()
                        except IndexError:
                            break
                        time.sleep(0)  # let the owner run: drops spread over its syncs

                t = threading.Thread(target=dropper, args=(0,))
                t.start()
                kept = []
                for k in range(3000):
                    y = x * 2.0 + 1.0
                    y.data
                    if k % 100 == 0:
                        kept.append(y)
                t.join()
                del y
                assert arena.live == 1 + 4 * len(kept)
                cm.invariants(arena)
    finally:
        sys.setswitchinterval(interval)


def test_anomaly_mode_names_the_op_and_line_in_a_thread():
    out = {}

    def work(_):
        x = Value(-1.0)
        with crad.detect_anomaly():
            y = x * 2.0
            try:
                y.log()  # the line anomaly mode must name
            except crad.AnomalyError as e:
                out["msg"] = str(e)
            out["live"] = crad.current_arena().live

    run_threads(work, 1)
    assert "log" in out["msg"] and "test_arena_threads.py" in out["msg"] and "work" in out["msg"]
    assert out["live"] == 3  # x, y and its constant: the bad node was freed


def test_anomaly_mode_in_one_thread_does_not_affect_another():
    inside, done = threading.Event(), threading.Event()
    out = {}

    def a(_):
        with crad.detect_anomaly():
            inside.set()
            done.wait(60)

    def b(_):
        inside.wait(60)
        try:
            out["value"] = Value(0.0).log().data
        except crad.AnomalyError as e:
            out["error"] = e
        finally:
            done.set()

    ta = threading.Thread(target=a, args=(0,))
    ta.start()
    run_threads(b, 1)
    ta.join()
    assert out.get("value") == -np.inf, out


def test_data_write_from_another_thread_raises(arena):
    v = Value(1.0)
    v.data  # nothing pending now
    out = {}

    def work(_):
        try:
            v.data = 5.0
            out["wrote"] = True
        except ArenaThreadError:
            out["refused"] = True

    run_threads(work, 1)
    assert out == {"refused": True} and v.data == 1.0
