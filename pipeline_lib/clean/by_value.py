"""Each field of raw Arrow batches cleaned once per distinct value, by `pandas_engine` itself.

Survey answers repeat: a few hundred spellings of yes, no, a school code or a score cover a
million submissions. The Spark clean's scan workers (`checked_read`) run `ValueCleaner.check` on
the Arrow batches as they arrive from the db-api: per batch and field, the values not seen before
are cleaned by `pandas_engine.clean_field` (the same programs, so the same outputs) and every row
takes its value's outputs by index; then each record's reasons for quarantine and the changes the
steps made are listed as `pandas_engine.clean` lists them, and `split` parts the kept records
from the rejects. All in Arrow: nothing runs per record in Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.rules import FieldRule
from pipeline_lib.contract.fields import CONSENT

# Outputs remembered per field, at most: a field with more distinct values (unique references,
# free text) is still cleaned by value within each batch, and memory stays bounded.
MAX_REMEMBERED_VALUES = 50_000
_VALUE_TYPES = {"text": pa.string(), "choice": pa.string(), "bool": pa.bool_()}  # numbers: float64


def value_type(rule: FieldRule) -> pa.DataType:
    """The Arrow type of a field's cleaned value (Spark's: numbers are doubles)."""
    return _VALUE_TYPES.get(rule.field.kind, pa.float64())


def value_table(rule: FieldRule, cleaned: pd.DataFrame) -> pa.Table:
    """`pandas_engine.clean_field`'s outputs as Arrow (NaN as null), keyed by the raw value in
    `__value`: one row per distinct value."""
    n = rule.name
    return pa.table(
        {
            n: pa.array(cleaned[n], type=value_type(rule), from_pandas=True),
            f"{n}__reason": pa.array(cleaned[f"{n}__reason"], type=pa.string()),
            f"{n}__rules": pa.array(cleaned[f"{n}__rules"], type=pa.list_(pa.string())),
            "__value": pa.array(cleaned[f"{n}__raw"], type=pa.string()),
            f"{n}__text": pa.array(cleaned[f"{n}__text"], type=pa.string()),
        }
    )


class ValueCleaner:
    """Cleans raw batches field by field, remembering each value's outputs (up to `remember`
    values per field) for the batches after."""

    def __init__(self, remember: int = MAX_REMEMBERED_VALUES) -> None:
        self.remember = remember
        self.known: dict[str, pa.Table] = {}

    def check(self, batch: pa.RecordBatch, schools: frozenset[str]) -> pa.RecordBatch:
        """`batch` as `checked_schema()`: its receipt fields, cleaned values and consent (missing
        counts as no), the changes the steps made (field order) and the reasons for quarantine
        (field order, then a school not in `schools`), with every field's raw text."""
        if batch.num_rows == 0:
            return _empty(checked_schema())
        fields = dict(zip(rules.FIELD_NAMES, self._fields(batch), strict=True))
        reasons = [
            _struct_where(
                outputs[f"{name}__reason"], REASON, [outputs[f"{name}__reason"], name, outputs["__message"]]
            )
            for name, (_raw, outputs) in fields.items()
        ]
        reasons.append(_unknown_school(*fields["school_id"], schools))
        changes = []
        for name in rules.VALUE_FIELDS:
            raw, outputs = fields[name]
            changed = pc.greater(pc.list_value_length(outputs[f"{name}__rules"]), 0)
            values = [name, raw, outputs[f"{name}__text"], outputs[f"{name}__rules"]]
            changes.append(_struct_where(pc.if_else(changed, True, None), CHANGE, values))
        consent = pc.fill_null(fields[CONSENT.name][1][CONSENT.name], False)
        arrays: list[pa.Array] = [self._column(batch, m) for m in rules.META]
        arrays += [fields[name][1][name] for name in rules.VALUE_FIELDS]
        arrays += [
            consent,
            _lists_by_row(changes),
            *[raw for raw, _ in fields.values()],
            _lists_by_row(reasons),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=checked_schema())

    def _fields(self, batch: pa.RecordBatch) -> Iterator[tuple[pa.Array, dict[str, pa.Array]]]:
        """Per field, in rule order: its raw text and its outputs (one row per record)."""
        for rule in rules.STUDENT_RULES:
            raw = self._column(batch, rule.name)
            table, rows = self._values(rule, raw)
            outputs = table.take(rows)
            yield raw, {name: outputs[name].combine_chunks() for name in outputs.column_names}

    @staticmethod
    def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
        if name in batch.schema.names:
            return batch.column(name).cast(pa.string())
        return pa.nulls(batch.num_rows, pa.string())

    def _values(self, rule: FieldRule, raw: pa.Array) -> tuple[pa.Table, pa.Array]:
        """A table of outputs per value covering every value of `raw`, and each row's index in it
        (a missing value matches a null key)."""
        known = self.known.get(rule.name)
        if known is not None:
            rows = pc.index_in(raw, value_set=known["__value"], skip_nulls=False)
            if rows.null_count == 0:
                return known, rows
            new = pc.unique(pc.filter(raw, pc.is_null(rows)))
        else:
            new = pc.unique(raw)
        cleaned = pandas_engine.clean_field(rule, pd.Series(new.to_pylist(), dtype=object))
        table = value_table(rule, cleaned)
        codes, raws = table[f"{rule.name}__reason"].to_pylist(), table["__value"].to_pylist()
        messages = [None if c is None else rules.message(c, r) for c, r in zip(codes, raws, strict=True)]
        table = table.append_column("__message", pa.array(messages, pa.string()))
        if known is not None:
            table = pa.concat_tables([known, table]).combine_chunks()
        if table.num_rows <= self.remember:
            self.known[rule.name] = table
        return table, pc.index_in(raw, value_set=table["__value"], skip_nulls=False)


REASON = pa.struct([("code", pa.string()), ("field", pa.string()), ("message", pa.string())])
CHANGE = pa.struct(
    [
        ("field", pa.string()),
        ("before", pa.string()),
        ("after", pa.string()),
        ("rules", pa.list_(pa.string())),
    ]
)


def checked_schema() -> pa.Schema:
    """What `ValueCleaner.check` gives (`spark_engine.check`'s columns)."""
    by_rule = {rule.name: rule for rule in rules.STUDENT_RULES}
    return pa.schema(
        [
            *[pa.field(m, pa.string()) for m in rules.META],
            *[pa.field(n, value_type(by_rule[n])) for n in rules.VALUE_FIELDS],
            pa.field("__consent", pa.bool_()),
            pa.field("changes", pa.list_(CHANGE)),
            *[pa.field(f"{n}__raw", pa.string()) for n in rules.FIELD_NAMES],
            pa.field("reasons", pa.list_(REASON)),
        ]
    )


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _struct_where(present: pa.Array, kind: pa.StructType, values: list[pa.Array | str]) -> pa.StructArray:
    """A struct of `kind` from `values` (a text is the same on every row) where `present` is set,
    null elsewhere."""
    arrays = [pa.repeat(pa.scalar(v, pa.string()), len(present)) if isinstance(v, str) else v for v in values]
    return pa.StructArray.from_arrays(arrays, fields=list(kind), mask=pc.is_null(present))


def _unknown_school(raw: pa.Array, outputs: dict[str, pa.Array], schools: frozenset[str]) -> pa.StructArray:
    """The reason `school_unknown` where a cleaned school code is not one of `schools`."""
    school = outputs["school_id"]
    unknown = pc.and_(
        pc.is_valid(school), pc.invert(pc.is_in(school, pa.array(sorted(schools), pa.string())))
    )
    spellings = pc.unique(pc.filter(raw, unknown))
    said = pa.array([rules.message("school_unknown", s) for s in spellings.to_pylist()], pa.string())
    message = said.take(pc.index_in(raw, value_set=spellings, skip_nulls=False))
    code = pc.if_else(unknown, "school_unknown", None)
    return _struct_where(code, REASON, [code, "school_id", message])


def _lists_by_row(columns: list[pa.StructArray]) -> pa.ListArray:
    """Per row, the non-null values of `columns` in the columns' order (an empty list if none)."""
    width, rows = len(columns), len(columns[0])
    stacked = pa.concat_arrays(columns)  # column after column
    by_row = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    present = stacked.is_valid().to_numpy(zero_copy_only=False)[by_row]
    values = stacked.take(pa.array(by_row[present]))
    counts = present.reshape(rows, width).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def kept_schema() -> pa.Schema:
    """`split`'s kept records: receipt fields, cleaned values, changes."""
    checked = checked_schema()
    return pa.schema([checked.field(name) for name in (*rules.META, *rules.VALUE_FIELDS, "changes")])


def split(checked: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Table, pa.Table]:
    """`check`'s records as (kept: consent and no reason, as `kept_schema()`; quarantine: consent
    and a reason, with each field's raw text under its name and the reasons; the `submission_id`s
    of the records without consent)."""
    consent = checked.column("__consent")
    has_reason = pc.greater(pc.list_value_length(checked.column("reasons")), 0)
    kept = checked.filter(pc.and_(consent, pc.invert(has_reason))).select(kept_schema().names)
    rejected = checked.filter(pc.and_(consent, has_reason))
    quarantine = pa.table(
        {
            **{m: rejected.column(m) for m in rules.META},
            **{n: rejected.column(f"{n}__raw") for n in rules.FIELD_NAMES},
            "reasons": rejected.column("reasons"),
        }
    )
    without_consent = pa.table({"submission_id": checked.filter(pc.invert(consent)).column("submission_id")})
    return kept, quarantine, without_consent
