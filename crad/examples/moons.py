"""micrograd's demo: MLP(2, [16, 16, 1]) separates two moons with a hinge loss.

Hinge loss plus L2 (alpha 1e-4), SGD with a rate decaying from 1.0 to 0.1
over 100 full-batch steps, as in micrograd's demo notebook. ``--plot PATH``
writes the loss curve and the decision boundary to a PNG (``crad[plot]``).
"""
import argparse

import numpy as np
from tqdm import tqdm

from crad import MLP, losses, optim, plots


def make_moons(n=100, noise=0.1, seed=1):
    """Two interleaving half circles, labels -1 / +1 (no scikit-learn needed)."""
    rng = np.random.default_rng(seed)
    k = n // 2
    t_out, t_in = np.linspace(0, np.pi, n - k), np.linspace(0, np.pi, k)
    X = np.vstack([np.column_stack([np.cos(t_out), np.sin(t_out)]),
                   np.column_stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)])])
    X += rng.normal(scale=noise, size=X.shape)
    y = np.hstack([-np.ones(n - k), np.ones(k)])
    return X, y


def boundary(ax, model, X, y):
    """Draw the model's decision boundary and the points on a matplotlib Axes."""
    xx, yy = np.meshgrid(np.linspace(-2, 3, 200), np.linspace(-1.5, 2, 200))
    Z = model.predict(np.column_stack([xx.ravel(), yy.ravel()]))[:, 0].reshape(xx.shape)
    ax.contourf(xx, yy, Z > 0, cmap="Spectral", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=20, cmap="jet", edgecolors="k")
    ax.set_title("decision boundary")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="moons", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--plot", metavar="PATH", help="write the loss curve and decision boundary to this PNG "
                    "(needs crad[plot])")
    args = ap.parse_args(argv)
    plots.ensure(args.plot)
    X, y = make_moons()
    model = MLP(2, [16, 16, 1], seed=args.seed)
    opt = optim.SGD(model, lr=1.0)
    bar = tqdm(range(args.steps), desc="training", unit="step")
    history = []
    for k in bar:
        scores = model(X)
        loss = losses.hinge(scores, y, parameters=model, alpha=1e-4)
        acc = losses.accuracy(scores, y)
        model.zero_grad()
        loss.backward()
        opt.lr = 1.0 - 0.9 * k / args.steps
        opt.step()
        history.append(loss.data)
        bar.set_postfix(loss=f"{loss.data:.4f}", accuracy=f"{acc:.0%}")
    acc = losses.accuracy(model.predict(X), y)
    print(f"final loss {loss.data:.4f}, training accuracy {acc:.0%}")
    if args.plot:
        plots.training_curve(args.plot, history, title="crad: MLP(2, [16, 16, 1]), hinge loss",
                             side=lambda ax: boundary(ax, model, X, y))
        print(f"loss curve and decision boundary written to {args.plot}")
    return acc


if __name__ == "__main__":
    main()
