"""The k-minimum rule as pure logic."""

from __future__ import annotations

import datetime as dt

from pipeline_lib.process.results import (
    SUMMARY_LEFT_OUT,
    DocumentProtection,
    HeldRow,
    ResultDocument,
    ResultTable,
    TableProtection,
    suppress,
)


def _doc(rows: list[list], n_input: int = 100, audience: str = "public") -> ResultDocument:
    return ResultDocument(
        key="k",
        title="t",
        analysis="descriptives",
        run_id="r",
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        n_input=n_input,
        summary="Mean 12.",
        tables=[
            ResultTable(
                name="x", title="x", columns=["school", "n", "mean"], rows=rows, label_columns=["school"],
                audience=audience,
            )
        ],
    )  # fmt: skip


def test_rows_of_groups_under_k_keep_their_label_and_lose_their_figures() -> None:
    public = suppress(_doc([["A", 5, 1.0], ["B", 4, 2.0], ["C", None, 3.0], ["D", float("nan"), 4.0]]), k=5)
    assert public.tables[0].rows == [["A", 5, 1.0], ["B", None, None], ["C", None, None], ["D", None, None]]
    assert public.tables[0].suppressed == [False, True, True, True]


def test_a_result_from_fewer_than_k_students_shows_no_figures_at_all() -> None:
    public = suppress(_doc([["A", 50, 1.0]], n_input=4), k=5)
    assert public.n_input is None and public.summary == ""
    assert public.tables[0].rows == [["A", None, None]]


def test_analyst_tables_are_left_out_for_everyone_else() -> None:
    doc = _doc([["A", 50, 1.0]], audience="analyst")
    assert suppress(doc, k=5).tables == []
    assert suppress(doc, k=5, analyst=True).tables[0].rows == [["A", 50, 1.0]]


def test_minimum_and_maximum_columns_are_for_analysts_only() -> None:
    import datetime as dt

    from pipeline_lib.process.results import ResultDocument, ResultTable, suppress

    table = ResultTable(
        name="statistics",
        title="Statistics",
        columns=["variable", "n", "mean", "min", "max"],
        rows=[["math_score", 40, 51.5, 3.0, 99.5]],
        label_columns=["variable"],
        analyst_columns=["min", "max"],
    )
    doc = ResultDocument(
        key="descriptives:overall", title="All", analysis="descriptives", run_id="r",
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), n_input=40, tables=[table],
    )  # fmt: skip
    public = suppress(doc, 5).tables[0]
    assert public.columns == ["variable", "n", "mean"] and public.rows == [["math_score", 40, 51.5]]
    analyst = suppress(doc, 5, analyst=True).tables[0]
    assert analyst.columns == table.columns and analyst.rows == table.rows


def _protected(**protection: object) -> ResultDocument:
    doc = _doc([["A", 50, 1.0], ["B", 3, 2.0], ["C", 12, 3.0], ["D", 30, 4.0]])
    doc.tables[0].columns = ["school", "n", "median"]
    record = DocumentProtection(
        k=5,
        tables={
            "x": TableProtection(
                hidden={1: "small", 2: "complementary"},
                quantile_rows=[3],
                quantile_columns=["median"],
                held={
                    0: HeldRow(values=["A", 49, 0.5], published_at=dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC))
                },
            )
        },
        **protection,  # type: ignore[arg-type]
    )
    return doc.model_copy(update={"protection": record})


def test_a_protected_document_shows_each_hidden_rows_reason_and_held_rows_previous_figures() -> None:
    public = suppress(_protected(), k=5)
    table = public.tables[0]
    assert table.rows == [["A", 49, 0.5], ["B", None, None], ["C", None, None], ["D", 30, None]]
    assert table.suppressed == [False, True, True, False]
    assert table.notes == [
        "not updated: fewer than 5 students changed since 2026-01-01 06:00 UTC",
        "fewer than 5 students",
        "hidden so others cannot be derived",
        None,
    ]
    assert public.withheld is None and not public.exact


def test_analysts_see_the_computed_figures_marked_exact() -> None:
    public = suppress(_protected(withheld=["s(math_score) of x can be narrowed"]), k=5, analyst=True)
    assert public.exact and public.tables[0].rows[0] == ["A", 50, 1.0] and public.tables[0].rows[3][2] == 4.0
    assert public.withheld is not None and "narrowed" in public.withheld


def test_a_withheld_document_shows_nothing_but_why() -> None:
    public = suppress(_protected(withheld=["s(math_score) of x can be narrowed to [1, 2]"]), k=5)
    assert public.tables == [] and public.n_input is None and public.summary == ""
    assert (
        public.withheld is not None
        and public.withheld.startswith("withheld:")
        and "[1, 2]" not in public.withheld
    )


def test_a_document_without_protection_keeps_the_row_by_row_rule_with_its_reason() -> None:
    public = suppress(_doc([["A", 5, 1.0], ["B", 4, 2.0]]), k=5)
    assert public.tables[0].notes == [None, "fewer than 5 students"]


def test_the_summary_is_left_out_of_public_views_once_any_figure_is_hidden_or_held() -> None:
    """The summary is written from the computed figures: it published a held row's new mean (one
    late student's score came back to within 4 points), a complementary-hidden group's mean, a
    small group's quartiles and a suppressed count (privacy review)."""
    assert suppress(_doc([["A", 50, 1.0], ["B", 30, 2.0]]), k=5).summary == "Mean 12."
    assert suppress(_doc([["A", 50, 1.0], ["B", 4, 2.0]]), k=5).summary == SUMMARY_LEFT_OUT
    assert suppress(_protected(), k=5).summary == SUMMARY_LEFT_OUT
    for hidden in ({"quantile_rows": [0], "quantile_columns": ["median"]}, {"hidden": {1: "complementary"}}):
        doc = _doc([["A", 50, 1.0], ["B", 30, 2.0]])
        doc.tables[0].columns = ["school", "n", "median"]
        guarded = doc.model_copy(
            update={"protection": DocumentProtection(k=5, tables={"x": TableProtection(**hidden)})}
        )
        assert suppress(guarded, k=5).summary == SUMMARY_LEFT_OUT, hidden
        assert suppress(guarded, k=5, analyst=True).summary == "Mean 12."
    held = DocumentProtection(
        k=5,
        tables={
            "x": TableProtection(
                held={0: HeldRow(values=["A", 49, 0.5], published_at=dt.datetime(2026, 1, 1))}
            )
        },
    )
    doc = _doc([["A", 50, 1.0], ["B", 30, 2.0]])
    assert suppress(doc.model_copy(update={"protection": held}), k=5).summary == SUMMARY_LEFT_OUT
