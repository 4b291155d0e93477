"""PNG figures of the recipes' results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from k2d.utils import atomic_path


def new_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))


def save_plot(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Label a figure and write it as PNG (atomically), then free it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_lines(lines: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str, path: Path,
               log_y: bool = False) -> None:
    """One line per name: (x values, y values); `log_y` for losses that fall by orders of magnitude."""
    fig, ax = new_figure()
    for name, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    if log_y:
        ax.set_yscale("log")
    save_plot(fig, ax, xlabel, ylabel, title, path)
