"""Realistic typing mistakes for demo submissions, of the kinds the cleaner meets in practice.

Pure and seeded. Some kinds the cleaner repairs (a decimal comma, a unit, a synonym, stray or
invisible spaces, a school code with leading zeros or in lower case, a missing-value token in an
optional field, an exact resubmission); the others send the record to quarantine (a value out of
range, an unknown school, a required field left blank). Each record gets at most one mistake, so
a test can say what the cleaner must make of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import normalize_school_id
from pipeline_lib.demo.population import OPTIONAL_FIELDS, TEXT_COLUMNS

Row = dict[str, str | None]
# A mistake changes one record in place; it is told the known school codes.
Mistake = Callable[[Row, np.random.Generator, frozenset[str]], None]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _present(row: Row, names: Sequence[str]) -> list[str]:
    return [name for name in names if row.get(name) is not None]


def decimal_comma(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    name = _pick(rng, [n for n in ("ses", "math_score", "study_hours_week") if "." in (row[n] or "")])
    row[name] = str(row[name]).replace(".", ",")


_UNITS = {
    "math_score": ("%", " %", " pts", "pts"),
    "study_hours_week": (" h", "h", " hrs", " hours"),
    "age": (" y", " yrs", " years"),
    "absences": (" days", " d"),
}


def unit(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    name = _pick(rng, _present(row, tuple(_UNITS)))
    row[name] = f"{row[name]}{_pick(rng, _UNITS[name])}"


_SYNONYMS = {
    "sex": {
        "female": ("F", "f", "girl", "Girl", "woman", "Female", "FEMALE", "w"),
        "male": ("M", "m", "boy", "Boy", "man", "Male", "MALE"),
        "other": ("x", "X", "diverse", "O", "Other", "non-binary"),
    },
    "minority": {
        "yes": ("Y", "y", "1", "true", "True", "YES", "Yes", "t"),
        "no": ("N", "n", "0", "false", "False", "NO", "No", "f"),
    },
    # Only spellings the upload itself accepts as consent: without it nothing is stored at all.
    "consent": {"yes": ("Y", "y", "true", "True", "1", "Yes", "YES")},
}


def synonym(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    name = _pick(rng, ("sex", "sex", "minority", "minority", "consent"))
    row[name] = _pick(rng, _SYNONYMS[name][str(row[name])])


_SPACED = (
    lambda v: f" {v}",
    lambda v: f"{v} ",
    lambda v: f"  {v}  ",
    lambda v: f"{v}\u200b",  # zero-width space, from copying out of a web page
    lambda v: f"\u200b{v}",
    lambda v: f"{v}\u00a0",  # non-breaking space
    lambda v: f"\t{v}",
    lambda v: f"\ufeff{v}",  # byte-order mark
    lambda v: f"{v[:1]}\u200b{v[1:]}",
)


def stray_spaces(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    # Never consent: the upload checks it before any cleaning, with a plain trim.
    name = _pick(rng, _present(row, [n for n in TEXT_COLUMNS if n != "consent"]))
    row[name] = _SPACED[int(rng.integers(len(_SPACED)))](row[name])


def school_code(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    code = row["school_id"]
    assert code is not None
    if code.isdigit():
        row["school_id"] = _pick(rng, ("0", "00", " 0")) + code
    else:
        row["school_id"] = _pick(rng, (code.lower(), code[0] + code[1:].lower(), f" {code.lower()}"))


_MISSING_TOKENS = ("NA", "n/a", "N/A", "-", "null", "NULL", "none")


def missing_token(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    row[_pick(rng, OPTIONAL_FIELDS)] = _pick(rng, _MISSING_TOKENS)


def _out_of(low: float, high: float, rng: np.random.Generator, decimals: int) -> str:
    """A value beyond one end of [low, high], as far off as real typos are."""
    span = high - low
    value = (
        high + rng.uniform(0.05, 1.0) * span if rng.random() < 0.5 else low - rng.uniform(0.05, 1.0) * span
    )
    return f"{value:.{decimals}f}"


def out_of_range(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    name = _pick(
        rng, ("ses", "ses", "math_score", "math_score", "math_score", "age", "absences", "study_hours_week")
    )
    row[name] = {
        "ses": lambda: _out_of(-5, 5, rng, 2),
        "math_score": lambda: _out_of(-10, 100, rng, 1),
        "age": lambda: _pick(rng, ("3", "4", "31", "45", "150")),
        "absences": lambda: _pick(rng, ("367", "400", "999")),
        "study_hours_week": lambda: _pick(rng, ("120", "168", "500")),
    }[name]()


def unknown_school(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    width = max((len(code) for code in known if code.isdigit()), default=4)
    while True:
        code = str(int(rng.integers(10 ** (width - 1), 10**width)))
        if normalize_school_id(code) not in known:
            row["school_id"] = code
            return


def missing_required(row: Row, rng: np.random.Generator, known: frozenset[str]) -> None:
    row[_pick(rng, ("school_id", "sex", "minority", "ses", "math_score"))] = _pick(
        rng, ("", *_MISSING_TOKENS)
    )


RESUBMISSION = "resubmission"
# The mistakes made in place; a resubmission is an exact copy of a clean record, appended.
MISTAKES: dict[str, Mistake] = {
    "decimal_comma": decimal_comma,
    "unit": unit,
    "synonym": synonym,
    "stray_spaces": stray_spaces,
    "school_code": school_code,
    "missing_token": missing_token,
    "out_of_range": out_of_range,
    "unknown_school": unknown_school,
    "missing_required": missing_required,
}
# Each kind's share of the dirty records.
KINDS: dict[str, float] = {
    "decimal_comma": 0.18,
    "unit": 0.10,
    "synonym": 0.18,
    "stray_spaces": 0.14,
    "school_code": 0.10,
    "missing_token": 0.08,
    "out_of_range": 0.07,
    "unknown_school": 0.05,
    "missing_required": 0.05,
    RESUBMISSION: 0.05,
}
QUARANTINED_KINDS = frozenset({"out_of_range", "unknown_school", "missing_required"})


def add_dirt(text: pd.DataFrame, rate: float, seed: int, school_ids: Sequence[str]) -> pd.DataFrame:
    """The records to submit: `text` (one row per student, as `as_typed_text` gives it) with about
    `rate` of the records dirtied. Adds `student` (the row in `text` a record comes from) and
    `dirt` (the kind of mistake, None for a clean record); resubmissions are appended at the end."""
    if not 0 <= rate <= 1:
        raise ValueError(f"the dirty rate must be between 0 and 1, not {rate}")
    rng = np.random.default_rng([seed, 0xD127])
    # `rate` is the dirty share of the records sent, resubmitted copies included: with r copies
    # of N students, rate * (N + r) - r of the originals get a mistake in place.
    n = len(text)
    n_resubmitted = round(KINDS[RESUBMISSION] * rate * n)
    n_in_place = min(n, round(rate * n - (1 - rate) * n_resubmitted))
    names = list(MISTAKES)
    weights = np.array([KINDS[k] for k in names])
    counts = rng.multinomial(n_in_place, weights / weights.sum())
    kinds = np.repeat(np.array(names, dtype=object), counts)
    rows = rng.choice(n, size=len(kinds), replace=False)

    # Plain dicts: far quicker than a DataFrame lookup per mistake on a large population.
    records: list[Row] = text.loc[:, list(TEXT_COLUMNS)].to_dict("records")
    dirt: list[str | None] = [None] * len(records)
    known = frozenset(school_ids)
    for position, kind in zip(rows, kinds, strict=True):
        MISTAKES[kind](records[position], rng, known)
        dirt[position] = kind

    # Only a student with a student number can be recognised as sending the same answers twice.
    candidates = [i for i, row in enumerate(records) if dirt[i] is None and row["student_ref"] is not None]
    again = np.sort(rng.choice(candidates, size=min(n_resubmitted, len(candidates)), replace=False))
    frame = pd.DataFrame(
        records + [dict(records[i]) for i in again], columns=list(TEXT_COLUMNS), dtype=object
    )
    frame["student"] = np.concatenate([np.arange(len(records)), again]).astype(int)
    frame["dirt"] = pd.Series(dirt + [RESUBMISSION] * len(again), dtype=object)
    return frame
