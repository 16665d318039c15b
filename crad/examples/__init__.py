"""Runnable examples; each module has ``main(argv=None)``."""
