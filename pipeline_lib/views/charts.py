"""Server-side SVG bar charts, readable without JavaScript, accessible, in the views' palette
(colour-blind safe): the web app's results page and the All results dashboard draw the same
chart. Written as text, in microseconds: the web app never loads matplotlib."""

from __future__ import annotations

import base64
import math
import re
from html import escape

from pipeline_lib.views.palette import OKABE_ITO

BAR = OKABE_ITO["blue"]
_CHAR_PX = 7.5


def bar_chart_svg(
    labels: list[str],
    values: list[float | None],
    title: str,
    width: int = 640,
    bar_height: int = 22,
    *,
    value_format: str = "{:,.3g}",
    missing: str = "suppressed",
) -> str:
    """Horizontal bars from a zero line (negative ones to its left) with their values written
    beside them (in `value_format`); None draws no bar and says `missing`."""
    # Room for the longest label (13 px text, ~7.5 px a character), up to half the chart; longer
    # labels are cut with an ellipsis rather than drawn past the chart's left edge.
    fits = int((width // 2 - 16) / _CHAR_PX)
    labels = [label if len(label) <= fits else label[: fits - 1] + "…" for label in labels]
    label_width = max(160, math.ceil(_CHAR_PX * max(map(len, labels), default=0)) + 16)
    gap, top = 6, 30
    height = top + len(labels) * (bar_height + gap) + 10
    present = [v for v in values if v is not None]
    low, high = min([0.0, *present]), max([0.0, *present])
    # Room for the value written beside a bar: left of the plot for negative bars, right for others.
    left, right = label_width + (60 if low < 0 else 0), width - (60 if high > 0 else 10)
    scale = (right - left) / (high - low) if high > low else 0
    zero = left - low * scale
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" font-weight="bold" font-size="15">{escape(title)}</text>',
    ]
    if low < 0:
        parts.append(
            f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 4}" y2="{height - 6}" stroke="#1b1b1b"/>'
        )
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + index * (bar_height + gap)
        middle = y + bar_height * 0.7
        text = f'<text y="{middle:.1f}" font-size="13"'
        parts.append(f'{text} x="{label_width - 8}" text-anchor="end">{escape(label)}</text>')
        if value is None:
            parts.append(f'{text} x="{label_width}" font-style="italic">{escape(missing)}</text>')
            continue
        length = max(1.0, abs(value) * scale)
        start = zero - length if value < 0 else zero
        beside = f'x="{start - 6:.1f}" text-anchor="end"' if value < 0 else f'x="{start + length + 6:.1f}"'
        parts.append(
            f'<rect x="{start:.1f}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{BAR}"/>'
            f"{text} {beside}>{escape(value_format.format(value))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


_ROOT_WIDTH = re.compile(r'viewBox="0 0 (?P<w>[\d.]+) (?P<h>[\d.]+)"(?P<between>[^>]*?)width="100%"')


def standalone_svg(svg: str) -> str:
    """An inline chart as a file of its own: an XML declaration, its size in pixels (a page sizes
    it by CSS, a file viewer, an <img> or a word processor by its attributes), and a font (inline,
    it inherits the page's)."""
    sized = _ROOT_WIDTH.sub(
        r'viewBox="0 0 \g<w> \g<h>"\g<between>width="\g<w>" height="\g<h>" '
        r'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"',
        svg,
        count=1,
    )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + sized + "\n"


def svg_data_url(svg: str) -> str:
    """The chart as an image URL of its own (an <img> of it runs nothing, whatever the page allows)."""
    return "data:image/svg+xml;base64," + base64.b64encode(standalone_svg(svg).encode()).decode("ascii")
