"""The arena's column layout: row indices of F and I, counters of M (see the
package docstring for what each holds and the invariants)."""

DATA, GRAD, ARG = 0, 1, 2
OP, LHS, RHS, REFS, GEN, MARK, LOW, STACK, AUX = range(9)
N_FLOAT_ROWS, N_INT_ROWS = 3, 9
M_TOP, M_FREE_HEAD, M_NFREE, M_LIVE, M_PEAK, M_EPOCH, M_MADE, M_FREED = range(8)
N_META = 8
