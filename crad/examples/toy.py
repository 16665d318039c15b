"""Toy regression: a small all-ReLU MLP learns f(x0, x1) = x0^2 + x1^2 on [-1, 1]^2.

microcrad's semantics (ReLU on every neuron, ``relu_out=True``): the target
is non-negative, so the ReLU output fits it. Runs in seconds.

By default the graph of one sample is captured once and replayed for the
whole batch at every step (``crad.capture``, ``Tape.batch``); ``--rebuild``
builds, back-propagates and frees the whole batch's graph at every step
instead. Both compute the same thing.
"""
import argparse

import numpy as np
from tqdm import tqdm

import crad
from crad import MLP, losses, optim, plots


def target(X):
    return (X ** 2).sum(axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="toy_regression", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500, help="SGD steps (default 500)")
    ap.add_argument("--batch-size", type=int, default=32, help="points per step (default 32)")
    ap.add_argument("--hidden", type=int, default=16, help="width of the two hidden layers (default 16)")
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the graph every step instead of replaying")
    ap.add_argument("--plot", metavar="PATH", help="write the loss curve to this PNG (needs crad[plot])")
    args = ap.parse_args(argv)
    plots.ensure(args.plot)

    rng = np.random.default_rng(args.seed)
    model = MLP(2, [args.hidden, args.hidden, 1], relu_out=True, init="he", rng=rng)
    opt = optim.SGD(model, lr=args.lr, momentum=0.9)
    print(model)
    if not args.rebuild:  # one sample's graph, replayed for every sample of every batch
        tape = crad.capture(lambda x, y: losses.mse(model(x), y), crad.leaves(np.zeros((1, 2))),
                            crad.leaves(np.zeros((1, 1))))
    bar = tqdm(range(args.steps), desc="training", unit="step")
    history = []
    for step in bar:
        X = rng.uniform(-1, 1, (args.batch_size, 2))
        y = target(X)[:, None]
        model.zero_grad()
        if args.rebuild:
            graph = losses.mse(model(X), y)
            nodes = crad.current_arena().live - model.num_parameters  # this step's graph
            graph.backward()
            loss = graph.data
        else:
            loss = float(tape.batch(X[:, None, :], y[:, None, :]).mean())
            nodes = tape.computed * args.batch_size
        opt.step()
        history.append(loss)
        if step % 25 == 0 or step == args.steps - 1:
            bar.set_postfix(loss=f"{loss:.5f}", nodes=nodes)
    mode = "rebuilt every step" if args.rebuild else "one sample's graph replayed per sample"
    print(f"final loss {loss:.5f} ({nodes:,} nodes per step, {mode})")
    points = np.array([[0.0, 0.0], [0.5, -0.5], [-0.8, 0.3], [0.9, 0.9], [-0.2, -1.0]])
    print("   x0     x1   predicted   true")
    for (x0, x1), p, t in zip(points, model.predict(points)[:, 0], target(points)):
        print(f"{x0:5.2f}  {x1:5.2f}   {p:8.4f}  {t:6.4f}")
    if args.plot:
        print(f"loss curve written to {plots.training_curve(args.plot, history, title='crad: toy regression')}")
    return loss


if __name__ == "__main__":
    main()
