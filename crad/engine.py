"""micrograd's module layout: ``from micrograd.engine import Value`` becomes
``from crad.engine import Value`` (and ``micrograd.nn`` becomes ``crad.nn``)."""
from .value import Value

__all__ = ["Value"]
