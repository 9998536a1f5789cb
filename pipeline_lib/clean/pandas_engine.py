"""The cleaning rules applied to a pandas DataFrame of raw text (small inputs, tests, the bench).

Interprets `rules.STUDENT_RULES` step by step; `spark_engine` interprets the same programs as
Spark column expressions, and a test proves the two agree on the same data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline_lib.clean import rules
from pipeline_lib.clean.rules import Case, FieldRule, Lookup, Replace, Step, Translate, Trim


def _apply(step: Step, text: pd.Series) -> pd.Series:
    if isinstance(step, Replace):
        replaced = text.str.replace(step.pattern, step.replacement, regex=True)
        if step.when is None:
            return replaced
        return text.where(~text.str.fullmatch(step.when).eq(True), replaced)
    if isinstance(step, Translate):
        return text.str.translate(str.maketrans(step.source, step.target, step.delete))
    if isinstance(step, Trim):
        return text.str.strip(" ")
    if isinstance(step, Case):
        return text.str.upper() if step.upper else text.str.lower()
    if isinstance(step, Lookup):
        return text.map(lambda v: step.mapping.get(v, v) if isinstance(v, str) else v)
    raise TypeError(f"unknown step {step!r}")


def is_canonical(rule: FieldRule, text: pd.Series) -> pd.Series:
    """Values already in final form, which every step leaves unchanged."""
    return text.str.fullmatch(rule.canonical).eq(True) & ~text.isin(rule.lookup_keys)


def normalise(rule: FieldRule, raw: pd.Series) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    """The text after every step, and for each step the rows it changed; values already in
    final form skip the steps."""
    full = raw.astype("object").where(raw.notna(), None)
    canonical = is_canonical(rule, full)
    text = full[~canonical]
    changed = []
    for step in rule.steps:
        after = _apply(step, text)
        changed.append((step.name, ((after != text) & text.notna()).reindex(full.index, fill_value=False)))
        text = after
    full = full.copy()
    full[~canonical] = text
    return full, changed


def _typed(rule: FieldRule, text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(value, reason code or None) per row, following the field's kind."""
    f = rule.field
    missing = text.isna() | (text == "")
    code = pd.Series(
        np.where(missing & f.required, f"{f.name}_missing", None), index=text.index, dtype=object
    )
    if f.kind == "text":
        return text.where(~missing, None), code
    if f.kind == "choice":
        valid = text.isin(f.choices)
        code = code.where(missing | valid, f"{f.name}_invalid")
        return text.where(valid, None), code
    if f.kind == "bool":
        valid = text.isin(["true", "false"])
        code = code.where(missing | valid, f"{f.name}_invalid")
        return text.map({"true": True, "false": False}).where(valid, None), code
    looks_numeric = text.str.fullmatch(rules.NUMBER).eq(True)
    # float() as Java's parser does: "-0" stays negative zero, "1e309" becomes infinity.
    number = (
        text.where(looks_numeric)
        .map(lambda v: float(v) if isinstance(v, str) else math.nan)
        .astype("float64")
    )
    finite = pd.Series(np.isfinite(number.to_numpy()), index=number.index)
    code = code.where(missing | finite, f"{f.name}_invalid")
    if f.kind == "int":
        whole = finite & (number == np.floor(number.where(finite, 0)))
        code = code.where(missing | ~finite | whole, f"{f.name}_not_whole")
        finite = whole
    inside = finite & (number >= f.minimum) & (number <= f.maximum)
    code = code.where(missing | ~finite | inside, f"{f.name}_out_of_range")
    return number.where(inside, np.nan), code


def _applied(changed: list[tuple[str, pd.Series]]) -> list[list[str]]:
    """Per row, the names of the steps that changed it (one pass over plain arrays)."""
    if not changed:
        return []
    names = [name for name, _ in changed]
    flags = np.column_stack([f.to_numpy(dtype=bool) for _, f in changed])
    applied: list[list[str]] = [[] for _ in range(len(flags))]
    for row in np.flatnonzero(flags.any(axis=1)):  # most rows need no step: visit only the others
        applied[row] = [names[step] for step in np.flatnonzero(flags[row])]
    return applied


def clean_field(rule: FieldRule, column: pd.Series) -> pd.DataFrame:
    """One field's outputs for its raw text `column`: `<name>` (typed value), `<name>__reason`
    (code or None), `<name>__rules` (names of the steps that changed the text), `<name>__raw`
    (the column) and `<name>__text` (the text after the steps).

    A row's outputs depend on its own value only, and a field holds few distinct values (schools,
    codes, scores), so each distinct value is cleaned once and its outputs copied to its rows, as
    the Spark engine's value tables do: every step of every field ran over every row before (a
    million records: ~50 s of string operations)."""
    codes, distinct = pd.factorize(column)  # a missing value (None, NaN) has code -1
    if 2 * (len(distinct) + 1) > len(column):  # mostly distinct (ids, free text): nothing to share
        return _clean_rows(rule, column)
    # Only the values present, so that each output column gets the type cleaning every row gives
    # it (a yes/no field is bool unless a value is invalid or missing). Missing values come last,
    # where code -1 takes them from.
    values = [*distinct, None] if (codes < 0).any() else list(distinct)
    outputs = _clean_rows(rule, pd.Series(values, dtype=object)).take(codes)
    outputs.index = column.index
    outputs[f"{rule.name}__raw"] = column
    return outputs


def _clean_rows(rule: FieldRule, column: pd.Series) -> pd.DataFrame:
    """`clean_field`, step by step over every row of `column`."""
    name = rule.name
    text, changed = normalise(rule, column)
    value, code = _typed(rule, text)
    applied = _applied(changed) or [[] for _ in range(len(column))]
    return pd.DataFrame(
        {
            name: value,
            f"{name}__reason": code,
            f"{name}__rules": pd.Series(applied, index=column.index, dtype=object),
            f"{name}__raw": column,
            f"{name}__text": text,
        },
        index=column.index,
    )


def clean_fields(raw: pd.DataFrame) -> pd.DataFrame:
    """`clean_field` of every field, side by side; a field missing from `raw` is all None."""
    out = pd.DataFrame(index=raw.index)
    for rule in rules.STUDENT_RULES:
        name = rule.name
        column = raw[name] if name in raw.columns else pd.Series(None, index=raw.index, dtype=object)
        for label, series in clean_field(rule, column).items():
            out[label] = series
    return out


FIELD_NAMES, VALUE_FIELDS, META = list(rules.FIELD_NAMES), list(rules.VALUE_FIELDS), list(rules.META)


def _reasons(fields: pd.DataFrame, known_school: pd.Series) -> pd.Series:
    """Per row, its reasons in field order, then an unknown school. Visited field by field, only
    where a field has a code: most rows have none, and a row with one has few."""
    rows: list[list[dict]] = [[] for _ in range(len(fields))]
    for name in FIELD_NAMES:
        codes = fields[f"{name}__reason"].to_numpy()
        raws = fields[f"{name}__raw"].tolist()
        for i in np.flatnonzero(np.not_equal(codes, None)).tolist():
            code = codes[i]
            rows[i].append({"code": code, "field": name, "message": rules.message(code, raws[i])})
    unknown = fields["school_id"].notna().to_numpy() & ~known_school.to_numpy(dtype=bool)
    school_raw = fields["school_id__raw"].tolist()
    for i in np.flatnonzero(unknown).tolist():
        rows[i].append({"code": "school_unknown", "field": "school_id",
                        "message": rules.message("school_unknown", school_raw[i])})  # fmt: skip
    return pd.Series(rows, index=fields.index, dtype=object)


def _changes(fields: pd.DataFrame) -> pd.Series:
    """Per row, the fields a step changed, in field order; visited field by field, only where
    one did (a row-by-field loop over every changed row cost 1.6 s at 200,000 dirty records)."""
    rows: list[list[dict]] = [[] for _ in range(len(fields))]
    for name in VALUE_FIELDS:
        applied = fields[f"{name}__rules"].tolist()
        raws, texts = fields[f"{name}__raw"].tolist(), fields[f"{name}__text"].tolist()
        changed = np.fromiter(map(bool, applied), bool, len(applied))
        for i in np.flatnonzero(changed).tolist():
            rows[i].append({"field": name, "before": raws[i], "after": texts[i], "rules": list(applied[i])})
    return pd.Series(rows, index=fields.index, dtype=object)


def mark_duplicates(
    cleaned: pd.DataFrame, max_duplicates: int | None = None
) -> tuple[pd.DataFrame, pd.Index]:
    """Exact resubmissions (same student, same answers) collapse to the first received, which
    lists the next `max_duplicates` (default `rules.MAX_DUPLICATES`) in `duplicates`; a student with
    differing answers keeps every record, each flagged `duplicate_conflict`. Records without a
    student number are never taken as duplicates. Returns the kept records and the labels of the
    records past the bound (in arrival order: received_at, nulls last, then submission_id), which
    are not kept."""
    bound = rules.MAX_DUPLICATES if max_duplicates is None else max_duplicates
    cleaned = cleaned.sort_values(["received_at", "submission_id"], kind="stable", na_position="last")
    if cleaned.empty:
        empty = {"duplicates": pd.Series(dtype=object), "duplicate_conflict": pd.Series(dtype=bool)}
        return cleaned.assign(**empty), cleaned.index
    identified = cleaned["student_ref"].notna()
    texts = cleaned[VALUE_FIELDS].astype(str)
    content = texts.iloc[:, 0].str.cat([texts[c] for c in VALUE_FIELDS[1:]], sep="\x1f")
    groups = cleaned.loc[identified].groupby(
        [cleaned["school_id"], cleaned["student_ref"], content], sort=False
    )
    # Each record's place in its group, in arrival order: 0 for the first (and the anonymous).
    rank = groups.cumcount().reindex(cleaned.index).fillna(0)
    # Only groups of two or more records are visited in Python: a few among many thousands.
    repeated = groups["submission_id"].transform("size").gt(1)
    ids = cleaned.loc[identified, "submission_id"][repeated]
    others = {}
    for _, same in ids.groupby(groups.ngroup()[repeated], sort=False):
        others[same.iloc[0]] = list(same.iloc[1 : 1 + bound])
    kept = cleaned[rank.eq(0)].copy()
    kept["duplicates"] = kept["submission_id"].map(lambda sid: others.get(sid, []))
    per_student = kept.loc[kept["student_ref"].notna()].groupby(["school_id", "student_ref"])["submission_id"]
    conflicted = per_student.transform("size").gt(1)
    kept["duplicate_conflict"] = conflicted.reindex(kept.index, fill_value=False).astype(bool)
    return kept, cleaned.index[rank.gt(bound)]


def clean(raw: pd.DataFrame, known_schools: set[str]) -> rules.CleanResult:
    """Raw text records -> cleaned records, quarantined records with reasons (a resubmission past
    `rules.MAX_DUPLICATES` among them), and the raw ids to delete (every input id: cleaned,
    quarantined, collapsed as duplicates or without consent)."""
    fields = clean_fields(raw)
    meta = raw.reindex(columns=META).astype(object).where(raw.reindex(columns=META).notna(), None)
    consent = fields["consent"].eq(True)
    known = fields["school_id"].isin(known_schools)
    reasons = _reasons(fields, known)
    ok = reasons.map(len).eq(0) & consent
    bad = reasons.map(len).gt(0) & consent

    cleaned = pd.concat([meta[ok], fields.loc[ok, VALUE_FIELDS]], axis=1)
    cleaned["changes"] = _changes(fields)[ok]
    cleaned, surplus = mark_duplicates(cleaned)
    # Resubmissions past the bound go to quarantine with their values as typed, as rejects do.
    if len(surplus):
        bad = bad | bad.index.isin(surplus)
        reasons = reasons.copy()
        reasons[surplus] = pd.Series([[rules.resubmitted_too_often()] for _ in surplus], index=surplus)

    quarantine = meta[bad].copy()
    for name in FIELD_NAMES:
        quarantine[name] = fields.loc[bad, f"{name}__raw"]
    quarantine["reasons"] = reasons[bad]
    return rules.CleanResult(
        cleaned=cleaned.reset_index(drop=True),
        quarantine=quarantine.reset_index(drop=True),
        raw_ids=list(meta["submission_id"]),
        without_consent=int((~consent).sum()),
    )
