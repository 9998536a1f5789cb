"""The data contract page of the documentation, generated from `contract.py` (and the reason
codes the cleaning rules derive from it).

`python -m pipeline_lib.cli.contract_doc > docs/data-contract.md` writes it; a test fails while the
committed file differs, so the page cannot drift from the declarations.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from pipeline_lib.clean.rules import MAX_DUPLICATES, META, REASONS
from pipeline_lib.contract.fields import (
    CONSENT,
    FALSE_TOKENS,
    MISSING_TOKENS,
    SCHOOL_FIELDS,
    STUDENT_FIELDS,
    TRUE_TOKENS,
    Field,
)

REGENERATE = "python -m pipeline_lib.cli.contract_doc > docs/data-contract.md"


def _code(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" if v else '`""` (empty)' for v in values)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def value_type(f: Field, *, student: bool) -> str:
    """What a value is after cleaning (students) or validation (schools)."""
    if f.kind == "choice":
        text = f"text, one of {_code(f.choices)}"
    elif f.kind == "bool":
        text = "boolean"
    elif f.kind == "float":
        text = "number"
    elif f.kind == "int":
        # The cleaner checks for a whole number and stores it as the double it parsed.
        text = "whole number (stored as a double)" if student else "whole number"
    else:
        text = "text"
    return text if f.required else f"{text} or null"


def accepted(f: Field, *, where: str = "below") -> str:
    """The values the contract accepts, as typed."""
    if f.kind in ("float", "int"):
        return f"{_number(f.minimum)} to {_number(f.maximum)}"
    if f.kind == "bool":
        return "yes or no (spellings below)"
    if f.kind == "choice":
        return _code(f.choices) + (f", or a synonym ({where})" if f.synonyms else "")
    if f.name == "school_id":
        return f"a school code (normalised, {where})"
    return "any text"


def student_table() -> str:
    lines = [
        "| field | type after cleaning | required | accepted | question on the form |",
        "|---|---|---|---|---|",
    ]
    for f in (*STUDENT_FIELDS, CONSENT):
        required = "yes" if f.required else "no"
        kind = value_type(f, student=True)
        if f is CONSENT:
            required, kind = "yes, and it must be yes", "not stored (every kept record has it)"
        question = f.label + (f" *{f.hint}*" if f.hint else "")
        row = (f"`{f.name}`", kind, required, accepted(f), question)
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def school_table() -> str:
    lines = ["| field | type | required | accepted |", "|---|---|---|---|"]
    for f in SCHOOL_FIELDS:
        required = "yes" if f.required else "no"
        row = (f"`{f.name}`", value_type(f, student=False), required, accepted(f, where="above"))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def synonyms_by_choice(synonyms: Mapping[str, str]) -> dict[str, list[str]]:
    """canonical value -> the other spellings that mean it, sorted."""
    grouped: dict[str, list[str]] = {}
    for spelling, value in sorted(synonyms.items()):
        if spelling != value:
            grouped.setdefault(value, []).append(spelling)
    return grouped


def spellings() -> str:
    lines = [
        f"- **Missing:** {_code(sorted(MISSING_TOKENS))} mean no value (after tidying, ignoring\n"
        "  case). A missing required field quarantines the record; a missing optional one is null.",
        f"- **Yes:** {_code(TRUE_TOKENS)}. **No:** {_code(FALSE_TOKENS)} (any case).",
    ]
    for f in (*STUDENT_FIELDS, *SCHOOL_FIELDS):
        if f.kind == "choice" and f.synonyms:
            grouped = synonyms_by_choice(f.synonyms)
            listed = "; ".join(f"`{value}`: {_code(grouped.get(value, []))}" for value in f.choices)
            lines.append(f"- **`{f.name}`** (any case): {listed}.")
    return "\n".join(lines)


def can_occur(code: str) -> bool:
    """Whether a quarantined record can carry `code`: consent codes never do (a record without
    consent is removed, not kept), nor `<field>_missing` of an optional field."""
    if code.startswith(f"{CONSENT.name}_"):
        return False
    optional = {f.name for f in STUDENT_FIELDS if not f.required}
    return not (code.endswith("_missing") and code.removesuffix("_missing") in optional)


def reason_table() -> str:
    lines = ["| code | message (`{value}`: the value as typed) |", "|---|---|"]
    for code, message in REASONS.items():
        if can_occur(code):
            lines.append(f"| `{code}` | {_cell(message)} |")
    return "\n".join(lines)


def render_markdown() -> str:
    """docs/data-contract.md."""
    meta = _code(META)
    return f"""<!-- Generated from pipeline_lib/contract/fields.py by pipeline_lib/cli/contract_doc.py:
     do not edit. Regenerate with `{REGENERATE}`. -->

# Data contract

The student and school fields are declared once, in `pipeline_lib/contract/fields.py`. The web form,
the API schema (OpenAPI at `/docs`), the cleaning rules (`pipeline_lib/clean/rules.py`) and
the analyses are generated from those declarations, and so is this page: a change of a field is
one edit there, then `{REGENERATE}`.

## Student submission

A submission arrives as text (the form, a JSON record, a CSV or NDJSON row) and is stored in
`raw` exactly as given, with
{meta}
added when it is received (`answers_sha256`, a digest of the answers, for a form page or a JSON
record: an id is received once, so a resent page or a reused `Idempotency-Key` is told from a
different record by it, also once the record is cleaned). Unknown fields are refused. Nothing is
stored without consent: the web app refuses such a submission, and the clean step removes any that
reaches `raw`. Consent the web app accepts as text is stored as `yes` (it reads spellings, such as
full-width letters, that the clean's rules do not); a `true` stays `true`.

The clean step turns every other record into one record of `cleaned` (each field typed as below)
or of `quarantine` (the values as typed, with one reason per failed rule).

{student_table()}

### Spellings the cleaner accepts

Every value is first tidied: Unicode-normalised (full-width and other-script digits become
ASCII digits), HTML tags, control and zero-width characters removed, runs of spaces (also
non-breaking ones) made one, trimmed.

{spellings()}
- **Numbers:** a decimal comma or point; thousands grouped by spaces, apostrophes, or the other
  of `,` and `.`; a trailing `%` or unit (`3,5`, `1 234`, `1.234,5`, `45%`, `12 h`). Out of range
  is a reason, never clamped: a negative `math_score` inside its range is valid.
- **`school_id`:** upper-cased, spaces removed, leading zeros of a numeric code dropped
  (`' 01224 '` and `1224` are the same school), and it must name a school in `schools`.

### Cleaned and quarantined records

- `cleaned`, keyed by `submission_id`: {meta};
  the typed fields but `{CONSENT.name}`; `changes` (per changed field: `field`, `before`, `after`,
  the `rules` that changed it); `duplicates` (the `submission_id`s of exact resubmissions
  collapsed into this record: same school, student number and answers; a record without a
  student number is never a duplicate; at most {MAX_DUPLICATES}, in the order received: later ones
  are quarantined as `resubmitted_too_often`); `duplicate_conflict` (true when one student number
  in one school has differing answers; all of them are kept).
- `quarantine`, keyed by `submission_id`: {meta};
  every field as typed; `reasons` (per failed rule: `code`, `field`, `message`). The codes:

{reason_table()}

## School (reference data)

Entered by an admin at `/schools` or imported as CSV through `POST /api/v1/schools/bulk` (all or
nothing); keyed by the normalised `school_id`.

{school_table()}
"""


def main() -> None:
    sys.stdout.write(render_markdown())


if __name__ == "__main__":
    main()
