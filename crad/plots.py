"""Training curves as PNG files, shared by every example's ``--plot PATH``.

matplotlib is optional (``pip install 'crad[plot]'``); without it the
functions here raise ImportError with that hint, and ``ensure`` turns it into
a command-line error before any training starts.
"""
import os

import numpy as np

INSTALL_HINT = "matplotlib is not installed, so crad cannot draw plots: pip install 'crad[plot]'"


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def ensure(path):
    """For a command's ``--plot PATH``: exit now, with the install hint, if
    a plot is asked for and matplotlib is missing (not after training)."""
    if path:
        try:
            pyplot()
        except ImportError as e:
            raise SystemExit(f"--plot {path}: {e}") from None


def smooth(values, window):
    """Moving average of values over the last window steps; the first steps
    average what there is so far. Returns an array as long as values."""
    v = np.asarray(values, np.float64)
    window = max(1, int(window))
    c = np.concatenate([[0.0], np.cumsum(v)])
    k = np.arange(1, len(v) + 1)
    start = np.maximum(k - window, 0)
    return (c[k] - c[start]) / (k - start)


def training_curve(path, losses, *, accuracy=None, title=None, samples=None, side=None, window=None):
    """Write a PNG of a run: the loss per step (faint) and its moving average.

    losses: one float per step (step 1 first); window: steps in the moving
    average (default 1/50 of the run). accuracy: (step, fraction)
    pairs, such as the test accuracy after each epoch, drawn on a right-hand
    axis. samples: lines of text (say, names sampled from a language model)
    shown in a panel beside the curve. side: a function given a matplotlib
    Axes that draws a panel beside the curve (the moons example draws its
    decision boundary). Returns path.
    """
    losses = np.asarray(losses, np.float64)
    if losses.ndim != 1 or len(losses) == 0:
        raise ValueError("losses must be a non-empty sequence of numbers, one per step")
    plt = pyplot()
    widths = [6.4] + [2.2] * (samples is not None) + [4.0] * (side is not None)  # inches
    fig, axes = plt.subplots(1, len(widths), figsize=(sum(widths), 4.2), gridspec_kw={"width_ratios": widths},
                             squeeze=False)
    try:
        ax = axes[0, 0]
        steps = np.arange(1, len(losses) + 1)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss per step")
        window = window or max(1, len(losses) // 50)
        avg = smooth(losses, window)
        ax.plot(steps, avg, color="tab:blue", linewidth=2, label=f"moving average ({window} steps)")
        finite = avg[np.isfinite(avg)]
        if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")  # a loss falling over decades reads better on a log axis
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if accuracy:
            at, acc = zip(*accuracy)
            ax2 = ax.twinx()
            ax2.plot(at, np.asarray(acc) * 100, "o-", color="tab:red", label="test accuracy")
            for a, b in zip(at, acc):
                ax2.annotate(f"{b:.1%}", (a, b * 100), textcoords="offset points", xytext=(0, 8), ha="center",
                             fontsize=8, color="tab:red", bbox={"fc": "white", "ec": "none", "pad": 1})
            ax2.set_ylabel("test accuracy (%)", color="tab:red")
            lo = min(acc) * 100
            ax2.set_ylim(max(0.0, lo - 0.2 * (100 - lo) - 1), 100)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, loc="upper right", fontsize=8)
        if title:
            ax.set_title(title)
        k = 1
        if samples is not None:
            ax = axes[0, k]
            k += 1
            ax.axis("off")
            ax.set_title("samples")
            ax.text(0.05, 0.98, "\n".join(str(t) for t in samples), va="top", ha="left", family="monospace",
                    fontsize=9, transform=ax.transAxes)
        if side is not None:
            side(axes[0, k])
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=100)
    finally:
        plt.close(fig)  # a side panel that raises must not leak the figure
    return path
