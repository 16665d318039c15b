"""python -m bench: crad's packaged suite (``crad bench``) run from a checkout; the rows go to
bench/results.json, and ``--md bench/RESULTS.md`` records a run there."""
import os

from crad.bench.__main__ import main

main(prog="python -m bench", json_default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json"))
