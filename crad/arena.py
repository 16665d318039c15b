"""The arena: every node of a graph is a slot in a few preallocated columns."""
import numpy as np

from . import kernels as K


class StaleValueError(RuntimeError):
    """A handle was used after it was released or its node was freed."""


class Arena:
    """Owns the node columns, hands out slots, grows by doubling.

    ``with arena:`` makes it the arena that new leaves (``Value(x)``,
    ``leaves``, modules) are created in. Handles keep their arena alive; an
    arena is not safe to share between threads.

    >>> a = Arena(capacity=16)
    >>> a.live, a.capacity
    (0, 16)
    """

    MAX_CAPACITY = 2**31 - 1  # slots are int32

    def __init__(self, capacity=1024):
        if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if not 1 <= capacity <= self.MAX_CAPACITY:
            raise ValueError(f"capacity must be between 1 and {self.MAX_CAPACITY}, got {capacity}")
        cap = int(capacity)
        self.F = np.zeros((K.N_FLOAT_ROWS, cap), np.float64)
        self.I = np.zeros((K.N_INT_ROWS, cap), np.int32)
        self.M = np.zeros(K.N_META, np.int64)
        self._gen = self.I[K.GEN]

    # -- slots ---------------------------------------------------------------
    def reserve(self, k):
        """Make room for k more nodes, growing the columns if needed.

        Growth copies the columns; handles hold slot numbers, never views,
        so every live handle stays valid.
        """
        free = int(self.M[K.M_NFREE]) + self.capacity - int(self.M[K.M_TOP])
        if free >= k:
            return
        need = int(self.M[K.M_TOP]) + k - int(self.M[K.M_NFREE])
        cap = max(2 * self.capacity, need)
        if need > self.MAX_CAPACITY:
            raise MemoryError(f"an arena holds at most {self.MAX_CAPACITY} nodes; {need} requested")
        cap = min(cap, self.MAX_CAPACITY)
        old = self.capacity
        F = np.zeros((K.N_FLOAT_ROWS, cap), np.float64)
        I = np.zeros((K.N_INT_ROWS, cap), np.int32)
        F[:, :old] = self.F
        I[:, :old] = self.I
        self.F, self.I = F, I
        self._gen = I[K.GEN]

    # -- statistics ----------------------------------------------------------
    @property
    def capacity(self):
        """Slots allocated in the columns."""
        return self.F.shape[1]

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
        return self.F.nbytes + self.I.nbytes

    @property
    def bytes_per_node(self):
        """Column bytes per slot: what each node costs, scratch rows included."""
        return self.nbytes // self.capacity

    def stats(self):
        """A dict of the statistics above, plus nodes made and freed so far."""
        return dict(live=self.live, peak=self.peak, capacity=self.capacity,
                    bytes_per_node=self.bytes_per_node, nbytes=self.nbytes,
                    made=int(self.M[K.M_MADE]), freed=int(self.M[K.M_FREED]))

    def __repr__(self):
        return f"Arena(live={self.live}, peak={self.peak}, capacity={self.capacity})"

    # -- current arena -------------------------------------------------------
    def __enter__(self):
        _current.append(self)
        return self

    def __exit__(self, *exc):
        if not _current or _current[-1] is not self:
            raise RuntimeError("arenas must be exited in the reverse order they were entered")
        _current.pop()
        return False


_current = []
_default = None


def default_arena():
    """The arena used when no ``with arena:`` block is active."""
    global _default
    if _default is None:
        _default = Arena()
    return _default


def current_arena():
    """The innermost ``with arena:`` arena, else the default one."""
    return _current[-1] if _current else default_arena()
