"""What must be equal between two process runs on the same input: every figure, and what the
protection hides. Held rows are left out: a rerun holds every row at the figures it published
first, dated then (docs/privacy.md), so only their notes differ from the first run's."""

from __future__ import annotations

from typing import Any

from pipeline_lib.process.results import ResultDocument


def comparable(doc: ResultDocument, *exclude: str) -> dict[str, Any]:
    dumped = doc.model_dump(exclude={"protection", *exclude})
    if doc.protection is not None:
        dumped["hidden"] = {
            name: (t.hidden, t.quantile_rows, t.quantile_columns)
            for name, t in doc.protection.tables.items()
            if t.hidden or t.quantile_rows or t.quantile_columns  # not a table only held rows named
        }
        dumped["withheld"] = doc.protection.withheld
    return dumped
