"""The ``crad`` command: train the examples, run the benchmarks, print info.

``crad train EXAMPLE [options]`` and ``crad bench [options]`` hand their
options to the example's or the benchmark's own parser, so ``--help`` after
them lists those options.
"""
import argparse
import os
import sys
from importlib import import_module

EXAMPLES = {"toy": "toy regression, an all-ReLU MLP learns x0^2 + x1^2 (seconds)",
            "moons": "micrograd's two-moons demo, hinge loss, 100% training accuracy",
            "mnist": "MLP(784, [50, 10]) on MNIST through scalar graphs (about 4 s an epoch)",
            "gpt": "microgpt's character GPT on makemore's names, one tape per name length"}


def _info():
    import numba
    import numpy
    from numba.core.config import CACHE_DIR

    import crad
    a = crad.default_arena()
    print(f"crad {crad.__version__} ({os.path.dirname(crad.__file__)})")
    print(f"numba {numba.__version__}, numpy {numpy.__version__}, python {sys.version.split()[0]}")
    print(f"numba cache: {CACHE_DIR or 'beside the sources (__pycache__)'}")
    print(f"default arena: {a.stats()}")
    source = f"${crad.threads.ENV}" if os.environ.get(crad.threads.ENV, "").strip() else "every core numba sees"
    print(f"batched replay threads: {crad.get_num_threads()} ({source}; crad.set_num_threads(n) changes it), "
          f"numba threading layer {crad.threads.threading_layer()}")


def _bench(rest):
    from .bench.__main__ import main as bench_main
    bench_main(rest)


def _train(rest):
    if not rest or rest[0] in ("-h", "--help"):
        print("usage: crad train EXAMPLE [options]    (crad train EXAMPLE --help lists its options)\n")
        print("\n".join(f"  {name:6s} {text}" for name, text in EXAMPLES.items()))
        return
    if rest[0] not in EXAMPLES:
        sys.exit(f"crad train: unknown example {rest[0]!r}; choose one of {', '.join(EXAMPLES)}")
    from .datasets import DatasetError
    try:
        import_module(f"crad.examples.{rest[0]}").main(rest[1:])
    except DatasetError as e:  # a missing or corrupt data file: the message says what to do
        sys.exit(f"crad train {rest[0]}: {e}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        return _train(argv[1:])
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    ap = argparse.ArgumentParser(prog="crad", description="crad: a fast scalar-valued autograd engine")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train an example: " + ", ".join(EXAMPLES) + " (crad train --help)")
    sub.add_parser("bench", help="run the benchmarks against micrograd, a pure-Python Value and PyTorch, "
                                 "whichever are installed (crad bench --help)")
    sub.add_parser("info", help="versions, numba cache directory, default arena statistics, threads")
    args = ap.parse_args(argv)
    if args.command == "info":
        _info()


if __name__ == "__main__":
    main()
