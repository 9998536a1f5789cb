"""Server-side SVG bar charts: readable without JavaScript, accessible, colour-blind safe."""

from __future__ import annotations

from html import escape

BAR = "#0072B2"  # Okabe-Ito blue: distinguishable for the common colour-vision deficiencies


def bar_chart_svg(
    labels: list[str], values: list[float | None], title: str, width: int = 640, bar_height: int = 22
) -> str:
    """Horizontal bars with their values written beside them; None draws no bar, says suppressed."""
    label_width, gap, top = 160, 6, 30
    height = top + len(labels) * (bar_height + gap) + 10
    numbers = [abs(v) for v in values if v is not None]
    scale = (width - label_width - 90) / max(numbers) if numbers and max(numbers) > 0 else 0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" font-weight="bold" font-size="15">{escape(title)}</text>',
    ]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + index * (bar_height + gap)
        middle = y + bar_height * 0.7
        text = f'<text y="{middle:.1f}" font-size="13"'
        parts.append(f'{text} x="{label_width - 8}" text-anchor="end">{escape(label)}</text>')
        if value is None:
            parts.append(f'{text} x="{label_width}" font-style="italic">suppressed</text>')
            continue
        length = max(1.0, abs(value) * scale)
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{BAR}"/>'
            f'{text} x="{label_width + length + 6:.1f}">{value:,.3g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
