"""Server-side SVG bar charts, readable without JavaScript, accessible, in the views' palette
(colour-blind safe): the web app's results page and the All results dashboard draw the same
chart. Written as text, in microseconds: the web app never loads matplotlib."""

from __future__ import annotations

import base64
import re
import unicodedata
from html import escape

from pipeline_lib.views.palette import OKABE_ITO

BAR = OKABE_ITO["blue"]
# Characters XML 1.0 cannot hold (controls, lone surrogates): a chart with one is no image at all.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# Advance widths of printable ASCII (space to ~) in DejaVu Sans, hundredths of an em: the font the
# PNG download is drawn in, and among the widest sans serifs a browser falls back to.
_ASCII_EM = bytes(
    (32, 40, 46, 84, 64, 95, 78, 28, 39, 39, 50, 84, 32, 36, 32, 34, 64, 64, 64, 64, 64, 64, 64, 64,
     64, 64, 34, 34, 84, 84, 84, 53, 100, 68, 69, 70, 77, 63, 57, 78, 75, 30, 30, 66, 56, 86, 75, 79,
     60, 79, 70, 64, 61, 73, 68, 99, 68, 61, 68, 39, 34, 39, 84, 50, 50, 61, 64, 55, 64, 62, 35, 64,
     63, 28, 28, 58, 28, 97, 63, 61, 64, 64, 41, 52, 39, 63, 59, 82, 59, 59, 52, 64, 34, 64, 84)
)  # fmt: skip


def text_px(text: str, size: float = 13) -> float:
    """An estimate of `text`'s width in pixels at `size` px, on the generous side: ASCII by DejaVu
    Sans's widths, a wide (CJK) character 1 em, any other 0.8 em (accented and other scripts'
    letters are 0.6-0.8 em)."""
    em = 0.0
    for char in text:
        if " " <= char <= "~":
            em += _ASCII_EM[ord(char) - 32] / 100
        elif unicodedata.east_asian_width(char) in "WF":
            em += 1.0
        else:
            em += 0.8
    return em * size * 1.05  # and 5% for another font's wider letters


def _fit(text: str, room: float) -> str:
    """`text`, cut with an ellipsis to fit `room` pixels by `text_px`."""
    if text_px(text) <= room:
        return text
    while text and text_px(text + "…") > room:
        text = text[:-1]
    return text + "…"


def bar_chart_svg(
    labels: list[str],
    values: list[float | None],
    title: str,
    width: int = 640,
    bar_height: int = 22,
    *,
    value_format: str | None = None,
    missing: str = "suppressed",
) -> str:
    """Horizontal bars from a zero line (negative ones to its left) with their values written
    beside them (in `value_format`; by default whole numbers as such, 19,654, others to three
    significant digits); None draws no bar and says `missing`. Labels get room up to a third of
    the chart; a longer one is cut with an ellipsis rather than drawn past its edge."""
    title, missing = _NOT_XML.sub("", title), _NOT_XML.sub("", missing)
    labels = [_fit(_NOT_XML.sub("", label), width / 3 - 16) for label in labels]
    label_width = max(160.0, max((text_px(label) for label in labels), default=0.0) + 16)
    present = [v for v in values if v is not None]
    if value_format is None:
        value_format = "{:,.0f}" if all(float(v).is_integer() for v in present) else "{:,.3g}"
    texts = [None if value is None else value_format.format(value) for value in values]
    gap, top = 6, 30
    height = top + len(labels) * (bar_height + gap) + 10
    low, high = min([0.0, *present]), max([0.0, *present])
    # Room for the value written beside a bar: left of the zero line for negative bars, right for others.
    beside_room = max((text_px(t) for t in texts if t is not None), default=0.0) + 12
    left = label_width + (beside_room if low < 0 else 0)
    right = width - (beside_room if high > 0 else 10)
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
    for index, (label, value, shown) in enumerate(zip(labels, values, texts, strict=True)):
        y = top + index * (bar_height + gap)
        middle = y + bar_height * 0.7
        text = f'<text y="{middle:.1f}" font-size="13"'
        parts.append(f'{text} x="{label_width - 8:.1f}" text-anchor="end">{escape(label)}</text>')
        if value is None or shown is None:
            parts.append(f'{text} x="{label_width:.1f}" font-style="italic">{escape(missing)}</text>')
            continue
        length = max(1.0, abs(value) * scale)
        start = zero - length if value < 0 else zero
        beside = f'x="{start - 6:.1f}" text-anchor="end"' if value < 0 else f'x="{start + length + 6:.1f}"'
        parts.append(
            f'<rect x="{start:.1f}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{BAR}"/>'
            f"{text} {beside}>{escape(shown)}</text>"
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
