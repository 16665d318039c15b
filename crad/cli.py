"""The ``crad`` command: train the examples, run the benchmarks, print info."""
import argparse
import os
import sys


def _info(_args):
    import numba
    import numpy
    from numba.core.config import CACHE_DIR

    import crad
    a = crad.default_arena()
    print(f"crad {crad.__version__} ({os.path.dirname(crad.__file__)})")
    print(f"numba {numba.__version__}, numpy {numpy.__version__}, python {sys.version.split()[0]}")
    print(f"numba cache: {CACHE_DIR or 'beside the sources (__pycache__)'}")
    print(f"default arena: {a.stats()}")


def _bench(args):
    try:
        from bench.__main__ import main as bench_main
    except ImportError:
        sys.exit("the benchmarks live in the source tree: run `crad bench` (or `python -m bench`) "
                 "from a checkout of crad")
    bench_main(args.rest)


def _train(args):
    from importlib import import_module
    module = {"toy": "toy", "moons": "moons", "mnist": "mnist"}[args.example]
    import_module(f"crad.examples.{module}").main(args.rest)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="crad", description="crad: a fast scalar-valued autograd engine")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an example (toy, moons, mnist); `crad train toy --help` for options",
                       add_help=False)
    t.add_argument("example", choices=["toy", "moons", "mnist"])
    t.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the example")
    b = sub.add_parser("bench", help="run the benchmark suite (options: --quick, --only W0,W1,...)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("info", help="versions, numba cache directory, default arena statistics")
    args = ap.parse_args(argv)
    {"train": _train, "bench": _bench, "info": _info}[args.command](args)


if __name__ == "__main__":
    main()
