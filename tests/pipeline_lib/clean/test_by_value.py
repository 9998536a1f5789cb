"""`by_value`: raw Arrow batches cleaned field by field, by value, as `pandas_engine` cleans them."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean import by_value, pandas_engine, rules
from tests.pipeline_lib.clean.test_cleaning import NASTY, _raw


def _nasty_raw(rows: int) -> pd.DataFrame:
    """`rows` records whose every field takes the nasty values (and None) in turn."""
    values = {
        name: [None if (i + j) % 5 == 0 else NASTY[(i * 7 + j) % len(NASTY)] for i in range(rows)]
        for j, name in enumerate(rules.FIELD_NAMES)
    }
    return _raw(values)


def _batches(raw: pd.DataFrame, size: int) -> list[pa.RecordBatch]:
    text = pa.schema([pa.field(c, pa.string()) for c in raw.columns])
    return pa.Table.from_pandas(raw, schema=text, preserve_index=False).to_batches(max_chunksize=size)


def _plain(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _expected(raw: pd.DataFrame) -> list[dict]:
    fields = pandas_engine.clean_fields(raw)
    fields.insert(0, "submission_id", raw["submission_id"])
    rows = fields.to_dict("records")
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _got(batches: list[pa.RecordBatch]) -> list[dict]:
    columns = ["submission_id", *[f"{n}{part}" for n in rules.FIELD_NAMES for part in by_value.OUTPUTS]]
    return pa.Table.from_batches(batches).select(columns).to_pylist()


def test_batches_are_cleaned_as_pandas_cleans_the_whole_frame() -> None:
    """Values first seen in a later batch, missing values, every nasty spelling: the same outputs,
    row for row and type for type, as `pandas_engine.clean_fields` over all the rows at once."""
    raw = _nasty_raw(len(NASTY) * 3)
    got = list(by_value.clean_batches(iter(_batches(raw, 17))))
    assert all(batch.schema.equals(by_value.fields_schema()) for batch in got)
    assert _got(got) == _expected(raw)


def test_a_field_with_more_values_than_remembered_is_still_cleaned_and_memory_stays_bounded() -> None:
    raw = _nasty_raw(len(NASTY) * 2)
    cleaner = by_value.ValueCleaner(remember=5)
    got = [cleaner.clean(batch) for batch in _batches(raw, 10)]
    assert _got(got) == _expected(raw)
    assert cleaner.known and all(table.num_rows <= 5 for table in cleaner.known.values())


def test_a_field_missing_from_the_batch_counts_as_missing_and_an_empty_batch_stays_empty() -> None:
    raw = _raw({"student_ref": ["7", "8"]})
    without_age = _batches(raw.drop(columns=["minority"]), 10)
    got = list(by_value.clean_batches(iter(without_age)))
    assert _got(got) == _expected(raw.assign(minority=None))
    empty = by_value.ValueCleaner().clean(_batches(raw, 10)[0].slice(0, 0))
    assert empty.num_rows == 0 and empty.schema.equals(by_value.fields_schema())
