"""Small result documents for the views' tests: a stored document of given tables, its public view
(groups under `K` suppressed) and a table of a DataFrame."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipeline_lib.process.results import PublicResult, ResultDocument, ResultTable, suppress

WHEN = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
K = 5


def stored(key: str, *tables: ResultTable, n_input: int = 1000) -> ResultDocument:
    return ResultDocument(
        key=key,
        title=key,
        analysis=key.split(":")[0],
        run_id="r",
        computed_at=WHEN,
        n_input=n_input,
        tables=list(tables),
    )


def public(key: str, *tables: ResultTable, n_input: int = 1000) -> PublicResult:
    return suppress(stored(key, *tables, n_input=n_input), K)


def result_table(
    name: str, frame: pd.DataFrame, labels: list[str], size: str | None = "n", **fields: object
) -> ResultTable:
    return ResultTable(
        name=name,
        title=name,
        columns=list(frame.columns),
        rows=frame.values.tolist(),
        label_columns=labels,
        group_size_column=size,
        **fields,
    )


# -- documents with their disclosure control -------------------------------------------------------

SIZES = (1, 5, 12, 20, 8, 30, 9, 25, 40)  # a lone student, a school of five, ... (as the attack tests)
FIRST = dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC)
SECOND = dt.datetime(2026, 11, 29, 7, tzinfo=dt.UTC)
AUDIT_DETAIL = "s(math_score) of S0000 can be narrowed to [61.2, 61.4]"  # what an audit failure says


def protected_documents() -> list[ResultDocument]:
    """The descriptives and distribution documents (real builders) of a second release after one
    late student, with the `protection` the real disclosure control gives them: rows hidden for
    fewer than K students, hidden so others cannot be derived, and held at the first release."""
    from pipeline_lib.process.disclosure.stored import annotate
    from tests.pipeline_lib.process.disclosure import population

    frame = population.students(list(SIZES))
    _, first = population.protected(frame, K, now=FIRST)
    late = population.students([1], seed=77).assign(school_id="S0002", sector="private")
    late["submission_id"] = ["late-1"]
    later = pd.concat([frame, late], ignore_index=True)
    docs, second = population.protected(later, K, previous=first.release, now=SECOND)  # type: ignore[attr-defined]
    return annotate(docs, second, k=K)  # type: ignore[arg-type]


def withhold(doc: ResultDocument, reason: str = AUDIT_DETAIL) -> ResultDocument:
    """`doc` as the process run stores a document whose audit failed: withheld, with the reason."""
    from pipeline_lib.process.results import DocumentProtection

    protection = doc.protection or DocumentProtection(k=K)
    return doc.model_copy(update={"protection": protection.model_copy(update={"withheld": [reason]})})
