"""Threads for batched replay and Adam: how many, when, and launching safely.

``tape.batch`` splits a large enough batch over T threads: by its
instructions, when the graph has a wide front of independent chains
(``kernels.split``: each thread runs its bin of chains over every sample),
else into T chunks of consecutive samples, one per thread
(``kernels.replay.tape_batch_parallel``). Each thread has its own value and
gradient rows. A parameter that only one thread touches (each bin of an
MLP's chains owns its neurons' weights) has its gradient added to the arena
by that thread; otherwise each thread sums into its own accumulator and the
accumulators are added to the arena in a fixed order. Either way a result
depends on T and never on the scheduling. Adam splits a large model's
parameters into T parts (each parameter's update is the same arithmetic on
any thread). Everything else (building graphs, backward, release, single
replays, SGD, zero_grad) runs on the calling thread.

T is ``get_num_threads()`` (default: every core numba uses, i.e.
``NUMBA_NUM_THREADS``; ``$CRAD_NUM_THREADS`` or ``set_num_threads`` change
it), reduced so that each thread gets enough work to pay for the launch.
"""
import os
import threading
import time

import numba
import numpy as np

from ._config import njit

ENV = "CRAD_NUM_THREADS"

# A batch runs the serial kernel unless every thread gets at least this many
# samples and node-samples (computed tape nodes x samples). Each thread
# decodes every instruction of the program for its own samples (about 8 ns
# an instruction, plus a fraction of a ns per sample), so splitting a batch
# pays only when the per-sample work outweighs the decoding repeated on the
# other core, plus a launch (about 3 us on idle cores, a time slice of ~16 ms
# when another process holds one). Measured on MNIST's and the GPT's tapes
# (2 threads vs 1): 4 samples per thread break even, 8 gain 1.1-1.2x, 16
# gain 1.3-1.5x, 64 gain 1.8-2x. W2's batch of 32 has 20,600 node-samples
# in all: serial; MNIST's batch of 32, 2.5 M: parallel.
MIN_SAMPLES_PER_THREAD = 4
MIN_WORK_PER_THREAD = 250_000
# Decoding an instruction costs about as much as running it over this many
# samples (measured at 48 on MNIST's tape, ~13 ns against ~0.27 ns a
# sample; about 30 on the GPT's since the kernel's fast paths, ~10 against
# ~0.34: either way the choice below comes out the same for both). It
# weighs a split of the instructions (``kernels.split``) against a split of
# samples.
DECODE_SAMPLES = 48


def _most():
    return int(numba.config.NUMBA_NUM_THREADS)


def _checked(n, source):
    """n as a thread count from 1 to NUMBA_NUM_THREADS, or a clear error."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{source} must be a whole number of threads, not {type(n).__name__}")
    if not 1 <= n <= _most():
        raise ValueError(f"{source} must be from 1 to {_most()} (the threads numba may use; raise "
                         f"NUMBA_NUM_THREADS for more), got {n}")
    return int(n)


def _from_env():
    text = os.environ.get(ENV, "").strip()
    if not text:
        return _most()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"${ENV} must be a whole number of threads from 1 to {_most()}, got {text!r} "
                         "(unset it to use every core)") from None
    return _checked(n, f"${ENV}")


_num_threads = _from_env()


def set_num_threads(n):
    """Use n threads (1 to ``NUMBA_NUM_THREADS``) for batched replay, in
    every Python thread of this process. Results are deterministic for a
    given n, and agree with n = 1 to rounding (the order in which per-thread
    parameter gradients are summed)."""
    global _num_threads
    _num_threads = _checked(n, "set_num_threads(n): n")


def get_num_threads():
    """The threads batched replay may use (default: every core numba sees)."""
    return _num_threads


# Adam runs on T threads when each gets at least this many parameters
# (MNIST's 39,760: 2 threads; ~1.3 ns a parameter against a launch of a few us).
MIN_PARAMS_PER_THREAD = 16_384


def update_threads(n):
    """How many threads an optimizer update of n parameters should use."""
    return max(min(_num_threads, n // MIN_PARAMS_PER_THREAD), 1)


def chunks(samples, work):
    """How many threads a batch of ``samples`` samples should use, given
    ``work`` node-samples in total (1: run the serial kernel)."""
    t = min(_num_threads, samples // MIN_SAMPLES_PER_THREAD, work // MIN_WORK_PER_THREAD)
    return max(t, 1)


# One parallel kernel at a time in this process. numba's workqueue layer
# aborts the process when two Python threads launch at once (a parallel
# launch releases the GIL), and while a launch runs another thread's replay
# could add into the same parameter grads. Serial replays take the lock too.
_lock = threading.Lock()
_launched = False  # a parallel kernel has run in this process
_narrow_only = False  # in a fork child of a process that used GNU OpenMP


def run(kernel, *args, parallel=False):
    """kernel(*args) under the launch lock; returns its result."""
    global _launched
    with _lock:
        out = kernel(*args)
        _launched = _launched or parallel
    return out


class Pace:
    """Whether a call's T parts (a batch's chunks of samples or bins of
    chains, an update's parameters) run on T threads ("wide":
    ``tape_batch_parallel``, ``tape_split_parallel``, ``adam_step_parallel``)
    or one after another on the calling thread ("narrow": ``tape_batch``,
    ``adam_step``, the same parts and the same bits), chosen call by call.

    Every parallel launch waits for its slowest thread, so when the cores are
    busy with other work T threads can be several times slower than one.
    Pace keeps each way's last KEEP timings (seconds per node-sample, after
    one untimed warm-up call each, which may compile) and runs the way whose
    median is lower: one slow call (a collection, a preempted thread) does
    not flip the choice, two of the last three do. Every so often it probes
    the other way with KEEP - 1 calls in a row, enough to replace that way's
    stale median; the gap between probes doubles (PROBE up to MAX_GAP) while
    they confirm the choice, and starts again at PROBE when it flips."""

    PROBE, MAX_GAP, KEEP = 16, 1024, 3

    def __init__(self):
        self.seen = {True: [], False: []}  # wide -> the last KEEP timings
        self.warm = set()  # the ways that had their untimed first call
        self.calls = 0
        self.runs = {True: 0, False: 0}  # calls run each way
        self.choice = None  # the faster way, once both were timed
        self.probing = 0  # calls of the current probe still to record
        self.gap, self.probe_at = self.PROBE, self.PROBE

    @property
    def cost(self):
        """Each timed way's median seconds per node-sample (the lower median:
        of two timings, the faster, so that an early spike flips nothing)."""
        return {way: sorted(t)[(len(t) - 1) // 2] for way, t in self.seen.items() if t}

    def _faster(self):
        cost = self.cost
        return cost[True] <= cost[False]

    def wide(self):
        self.calls += 1
        for way in (False, True):  # narrow first: a first batch costs the one-pass compile, as without threads
            if way not in self.warm or not self.seen[way]:
                return way
        if not self.probing and self.calls >= self.probe_at:
            self.probing = self.KEEP - 1
        return self.choice != bool(self.probing)

    def record(self, wide, seconds):
        self.runs[wide] += 1
        if wide not in self.warm:
            self.warm.add(wide)
            return
        timings = self.seen[wide]
        timings.append(seconds)
        del timings[:-self.KEEP]
        if not (self.seen[True] and self.seen[False]):
            return
        faster = self._faster()
        if self.choice is None:
            self.choice = faster
        elif self.probing:
            self.probing -= 1
            if not self.probing:  # the probe is complete: it confirmed the choice, or flipped it
                self.gap = self.PROBE if faster != self.choice else min(2 * self.gap, self.MAX_GAP)
                self.choice, self.probe_at = faster, self.calls + self.gap
        elif faster != self.choice:  # the way in use got slower: switch, and watch closely again
            self.choice, self.gap = faster, self.PROBE
            self.probe_at = self.calls + self.PROBE

    def run(self, wide_kernel, narrow_kernel, args, work):
        """The kernel this call picks, on args, timed per unit of work."""
        wide = self.wide() and not _narrow_only
        t = time.perf_counter()
        out = run(wide_kernel if wide else narrow_kernel, *args(wide), parallel=wide)
        self.record(wide, (time.perf_counter() - t) / work)
        return out


def _after_fork_in_child():
    # GNU OpenMP terminates a forked child that launches a parallel region
    # after its parent did; such a child runs the chunks in one pass (the
    # same bits, on one thread).
    global _lock, _narrow_only
    _lock = threading.Lock()  # another thread may have held it at the fork
    if _launched and threading_layer() == "omp":
        _narrow_only = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threading_layer():
    """The numba threading layer that runs crad's parallel kernels ('tbb',
    'omp' or 'workqueue'); loads it if no parallel kernel has run yet."""
    try:
        return numba.threading_layer()
    except ValueError:  # not loaded yet
        _probe(1)
        return numba.threading_layer()


@njit(parallel=True)
def _probe(n):
    """A minimal parallel kernel: loads the threading layer."""
    s = 0
    for i in numba.prange(n):
        s += i
    return s
