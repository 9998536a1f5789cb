"""The cleaning rules, generated from the data contract as data, not code.

Each field gets a program of text steps (regex replacements, character translations, case,
synonym look-ups) and then a check for its kind. The pandas and Spark engines interpret the same
programs, so the rules exist once; a test proves both engines agree. Regexes stick to the part
of the syntax Python and Java share (no group references, no \\s or \\p classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_lib.contract.fields import (
    BOOL_SYNONYMS,
    CONSENT,
    MISSING_TOKENS,
    RECEIPT_FIELDS,
    STUDENT_FIELDS,
    Field,
)


def _chars(*ranges: tuple[int, int]) -> str:
    return "".join(chr(code) for low, high in ranges for code in range(low, high + 1))


# Character steps are translations, not regexes: a regex per value per step is what makes a
# clean slow (Spark converts the text for every regexp_replace).
SPACE_CHARS = "\t\n\r\f\v\u00a0\u1680\u202f\u205f\u3000" + _chars((0x2000, 0x200A))
INVISIBLE = _chars((0x00, 0x08), (0x0E, 0x1F), (0x7F, 0x9F), (0x200B, 0x200F)) + "\u2028\u2029\u2060\ufeff"
# Digits of other scripts people type (full-width, Arabic-Indic, Persian, Devanagari), and the
# minus sign, translated to ASCII.
FOREIGN_DIGITS = "０１２３４５６７８９٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९\u2212"
ASCII_DIGITS = "0123456789" * 4 + "-"
PUNCTUATION = r"""[.,;:!?'"()\[\]{}*_~`]"""
NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


@dataclass(frozen=True)
class Replace:
    """Replace every match of `pattern` with the literal `replacement`; with `when`, only in
    values that match `when` as a whole."""

    name: str
    pattern: str
    replacement: str = ""
    when: str | None = None


@dataclass(frozen=True)
class Translate:
    """Replace each character of `source` by the one at the same place in `target`; delete the
    characters of `delete`."""

    name: str
    source: str
    target: str
    delete: str = ""


@dataclass(frozen=True)
class Trim:
    """Remove leading and trailing ASCII spaces."""

    name: str


@dataclass(frozen=True)
class Case:
    name: str
    upper: bool


@dataclass(frozen=True)
class Lookup:
    """Exact value -> canonical value; other values unchanged."""

    name: str
    mapping: Mapping[str, str]


Step = Replace | Translate | Trim | Case | Lookup


@dataclass(frozen=True)
class FieldRule:
    field: Field
    steps: tuple[Step, ...]
    # Values already in their final form: every step leaves them unchanged (a test proves it on
    # every such value of the test data), so engines skip the steps for them. Most submissions
    # are typed right, and the steps are the bulk of a clean's work.
    canonical: str = "(?!)"

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def lookup_keys(self) -> tuple[str, ...]:
        """Values a look-up step would change: never canonical, whatever the pattern says."""
        return tuple(
            sorted({k for s in self.steps if isinstance(s, Lookup) for k, v in s.mapping.items() if k != v})
        )


_TIDY: tuple[Step, ...] = (
    Replace("html_removed", r"<[^<>]*>"),
    Translate("spaces_normalised", SPACE_CHARS, " " * len(SPACE_CHARS)),
    Translate("invisible_removed", "", "", delete=INVISIBLE),
    Translate("digits_normalised", FOREIGN_DIGITS, ASCII_DIGITS),
    Trim("trimmed"),
    Replace("spaces_collapsed", "  +", " "),
)
_MISSING = Lookup("missing_token", {token: "" for token in MISSING_TOKENS if token})
_FOLDED: tuple[Step, ...] = (
    *_TIDY,
    Case("case_folded", upper=False),
    Replace("punctuation_removed", PUNCTUATION),
    _MISSING,
)


def _number_steps() -> tuple[Step, ...]:
    return (
        Replace("unit_removed", "(?<=[0-9]) ?(%|[A-Za-z]{1,5}[.]?)$"),
        Translate("separators_removed", "", "", delete=" '"),
        # 1.234,5 and 1.234.567: the points group thousands. A lone 1.234 is a decimal point,
        # as the form reads it (contract.parse_number): a value it accepts must not be rejected here.
        Replace(
            "thousands_removed",
            "[.]",
            when=r"^[+-]?[0-9]{1,3}([.][0-9]{3})+,[0-9]+$|^[+-]?[0-9]{1,3}([.][0-9]{3}){2,}$",
        ),
        # 1,234.5 and 1,234,567: the commas group thousands.
        Replace(
            "thousands_removed",
            ",",
            when=r"^[+-]?[0-9]{1,3}(,[0-9]{3})+[.][0-9]*$|^[+-]?[0-9]{1,3}(,[0-9]{3}){2,}$",
        ),
        Translate("decimal_comma", ",", "."),
    )


# Plain decimals with a point.
CANONICAL_NUMBER = r"-?[0-9]+([.][0-9]+)?"
CANONICAL_CODE = r"[1-9A-Z][0-9A-Z]*"
CANONICAL_TEXT = r"[0-9A-Za-z_/-]+( [0-9A-Za-z_/-]+)*"


def rule_for(f: Field) -> FieldRule:
    if f.kind == "choice":
        steps = (*_FOLDED, Lookup("synonym", dict(f.synonyms)))
        canonical = "|".join(f.choices)
    elif f.kind == "bool":
        synonyms = {token: "true" if value else "false" for token, value in BOOL_SYNONYMS.items()}
        steps = (*_FOLDED, Lookup("synonym", synonyms))
        canonical = "true|false"
    elif f.kind in ("float", "int"):
        steps = (*_TIDY, Case("case_folded", upper=False), _MISSING, *_number_steps())
        canonical = CANONICAL_NUMBER
    elif f.name == "school_id":
        steps = (
            *_TIDY,
            Case("case_folded", upper=True),
            Translate("spaces_removed", "", "", delete=" "),
            _MISSING_UPPER,
            Replace("leading_zeros", "^0+(?=[0-9])"),
        )
        canonical = CANONICAL_CODE
    else:
        steps = (*_TIDY, _MISSING_ANY_CASE)
        canonical = CANONICAL_TEXT
    return FieldRule(f, steps, canonical)


_MISSING_UPPER = Lookup("missing_token", {token.upper(): "" for token in MISSING_TOKENS if token})
_MISSING_ANY_CASE = Lookup(
    "missing_token",
    {variant: "" for token in MISSING_TOKENS if token for variant in (token, token.upper(), token.title())},
)

STUDENT_RULES: tuple[FieldRule, ...] = tuple(rule_for(f) for f in (*STUDENT_FIELDS, CONSENT))


# The reason codes a quarantined record can carry, with a message template ({value}: as typed).
def reason_messages(f: Field) -> dict[str, str]:
    label = f.name
    messages = {f"{label}_missing": f"{label} is required but missing"}
    if f.kind == "choice":
        messages[f"{label}_invalid"] = f"{label} {{value}} is not one of {', '.join(f.choices)}"
    elif f.kind == "bool":
        messages[f"{label}_invalid"] = f"{label} {{value}} is not yes or no"
    elif f.kind in ("float", "int"):
        messages[f"{label}_invalid"] = f"{label} {{value}} is not a number"
        messages[f"{label}_out_of_range"] = f"{label} {{value}} is outside {f.minimum:g}..{f.maximum:g}"
        if f.kind == "int":
            messages[f"{label}_not_whole"] = f"{label} {{value}} is not a whole number"
    return messages


REASONS: dict[str, str] = {
    code: message for f in (*STUDENT_FIELDS, CONSENT) for code, message in reason_messages(f).items()
}
REASONS["consent_not_given"] = "consent {value} is not yes: the record may not be kept"
REASONS["school_unknown"] = "school_id {value} is not a known school"

# The resubmissions one cleaned record lists in `duplicates`, at most. Exact resubmissions collapse
# to the first received, and its document holds every other id: anyone may send the same answers
# 150,000 times with 100-character ids, and that one document (18.9 MB) was over the db-api's
# 16 MiB limit, refused, and with it every later clean. Listing them also cost Spark a copy of the
# list per record of the group. Later ones (in arrival order) go to quarantine with this reason.
MAX_DUPLICATES = 1000
REASONS["resubmitted_too_often"] = (
    f"the same answers were sent more than {MAX_DUPLICATES} times: "
    f"only the first and {MAX_DUPLICATES} resubmissions are kept"
)
# The field that reason names: a resubmission is the same student's (school and student number)
# same answers again, as a conflict is the same student's other answers.
RESUBMITTED_FIELD = "student_ref"
# The column in which `spark_engine.mark_duplicates` flags the records past the bound.
SURPLUS = "__surplus"


def quoted(value: str | None) -> str:
    """How a raw value appears in a message (simple enough for Spark to build the same)."""
    return "nothing" if value is None else f"'{value}'"


def message(code: str, raw: str | None) -> str:
    return REASONS[code].replace("{value}", quoted(raw))


def resubmitted_too_often() -> dict[str, str]:
    """The reason of a record past `MAX_DUPLICATES` resubmissions (it quotes no value)."""
    code = "resubmitted_too_often"
    return {"code": code, "field": RESUBMITTED_FIELD, "message": message(code, None)}


FIELD_NAMES = tuple(rule.name for rule in STUDENT_RULES)
# Every field but consent (always yes in a kept record) is a cleaned value.
VALUE_FIELDS = tuple(name for name in FIELD_NAMES if name != CONSENT.name)
META = RECEIPT_FIELDS


@dataclass
class CleanResult:
    """What one clean produces (pandas or Spark DataFrames, by engine)."""

    cleaned: Any
    quarantine: Any
    raw_ids: list[str]
    without_consent: int
