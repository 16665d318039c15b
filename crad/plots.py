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


def smooth(values, window=None):
    """Moving average of values over window steps (default: 1/50 of the run,
    at least 1); returns (steps, averages), each step the window's last."""
    v = np.asarray(values, np.float64)
    if window is None:
        window = max(1, len(v) // 50)
    window = max(1, min(int(window), len(v)))
    avg = np.convolve(v, np.ones(window) / window, mode="valid")
    return np.arange(window, len(v) + 1), avg


def training_curve(path, losses, *, accuracy=None, title=None, samples=None, side=None, window=None):
    """Write a PNG of a run: the loss per step (faint) and its moving average.

    losses: one float per step (step 1 first). accuracy: (step, fraction)
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
    panels = 1 + (samples is not None) + (side is not None)
    fig, axes = plt.subplots(1, panels, figsize=(6.4 + 3.6 * (panels - 1), 4.2),
                             gridspec_kw={"width_ratios": [1.6] + [1] * (panels - 1)}, squeeze=False)
    ax = axes[0, 0]
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss per step")
    s, avg = smooth(losses, window)
    ax.plot(s, avg, color="tab:blue", linewidth=2, label=f"moving average ({s[0]} steps)")
    finite = losses[np.isfinite(losses)]
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
            ax2.annotate(f"{b:.1%}", (a, b * 100), textcoords="offset points", xytext=(0, 7), ha="center",
                         fontsize=8, color="tab:red")
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
    plt.close(fig)
    return path
