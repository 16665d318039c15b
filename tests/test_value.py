"""The Value facade: micrograd's API, handles, reference counts, bad input."""
import math

import numpy as np
import pytest

import crad
from crad import StaleValueError, Value


def test_constructor_accepts_reals(arena):
    for x in (3, 2.5, np.float32(1.5), np.int64(7), np.float64(-0.25), True):
        assert Value(x).data == float(x)


@pytest.mark.parametrize("bad", ["1.0", None, 1j, [1.0], np.array([1.0, 2.0]), object()])
def test_constructor_rejects_non_reals(arena, bad):
    before = arena.live
    with pytest.raises(TypeError, match="int, float or numpy real scalar"):
        Value(bad)
    assert arena.live == before


def test_operators_and_reflections(arena):
    a = Value(3.0)
    assert (a + 1).data == 4 and (1 + a).data == 4
    assert (a - 1).data == 2 and (1 - a).data == -2
    assert (a * 2).data == 6 and (2 * a).data == 6
    assert (a / 2).data == 1.5 and (6 / a).data == 2
    assert (a ** 2).data == 9 and (-a).data == -3
    assert a.relu().data == 3 and a.exp().data == math.exp(3)
    assert a.log().data == math.log(3) and a.tanh().data == math.tanh(3)


def test_node_structure_is_micrograds(arena):
    """One node per primitive, built as micrograd builds them."""
    a, b = Value(2.0), Value(3.0)
    counts = {}
    for name, f in {"add": lambda: a + b, "sub": lambda: a - b, "div": lambda: a / b,
                    "neg": lambda: -a, "rsub": lambda: 1 - a, "addc": lambda: a + 1,
                    "pow": lambda: a ** 2, "rdiv": lambda: 1 / a}.items():
        before = arena.live
        out = f()
        counts[name] = arena.live - before
        del out
    assert counts == {"add": 1, "sub": 3, "div": 2, "neg": 2, "rsub": 4, "addc": 2,
                      "pow": 1, "rdiv": 3}


def test_op_and_prev(arena):
    a, b = Value(2.0), Value(3.0)
    c = a * b
    assert c._op == "*" and (a ** 2)._op == "**2" and (a ** -1)._op == "**-1"
    assert c._prev == {a, b} and a._prev == set() and a._op == ""
    assert (a + b)._op == "+" and a.relu()._op == "ReLU"


def test_data_and_grad_are_writable(arena):
    a = Value(1.0)
    a.data = 5
    a.grad = 0.5
    assert (a.data, a.grad) == (5.0, 0.5)
    with pytest.raises(TypeError):
        a.data = "x"
    with pytest.raises(TypeError):
        a.grad = None


def test_repr(arena):
    assert repr(Value(2.0)) == "Value(data=2.0, grad=0.0)"


def test_pow_rejects_value_exponent(arena):
    a, b = Value(2.0), Value(3.0)
    before = arena.live
    with pytest.raises(TypeError, match="constant"):
        a ** b
    with pytest.raises(TypeError):
        a ** "2"
    with pytest.raises(TypeError):
        2 ** a
    assert arena.live == before


@pytest.mark.parametrize("bad", ["s", None, [1], 1j])
def test_ops_reject_other_types(arena, bad):
    a = Value(1.0)
    before = arena.live
    for f in (lambda: a + bad, lambda: bad + a, lambda: a * bad, lambda: a - bad,
              lambda: bad - a, lambda: a / bad, lambda: bad / a):
        with pytest.raises(TypeError):
            f()
    assert arena.live == before


def test_ref_counts(arena):
    a = Value(1.0)
    assert a.ref_count == 1
    b = a + a
    assert a.ref_count == 3 and b.ref_count == 1
    c = a.retain()
    assert a.ref_count == 4 and c == a
    del b
    assert a.ref_count == 2
    c.release()
    assert a.ref_count == 1


def test_release_makes_handle_stale(arena):
    a = Value(1.0)
    b = a * 2
    a.release()
    assert b.data == 2.0  # b keeps a's node alive
    for use in (lambda: a.data, lambda: a.grad, lambda: a + 1, lambda: a.backward(),
                lambda: a.release(), lambda: a.retain(), lambda: a.ref_count, lambda: a.relu()):
        with pytest.raises(StaleValueError):
            use()
    assert issubclass(StaleValueError, RuntimeError)
    before = arena.live
    with pytest.raises(StaleValueError):
        b + a
    assert arena.live == before
    assert repr(a) == "Value(<released>)"


def test_freed_slot_is_detected_by_generation(arena):
    a = Value(1.0)
    ghost = object.__new__(Value)  # a handle that does not own its node
    ghost._arena, ghost._i, ghost._g = arena, a._i, a._g
    a.release()
    Value(2.0)  # may reuse the slot
    with pytest.raises(StaleValueError, match="freed"):
        ghost.data
    ghost._arena = None


def test_mixing_arenas_raises(arena):
    other = crad.Arena()
    a = Value(1.0)
    b = Value(2.0, arena=other)
    before, before_other = arena.live, other.live
    with pytest.raises(ValueError, match="different arenas"):
        a + b
    with pytest.raises(ValueError, match="different arenas"):
        b * a
    assert (arena.live, other.live) == (before, before_other)


def test_with_arena_makes_it_current():
    outer = crad.current_arena()
    with crad.Arena() as a:
        assert crad.current_arena() is a
        v = Value(1.0)
        assert v.arena is a and a.live == 1
    assert crad.current_arena() is outer
    del v
    assert a.live == 0


@pytest.mark.parametrize("x", [3.0, -3.0])
def test_division_by_signed_zero_follows_ieee(arena, x):
    """x / +-0 is +-inf with the sign of x times the zero's sign (IEEE, as numpy),
    for a constant divisor, a Value divisor and a constant numerator."""
    a = Value(x)
    s = math.copysign(1.0, x)
    for zero in (0.0, -0.0, 0, np.float64(-0.0)):
        want = s * math.copysign(math.inf, zero)
        assert (a / zero).data == want
        assert (a / Value(zero)).data == want
        assert (x / Value(zero)).data == want
