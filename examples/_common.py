"""What the example scripts share: a one-line progress bar and loss-curve
PNGs (matplotlib, optional). Not part of needle: the examples import it
from their own folder.

Input: per-step progress, or curves (x, y, label). Output: text on stderr,
or a PNG file.
"""
import sys
import time


def progress_bar(verbose, epoch, epochs, done, total, loss, t0):
    """Redraw `epoch e/E [####....] done/total 12.3s loss 0.1234` on stderr."""
    if verbose:
        filled = 30 * done // total
        sys.stderr.write(f"\repoch {epoch:2d}/{epochs} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{done}/{total} {time.perf_counter() - t0:5.1f}s loss {loss:.4f}")
        sys.stderr.flush()


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_curves(path, say, curves, xlabel, ylabel=None, yscale=None, hline=None):
    """One axes of `curves` ((x, y, label, style) each), an optional
    horizontal reference line ((y, label)), written to `path`; `say` reports
    it (or that matplotlib is missing)."""
    plt = pyplot()
    if plt is None:
        say("--plot needs matplotlib (pip install matplotlib); no plot written")
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    for x, y, label, style in curves:
        ax.plot(x, y, style, label=label)
    if hline is not None:
        ax.axhline(hline[0], ls="--", c="gray", label=hline[1])
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if yscale:
        ax.set_yscale(yscale)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    say(f"loss curve written to {path}")
