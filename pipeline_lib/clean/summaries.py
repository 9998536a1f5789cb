"""What the cleaner did, summed up: quarantined records per reason code and cleaned records per
change, from Arrow tables holding only the `reasons` (quarantine) or `changes` (cleaned) column.
The Spark clean's tasks sum up the reasons and changes of their own batches, and `merge_counts`
adds the parts up.

Pure functions. The clean run's report shows them with `examples=True`; the processing step's
data-quality documents (`pipeline_lib.process.quality_documents`) leave examples out: they quote
what students typed.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.clean.rules import REASONS


def reason_text(code: str) -> str:
    """A reason code in words, without the value it quotes: 'ses is outside -5..5'."""
    return REASONS.get(code, code).replace(" {value}", "").replace("{value}", "a value")


def reasons_summary(quarantine: pa.Table, *, examples: bool = False) -> pd.DataFrame:
    """reason, records: quarantined records per reason code (a record counts once per reason),
    most frequent first; with `examples`, also one message quoting a rejected value."""
    flat = pc.list_flatten(quarantine.column("reasons"))
    empty = pa.array([], pa.string())
    columns = {"reason": pc.struct_field(flat, "code") if len(flat) else empty}
    if examples:
        columns["example"] = pc.struct_field(flat, "message") if len(flat) else empty
    return _counted(pa.table(columns), ["reason"])


def changes_summary(cleaned: pa.Table, *, examples: bool = False) -> pd.DataFrame:
    """field, rule, records: how many cleaned records each rule changed in each field, most
    first; with `examples`, also one change as "'before' -> 'after'"."""
    flat = pc.list_flatten(cleaned.column("changes"))
    empty = pa.array([], pa.string())
    if len(flat) == 0:
        columns = {"field": empty, "rule": empty, **({"example": empty} if examples else {})}
        return _counted(pa.table(columns), ["field", "rule"])
    rules = pc.struct_field(flat, "rules")
    changes = pc.take(flat, pc.list_parent_indices(rules))
    columns = {"field": pc.struct_field(changes, "field"), "rule": pc.list_flatten(rules)}
    if examples:
        before, after = (pc.fill_null(pc.struct_field(changes, side), "") for side in ("before", "after"))
        columns["example"] = pc.binary_join_element_wise("'", before, "' -> '", after, "'", "")
    return _counted(pa.table(columns), ["field", "rule"])


def _counted(rows: pa.Table, keys: list[str]) -> pd.DataFrame:
    """`rows` counted by `keys` into `records` (and the least `example`, when there is one),
    most frequent first."""
    aggregations = [(keys[-1], "count"), *([("example", "min")] if "example" in rows.column_names else [])]
    counts = rows.group_by(keys).aggregate(aggregations).to_pandas()
    counts = counts.rename(columns={f"{keys[-1]}_count": "records", "example_min": "example"})
    return _ordered(counts, keys)


def merge_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Summaries of parts of the same records (`reasons_summary` or `changes_summary` of each
    batch) as the summary of all of them: records added up, the least example kept."""
    keys = [c for c in parts[0].columns if c not in ("records", "example")]
    together = pd.concat(parts, ignore_index=True)
    aggregations = {"records": "sum", **({"example": "min"} if "example" in together.columns else {})}
    # dropna=False: a null key is counted apart in a single pass (Arrow's group_by), so here too.
    merged = together.groupby(keys, as_index=False, sort=False, dropna=False).agg(aggregations)
    return _ordered(merged, keys)


def _ordered(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts by `keys` (`records`, maybe `example`) most frequent first, then by the keys."""
    order = counts.sort_values(["records", *keys], ascending=[False, *[True] * len(keys)], ignore_index=True)
    return order[[*keys, "records", *(["example"] if "example" in counts else [])]].astype(
        {"records": "int64"}
    )
