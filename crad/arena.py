"""The arena: every node of a graph is a slot in a few preallocated columns."""
import gc
import threading

import numpy as np

from . import kernels as K


class StaleValueError(RuntimeError):
    """A handle was used after it was released or its node was freed."""


class ArenaThreadError(RuntimeError):
    """An arena was used from a thread other than the one that made it."""


def mixed(arenas, what="operands"):
    """The error to raise when ``what`` come from different arenas: an
    ArenaThreadError when one belongs to another thread (the usual cause),
    else a ValueError."""
    for a in arenas:
        a._check_thread()
    return ValueError(f"{what} belong to different arenas; build a graph in one arena")


_NO_SLOTS = np.zeros(0, np.int32)
_NO_CONSTS = np.zeros(0, np.float64)
_NO_RELEASES = np.zeros(0, np.int64)
_NO_NEW = np.zeros(0, np.bool_)


class Arena:
    """Owns the node columns, hands out slots, grows by doubling.

    ``with arena:`` makes it the arena that new leaves (``Value(x)``,
    ``leaves``, modules) are created in, for the current thread. Handles
    keep their arena alive.

    An arena belongs to the thread that made it; each thread has its own
    default arena. Using an arena from another thread raises
    ``ArenaThreadError`` (handles dropped there are released safely).

    The per-Value operators write behind (``kernels.journal``): ``F``, ``I``
    and ``M`` apply what is pending before they return the columns, so every
    reader (``live``, ``stats()``, ``.data``, ``backward()``, kernels) sees
    exactly what eager emission would have produced.

    >>> a = Arena(capacity=16)
    >>> a.live, a.capacity
    (0, 16)
    """

    MAX_CAPACITY = 2**31 - 1  # slots are int32
    # Slots claimed at a time for Value records: twice what the last block
    # used, within these bounds (a block's unused slots are given back when
    # the journal is applied, at a cost proportional to their number).
    MIN_BLOCK, MAX_BLOCK = 256, 1 << 16

    def __init__(self, capacity=1024):
        if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if not 1 <= capacity <= self.MAX_CAPACITY:
            raise ValueError(f"capacity must be between 1 and {self.MAX_CAPACITY}, got {capacity}")
        cap = int(capacity)
        self._F = np.zeros((K.N_FLOAT_ROWS, cap), np.float64)
        self._I = np.zeros((K.N_INT_ROWS, cap), np.int32)
        self._M = np.zeros(K.N_META, np.int64)
        self._owner = threading.get_ident()
        # The journal (see kernels.journal): records k < _kend use the claimed
        # slots _res[k]; _k records are written. Releases queue in _rel.
        self._k = self._kend = 0
        self._block = self.MIN_BLOCK
        self._res = _NO_SLOTS
        # A list, not an array: a handle's __del__ appends to it, and list.append
        # is the cheapest atomic append (measured ~100 ns below array("q")'s).
        # It is drained at every apply, so the collector never walks a long one.
        self._rel = []
        self._vrel = []  # a dropped Vector's queued releases: one int64 array each, entries as in _rel
        self._views()

    def _views(self):
        """memoryviews of the hot rows: indexing them from Python costs a
        fraction of numpy scalar indexing. Re-made whenever the columns move."""
        self._genv = memoryview(self._I[K.GEN])
        self._datav = memoryview(self._F[K.DATA])
        self._gradv = memoryview(self._F[K.GRAD])

    # -- the columns, with the journal applied ---------------------------------
    def _check_thread(self):
        if self._owner != threading.get_ident():
            raise ArenaThreadError(
                "this arena belongs to another thread; build each graph in the thread that made its arena "
                "(every thread has its own default arena, or make one with crad.Arena() in that thread)")

    def _sync(self, new=_NO_NEW):
        """Apply pending records and releases and give back unused claimed
        slots: afterwards the columns are canonical (the package's invariants
        hold). ``new``: see ``kernels.journal_apply``."""
        self._check_thread()
        with _no_collection():
            self._apply(new)

    def _apply(self, new):
        k = self._k
        rel, vrel = self._rel, self._vrel
        n, nv = len(rel), len(vrel)
        queued = np.array(rel[:n], np.int64) if n else _NO_RELEASES
        if nv:  # journal_apply sorts them by position
            queued = np.concatenate([queued] + vrel[:nv])
        del rel[:n], vrel[:nv]  # what was queued meanwhile (another thread's __del__) stays for next time
        if self._kend:
            self._block = min(max(2 * k, self.MIN_BLOCK), self.MAX_BLOCK)
            K.journal_apply(self._F, self._I, self._M, self._res, self._jop, self._jl, self._jr, self._jc, k,
                            queued, new)
        elif queued.size:
            K.journal_apply(self._F, self._I, self._M, _NO_SLOTS, _NO_SLOTS, _NO_SLOTS, _NO_SLOTS, _NO_CONSTS, 0,
                            queued, new)
        self._k = self._kend = 0

    def _claim(self, need=1):
        """Apply what is pending and claim a new block of slots for records.
        Returns the journal position to write at (0)."""
        with _no_collection():
            return self._claim_now(need)

    def _claim_now(self, need):
        if self._kend or self._rel or self._vrel:
            self._apply(_NO_NEW)  # sizes the next block: twice what the last one used
        B = max(self._block, need)
        self._grow(B)
        if self._res.size != B:
            self._res = np.empty(B, np.int32)
            self._jop, self._jl, self._jr = (np.empty(B, np.int32) for _ in range(3))
            self._jc = np.empty(B, np.float64)
            self._resv, self._jopv, self._jlv, self._jrv = map(memoryview, (self._res, self._jop, self._jl,
                                                                             self._jr))
            self._jcv = memoryview(self._jc)
        K.journal_claim(self._F, self._I, self._M, self._res)
        self._kend = B
        return 0

    def columns(self):
        """(F, I, M) with the journal applied, for a kernel call from this thread."""
        self._check_thread()
        if self._kend or self._rel or self._vrel:
            self._sync()
        return self._F, self._I, self._M

    @property
    def F(self):
        """Float columns (see ``kernels``), with the journal applied."""
        return self.columns()[0]

    @property
    def I(self):
        """Int columns (see ``kernels``), with the journal applied."""
        return self.columns()[1]

    @property
    def M(self):
        """Counters (see ``kernels``), with the journal applied."""
        return self.columns()[2]

    # -- slots ---------------------------------------------------------------
    def reserve(self, k):
        """Make room for k more nodes (applying the journal first), growing
        the columns if needed.

        Growth copies the columns; handles hold slot numbers, never views,
        so every live handle stays valid.
        """
        self.columns()
        self._grow(k)

    def _grow(self, k):
        free = int(self._M[K.M_NFREE]) + self.capacity - int(self._M[K.M_TOP])
        if free >= k:
            return
        need = int(self._M[K.M_TOP]) + k - int(self._M[K.M_NFREE])
        if need > self.MAX_CAPACITY:
            raise MemoryError(f"an arena holds at most {self.MAX_CAPACITY} nodes; {need} requested")
        cap = min(max(2 * self.capacity, need), self.MAX_CAPACITY)
        old = self.capacity
        F = np.zeros((K.N_FLOAT_ROWS, cap), np.float64)
        I = np.zeros((K.N_INT_ROWS, cap), np.int32)
        F[:, :old] = self._F
        I[:, :old] = self._I
        self._F, self._I = F, I
        self._views()

    def build(self, k, kernel, *args):
        """Run ``kernel(F, I, M, *args)``, a kernel that makes k nodes (listed
        in the STACK row), after making room for them. Returns its result
        and the new slots (anomaly mode checks them)."""
        with _no_collection():  # no __del__ may claim the room between reserve and kernel
            self.reserve(k)
            out = kernel(self._F, self._I, self._M, *args)
        return out, self._I[K.STACK, :k]

    # -- statistics ----------------------------------------------------------
    @property
    def capacity(self):
        """Slots allocated in the columns."""
        return self._F.shape[1]

    @property
    def live(self):
        """Nodes alive now (owned by a handle, a vector, a module or a node)."""
        return int(self.M[K.M_LIVE])

    @property
    def peak(self):
        """Most nodes ever alive at once."""
        return int(self.M[K.M_PEAK])

    @property
    def nbytes(self):
        """Bytes held by the columns."""
        return self._F.nbytes + self._I.nbytes

    @property
    def bytes_per_node(self):
        """Column bytes per slot: what each node costs, scratch rows included."""
        return self.nbytes // self.capacity

    def stats(self):
        """A dict of the statistics above, plus nodes made and freed so far."""
        M = self.M
        return dict(live=self.live, peak=self.peak, capacity=self.capacity,
                    bytes_per_node=self.bytes_per_node, nbytes=self.nbytes,
                    made=int(M[K.M_MADE]), freed=int(M[K.M_FREED]))

    def __repr__(self):
        if self._owner != threading.get_ident():
            return f"Arena(capacity={self.capacity}, owned by another thread)"
        return f"Arena(live={self.live}, peak={self.peak}, capacity={self.capacity})"

    def __copy__(self):
        raise TypeError("an Arena cannot be copied; make a new one with crad.Arena()")

    def __deepcopy__(self, memo):
        self.__copy__()

    def __reduce_ex__(self, protocol):
        raise TypeError("an Arena cannot be pickled; save a model with MLP.save() or its state()")

    # -- current arena (per thread) ------------------------------------------
    def __enter__(self):
        self._check_thread()
        _stack().append(self)
        _local.current = self
        return self

    def __exit__(self, *exc):
        st = _stack()
        if not st or st[-1] is not self:
            raise RuntimeError("arenas must be exited in the reverse order they were entered")
        st.pop()
        _local.current = st[-1] if st else default_arena()
        return False


class _no_collection:
    """No garbage collection inside: a collection runs arbitrary __del__s and
    gc.callbacks, which may use this arena (an op, a .data read) while the
    journal is half applied or the room reserved for a kernel is not yet used.
    Refcount-driven __del__s of crad handles only queue (never re-enter)."""

    def __enter__(self):
        self.enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.enabled:
            gc.enable()


_local = threading.local()  # per thread: stack (entered arenas), default, current


def _stack():
    try:
        return _local.stack
    except AttributeError:
        _local.stack = []
        return _local.stack


def default_arena():
    """This thread's arena for when no ``with arena:`` block is active."""
    try:
        return _local.default
    except AttributeError:
        _local.default = Arena()
        return _local.default


def arena_arg(arena):
    """An ``arena=`` argument: the current arena for None, else an Arena."""
    if arena is None:
        return current_arena()
    if not isinstance(arena, Arena):
        raise TypeError(f"arena must be a crad.Arena, not {type(arena).__name__}")
    return arena


def current_arena():
    """The innermost ``with arena:`` arena of this thread, else its default one."""
    try:
        return _local.current
    except AttributeError:
        _local.current = default_arena()
        return _local.current
