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


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame[columns].to_dict("records")]


def _values(raw: pd.DataFrame) -> list[dict]:
    """Per record: its id, each cleaned value and each field's raw text, as pandas cleans them."""
    fields = pandas_engine.clean_fields(raw).assign(submission_id=raw["submission_id"])
    columns = ["submission_id", *rules.VALUE_FIELDS, *[f"{n}__raw" for n in rules.FIELD_NAMES]]
    return _records(fields, columns)


def _checked(batches: list[pa.RecordBatch], cleaner: by_value.ValueCleaner | None = None) -> pa.Table:
    cleaner = cleaner or by_value.ValueCleaner()
    checked = [cleaner.check(batch, SCHOOLS) for batch in batches]
    assert all(batch.schema.equals(by_value.checked_schema()) for batch in checked)
    return pa.Table.from_batches(checked)


def _got_values(checked: pa.Table) -> list[dict]:
    columns = ["submission_id", *rules.VALUE_FIELDS, *[f"{n}__raw" for n in rules.FIELD_NAMES]]
    return checked.select(columns).to_pylist()


SCHOOLS = frozenset({"1224", "2305"})


def test_each_field_is_cleaned_batch_by_batch_as_pandas_cleans_the_whole_frame() -> None:
    """Values first seen in a later batch, missing values, every nasty spelling: the same values,
    row for row and type for type, as `pandas_engine.clean_fields` over all the rows at once."""
    raw = _nasty_raw(len(NASTY) * 3)
    assert _got_values(_checked(_batches(raw, 17))) == _values(raw)


def test_a_field_with_more_values_than_remembered_is_still_cleaned_and_memory_stays_bounded() -> None:
    raw = _nasty_raw(len(NASTY) * 2)
    cleaner = by_value.ValueCleaner(remember=5)
    assert _checked(_batches(raw, 10), cleaner).equals(_checked(_batches(raw, 10)))
    assert cleaner.known and all(table.num_rows <= 5 for table in cleaner.known.values())


def test_a_field_missing_from_the_batch_counts_as_missing_and_an_empty_batch_stays_empty() -> None:
    raw = _raw({"student_ref": ["7", "8"]})
    without_minority = _batches(raw.drop(columns=["minority"]), 10)
    assert _got_values(_checked(without_minority)) == _values(raw.assign(minority=None))
    empty = by_value.ValueCleaner().check(_batches(raw, 10)[0].slice(0, 0), SCHOOLS)
    assert empty.num_rows == 0 and empty.schema.equals(by_value.checked_schema())


def test_checked_records_split_into_what_pandas_cleans_and_quarantines() -> None:
    """Reasons (field order, then an unknown school, each with its message), changes (field order,
    before, after, rules) and consent (missing is no), batch by batch, split into kept records,
    quarantine and ids without consent as `pandas_engine.clean` splits them; every record once. No
    student repeats, so no resubmission collapses."""
    nasty = _nasty_raw(len(NASTY) * 3).assign(student_ref=None)
    nasty["school_id"] = [v if i % 3 else "1224" for i, v in enumerate(nasty["school_id"])]
    nasty["consent"] = [v if i % 4 else "yes" for i, v in enumerate(nasty["consent"])]
    good = _raw({"sex": ["F", " f ", "GIRL", "F."] * 5, "ses": ["0", " 1 ", "0,5", "1"] * 5})
    good["submission_id"] = "g" + good["submission_id"]
    raw = pd.concat([nasty, good], ignore_index=True)
    parts = [by_value.split(batch) for batch in _checked(_batches(raw, 17)).to_batches()]
    kept = pa.Table.from_batches([k for k, _, _ in parts], schema=by_value.kept_schema()).to_pylist()
    quarantine = pa.concat_tables([q for _, q, _ in parts]).to_pylist()
    without_consent = pa.concat_tables([w for _, _, w in parts]).column("submission_id").to_pylist()
    expected = pandas_engine.clean(raw, set(SCHOOLS))
    assert kept == _records(expected.cleaned, [*rules.META, *rules.VALUE_FIELDS, "changes"]) != []
    assert quarantine == _records(expected.quarantine, list(expected.quarantine.columns)) != []
    placed = {r["submission_id"] for r in kept + quarantine}
    assert without_consent == [i for i in raw["submission_id"] if i not in placed]
    assert len(without_consent) == expected.without_consent > 0
    unknown = [r for q in quarantine for r in q["reasons"] if r["code"] == "school_unknown"]
    assert unknown and all(r["message"] for r in unknown)
