"""How the process notebook shows a result: heading, the interpretation sentence, the figure
(as PNG, so it shows whatever matplotlib backend the kernel has) and the tables, long ones cut."""

from __future__ import annotations

import pandas as pd

from pipeline_lib.process.results import ResultDocument
from pipeline_lib.views.result_figures import plot
from pipeline_lib.views.style import png
from pipeline_lib.views.tables import to_frame

MAX_ROWS = 12


def figure_png(doc: ResultDocument, dpi: int = 90) -> bytes | None:
    """The document's figure as PNG; None for a document with nothing to draw."""
    figure = plot(doc)
    return None if figure is None else png(figure, dpi)


def table_frames(doc: ResultDocument, max_rows: int = MAX_ROWS) -> list[tuple[str, pd.DataFrame]]:
    """(caption, frame) per table, each at most `max_rows` rows (the caption says so)."""
    shown = []
    for table in doc.tables:
        frame = to_frame(table)
        caption = table.title + (" (analysts only)" if table.audience == "analyst" else "")
        if len(frame) > max_rows:
            caption += f": first {max_rows} of {len(frame):,} rows"
            frame = frame.head(max_rows)
        shown.append((caption, frame))
    return shown


def show(doc: ResultDocument, max_rows: int = MAX_ROWS) -> None:
    """Display one result in the notebook."""
    from IPython.display import Image, Markdown, display

    state = "" if doc.status == "ok" else " (failed)"
    notes = [f"`{doc.key}`"]
    if doc.engine:
        notes.append(f"computed by {doc.engine}")
    if doc.sample_size:
        notes.append(f"fitted on a sample of {doc.sample_size:,} students stratified by school")
    display(Markdown(f"### {doc.title}{state}\n\n{doc.summary}\n\n<small>{'; '.join(notes)}.</small>"))
    png_bytes = figure_png(doc)
    if png_bytes is not None:
        display(Image(data=png_bytes))
    for caption, frame in table_frames(doc, max_rows):
        display(Markdown(f"**{caption}**"))
        display(frame)
    if doc.warnings:
        display(Markdown("Fitting reported: " + "; ".join(doc.warnings)))
