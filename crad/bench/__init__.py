"""crad's benchmark suite: DESIGN's workloads for crad and its peers, shipped with the package.

Run it with ``crad bench`` (or ``python -m crad.bench``; ``python -m bench`` in a checkout writes
``bench/results.json``). Peers: micrograd 0.1.0 (``pip install "crad[bench]"``), the minimal
pure-Python Value in ``pyvalue.py`` (always), and PyTorch when it is installed.

Adding a workload: a module here exposing ``wN(quick) -> rows`` and one line in WORKLOADS. A row is
a dict with ``workload`` and ``engine`` and a node count; build the rows of a timed comparison with
``common.interleave`` (the engines measured in alternating rounds) and ``common.summarize`` (medians,
and each crad engine's ratio to every peer as the median of the per-round ratios with their min-max),
using ``common.ROUNDS`` and ``common.MIN_S``. Each workload runs in a fresh process.
"""
from collections import namedtuple

Workload = namedtuple("Workload", "target title quick")  # target: "module:function" in this package

WORKLOADS = {
    "compile": Workload("compile:compile_times", "Compile time: fresh processes, empty numba cache (cold) "
                        "then filled (warm)", False),
    "W0": Workload("engine:w0", "W0: y = sum a_i * b_i, build + backward + free (ns per node)", True),
    "W0 memory": Workload("engine:w0_memory", "W0 memory: RSS growth per live node, a fresh process per engine",
                          True),
    "W1": Workload("engine:w1", "W1: deep chain y = relu(y * 1.0001 + 0.001), build + backward + free", False),
    "W2": Workload("nn:w2", "W2: toy regression step, MLP 2-16-16-1, batch 32", True),
    "moons": Workload("moons:w_moons", "micrograd's two-moons demo loop, verbatim but for the import (ms per step)",
                      True),
    "W3": Workload("mnist:w3", "W3: MNIST step, MLP 784-32-10, softmax cross-entropy", True),
    "W4": Workload("mnist:w4", "W4: MNIST epoch, MLP 784-50-10, batch 32", False),
    "W5": Workload("gpt:w5", "W5: microgpt's character GPT, per name (build or replay, backward, Adam)", False),
}
