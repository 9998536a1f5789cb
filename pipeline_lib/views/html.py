"""The HTML pieces every dashboard uses: the style sheet, headline cards, notices, figures side by
side and tables.

All text from documents is escaped; numbers are formatted per column; a suppressed cell says why
it is empty instead of showing a blank, a table with noted rows has a "Why" column (as the results
page), and a withheld result, or one shown as published earlier, reads as the results page words it.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from pipeline_lib.process.results import small_note

Format = Callable[[object], str]


def esc(text: object) -> str:
    """Text made safe for HTML, quotes included."""
    return html.escape(str(text), quote=True)


def section(title: str, body: str) -> str:
    """A titled part of a dashboard."""
    return f'<div class="wb-dash"><h2>{esc(title)}</h2>{body}</div>'


def block(body: str) -> str:
    """HTML in the dashboards' style, without a title."""
    return f'<div class="wb-dash">{body}</div>'


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers: (value, label) pairs."""
    inner = "".join(
        f'<div class="wb-card"><div class="wb-value">{esc(value)}</div>'
        f'<div class="wb-label">{esc(label)}</div></div>'
        for value, label in items
    )
    return f'<div class="wb-cards">{inner}</div>'


def notice(text: str, kind: str = "info", title: str = "") -> str:
    """A boxed message; kind is info, warning or empty ("no data yet")."""
    css = {"info": "", "warning": " wb-warning", "empty": " wb-empty"}[kind]
    heading = f"<strong>{esc(title)}</strong> " if title else ""
    return f'<div class="wb-notice{css}" role="status">{heading}{esc(text)}</div>'


def withheld(reason: str, title: str = "") -> str:
    """Where a withheld result would be: why it is withheld, in the results page's words
    ("Withheld: ...")."""
    return notice(reason[:1].upper() + reason[1:], "info", title)


def not_updated(note: str, title: str = "") -> str:
    """Beside a result shown as published earlier: since when, and why, in the results page's words
    ("Not updated: ...")."""
    return notice(note[:1].upper() + note[1:], "info", title)


def warnings(items: Sequence[str], title: str) -> str:
    """A warning box with a title and one item per line (nothing if there are no items)."""
    if not items:
        return ""
    inner = "".join(f"<li>{esc(item)}</li>" for item in items)
    heading = f"<strong>{esc(title)}</strong>"
    return f'<div class="wb-notice wb-warning" role="status">{heading}<ul>{inner}</ul></div>'


def image_figure(src: str, alt: str, caption: str = "") -> str:
    """A plot: an image (a data URL) with alt text (what a screen reader says instead), captioned."""
    note = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    alt, src = html.escape(alt, quote=True), html.escape(src, quote=True)
    return f'<figure class="wb-plot"><img alt="{alt}" src="{src}">{note}</figure>'


def side_by_side(parts: Sequence[str]) -> str:
    """Pieces of HTML (figures) in a row that wraps on a narrow screen."""
    row = "".join(f'<div style="flex: 1 1 420px">{part}</div>' for part in parts)
    return f'<div style="display:flex; flex-wrap:wrap; gap:16px">{row}</div>'


def number(digits: int = 1) -> Format:
    """Numbers with `digits` decimals and thousands separators."""
    return lambda v: f"{v:,.{digits}f}"


def count(v: object) -> str:
    """A whole number with thousands separators."""
    return f"{int(v):,}"  # type: ignore[call-overload]


def p_value(v: object) -> str:
    """A p-value to three decimals, or "< 0.001"."""
    return "< 0.001" if float(v) < 0.001 else f"{float(v):.3f}"  # type: ignore[arg-type]


def table(
    frame: pd.DataFrame,
    *,
    columns: Mapping[str, str],
    formats: Mapping[str, Format] | None = None,
    k: int | None = None,
    caption: str = "",
) -> str:
    """`columns` (name -> heading) of `frame` as an HTML table. Where the frame has a `suppressed`
    column, the empty cells of those rows read "hidden (fewer than k)", or "hidden (<the row's
    note>)" (hidden so others cannot be derived). Where a row has a `note` (why it is hidden, or
    not updated since a date), a last column "Why" says it, as on the results page."""
    formats = formats or {}
    hidden = frame["suppressed"] if "suppressed" in frame else pd.Series(False, index=frame.index)
    notes = frame["note"] if "note" in frame else pd.Series(None, index=frame.index, dtype=object)
    noted = any(isinstance(note, str) for note in notes)
    head = "".join(
        f'<th class="{"wb-text" if name not in formats else ""}">{esc(title)}</th>'
        for name, title in columns.items()
    ) + ('<th class="wb-text">Why</th>' if noted else "")
    body = []
    for index, row in frame.iterrows():
        cells = []
        for name in columns:
            value, form = row[name], formats.get(name)
            css = "" if form else "wb-text"
            if value is None or (isinstance(value, float) and pd.isna(value)):
                text = _hidden_text(notes[index], k) if bool(hidden[index]) and k else "\u2013"
                css += " wb-hidden"
            else:
                text = form(value) if form else str(value)
            cells.append(f'<td class="{css.strip()}">{esc(text)}</td>')
        note = notes[index] if isinstance(notes[index], str) else ""
        if noted:
            cells.append(f'<td class="wb-note">{esc(note)}</td>')
        held = ' class="wb-held"' if note and not bool(hidden[index]) else ""
        body.append(f"<tr{held}>{''.join(cells)}</tr>")
    note = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<table class="wb-table">{note}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def row_notes(frame: pd.DataFrame | None, noun: str, k: int) -> str:
    """For a figure that leaves hidden rows out (or draws held rows at their previous figures):
    how many rows are hidden or not updated, and why, one sentence per reason ("" when none).
    A hidden row without a note counts as fewer than k students (fail closed)."""
    if frame is None or frame.empty:
        return ""
    notes = frame["note"] if "note" in frame else pd.Series(None, index=frame.index, dtype=object)
    counts: dict[str, int] = {}
    for hidden, note in zip(frame["suppressed"].astype(bool), notes, strict=True):
        if hidden:
            why = note if isinstance(note, str) else small_note(k)
            text = why if why.startswith("hidden") else f"hidden, {why}"
        elif isinstance(note, str):
            text = note
        else:
            continue
        counts[text] = counts.get(text, 0) + 1
    return " ".join(f"{n} {noun}{'' if n == 1 else 's'} {text}." for text, n in counts.items())


def _hidden_text(note: object, k: int) -> str:
    """Why a cell is empty: fewer than k students, unless the row's note says otherwise."""
    if isinstance(note, str) and not note.startswith("fewer than"):
        return f"hidden ({note})"
    return f"hidden (fewer than {k})"
