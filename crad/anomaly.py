"""Anomaly mode: raise at the first NaN or inf value or gradient.

Kept apart from ``debug`` so that the facade modules can call its checks
without an import cycle. While no ``detect_anomaly()`` block is active, the
facade's cost is one list test per emission.
"""
import contextlib
import os
import threading
import traceback

import numpy as np

from . import kernels as K
from .ops import Op


class AnomalyError(FloatingPointError):
    """A node's value or gradient became NaN or inf under detect_anomaly()."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# One dict (slot -> creation site) per active detect_anomaly() block, in any
# thread: the facade's cheap test ("is anyone debugging?"). Each thread's own
# blocks are in _local.blocks: only those make its operations checked.
active = []
_local = threading.local()


def mine():
    """This thread's active blocks (the innermost last); empty when off here."""
    try:
        return _local.blocks
    except AttributeError:
        _local.blocks = []
        return _local.blocks


def _user_site():
    """'file:line in function' of the innermost caller outside crad."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "(inside crad)"


def _describe(a, i, sites):
    op = int(a.I[K.OP, i])
    operands = [int(j) for j in (a.I[K.LHS, i], a.I[K.RHS, i]) if j >= 0] if op else []
    vals = ", ".join(f"{float(a.F[K.DATA, j])!r}" for j in operands) or "none (a leaf)"
    name = Op(op).name.lower() + (f" {a.F[K.ARG, i]:g}" if op == Op.POW else "")
    site = sites.get(i, "before detect_anomaly()")
    return f"node {i} ({name}), operands' values: {vals}; created at {site}"


def check_new(a, new):
    """Called by the facade, when ``active``, after it emitted the nodes of
    slots ``new`` (applied): record where they were made, raise on a bad value."""
    sites = mine()[-1]
    new = np.asarray(new)
    site = _user_site()
    for i in new:
        sites[int(i)] = site
    bad = new[~np.isfinite(a.F[K.DATA][new])]
    if bad.size:
        i = int(bad[0])
        raise AnomalyError(f"value {float(a.F[K.DATA, i])!r} at {_describe(a, i, sites)}")


def check_backward(a, n):
    """Called, when ``active``, after backward visited n nodes (users first,
    in the STACK row): raise at the first one whose gradient is not finite."""
    order = a.I[K.STACK, :n].copy()
    bad = order[~np.isfinite(a.F[K.GRAD][order])]
    if bad.size:
        i = int(bad[0])
        msg = f"gradient {float(a.F[K.GRAD, i])!r} at {_describe(a, i, mine()[-1])}"
        users = order[(a.I[K.LHS][order] == i) | (a.I[K.RHS][order] == i)]
        if users.size:  # the first user processed: its backward rule produced the bad value
            msg += f"; produced by the backward of {_describe(a, int(users[0]), mine()[-1])}"
        raise AnomalyError(msg)


@contextlib.contextmanager
def detect_anomaly():
    """Raise AnomalyError at the first node whose value (when it is built) or
    gradient (after backward) is NaN or inf, naming its op, its operands'
    values and the line of user code that created it. Slower: for debugging.
    Replayed tapes are not checked."""
    sites = {}
    active.append(sites)
    mine().append(sites)
    try:
        yield
    finally:
        mine().pop()
        active.remove(sites)


def checked(handle, new):
    """The facade's hook after emitting the nodes of slots ``new`` behind a
    new handle (a Value or a Vector): in anomaly mode, check them; on a bad
    value the handle is released (its nodes freed, the arena as before) and
    the error raised."""
    if active and mine():
        try:
            check_new(handle._arena, new)
        except AnomalyError:
            handle.release()
            raise
    return handle


def check_record(handle, n):
    """checked() for a Value whose node (and, with n == 2, its constant
    leaf) is the journal's last record: anomaly mode applies every record
    at once, eagerly, so the check sees the value where it is made."""
    if not mine():
        return handle  # another thread is debugging, not this one
    a = handle._arena
    new = a._res[a._k - n:a._k].copy()
    a._sync()
    return checked(handle, new)
