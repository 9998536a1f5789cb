"""The web app's charts: server-side SVG bar charts, readable without JavaScript, accessible, in
the views' palette (colour-blind safe). Written as text: the web app never loads matplotlib."""

from __future__ import annotations

from html import escape

from pipeline_lib.views.palette import OKABE_ITO

BAR = OKABE_ITO["blue"]


def bar_chart_svg(
    labels: list[str], values: list[float | None], title: str, width: int = 640, bar_height: int = 22
) -> str:
    """Horizontal bars from a zero line (negative ones to its left) with their values written
    beside them; None draws no bar and says suppressed."""
    label_width, gap, top = 160, 6, 30
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
            parts.append(f'{text} x="{label_width}" font-style="italic">suppressed</text>')
            continue
        length = max(1.0, abs(value) * scale)
        start = zero - length if value < 0 else zero
        beside = f'x="{start - 6:.1f}" text-anchor="end"' if value < 0 else f'x="{start + length + 6:.1f}"'
        parts.append(
            f'<rect x="{start:.1f}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{BAR}"/>'
            f"{text} {beside}>{value:,.3g}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
