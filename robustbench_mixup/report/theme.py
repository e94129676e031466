"""Figures without global state: the suite's look, applied only while a figure is built and saved.

Every figure is a `matplotlib.figure.Figure` made directly, never through pyplot, so drawing one neither
picks nor switches the caller's backend, registers nothing in pyplot's figure manager and needs no
`close`. The look (seaborn's "whitegrid" style, "paper" context and "deep" colour cycle, which is what
`seaborn.set_theme(style="whitegrid", context="paper")` used to set globally) lives in `THEME_RC` and is
applied only inside `theme()`, a `matplotlib.rc_context`, so a notebook's rcParams are the same after a
figure as before it. The values are written out here rather than read from seaborn because importing
seaborn imports pyplot; tests/report/test_figures.py checks that they still match what seaborn would set.

Typical use, with everything from creating the figure to saving it inside `theme()` (tick marks, grid
lines and legends read rcParams when they are drawn, not only when the axes are made):

    with theme():
        fig, axes = new_figure(1, 2, figsize=(9, 3.4))
        ...
        save_png(fig, path, dpi=110)
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import cycler
from matplotlib.figure import Figure

from robustbench_mixup.settings.fsutil import atomic_path

# seaborn.color_palette("deep"): the default colour cycle of set_theme.
DEEP = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
# seaborn.color_palette("colorblind"): the colours the probe and sweep figures give each model or method.
COLORBLIND = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
              "#56b4e9")  # fmt: skip

_PAPER = 0.8  # seaborn's "paper" context scales its "notebook" sizes by 0.8

# seaborn.axes_style("whitegrid"), without "image.cmap": "rocket" (a colormap that only exists once seaborn
# is imported, and no figure here draws an image).
_WHITEGRID: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.labelcolor": ".15",
    "xtick.direction": "out",
    "ytick.direction": "out",
    "xtick.color": ".15",
    "ytick.color": ".15",
    "axes.axisbelow": True,
    "grid.linestyle": "-",
    "text.color": ".15",
    "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "lines.solid_capstyle": "round",
    "patch.edgecolor": "w",
    "patch.force_edgecolor": True,
    "xtick.top": False,
    "ytick.right": False,
    "axes.grid": True,
    "axes.facecolor": "white",
    "axes.edgecolor": ".8",
    "grid.color": ".8",
    "axes.spines.left": True,
    "axes.spines.bottom": True,
    "axes.spines.right": True,
    "axes.spines.top": True,
    "xtick.bottom": False,
    "ytick.left": False,
}

# seaborn.plotting_context("paper"): the "notebook" values times 0.8, computed the same way so the floats match.
_PAPER_CONTEXT: dict[str, Any] = {
    "axes.linewidth": 1.25 * _PAPER,
    "grid.linewidth": 1 * _PAPER,
    "lines.linewidth": 1.5 * _PAPER,
    "lines.markersize": 6 * _PAPER,
    "patch.linewidth": 1 * _PAPER,
    "xtick.major.width": 1.25 * _PAPER,
    "ytick.major.width": 1.25 * _PAPER,
    "xtick.minor.width": 1 * _PAPER,
    "ytick.minor.width": 1 * _PAPER,
    "xtick.major.size": 6 * _PAPER,
    "ytick.major.size": 6 * _PAPER,
    "xtick.minor.size": 4 * _PAPER,
    "ytick.minor.size": 4 * _PAPER,
    "font.size": 12 * _PAPER,
    "axes.labelsize": 12 * _PAPER,
    "axes.titlesize": 12 * _PAPER,
    "xtick.labelsize": 11 * _PAPER,
    "ytick.labelsize": 11 * _PAPER,
    "legend.fontsize": 11 * _PAPER,
    "legend.title_fontsize": 12 * _PAPER,
}

# What seaborn.set_theme(style="whitegrid", context="paper") set: style, context, font and colour cycle.
THEME_RC: dict[str, Any] = {
    **_WHITEGRID,
    **_PAPER_CONTEXT,
    "font.family": ["sans-serif"],
    "axes.prop_cycle": cycler(color=list(DEEP)),
}


@contextlib.contextmanager
def theme() -> Iterator[None]:
    """Apply `THEME_RC` for the duration of the block; every rcParam is restored on the way out."""
    with matplotlib.rc_context(THEME_RC):
        yield


def palette(n: int) -> list[str]:
    """`n` colours of seaborn's "colorblind" palette, cycling past ten like `seaborn.color_palette`."""
    return [COLORBLIND[i % len(COLORBLIND)] for i in range(n)]


def new_figure(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Figure, Any]:
    """A pyplot-free `Figure` and its axes, like `pyplot.subplots(nrows, ncols, **kw)`.

    `figsize` (and any other `Figure` argument) goes to the figure; the rest (`squeeze`, `sharex`, ...)
    to `Figure.subplots`. Call it inside `theme()` so the axes get the suite's look.
    """
    figure_kw = {k: kw.pop(k) for k in ("figsize", "dpi", "layout") if k in kw}
    fig = Figure(**figure_kw)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_png(fig: Figure, path: str | os.PathLike[str], *, dpi: float) -> Path:
    """Write `fig` to `path` as a PNG, atomically (never a half-written file under the final name)."""
    path = Path(path)
    with theme(), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def png_data_uri(fig: Figure, *, dpi: float) -> str:
    """`fig` as a `data:image/png;base64,...` URI, for inlining in a self-contained HTML page."""
    buf = io.BytesIO()
    with theme():
        fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
