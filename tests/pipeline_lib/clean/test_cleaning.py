"""The cleaning rules: each rule on pandas, and the Spark engine giving identical results."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline_lib.clean import pandas_engine

KNOWN = {"1224", "2305", "AB12"}

NASTY = [
    "🙂", "x" * 10_000, "NaN", "Infinity", "-Infinity", "1e309", "-0", "-0.0",
    "\uff10\uff11\uff12", "\u0663,\u0665", "\u0967\u0968",
    "<b>12</b>", "\u200b12\u200b", "1\u00a0234", "12 %", "1.234,5", "1,234.5", "1'234", "  ", "NA", "n/a",
    "-", "null", "4,5,6", "--1", "1e-3", ".5", "5.", "+3", "\t-2 \n", "'", '"male"', "Boy!", "GIRL", "F.",
    # Final in all but a line break, which Java's $ (not Python's fullmatch) lets through.
    "F\n", "12\n", "AB12\r", "yes\u2028", "1224\u0085", "x1\r\n",
]  # fmt: skip


def _raw(values: dict[str, list]) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    base = {
        "submission_id": [f"s{i:04d}" for i in range(n)],
        "received_at": [f"2026-01-01T00:00:{i % 60:02d}+00:00" for i in range(n)],
        "source": ["api"] * n,
        "school_id": ["1224"] * n,
        "sex": ["F"] * n,
        "minority": ["no"] * n,
        "ses": ["0"] * n,
        "math_score": ["50"] * n,
        "consent": ["yes"] * n,
    }
    return pd.DataFrame({**base, **values})


def _one(field: str, text: str | None) -> tuple[object, str | None, list[str]]:
    out = pandas_engine.clean_fields(_raw({field: [text]}))
    return out[field].iloc[0], out[f"{field}__reason"].iloc[0], out[f"{field}__rules"].iloc[0]


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("1,5", 1.5, None),
        ("\u00a0-0.25 ", -0.25, None),
        ("\u0663,\u0665", 3.5, None),  # Arabic-Indic digits with a decimal comma
        ("<b>2</b>", 2.0, None),
        ("9", None, "ses_out_of_range"),
        ("abc", None, "ses_invalid"),
        ("NaN", None, "ses_missing"),  # what pandas writes for nothing
        ("Infinity", None, "ses_invalid"),
        ("1e309", None, "ses_invalid"),
        ("", None, "ses_missing"),
        ("n/a", None, "ses_missing"),
        ("🙂", None, "ses_invalid"),
        ("x" * 10_000, None, "ses_invalid"),
    ],
)
def test_ses_numbers(text: str, value: float | None, reason: str | None) -> None:
    got, got_reason, _ = _one("ses", text)
    assert got_reason == reason
    assert (value is None and math.isnan(got)) or got == value


def test_negative_zero_and_thousands_separators() -> None:
    value, reason, _ = _one("math_score", "-0")
    assert reason is None and value == 0 and math.copysign(1, value) == -1
    assert _one("math_score", "1.234,5")[1] == "math_score_out_of_range"
    assert _one("math_score", "1.234.567")[1] == "math_score_out_of_range"
    assert _one("ses", "0.568")[0] == 0.568  # a lone point is decimal, as the form reads it
    assert _one("ses", "1,234")[0] == 1.234


@pytest.mark.parametrize(
    "text",
    [
        "0.568",
        "1.234",
        "1,234",
        "1.234,5",
        "1,234.5",
        "1.234.567",
        "1,234,567",
        "-2,5",
        "12 %",
        "1'234",
        " 3.0 ",
    ],
)
def test_the_cleaner_reads_numbers_as_the_form_does(text: str) -> None:
    from pipeline_lib.contract.fields import parse_number

    value, reason, _ = _one("math_score", text)
    expected = parse_number(text)
    if expected is None or not -10 <= expected <= 100:
        assert reason is not None
    else:
        assert reason is None and value == expected
    assert _one("absences", "1'2")[0] == 12.0
    value, _, applied = _one("math_score", "12 %")
    assert value == 12 and applied == ["unit_removed"]


@pytest.mark.parametrize(
    ("field", "text", "value", "reason"),
    [
        ("sex", "GIRL", "female", None),
        ("sex", '"male"', "male", None),
        ("sex", "Boy!", "male", None),
        ("sex", "cat", None, "sex_invalid"),
        ("minority", "Y", True, None),
        ("minority", "non", False, None),
        ("minority", "perhaps", None, "minority_invalid"),
        ("school_id", " 01224 ", "1224", None),
        ("school_id", "ab 12", "AB12", None),
        ("school_id", "NA", None, "school_id_missing"),
        ("age", "12.5", None, "age_not_whole"),
        ("age", "", None, None),
        ("student_ref", " 7\u200b ", "7", None),
    ],
)
def test_choices_booleans_codes_and_optional_fields(
    field: str, text: str, value: object, reason: str | None
) -> None:
    got, got_reason, _ = _one(field, text)
    assert got_reason == reason
    assert got == value or (value is None and (got is None or (isinstance(got, float) and math.isnan(got))))


def test_a_clean_splits_records_and_records_what_changed() -> None:
    raw = _raw(
        {
            "school_id": ["01224", "1224", "9999", "1224"],
            "ses": ["1,5", "1", "0", "x"],
            "consent": ["yes", "no", "yes", "yes"],
        }
    )
    result = pandas_engine.clean(raw, KNOWN)
    assert list(result.cleaned["submission_id"]) == ["s0000"]
    assert result.cleaned["changes"].iloc[0] == [
        {"field": "school_id", "before": "01224", "after": "1224", "rules": ["leading_zeros"]},
        {"field": "sex", "before": "F", "after": "female", "rules": ["case_folded", "synonym"]},
        {"field": "minority", "before": "no", "after": "false", "rules": ["synonym"]},
        {"field": "ses", "before": "1,5", "after": "1.5", "rules": ["decimal_comma"]},
    ]
    reasons = dict(zip(result.quarantine["submission_id"], result.quarantine["reasons"], strict=True))
    assert [r["code"] for r in reasons["s0002"]] == ["school_unknown"]
    assert reasons["s0003"] == [{"code": "ses_invalid", "field": "ses", "message": "ses 'x' is not a number"}]
    assert result.without_consent == 1 and result.raw_ids == ["s0000", "s0001", "s0002", "s0003"]


def test_exact_resubmissions_collapse_and_conflicts_are_kept_and_flagged() -> None:
    raw = _raw(
        {
            "student_ref": ["7", "7", "8", "8", None, None],
            "ses": ["1", "1,0", "1", "2", "1", "1"],
        }
    )
    cleaned = pandas_engine.clean(raw, KNOWN).cleaned.set_index("submission_id")
    assert list(cleaned.index) == ["s0000", "s0002", "s0003", "s0004", "s0005"]
    assert cleaned.loc["s0000", "duplicates"] == ["s0001"]
    assert cleaned["duplicate_conflict"].to_dict() == {
        "s0000": False, "s0002": True, "s0003": True, "s0004": False, "s0005": False,
    }  # fmt: skip


# -- the Spark engine gives identical results -------------------------------------------------------


def _comparable(frame: pd.DataFrame) -> list[dict]:
    def plain(value: object) -> object:
        if isinstance(value, float) and math.isnan(value):
            return None
        if hasattr(value, "tolist"):
            return plain(value.tolist())
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if hasattr(value, "asDict"):
            return plain(value.asDict(recursive=True))
        return value

    rows = [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
    return sorted(rows, key=lambda r: r["submission_id"])


def test_each_distinct_value_is_cleaned_once_with_the_outputs_of_cleaning_every_row() -> None:
    """`clean_field` cleans a field's distinct values and copies their outputs to their rows: the
    same frame, row for row and type for type, as running every step over every row (missing
    values, NaN and None, included; none missing, where a yes/no field is bool; an index that is
    not 0..n-1)."""
    from pipeline_lib.clean import rules

    for values in ([*NASTY, None, float("nan"), ""] * 3, ["yes", "true", "1", "no", "0", "false"] * 3):
        column = pd.Series(values, index=[f"row{i}" for i in reversed(range(len(values)))], dtype=object)
        for rule in rules.STUDENT_RULES:
            once = pandas_engine.clean_field(rule, column)
            every_row = pandas_engine._clean_rows(rule, column)
            pd.testing.assert_frame_equal(once, every_row, obj=rule.name)


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("per", ["value", "record", "mixed"])
def test_spark_and_pandas_clean_identically(spark, per: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Spark paths: each distinct value cleaned once and looked up, every record cleaned, and
    both at once (consent and school_id, at most 20 values each, looked up; the others per record)."""
    from pipeline_lib.clean import spark_engine

    most = {"value": 10**9, "record": 0, "mixed": 20}[per]
    monkeypatch.setattr(spark_engine, "DICTIONARY_MAX_VALUES", most)

    columns = ["school_id", "student_ref", "sex", "minority", "ses", "math_score", "age", "study_hours_week",
               "absences", "consent"]  # fmt: skip
    values: dict[str, list] = {c: [] for c in columns}
    for i in range(len(NASTY) * 2):
        for j, c in enumerate(columns):
            values[c].append(NASTY[(i + j) % len(NASTY)] if (i + j) % 3 == 0 else None)
    values["consent"] = ["yes" if i % 5 else text for i, text in enumerate(NASTY * 2)]
    values["school_id"] = [v if i % 4 else "1224" for i, v in enumerate(values["school_id"])]
    # Resubmissions, a conflict, and two records alike without a student number (never duplicates).
    refs, ses = ["7", "7", "8", "8", None, None], ["1", "1,0", "1", "2", "1", "1"]
    students = _raw({"student_ref": refs, "ses": ses})
    students["submission_id"] = "d" + students["submission_id"]
    raw = pd.concat([_raw(values), students], ignore_index=True)
    expected = pandas_engine.clean(raw, KNOWN)
    cleaned, quarantine, without_consent = spark_engine.clean(
        spark.createDataFrame(raw.astype(object).where(raw.notna(), None)),
        spark.createDataFrame(pd.DataFrame({"school_id": sorted(KNOWN)})),
    )
    assert _comparable(cleaned.toPandas()) == _comparable(expected.cleaned)
    assert _comparable(quarantine.toPandas()) == _comparable(expected.quarantine)
    assert without_consent.count() == expected.without_consent > 0


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("per", ["value", "record"])
def test_spark_cleans_an_analysts_typed_columns_as_their_text(
    spark, per: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame an analyst built may hold numbers and booleans where raw holds text: both Spark
    paths read them as text (Spark's cast), the same values the pandas engine then cleans."""
    from pyspark.sql import functions as F

    from pipeline_lib.clean import spark_engine

    monkeypatch.setattr(spark_engine, "DICTIONARY_MAX_VALUES", {"value": 10**9, "record": 0}[per])
    raw = _raw({"age": ["15", "16", "99"], "minority": ["true", "false", "true"]})
    typed = spark.createDataFrame(raw).withColumn("age", F.col("age").cast("long"))
    typed = typed.withColumn("minority", F.col("minority").cast("boolean"))
    columns = ["submission_id", "age", "age__reason", "minority", "minority__rules"]
    got = spark_engine.clean_fields(typed).select(*columns)
    expected = pandas_engine.clean_fields(raw).assign(submission_id=raw["submission_id"])[columns]
    assert _comparable(got.toPandas()) == _comparable(expected)
