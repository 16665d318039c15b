"""Make the README's pictures under docs/ (needs crad[plot]; MNIST needs its files).

    python examples/pictures.py [--out docs] [--data-dir DIR] [--only neuron moons mnist gpt]

- neuron.svg: one neuron's graph after backward, laid out by crad itself;
- moons.png: micrograd's two-moons demo, loss curve and decision boundary;
- mnist.png: MLP(784, [50, 10]) for 5 epochs, loss per step and test accuracy;
- gpt.png: the character GPT's loss curve with names it sampled, made by
  ``crad train gpt --plot PATH`` (skipped, saying so, until crad.examples.gpt
  exists; that example draws it with crad.plots.training_curve(path, losses,
  samples=names)).
"""
import argparse
import os
from importlib import import_module
from importlib.util import find_spec

import crad
from crad import Neuron, Value, viz

LIMIT = 200_000  # bytes: keep each picture small enough for the repository


def neuron(path, data_dir):
    n = Neuron(2, seed=0)
    y = n([Value(1.0), Value(-2.0)])
    y.backward()
    return viz.draw(y, layout="crad").save(path)


def train(name, *args):
    def make(path, data_dir):
        extra = ["--data-dir", data_dir] if name == "mnist" and data_dir else []
        import_module(f"crad.examples.{name}").main([*args, *extra, "--plot", path])
        return path
    return make


PICTURES = {
    "neuron": ("neuron.svg", neuron),
    "moons": ("moons.png", train("moons")),
    "mnist": ("mnist.png", train("mnist", "--epochs", "5", "--checkpoint", "")),
    "gpt": ("gpt.png", train("gpt")),
}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pictures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs", help="directory for the pictures (default docs)")
    ap.add_argument("--data-dir", default=None, help="MNIST directory (default $CRAD_DATA_DIR or ~/.cache/crad)")
    ap.add_argument("--only", nargs="+", choices=list(PICTURES), default=list(PICTURES))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    written = []
    for name in args.only:
        if name == "gpt" and find_spec("crad.examples.gpt") is None:
            print("gpt.png skipped: crad.examples.gpt does not exist yet")
            continue
        filename, make = PICTURES[name]
        path = os.path.join(args.out, filename)
        with crad.Arena():
            make(path, args.data_dir)
        size = os.path.getsize(path)
        print(f"{path}: {size / 1000:.0f} kB")
        if size > LIMIT:
            raise SystemExit(f"{path} is {size:,} bytes, over the {LIMIT:,} byte limit for the repository")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
