"""How the process notebook shows the disclosure control's outcome (docs/privacy.md): what the audit
found and which documents it withholds from public views, and per document how many rows public
views hide (and why), show without quartiles or hold at their previous figures, and whether they
show the whole document as published earlier.

Read from what a process run returns: the report's `audit_failures` and `withheld`, and the
`protection` each of its documents carries. Analyst-facing: the failures name hidden cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from pipeline_lib.process.results import ResultDocument

if TYPE_CHECKING:
    from pipeline_lib.process.report import ProcessReport

COUNT_COLUMNS = ("hidden_small", "hidden_complementary", "quartiles_hidden", "held")


def protection_counts(documents: Sequence[ResultDocument]) -> pd.DataFrame:
    """One row per document, in order: rows hidden for fewer than k students (`hidden_small`),
    hidden so others cannot be derived (`hidden_complementary`), rows whose quartiles are hidden,
    rows held at their previous figures, whether public views show the whole document as published
    earlier (`held_whole`), and whether the audit withholds it. A document without `protection`
    (written before disclosure control) counts nothing and is neither held nor withheld."""
    rows = []
    for doc in documents:
        counts = dict.fromkeys(COUNT_COLUMNS, 0)
        tables = doc.protection.tables.values() if doc.protection else ()
        for table in tables:
            reasons = list(table.hidden.values())
            counts["hidden_small"] += reasons.count("small")
            counts["hidden_complementary"] += reasons.count("complementary")
            counts["quartiles_hidden"] += len(table.quantile_rows)
            counts["held"] += len(table.held)
        held_whole = doc.protection is not None and doc.protection.held is not None
        withheld = bool(doc.protection and doc.protection.withheld)
        rows.append({"key": doc.key, **counts, "held_whole": held_whole, "withheld": withheld})
    return pd.DataFrame(rows, columns=["key", *COUNT_COLUMNS, "held_whole", "withheld"])


def audit_failures(failures: Sequence[str], withheld: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per audit failure, in the audit's order: its reason and the documents it withholds
    (keys, sorted; "" when no document cites it)."""
    rows = [
        {"reason": reason, "withheld": ", ".join(sorted(k for k, why in withheld.items() if reason in why))}
        for reason in failures
    ]
    return pd.DataFrame(rows, columns=["reason", "withheld"])


def outcome(counts: pd.DataFrame, failures: Sequence[str], withheld: Mapping[str, Sequence[str]]) -> str:
    """The outcome in two sentences (Markdown): the audit's verdict and what it withholds, then
    the rows public views hide or hold (and the documents they show as published earlier), over all
    documents."""
    if failures:
        keys = ", ".join(f"`{key}`" for key in sorted(withheld)) or "none"
        verdict = (
            f"The audit failed for {len(failures)} hidden {'cell' if len(failures) == 1 else 'cells'}: "
            f"{len(withheld)} {'document' if len(withheld) == 1 else 'documents'} withheld from public "
            f"views ({keys})."
        )
    else:
        verdict = (
            "The audit passed: no hidden figure can be narrowed within the protection width "
            "from what is published."
        )
    total = {column: int(counts[column].sum()) for column in COUNT_COLUMNS}
    rows = (
        f"Public views hide {total['hidden_small']:,} rows of fewer than k students and "
        f"{total['hidden_complementary']:,} rows so others cannot be derived, show "
        f"{total['quartiles_hidden']:,} rows without quartiles and hold {total['held']:,} rows at "
        f"their previous figures"
    )
    held = int(counts["held_whole"].sum())
    if held:
        rows += f", and show {held:,} {'document' if held == 1 else 'documents'} as published earlier"
    return f"{verdict} {rows}."


def show_disclosure(report: ProcessReport) -> None:
    """Display the run's disclosure outcome: the sentences, each audit failure with the documents it
    withholds, and the documents whose public views differ from the stored figures."""
    from IPython.display import Markdown, display

    counts = protection_counts([*report.documents, *report.dashboard_documents])
    display(Markdown(outcome(counts, report.audit_failures, report.withheld)))
    if report.audit_failures:
        display(Markdown("**Audit failures** (analyst-only: they name hidden cells)"))
        display(audit_failures(report.audit_failures, report.withheld))
    differs = counts[list(COUNT_COLUMNS)].sum(axis=1) > 0
    touched = counts[differs | counts["held_whole"] | counts["withheld"]]
    if len(touched):
        display(Markdown("**Documents whose public view differs from the stored figures**"))
        display(touched.reset_index(drop=True))
