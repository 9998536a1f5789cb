"""The data contract: every student and school field, declared once.

The HTML form, the API schema, the cleaning rules and the analyses are all generated from these
declarations, so changing a field is one edit here. The parsing helpers are pure functions of
text: the form uses them to tell a student what to fix; cleaning applies the same rules in bulk.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["text", "choice", "bool", "float", "int"]

# Tokens that mean "no value", compared after trimming and lower-casing.
MISSING_TOKENS = frozenset({"", "na", "n/a", "-", "null", "none", "nan"})

TRUE_TOKENS = ("yes", "y", "true", "t", "1", "oui", "ja", "si", "sí")
FALSE_TOKENS = ("no", "n", "false", "f", "0", "non", "nein")

# The allowed values of the two choice fields, named so every consumer (form, API schema, demo,
# analyses, dashboards) takes them from here.
SEXES: tuple[str, ...] = ("female", "male", "other")
SECTORS: tuple[str, ...] = ("public", "catholic", "private")
BOOL_SYNONYMS: Mapping[str, bool] = {**dict.fromkeys(TRUE_TOKENS, True), **dict.fromkeys(FALSE_TOKENS, False)}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    hint: str
    kind: Kind
    required: bool
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # folded spelling -> canonical choice
    synonyms: Mapping[str, str] = field(default_factory=dict)

    @property
    def html_input(self) -> str:
        """The form control: numbers stay text inputs so a decimal comma is not refused."""
        return {"choice": "select", "bool": "radio"}.get(self.kind, "text")

    @property
    def inputmode(self) -> str | None:
        return {"float": "decimal", "int": "numeric"}.get(self.kind)


SEX_SYNONYMS = {
    "f": "female", "female": "female", "girl": "female", "woman": "female", "w": "female",
    "m": "male", "male": "male", "boy": "male", "man": "male",
    "other": "other", "o": "other", "x": "other", "diverse": "other", "non-binary": "other",
    "nonbinary": "other",
}  # fmt: skip

STUDENT_FIELDS: tuple[Field, ...] = (
    Field("school_id", "School code", "The code your school gave you, e.g. 1224.", "text", True),
    Field(
        "student_ref",
        "Student number (optional)",
        "Only if your school gave you a pseudonymous number. Never your name.",
        "text",
        False,
    ),
    Field("sex", "Sex", "", "choice", True, choices=SEXES, synonyms=SEX_SYNONYMS),
    Field("minority", "Member of a minority group", "", "bool", True),
    Field(
        "ses",
        "Socio-economic status index",
        "A number between -5 and 5, as given on your sheet (a decimal comma is fine).",
        "float",
        True,
        minimum=-5,
        maximum=5,
    ),
    Field("math_score", "Mathematics score", "Between -10 and 100.", "float", True, minimum=-10, maximum=100),
    Field("age", "Age (optional)", "In years, 5 to 30.", "int", False, minimum=5, maximum=30),
    Field(
        "study_hours_week",
        "Study hours per week (optional)",
        "0 to 100.",
        "float",
        False,
        minimum=0,
        maximum=100,
    ),
    Field("absences", "Days absent this year (optional)", "0 to 366.", "int", False, minimum=0, maximum=366),
)

CONSENT = Field(
    "consent",
    "I agree that my answers are stored and analysed for research, without my name.",
    "Required: without consent nothing is stored.",
    "bool",
    True,
)

# Receipt metadata a submission gets when it is received, carried by the clean into `cleaned` and
# `quarantine`. `answers_sha256` (form pages and JSON records) is a digest of the answers as sent:
# it tells a record resent under its id from a different one, also once the record is cleaned.
ANSWERS_DIGEST = "answers_sha256"
RECEIPT_FIELDS = ("submission_id", "received_at", "source", ANSWERS_DIGEST)

SCHOOL_FIELDS: tuple[Field, ...] = (
    Field("school_id", "School code", "", "text", True),
    Field("name", "Name", "", "text", True),
    Field("sector", "Sector", "", "choice", True, choices=SECTORS),
    Field("size", "Number of students", "", "int", True, minimum=1, maximum=100_000),
)

FIELDS_BY_NAME: Mapping[str, Field] = {f.name: f for f in (*STUDENT_FIELDS, CONSENT)}


# -- pure parsing rules ----------------------------------------------------------------------------

_INVISIBLE = re.compile(r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202f\u2060\ufeff]")
_SPACES = re.compile(r"\s+")


def tidy(text: str) -> str:
    """Unicode-normalised (NFKC: full-width and other-script digits become ASCII), control and
    zero-width characters removed, runs of spaces (incl. non-breaking) made one, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", text).strip()


def is_missing(text: str | None) -> bool:
    return text is None or tidy(text).lower() in MISSING_TOKENS


_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def parse_number(text: str) -> float | None:
    """A finite number from text: decimal comma or point, thousands separators (space,
    apostrophe, or the other of , and .), a trailing % or unit letters; None if not a number."""
    value = tidy(text).replace("\u2212", "-")
    value = re.sub(r"\s*(%|[a-zA-Z]{1,5})$", "", value)
    value = value.replace(" ", "").replace("'", "")
    if "," in value and "." in value:
        # The last separator is the decimal one; the other groups thousands.
        thousands = "," if value.rfind(".") > value.rfind(",") else "."
        value = value.replace(thousands, "")
    elif value.count(",") > 1 or value.count(".") > 1:
        value = value.replace("," if value.count(",") > 1 else ".", "")
    if not _NUMBER.match(value):
        return None
    number = float(value.replace(",", "."))
    return number if math.isfinite(number) else None


def parse_bool(text: str) -> bool | None:
    return BOOL_SYNONYMS.get(tidy(text).lower())


def parse_choice(f: Field, text: str) -> str | None:
    folded = tidy(text).lower()
    if folded in f.choices:
        return folded
    return f.synonyms.get(folded)


def check_value(f: Field, text: str | None) -> str | None:
    """A plain-words problem with `text` for field `f`, or None if the contract accepts it."""
    if is_missing(text):
        return "This is required." if f.required else None
    assert text is not None
    if f.kind == "choice" and parse_choice(f, text) is None:
        return f"Choose one of: {', '.join(f.choices)}."
    if f.kind == "bool" and parse_bool(text) is None:
        return "Answer yes or no."
    if f.kind in ("float", "int"):
        number = parse_number(text)
        if number is None:
            return "Enter a number, like 12 or 3,5."
        if f.kind == "int" and not number.is_integer():
            return "Enter a whole number."
        if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
            return f"Enter a number from {f.minimum:g} to {f.maximum:g}."
    return None


def normalize_school_id(text: str) -> str:
    """School codes compare trimmed, upper-cased, spaces removed, leading zeros of a numeric code
    dropped: ' 01224 ' and '1224' are the same school."""
    code = tidy(text).upper().replace(" ", "")
    return code.lstrip("0") or "0" if code.isdigit() else code
