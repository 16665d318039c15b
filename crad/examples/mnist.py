"""MNIST on scalar graphs: MLP(784, [50, 10]), softmax cross-entropy, minibatches.

Every step builds the honest graph, one node per scalar mul, add, relu, exp
and log (about 80,000 nodes per image), back-propagates and frees it. Test
accuracy is computed without a graph (``model.predict``). A checkpoint is
written after each epoch; ``--resume`` continues from it.

By default one image's graph is captured once and replayed for every image
(``crad.capture``, ``Tape.batch``: the same nodes, their values laid out
(node, sample) so each batch runs as vectorised loops). ``--rebuild``
builds, back-propagates and frees the batch's graph at every step instead.
"""
import argparse
import os
import time

import numpy as np
from tqdm import tqdm

import crad
from crad import MLP, losses, optim, plots
from crad.datasets import load_mnist


def parse(argv):
    ap = argparse.ArgumentParser(prog="mnist", description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=50, help="hidden width (default 50)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3 for Adam)")
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--data-dir", default=None,
                    help="data root holding mnist/ (default $CRAD_DATA_DIR or ~/.cache/crad)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--checkpoint", default="mnist-crad.npz", help="checkpoint path ('' for none)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the graph every step instead of replaying")
    ap.add_argument("--plot", metavar="PATH", help="write the loss and test accuracy curves to this PNG "
                    "(needs crad[plot])")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    plots.ensure(args.plot)
    data = load_mnist(args.data_dir)
    x_train = data["x_train"].reshape(-1, 784) / 255.0
    y_train = data["y_train"].astype(np.int64)
    onehot = np.eye(10)[y_train]
    x_test = data["x_test"].reshape(-1, 784) / 255.0
    if args.limit:
        x_train, y_train, onehot = x_train[: args.limit], y_train[: args.limit], onehot[: args.limit]
    rng = np.random.default_rng(args.seed)
    model = MLP(784, [args.hidden, 10], init="he", rng=rng)
    opt = optim.Adam(model, lr=args.lr) if args.optimizer == "adam" else optim.SGD(model, args.lr, 0.9)
    if not args.rebuild:  # one image's graph, replayed for every image
        # captured before a checkpoint is loaded, so that the stability shift cross_entropy
        # records (a constant) is the same in a resumed run: resuming is then bit-exact
        tape = crad.capture(lambda x, y: losses.cross_entropy(model(x), y), crad.leaves(x_train[:1]),
                            crad.leaves(onehot[:1]))
    start = 0
    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):
        extra = model.load_state(args.checkpoint)
        opt.load_state_dict({k[4:]: v for k, v in extra.items() if k.startswith("opt_")})
        start = int(extra["epoch"])
        print(f"resumed from {args.checkpoint} after epoch {start}")
    print(model)
    arena = crad.current_arena()
    acc = None
    history, accuracy = [], []  # loss per step, (step, test accuracy) per epoch of this run
    for epoch in range(start, args.epochs):
        # each epoch's shuffle from (seed, epoch): a resumed run sees the same batches
        order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train))
        bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch + 1}", unit="batch")
        t0, nodes, seen = time.perf_counter(), 0, 0
        for i in bar:
            idx = order[i: i + args.batch_size]
            model.zero_grad()
            if args.rebuild:
                graph = losses.cross_entropy(model(x_train[idx]), y_train[idx])
                nodes += arena.live - model.num_parameters
                graph.backward()
                loss = graph.data
            else:
                loss = float(tape.batch(x_train[idx][:, None, :], onehot[idx][:, None, :]).mean())
                nodes += tape.computed * len(idx)
            opt.step()
            history.append(loss)
            seen += len(idx)
            if (i // args.batch_size) % 20 == 0:
                dt = time.perf_counter() - t0
                bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{seen / dt:,.0f}",
                                nodes_s=f"{nodes / dt / 1e6:.0f}M")
        graph = None  # a rebuilt step's graph is freed here
        dt = time.perf_counter() - t0
        acc = float((model.predict(x_test).argmax(1) == data["y_test"]).mean())
        accuracy.append((len(history), acc))
        print(f"epoch {epoch + 1}: {dt:.1f} s, {seen / dt:,.0f} samples/s, {nodes / dt / 1e6:.0f} M nodes/s, "
              f"{nodes / seen:,.0f} nodes per image, test accuracy {acc:.2%}")
        if args.checkpoint:
            state = {f"opt_{k}": v for k, v in opt.state_dict().items()}
            model.save(args.checkpoint, epoch=epoch + 1, **state)
    if args.plot and history:
        plots.training_curve(args.plot, history, accuracy=accuracy,
                             title=f"crad: MLP(784, [{args.hidden}, 10]) on MNIST, batch {args.batch_size}")
        print(f"loss and accuracy curves written to {args.plot}")
    return acc


if __name__ == "__main__":
    main()
