"""numba kernels over the arena's columns. They know nothing of Python objects.

By concern: ``alloc`` (slots and single nodes), ``build`` (bulk graph
builders), ``sweep`` (backward and the release cascade), ``replay`` (tapes),
``update`` (optimizers). This package re-exports them all; the facade calls
``K.name``.

Every kernel takes the arena as three arrays:

- ``F``: float64, shape (3, cap). Rows DATA, GRAD, ARG (POW's exponent).
- ``I``: int32, shape (9, cap). Rows OP, LHS, RHS (operand slots, -1 for none),
  REFS, GEN, MARK (epoch stamp), LOW, and two scratch rows STACK and AUX that a
  kernel may overwrite freely (they hold nothing between calls).
- ``M``: int64, shape (8,). The arena's counters, indexed by the M_* names.

Invariants every kernel keeps (the tests check them):

- A slot is live iff GEN is odd. Vacant slots are threaded into a LIFO free
  list through their LHS cell; M_FREE_HEAD is its head, M_NFREE its length.
  Slots at or above M_TOP were never used.
- A live node has REFS >= 1 outside a kernel. Its owners are handles, vectors,
  tapes and the nodes that use it as an operand (one reference per operand
  cell, so ``a * a`` holds two).
- LOW[i] is the lowest slot reachable from i when every node reachable from i
  sits above its operands, else -1. When LOW[root] >= 0, descending slot order
  is a reverse topological order of root's graph: backward is one sweep.
- A kernel that emits nodes is called only after the facade has made room
  (``Arena.reserve``), except ``emit`` and ``emit_const``, which return -1.
  It leaves the k nodes it made listed in I[STACK, :k] (anomaly mode reads them).

Performance rule: a helper that takes arrays costs an atomic incref/decref
of each array per call (numba's NRT), so per-node helpers take scalars only
(``ops.forward``, ``ops.backward``) and array helpers run once per kernel
call, over a batch of slots listed in the STACK row.
"""
from .alloc import emit, emit_const, emit_leaves, retain_many
from .build import MAP_CONSTS, MAP_NODES, MAP_UNARY, emit_dot, emit_layer, emit_map, emit_rowsum, emit_sum
from .journal import CONST_LEAF, POS_MASK, RETAIN, journal_apply, journal_claim
from .layout import (
    ARG,
    AUX,
    DATA,
    GEN,
    GRAD,
    LHS,
    LOW,
    M_EPOCH,
    M_FREE_HEAD,
    M_FREED,
    M_LIVE,
    M_MADE,
    M_NFREE,
    M_PEAK,
    M_TOP,
    MARK,
    N_FLOAT_ROWS,
    N_INT_ROWS,
    N_META,
    OP,
    REFS,
    RHS,
    STACK,
)
from .replay import (
    BWD,
    CONST,
    FWD_SEED,
    INPUT,
    N_PROG,
    P_COL,
    P_GROW,
    P_KIND,
    P_L,
    P_LFIRST,
    P_OP,
    P_R,
    P_RFIRST,
    P_SLOT,
    P_VROW,
    PARAM,
    ROW,
    SEG_ROW,
    lower,
    sink,
    tape_backward,
    tape_batch,
    tape_batch_parallel,
    tape_compile,
    tape_forward,
    tape_rows,
    tape_split_parallel,
)
from .split import front, plan
from .sweep import backward, order_of, release, release_many
from .update import adam_step, adam_step_parallel, runs, sgd_step, zero_grad_runs

__all__ = [
    "ARG", "AUX", "BWD", "CONST", "CONST_LEAF", "DATA", "FWD_SEED", "GEN", "GRAD", "INPUT", "LHS", "LOW",
    "MAP_CONSTS", "MAP_NODES", "MAP_UNARY", "MARK", "M_EPOCH", "M_FREED", "M_FREE_HEAD", "M_LIVE", "M_MADE",
    "M_NFREE", "M_PEAK", "M_TOP", "N_FLOAT_ROWS", "N_INT_ROWS", "N_META", "N_PROG", "OP", "PARAM", "POS_MASK",
    "P_COL", "P_GROW", "P_KIND", "P_L", "P_LFIRST", "P_OP", "P_R", "P_RFIRST", "P_SLOT", "P_VROW", "REFS", "RETAIN",
    "RHS", "ROW", "SEG_ROW", "STACK", "adam_step", "adam_step_parallel", "backward", "emit", "emit_const", "emit_dot",
    "emit_layer", "emit_leaves", "emit_map", "emit_rowsum", "emit_sum", "front", "journal_apply", "journal_claim",
    "lower", "order_of", "plan", "release", "release_many", "retain_many", "runs", "sgd_step", "sink", "tape_backward",
    "tape_batch", "tape_batch_parallel", "tape_compile", "tape_forward", "tape_rows", "tape_split_parallel",
    "zero_grad_runs",
]
