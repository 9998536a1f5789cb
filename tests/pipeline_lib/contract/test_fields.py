"""The data contract's parsing rules as pure functions."""

from __future__ import annotations

import pytest

from pipeline_lib.contract.fields import (
    FIELDS_BY_NAME,
    check_value,
    is_missing,
    normalize_school_id,
    parse_bool,
    parse_choice,
    parse_number,
    tidy,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12", 12.0),
        ("3,5", 3.5),
        (" -0.25 ", -0.25),
        ("1.234,5", 1234.5),
        ("1,234.5", 1234.5),
        ("1 234", 1234.0),
        ("45%", 45.0),
        ("12 h", 12.0),
        ("\u2212" + "2", -2.0),
        ("\uff11\uff12", 12.0),  # full-width digits
        ("\u0663", 3.0),  # Arabic-Indic digit three
        ("1e3", 1000.0),
        ("-0", -0.0),
    ],
)
def test_numbers_are_read_the_way_people_write_them(text: str, number: float) -> None:
    assert parse_number(text) == number


@pytest.mark.parametrize("text", ["abc", "", "1e309", "NaN", "Infinity", "1.2.3,4,5", "--1", "🙂"])
def test_text_that_is_not_a_finite_number_is_refused(text: str) -> None:
    assert parse_number(text) is None


def test_tidy_removes_invisible_characters_and_folds_spaces() -> None:
    assert tidy("\u200b Zo\u00a0\u00a0ë\t\n") == "Zo ë"


@pytest.mark.parametrize("text", ["", " NA ", "n/a", "-", "null", None])
def test_missing_tokens(text: str | None) -> None:
    assert is_missing(text)


def test_choices_and_booleans_fold_synonyms() -> None:
    sex = FIELDS_BY_NAME["sex"]
    assert [parse_choice(sex, t) for t in ("F", " girl ", "BOY", "x", "cat")] == [
        "female",
        "female",
        "male",
        "other",
        None,
    ]
    assert [parse_bool(t) for t in ("Yes", "n", "1", "TRUE", "maybe")] == [True, False, True, True, None]


@pytest.mark.parametrize(
    ("field", "text", "problem"),
    [
        ("ses", "9", "Enter a number from -5 to 5."),
        ("ses", "", "This is required."),
        ("age", "", None),
        ("age", "12.5", "Enter a whole number."),
        ("math_score", "-10", None),
        ("sex", "cat", "Choose one of: female, male, other."),
        ("minority", "perhaps", "Answer yes or no."),
        ("school_id", "anything", None),
    ],
)
def test_check_value_explains_in_plain_words(field: str, text: str, problem: str | None) -> None:
    assert check_value(FIELDS_BY_NAME[field], text) == problem


@pytest.mark.parametrize(
    ("text", "code"), [(" 01224 ", "1224"), ("ab 12", "AB12"), ("000", "0"), ("0a1", "0A1")]
)
def test_school_codes_normalise(text: str, code: str) -> None:
    assert normalize_school_id(text) == code
