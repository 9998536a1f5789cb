"""How the dashboards look: the Okabe-Ito palette (distinguishable with every common colour-vision
deficiency), one readable figure style, and figures as HTML images with alt text.

Figures are `matplotlib.figure.Figure`s made without pyplot, so no global figure state is kept
between widget updates and nothing is shown twice by the inline backend.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
GREY = "#8C8C8C"  # suppressed or out-of-focus marks
# Yellow is left out of the cycle: too light on white for thin lines and small markers.
CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue")]
# The same group keeps its colour on every dashboard.
GROUP_COLOURS: dict[str, dict[str, str]] = {
    "sector": {
        "public": OKABE_ITO["blue"],
        "catholic": OKABE_ITO["orange"],
        "private": OKABE_ITO["bluish_green"],
        "all": OKABE_ITO["black"],
    },
    "sex": {
        "female": OKABE_ITO["reddish_purple"],
        "male": OKABE_ITO["sky_blue"],
        "other": OKABE_ITO["vermillion"],
    },
    "minority": {"True": OKABE_ITO["vermillion"], "False": OKABE_ITO["blue"]},
}

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

P = ParamSpec("P")


def colour(group: str, value: object, index: int = 0) -> str:
    """A group's colour: fixed for known groups, else the cycle by position."""
    return GROUP_COLOURS.get(group, {}).get(str(value), CYCLE[index % len(CYCLE)])


@contextmanager
def styled() -> Iterator[None]:
    with mpl.rc_context(RC):
        yield


def with_style(plot: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw under the dashboard style (rc parameters apply when artists are made)."""

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


_TEXT = TextToPath()


def label_width(labels: Iterable[object], size: float = RC["ytick.labelsize"]) -> float:  # type: ignore[assignment]
    """Inches the widest of `labels` takes at `size` points, measured with the font."""
    font = FontProperties(size=size)
    widest = max(
        (_TEXT.get_text_width_height_descent(str(t), font, ismath=False)[0] for t in labels), default=0.0
    )
    return widest / 72


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # Low compression: encoding is faster, and the page travels on loopback or a LAN.
    figure.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def figure_html(figure: Figure, alt: str, caption: str = "") -> str:
    """The figure as an inline PNG with alt text (what a screen reader says instead)."""
    data = base64.b64encode(png(figure)).decode("ascii")
    note = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure class="wb-plot"><img alt="{html.escape(alt, quote=True)}" '
        f'src="data:image/png;base64,{data}">{note}</figure>'
    )


def warm_up() -> None:
    """Draw and encode one small figure: loads fonts and the Agg renderer before anyone waits."""
    with styled():
        figure = new_figure(3, 2, left=0.5, bottom=0.4)
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], label="warm")
        axes.set_title("warm-up")
        axes.legend()
        png(figure)
