"""How a notebook tells the run that executed it what it did.

A notebook calls `report_counts({...})` once near its end; the counts travel inside the output
notebook as display data of their own MIME type, so `workbench run` reads them from the archived
notebook without parsing printed text, and a reader of the notebook sees them as plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

COUNTS_MIME = "application/vnd.workbench.run-counts+json"


def report_counts(counts: Mapping[str, int | float]) -> None:
    """Show the run's counts (records in, cleaned, results written, ...) in the notebook's output."""
    from IPython.display import display

    clean = {str(name): value for name, value in counts.items()}
    display({COUNTS_MIME: clean, "text/plain": json.dumps(clean)}, raw=True)


def counts_from_notebook(notebook: Mapping[str, Any]) -> dict[str, int | float]:
    """The counts a notebook reported (the last report wins); empty if it reported none."""
    found: dict[str, int | float] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if COUNTS_MIME in data and isinstance(data[COUNTS_MIME], dict):
                found = {
                    str(k): v
                    for k, v in data[COUNTS_MIME].items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
    return found
