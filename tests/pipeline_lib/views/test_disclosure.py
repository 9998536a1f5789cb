"""The process notebook's disclosure cell: per document, the rows public views hide (and why), show
without quartiles or hold, as the public view itself shows them, and whether it is held whole; the
audit's failures with the documents they withhold; and the outcome in words (documents of the real
builders protected by the real disclosure control)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline_lib.process.results import (
    COMPLEMENTARY_NOTE,
    DocumentProtection,
    HeldDocument,
    ResultDocument,
    small_note,
    suppress,
)
from pipeline_lib.views import disclosure
from tests.pipeline_lib.views.sample_results import (
    AUDIT_DETAIL,
    FIRST,
    K,
    protected_documents,
    withhold,
)


@pytest.fixture(scope="module")
def documents() -> list[ResultDocument]:
    return protected_documents()


def _notes(doc: ResultDocument) -> list[str | None]:
    return [note for table in suppress(doc, K).tables for note in table.notes]


def test_the_counts_agree_with_the_notes_of_each_public_view(documents: list[ResultDocument]) -> None:
    counts = disclosure.protection_counts(documents).set_index("key")
    assert list(counts.index) == [d.key for d in documents]
    for doc in documents:
        notes = _notes(doc)
        row = counts.loc[doc.key]
        # The row-by-row floor hides small rows the protection need not list; never fewer.
        assert row["hidden_small"] <= notes.count(small_note(K)), doc.key
        assert row["hidden_complementary"] == notes.count(COMPLEMENTARY_NOTE), doc.key
        held = sum(isinstance(n, str) and n.startswith("not updated") for n in notes)
        assert row["held"] >= held, doc.key  # a held row that is also hidden reads hidden
    assert counts["hidden_complementary"].sum() > 0 and counts["held"].sum() > 0
    assert counts["quartiles_hidden"].sum() > 0  # the school of five shows no quartiles
    assert not counts["withheld"].any() and not counts["held_whole"].any()


def test_a_withheld_document_is_counted_as_withheld(documents: list[ResultDocument]) -> None:
    docs = [withhold(d) if d.key == "descriptives:by_sex" else d for d in documents]
    counts = disclosure.protection_counts(docs).set_index("key")
    assert counts["withheld"].to_dict() == {d.key: d.key == "descriptives:by_sex" for d in docs}


def test_a_document_without_protection_counts_nothing(documents: list[ResultDocument]) -> None:
    bare = documents[0].model_copy(update={"protection": None})
    counts = disclosure.protection_counts([bare])
    assert counts.drop(columns="key").iloc[0].tolist() == [0, 0, 0, 0, False, False]


def test_each_audit_failure_lists_the_documents_it_withholds() -> None:
    other = "n of S0003 can be narrowed to [1, 1]"
    frame = disclosure.audit_failures(
        [AUDIT_DETAIL, other],
        {"descriptives:by_school": [AUDIT_DETAIL, other], "descriptives:overall": [AUDIT_DETAIL]},
    )
    assert frame.to_dict("records") == [
        {"reason": AUDIT_DETAIL, "withheld": "descriptives:by_school, descriptives:overall"},
        {"reason": other, "withheld": "descriptives:by_school"},
    ]


def test_the_outcome_says_whether_the_audit_passed_and_what_it_withholds(
    documents: list[ResultDocument],
) -> None:
    counts = disclosure.protection_counts(documents)
    passed = disclosure.outcome(counts, [], {})
    assert passed.startswith("The audit passed")
    total = int(counts["hidden_complementary"].sum())
    assert f"{total:,} rows so others cannot be derived" in passed
    failed = disclosure.outcome(counts, [AUDIT_DETAIL], {"descriptives:overall": [AUDIT_DETAIL]})
    assert failed.startswith("The audit failed for 1 hidden cell: 1 document withheld")
    assert "`descriptives:overall`" in failed


def test_the_outcome_of_no_documents_counts_zero() -> None:
    empty = disclosure.protection_counts([])
    assert list(empty.columns) == ["key", *disclosure.COUNT_COLUMNS, "held_whole", "withheld"]
    assert "hide 0 rows of fewer than k students" in disclosure.outcome(empty, [], {})
    assert isinstance(empty, pd.DataFrame)


def _held_whole(doc: ResultDocument) -> ResultDocument:
    """The document with public views showing it as published at FIRST."""
    held = HeldDocument(public=suppress(doc, K), published_at=FIRST)
    return doc.model_copy(update={"protection": DocumentProtection(k=K, held=held)})


def test_a_document_held_whole_is_counted_and_named_in_the_outcome(documents: list[ResultDocument]) -> None:
    bare = [d.model_copy(update={"protection": None}) for d in documents[:3]]
    docs = [_held_whole(bare[0]), *bare[1:]]
    counts = disclosure.protection_counts(docs)
    assert list(counts.columns).index("held_whole") == list(counts.columns).index("held") + 1
    assert counts.set_index("key")["held_whole"].to_dict() == {d.key: d is docs[0] for d in docs}
    assert disclosure.outcome(counts, [], {}).endswith(
        "at their previous figures, and show 1 document as published earlier."
    )
    assert "as published earlier" not in disclosure.outcome(disclosure.protection_counts(bare), [], {})


def test_the_disclosure_cell_lists_a_document_held_whole(
    documents: list[ResultDocument], monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    shown: list[object] = []
    monkeypatch.setattr(IPython.display, "display", lambda *items: shown.extend(items))
    bare = [d.model_copy(update={"protection": None}) for d in documents[:3]]
    report = SimpleNamespace(
        documents=[_held_whole(bare[0]), *bare[1:]], dashboard_documents=[], audit_failures=[], withheld={}
    )
    disclosure.show_disclosure(report)  # type: ignore[arg-type]
    (touched,) = [item for item in shown if isinstance(item, pd.DataFrame)]
    assert touched["key"].tolist() == [bare[0].key]
