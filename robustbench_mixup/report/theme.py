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


MIN_TEXT_PX = 10.0  # the smallest text a figure may show at the width a report page gives it
TEXT_PX_KEY = "robust-eval text px"  # PNG text chunk: the smallest text of a saved figure, in its own pixels


class Png(str):
    """A figure as a `data:image/png;base64,...` URI (a str, so it goes wherever a URI does), with what a page
    needs to show it readably: `width`, its width in pixels, and `text_px`, the height of its smallest text in
    its own pixels (None where unknown). Shown at width w, that text is text_px · w / width pixels high."""

    width: int
    text_px: float | None

    @classmethod
    def of(cls, data: bytes, width: int, text_px: float | None) -> Png:
        png = cls("data:image/png;base64," + base64.b64encode(data).decode())
        png.width, png.text_px = width, text_px
        return png


def smallest_text_px(fig: Figure, dpi: float) -> float | None:
    """The font size of the smallest visible, non-empty text of a drawn figure, in pixels at `dpi`."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * dpi / 72 if sizes else None


def save_png(fig: Figure, path: str | os.PathLike[str], *, dpi: float) -> Path:
    """Write `fig` to `path` as a PNG, atomically (never a half-written file under the final name), with its
    smallest text's size in a PNG text chunk (`TEXT_PX_KEY`), which `read_png` gives back to the report."""
    path = Path(path)
    data = _png_bytes(fig, dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _png_bytes(fig: Figure, dpi: float) -> bytes:
    buf = io.BytesIO()
    with theme():
        fig.draw_without_rendering()  # lays out every tick label, so the smallest text is known before saving
        px = smallest_text_px(fig, dpi)
        fig.savefig(buf, format="png", dpi=dpi, metadata={} if px is None else {TEXT_PX_KEY: f"{px:.2f}"})
    return buf.getvalue()


def png_data_uri(fig: Figure, *, dpi: float) -> Png:
    """`fig` as a `data:image/png;base64,...` URI (a `Png`), for inlining in a self-contained HTML page."""
    data = _png_bytes(fig, dpi)
    return Png.of(data, round(fig.get_figwidth() * dpi), _text_px(data))


def _text_px(data: bytes) -> float | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            value = getattr(image, "text", {}).get(TEXT_PX_KEY)
            return float(value) if value is not None else None
    except (OSError, ValueError):
        return None


def read_png(path: str | os.PathLike[str]) -> Png | None:
    """A PNG file the stages wrote, as a `Png` (its smallest text from `save_png`'s chunk); None if absent or
    not a PNG."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                return None
            width = image.width
    except (OSError, ValueError):
        return None
    return Png.of(data, width, _text_px(data))
