"""Each field of raw Arrow batches cleaned once per distinct value, by `pandas_engine` itself.

Survey answers repeat: a few hundred spellings of yes, no, a school code or a score cover a
million submissions. The Spark clean's read runs `clean_batches` in its scan workers, on the
Arrow batches as they arrive from the db-api: per batch and field, the values not seen before are
cleaned by `pandas_engine.clean_field` (the same programs, so the same outputs) and every row takes
its value's outputs by index, in Arrow. Spark then gets the fields cleaned and only checks the
records (school, reasons, duplicates). Nothing runs per record in Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.rules import FieldRule

# Outputs remembered per field, at most: a field with more distinct values (unique references,
# free text) is still cleaned by value within each batch, and memory stays bounded.
MAX_REMEMBERED_VALUES = 50_000
OUTPUTS = ("", "__reason", "__rules", "__raw", "__text")  # after the field's name, in this order
_VALUE_TYPES = {"text": pa.string(), "choice": pa.string(), "bool": pa.bool_()}  # numbers: float64


def value_type(rule: FieldRule) -> pa.DataType:
    """The Arrow type of a field's cleaned value (Spark's: numbers are doubles)."""
    return _VALUE_TYPES.get(rule.field.kind, pa.float64())


def fields_schema() -> pa.Schema:
    """What `clean_batches` yields: the receipt fields as text, then per field `<name>` (typed),
    `<name>__reason`, `<name>__rules`, `<name>__raw` and `<name>__text`."""
    columns = [pa.field(m, pa.string()) for m in rules.META]
    for rule in rules.STUDENT_RULES:
        n = rule.name
        columns += [
            pa.field(n, value_type(rule)),
            pa.field(f"{n}__reason", pa.string()),
            pa.field(f"{n}__rules", pa.list_(pa.string())),
            pa.field(f"{n}__raw", pa.string()),
            pa.field(f"{n}__text", pa.string()),
        ]
    return pa.schema(columns)


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

    def clean(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` (raw text; a field it lacks counts as missing) as `fields_schema()`."""
        if batch.num_rows == 0:
            return pa.RecordBatch.from_pylist([], schema=fields_schema())
        arrays: list[pa.Array] = [self._column(batch, m) for m in rules.META]
        for rule in rules.STUDENT_RULES:
            raw = self._column(batch, rule.name)
            table, rows = self._values(rule, raw)
            outputs = table.take(rows)
            n = rule.name
            arrays += [outputs[n], outputs[f"{n}__reason"], outputs[f"{n}__rules"], raw]
            arrays.append(outputs[f"{n}__text"])
        chunks = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
        return pa.RecordBatch.from_arrays(chunks, schema=fields_schema())

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
        if known is not None:
            table = pa.concat_tables([known, table]).combine_chunks()
        if table.num_rows <= self.remember:
            self.known[rule.name] = table
        return table, pc.index_in(raw, value_set=table["__value"], skip_nulls=False)


def clean_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each raw batch cleaned field by field (`ValueCleaner`), values remembered across them."""
    cleaner = ValueCleaner()
    for batch in batches:
        yield cleaner.clean(batch)
