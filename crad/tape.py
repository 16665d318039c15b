"""Capture once, replay many times.

In a training loop the graph has the same shape at every step; only numbers
change. ``capture(fn, *inputs)`` builds fn's graph once and records it as a
tape: its nodes in a topological order, computed once. Replaying the tape
writes new input values, recomputes every node's value in tape order and
sweeps backward, with no allocation, no sort and no release. The nodes stay
real arena nodes: ``.data`` and ``.grad`` of any of them read the latest
replay, and the optimizers work unchanged.

A tape records one path through fn. If fn branches in Python on data
(``if x.data > 0: ...``), the tape is wrong for inputs that would take the
other branch. ``verify=N`` re-traces fn every N calls and raises TapeError
when the structure (ops, wiring, exponents, parameters, inputs) differs.
Constants made from data inside fn keep their captured values: the row max
that ``losses.cross_entropy`` subtracts for stability is such a constant, and
harmless (softmax does not depend on it).
"""
from collections import OrderedDict

import numpy as np

from . import kernels as K
from . import threads
from .arena import StaleValueError, arena_arg, mixed
from .ops import LEAF, POW
from .value import Value
from .vector import Vector, leaves


def _plain(m, row=0):
    """The segments (``kernels.replay``) of a plain program of m
    instructions: its forward and backward passes, summing into the
    accumulator's row (-1: straight to the arena's grads)."""
    return np.array([[0, m, K.FWD_SEED, row], [0, m, K.BWD, row]], np.int64)


class TapeError(ValueError):
    """A re-traced graph no longer matches the captured tape."""


def _leaf_ids(x, k):
    """(arena, flat int32 slot ids, shape) of a Value or Vector of leaves."""
    if isinstance(x, Value):
        a, i = x._slot()
        ids, shape = np.array([i], np.int32), ()
    elif isinstance(x, Vector):
        a, ids = x._slots()
        ids, shape = ids.reshape(-1).copy(), ids.shape
    else:
        raise TypeError(f"capture inputs are Values or Vectors of leaves, not {type(x).__name__} (input {k})")
    if (a.I[K.OP][ids] != LEAF).any():
        raise ValueError(f"input {k} must consist of leaves (crad.leaves or Value(x)), not computed nodes")
    return a, ids, shape


class Tape:
    """A recorded graph; see ``capture``. Call it to replay the forward pass,
    then ``backward()``; or ``batch(...)`` for B samples at once."""

    def __init__(self, fn, inputs, verify=0):
        if not callable(fn):
            raise TypeError("capture() needs a function that builds the graph")
        if not inputs:
            raise ValueError("capture() needs at least one example input")
        parts = [_leaf_ids(x, k) for k, x in enumerate(inputs)]
        a = parts[0][0]
        if any(p[0] is not a for p in parts):
            raise mixed([p[0] for p in parts], "capture inputs")
        flat = np.concatenate([p[1] for p in parts])
        if np.unique(flat).size != flat.size:
            raise ValueError("capture inputs share leaves (the same Value or Vector twice, or overlapping "
                             "slices): a replay could not give each input its own values; pass each leaf once")
        self.fn, self.arena = fn, a
        self.inputs = [x.retain() if isinstance(x, Value) else x[...] for x in inputs]
        self._in_ids = [p[1] for p in parts]
        self._flat_inputs = flat
        self._in_shapes = [p[2] for p in parts]
        self.verify = 100 if verify is True else int(verify or 0)
        self.calls = 0
        self._record()

    def _trace(self):
        """Run fn once: (its output, the root Value, the root's graph in Kahn's
        order, and a mask of the constant leaves fn made, which a rebuilt graph
        would make afresh; told apart from parameters by the generations)."""
        a = self.arena
        top = int(a.M[K.M_TOP])
        snapshot = a.I[K.GEN, :top].copy()
        out = self.fn(*self.inputs)
        root = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(root, Value):
            raise TypeError("fn must return a Value (the root, e.g. the loss) or a tuple starting with one")
        b, r = root._slot()
        if b is not a:
            raise ValueError("fn returned a root in another arena than its inputs; build the graph in one arena")
        order = np.empty(a.capacity, np.int32)
        n = K.order_of(a.I, a.M, r, order)
        order = order[:n].copy()
        new = order >= top
        old = ~new
        new[old] = a.I[K.GEN][order[old]] != snapshot[order[old]]
        new_leaf = new & (a.I[K.OP][order] == LEAF) & ~np.isin(order, self._flat_inputs)
        return out, root, order, new_leaf

    def _record(self):
        a = self.arena
        self.outputs, self.root, self.order, self._new_leaf = self._trace()
        leaf = a.I[K.OP][self.order] == LEAF
        self._bwd = self.order[~leaf].copy()
        self._fwd = self._bwd[::-1].copy()
        # a rebuilt graph's fresh leaves: the inputs and fn's constants
        self._zero = self.order[np.isin(self.order, self._flat_inputs) | self._new_leaf].copy()
        self._root = self.root._slot()[1]
        if a.I[K.LOW, self._root] >= 0:
            # Every operand sits in a lower slot than its user (the invariant
            # backward's sweep relies on): ascending slots are a topological
            # order too, and walk the columns in memory order (about twice as
            # fast as Kahn's order, which jumps between the graph's branches).
            self._fwd.sort()
            self._bwd = self._fwd[::-1].copy()
        self._compiled = None
        self._scratch = {}  # (B, T, wide or "split") -> scratch arrays of batch()
        self._front = {}  # T -> kernels.split.front's (stop, span)
        self._split = {}  # T -> kernels.split.plan's split program
        self._xbuf = None  # batch()'s inputs side by side
        self._swept = False  # a backward ran since the last forward
        self._pace = threads.Pace()
        self.nodes = int(self.order.size)  # everything on the tape, leaves included
        self.computed = int(self._bwd.size)  # the ops: what a replay recomputes
        self.parameters = int(leaf.sum()) - int(self._zero.size)  # leaves that existed before fn ran

    # -- replay -------------------------------------------------------------
    def _live(self):
        """The tape replays slots: refuse once the graph it recorded may be
        gone (the tape, its root or an input handle released)."""
        if self.root is None:
            raise StaleValueError("this tape was released; capture again")
        self.root._slot()  # StaleValueError if tape.root was released
        for x in self.inputs:
            x._slot() if isinstance(x, Value) else x._slots()

    def _inputs(self, values, batched):
        """The input arrays, checked against the captured shapes (with a
        leading batch axis, the same for all, when batched) before any is used."""
        self._live()
        if len(values) != len(self._in_ids):
            raise ValueError(f"this tape takes {len(self._in_ids)} inputs, got {len(values)}")
        arrays = []
        for k, (v, shape) in enumerate(zip(values, self._in_shapes)):
            v = np.asarray(v)
            if v.dtype.kind not in "biuf":
                raise TypeError(f"input {k} must be numeric, not {v.dtype}")
            want = ((v.shape[0] if v.ndim else None,) if batched else ()) + shape
            if v.shape != want:
                expected = f"(batch, {', '.join(map(str, shape))})" if batched else f"{shape}"
                raise ValueError(f"input {k} has shape {v.shape}; the tape takes {expected}")
            if batched and arrays and v.shape[0] != arrays[0].shape[0]:
                raise ValueError(f"input {k} has {v.shape[0]} samples, input 0 has {arrays[0].shape[0]}")
            arrays.append(v)
        return arrays

    def __call__(self, *values, backward=False):
        """Write new input values, recompute the forward pass, and return the
        root's value (``backward=True`` also runs ``backward()``). Inputs
        that are refused (a bad shape, or a TapeError from ``verify``) leave
        the input leaves as they were."""
        arrays = self._inputs(values, batched=False)
        F = self.arena.F
        verifying = self.verify and (self.calls + 1) % self.verify == 0
        before = F[K.DATA, self._flat_inputs] if verifying else None  # a copy (fancy indexing)
        for ids, v in zip(self._in_ids, arrays):
            F[K.DATA, ids] = v.reshape(-1)
        if verifying:
            try:
                self.check()  # fn reads the new values, as a rebuilt graph would
            except BaseException:
                self.arena.F[K.DATA, self._flat_inputs] = before  # F itself may have grown
                raise
        self.calls += 1
        a = self.arena
        K.tape_forward(a.F, a.I, self._fwd, self._zero)
        self._swept = False
        if backward:
            self.backward()
        return float(a.F[K.DATA, self._root])

    def backward(self):
        """Backward over the tape, as a rebuilt graph's backward would do it
        after the last replay: every leaf (parameters and inputs) accumulates
        d root / d leaf, so calling it twice adds twice (as in torch); the
        tape's own nodes hold the latest backward's grads."""
        self._live()
        a = self.arena
        K.tape_backward(a.F, a.I, self._bwd, self._root, self._swept)
        self._swept = True

    def check(self):
        """Re-trace fn and raise TapeError if the graph's structure changed."""
        self._live()
        out, root, order, new_leaf = self._trace()
        try:
            mine, theirs = self._encode(self.order, self._new_leaf), self._encode(order, new_leaf)
            if len(mine[0]) != len(theirs[0]) or not all(np.array_equal(x, y) for x, y in zip(mine, theirs)):
                raise TapeError("fn built a different graph than the one captured (it branches on data in "
                                f"Python?): {len(theirs[0])} nodes now, {len(mine[0])} captured. Capture again "
                                "for these inputs, or rebuild the graph every step")
        finally:
            del out, root

    def _encode(self, order, new_leaf):
        """Structure of a trace: op, operand positions, exponent, and each
        pre-existing leaf's slot (new constant leaves count as -1)."""
        a = self.arena
        n = order.size
        ops, lpos, rpos = (np.empty(n, np.int32) for _ in range(3))
        args = np.empty(n, np.float64)
        K.tape_compile(a.F, a.I, order, ops, lpos, rpos, args)
        ident = np.where(new_leaf | (a.I[K.OP][order] != LEAF), -1, order)[::-1]
        pw = np.where(ops == POW, args, 0.0)
        return ops, lpos, rpos, pw, ident

    # -- batched replay ---------------------------------------------------------
    def _compile(self):
        """The batched program (``kernels.replay``): positions, node kinds and
        register-allocated rows for batch()."""
        a = self.arena
        n = self.order.size
        P = np.zeros((K.N_PROG, n), np.int32)
        args = np.empty(n, np.float64)
        K.tape_compile(a.F, a.I, self.order, P[K.P_OP], P[K.P_L], P[K.P_R], args)
        P[K.P_SLOT] = self.order[::-1]
        leaf = P[K.P_OP] == LEAF
        kind, col = P[K.P_KIND], P[K.P_COL]
        kind[:] = K.ROW
        kind[leaf] = K.PARAM
        kind[self._new_leaf[::-1]] = K.CONST
        col[:] = -1
        flat = self._flat_inputs  # an input leaf reads its column of X (inputs share no leaves)
        if flat.size:
            by_slot = np.argsort(flat)
            p = np.flatnonzero(leaf)
            at = by_slot[np.minimum(np.searchsorted(flat, P[K.P_SLOT, p], sorter=by_slot), flat.size - 1)]
            hit = flat[at] == P[K.P_SLOT, p]
            kind[p[hit]], col[p[hit]] = K.INPUT, at[hit]
        P, args = K.sink(P, args)
        self._P, self._args = P, args  # kernels.split plans from the rows tape_rows leaves alone (OP .. KIND)
        nv, ng = K.tape_rows(P, np.zeros(n, np.bool_))
        self._compiled = K.lower(P, args)[:4]
        self._rows = (int(nv), int(ng), int(np.count_nonzero(kind == K.PARAM)))

    def batch(self, *values, reduction="mean"):
        """Forward and backward for B samples at once: each input gets a
        leading batch axis. Parameter grads accumulate the sum (reduction
        ``"sum"``) or the mean (``"mean"``) over the batch of the root's
        gradient. Returns the root's value per sample, shape (B,).

        The arena's node values are left as they were (each sample has its
        own values, laid out (node, sample) in scratch arrays). A large batch
        is split over ``crad.get_num_threads()`` threads (``crad.threads``):
        the result is deterministic for a given thread count."""
        arrays = self._inputs(values, batched=True)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
        B = arrays[0].shape[0]
        if not B:
            raise ValueError("batch() needs at least one sample")
        if self._compiled is None:
            self._compile()
        X = self._stacked(arrays, B)
        seed = 1.0 / B if reduction == "mean" else 1.0
        work = B * self.computed
        T = threads.chunks(B, work)
        F = self.arena.F
        m = self._compiled[0].shape[0]
        if T == 1:
            segs = _plain(m, -1)
            return threads.run(K.tape_batch, F, *self._compiled, X, *self._scratch_for(B, 1, False, segs), seed,
                               segs, 1)
        split = self._split_for(B, T)
        if split is not None:
            program, segs, scratch = split
            return self._pace.run(K.tape_split_parallel, K.tape_batch, lambda wide: (
                F, *program, X, *scratch, seed, *((segs,) if wide else (segs.reshape(-1, 4), 1))), work)
        segs = _plain(m)
        return self._pace.run(K.tape_batch_parallel, K.tape_batch, lambda wide: (
            F, *self._compiled, X, *self._scratch_for(B, T, wide, segs), seed, segs, *(() if wide else (T,))), work)

    def _split_for(self, B, T):
        """(program, segs, scratch) of the split program (``kernels.split``)
        for T threads when it beats splitting B samples, else None: a
        split program's span runs over all B samples, a sample split runs
        every instruction over B / T (``threads.DECODE_SAMPLES``)."""
        if T not in self._front:
            self._front[T] = K.front(self._P, T)
        stop, span = self._front[T]
        d = threads.DECODE_SAMPLES
        if span * (d + B) >= self.computed * (d + -(-B // T)):
            return None
        if T not in self._split:
            self._split[T] = K.plan(self._P, self._args, T, stop)
        program, segs = self._split[T][:2]
        return program, segs, self._scratch_for(B, T, "split", segs)

    def _stacked(self, arrays, B):
        """The inputs side by side, float64 (B, inputs' columns): a reused
        buffer (a fresh 200 KB array costs page faults on every batch)."""
        if len(arrays) == 1 and arrays[0].dtype == np.float64 and arrays[0].flags.c_contiguous:
            return arrays[0].reshape(B, -1)
        X = self._xbuf
        if X is None or X.shape[0] != B:
            X = self._xbuf = np.empty((B, sum(v[0].size for v in arrays)))
        np.concatenate([v.reshape(B, -1) for v in arrays], axis=1, out=X)
        return X

    def _scratch_for(self, B, T, wide, segs):
        """Value and grad rows, and T parts' parameter accumulators, for B
        samples in T chunks (wide = True: each chunk's rows, for T threads;
        False: one chunk's, for the chunks one after another), or (wide =
        "split") for the split program for T threads, kept for the next
        such call. segs: the segments they serve; when all of them add to
        the grads directly, no accumulator."""
        key = (B, T, wide)
        if key not in self._scratch:
            nv, ng, nparams = self._rows
            if wide == "split":
                nv, ng = self._split[T][2]
            c = B if wide == "split" else -(-B // T)  # the samples a pass holds
            lead = (T,) if wide is True else ()
            if len(self._scratch) > 4:  # batch sizes change rarely (the last batch of an epoch)
                self._scratch.clear()
            direct = (segs[..., K.SEG_ROW] < 0).all()
            A = np.empty((0, 0)) if direct else np.empty((T, nparams))  # direct: no accumulator (``_pass``)
            self._scratch[key] = np.empty(lead + (nv, c)), np.empty(lead + (ng, c)), A
        return self._scratch[key]

    # -- ownership -------------------------------------------------------------
    def release(self):
        """Drop the tape's references (its graph is freed if nothing else holds it)."""
        self.outputs = self.root = self.inputs = None
        self._scratch, self._xbuf, self._front, self._split = {}, None, {}, {}

    def __repr__(self):
        return (f"Tape({self.computed} computed nodes, {self.nodes - self.computed} leaves, "
                f"{len(self._in_ids)} inputs, {self.calls} replays)")


def capture(fn, *example_inputs, verify=0):
    """Record the graph ``fn(*example_inputs)`` builds, for replay.

    example_inputs: Values or Vectors of leaves (e.g. ``crad.leaves(X)``).
    fn returns the root Value (e.g. the loss), or a tuple starting with it.
    The tape holds references to the graph and frees it when dropped.

    >>> import numpy as np, crad
    >>> w = crad.leaves(np.array([2.0]))
    >>> x = crad.leaves(np.array([3.0]))
    >>> step = crad.capture(lambda x: (w * x).sum() ** 2, x)
    >>> step(np.array([1.0]), backward=True), float(w.grad[0])
    (4.0, 4.0)
    """
    return Tape(fn, example_inputs, verify)


class Compiled:
    """fn with one tape per input structure, captured lazily; see ``compile``."""

    def __init__(self, fn, verify=0, max_tapes=None, arena=None):
        if not callable(fn):
            raise TypeError("compile() needs a function that builds the graph")
        if max_tapes is not None and (not isinstance(max_tapes, int) or max_tapes < 1):
            raise ValueError(f"max_tapes must be a positive int or None, got {max_tapes!r}")
        self.fn, self.verify, self.max_tapes = fn, verify, max_tapes
        self.arena = arena_arg(arena)
        self._tapes = OrderedDict()  # input shapes -> Tape, least recently used first

    def tape(self, *values, batched=False):
        """The tape for these inputs' shapes (without the leading batch axis
        when batched), captured from their values (the first sample's) if
        none exists yet."""
        arrays = [np.asarray(v) for v in values]
        for k, v in enumerate(arrays):
            if v.dtype.kind not in "biuf":
                raise TypeError(f"input {k} must be numeric, not {v.dtype}")
            if v.size == 0 or (batched and v.ndim == 0):
                raise ValueError(f"input {k} has shape {v.shape}: "
                                 + ("batched inputs need a leading batch axis and " if batched else "")
                                 + "at least one value")
        key = tuple(v.shape[1:] if batched else v.shape for v in arrays)
        t = self._tapes.get(key)
        if t is not None and t.root is None:  # released by the user: capture again
            del self._tapes[key]
            t = None
        if t is None:
            t = capture(self.fn, *[leaves(v[0] if batched else v, self.arena) for v in arrays], verify=self.verify)
            self._tapes[key] = t
            if self.max_tapes is not None and len(self._tapes) > self.max_tapes:
                self._tapes.popitem(last=False)[1].release()
        self._tapes.move_to_end(key)
        return t

    def __call__(self, *values, backward=False):
        """Replay (capturing first if needed) and return the root's value;
        ``backward=True`` also back-propagates (see ``Tape.__call__``)."""
        return self.tape(*values)(*values, backward=backward)

    def batch(self, *values, reduction="mean"):
        """``Tape.batch`` on the tape for the per-sample shapes."""
        return self.tape(*values, batched=True).batch(*values, reduction=reduction)

    @property
    def tapes(self):
        """The cached tapes, keyed by their inputs' shapes (a new dict)."""
        return dict(self._tapes)

    @property
    def nodes(self):
        """Arena nodes the cached tapes hold besides the parameters they share."""
        return sum(t.nodes - t.parameters for t in self._tapes.values())

    def __len__(self):
        return len(self._tapes)

    def release(self):
        """Release every cached tape (the next call captures afresh)."""
        while self._tapes:
            self._tapes.popitem()[1].release()

    def __repr__(self):
        return f"Compiled({getattr(self.fn, '__name__', 'fn')}, {len(self._tapes)} tapes, {self.nodes} nodes)"


def compile(fn, *, verify=0, max_tapes=None, arena=None):
    """fn, captured once per structure of its inputs and replayed after that.

    Use it when the graph's shape depends only on the inputs' shapes (a
    sequence model whose graph grows with the sequence length): calls take
    numpy arrays, and the first call with new shapes captures a tape from
    ``crad.leaves`` of them (the arena's current one, or ``arena``); later
    calls with those shapes replay it. ``max_tapes`` bounds the cache (the
    least recently used tape is released); ``verify`` is ``capture``'s.

    >>> import numpy as np, crad
    >>> w = crad.leaves(np.array([2.0]))
    >>> f = crad.compile(lambda x: (x * w).sum())
    >>> f(np.ones(3), backward=True), f(np.ones(5), backward=True), len(f), float(w.grad[0])
    (6.0, 10.0, 2, 8.0)
    """
    return Compiled(fn, verify, max_tapes, arena)
