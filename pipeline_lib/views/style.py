"""How every figure looks: one readable matplotlib style in the colours of `palette`, figures with
fixed margins, and figures as PNG or as HTML images with alt text.

Figures are `matplotlib.figure.Figure`s made without pyplot, so no global figure state is kept
between widget updates and nothing is shown twice by the inline backend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, wraps
from typing import ParamSpec

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from pipeline_lib.views.html import image_figure
from pipeline_lib.views.palette import CYCLE

RC = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#D9D9D9",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "axes.prop_cycle": mpl.cycler(color=CYCLE),
    "figure.facecolor": "white",
}
DPI = 100
MIN_PANEL = 1.5  # inches of plotting area a panel keeps, whatever its labels take

P = ParamSpec("P")


@contextmanager
def styled() -> Iterator[None]:
    """Artists made inside take the views' style."""
    with mpl.rc_context(RC):
        yield


def with_style(plot: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw under the views' style (rc parameters apply when artists are made)."""

    @wraps(plot)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with styled():
            return plot(*args, **kwargs)

    return wrapper


def new_figure(
    width: float,
    height: float,
    *,
    left: float = 0.95,
    bottom: float = 0.7,
    right: float = 0.25,
    top: float = 0.2,
) -> Figure:
    """A figure of `width` x `height` inches whose axes leave these margins (inches) for labels.
    Fixed margins instead of a layout engine: constrained layout draws every figure twice, which
    is half the time a viewer waits for a plot."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    # After construction: Figure.__init__ resets `subplotpars` to the rc defaults.
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    return figure


def panel_row(
    width: float,
    height: float,
    lefts: Sequence[float],
    *,
    ratios: Sequence[float] | None = None,
    bottom: float = 0.7,
    right: float = 0.25,
    top: float = 0.4,
    min_panel: float = MIN_PANEL,
) -> tuple[Figure, list[Axes]]:
    """A figure of panels side by side, panel i leaving `lefts[i]` inches on its left for its tick
    labels and axis label, widths in `ratios`; the fixed margins of `new_figure`, for several axes.
    The figure widens past `width` rather than leave its panels under `min_panel` inches each on
    average (long names)."""
    ratios = ratios or [1.0] * len(lefts)
    width = max(width, sum(lefts) + right + min_panel * len(lefts))
    figure = Figure(figsize=(width, height), dpi=DPI)
    room = width - sum(lefts) - right
    x, panels, tall = 0.0, [], 1 - (bottom + top) / height
    for left, ratio in zip(lefts, ratios, strict=True):
        x += left
        share = room * ratio / sum(ratios)
        panels.append(figure.add_axes((x / width, bottom / height, share / width, tall)))
        x += share
    return figure, panels


_TEXT = TextToPath()


def label_width(labels: Iterable[object], size: float = RC["ytick.labelsize"]) -> float:  # type: ignore[assignment]
    """Inches the widest of `labels` takes at `size` points, measured with the font."""
    font = FontProperties(size=size)
    widest = max(
        (_TEXT.get_text_width_height_descent(str(t), font, ismath=False)[0] for t in labels), default=0.0
    )
    return widest / 72


def png(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    # Low compression: encoding is faster, and the page travels on loopback or a LAN.
    figure.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def figure_html(figure: Figure, alt: str, caption: str = "") -> str:
    """The figure as an inline PNG with alt text (what a screen reader says instead)."""
    data = base64.b64encode(png(figure)).decode("ascii")
    return image_figure(f"data:image/png;base64,{data}", alt, caption)


@cache  # once per process: the snapshots' kernel renders every dashboard, each warming up first
def warm_up() -> None:
    """Draw and encode one small figure: loads fonts and the Agg renderer before anyone waits."""
    with styled():
        figure = new_figure(3, 2, left=0.5, bottom=0.4)
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], label="warm")
        axes.set_title("warm-up")
        axes.legend()
        png(figure)
