"""The frames the dashboards draw: histograms, group summaries, the SES-math relation, the
per-school table with its search and ranking, and the run history, built from public results (via
`tables`) and run records. No I/O, no display: tested directly.

Every frame of a public result keeps a `suppressed` column (True for hidden groups) and, where
the view says why rows are hidden or not updated, their `note`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pipeline_lib.process.analysis.base import Z_95
from pipeline_lib.process.results import PublicResult
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.views.tables import table_frame

STATS = ("n", "mean", "sd", "min", "q1", "median", "q3", "max")


def _with_note(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [*columns, "note"] if "note" in frame else columns


def histogram(result: PublicResult | None) -> pd.DataFrame | None:
    """lower, upper, n, suppressed (and note) per bin, in order."""
    frame = table_frame(result, needs=("lower", "upper", "n"))
    if frame is None:
        return None
    columns = _with_note(frame, ["lower", "upper", "n", "suppressed"])
    return frame.sort_values("lower", ignore_index=True)[columns]


def group_summary(result: PublicResult | None, group: str, variable: str) -> pd.DataFrame | None:
    """The descriptive statistics of `variable` per value of `group` (one row per group), with
    `suppressed` (and `note`)."""
    frame = table_frame(result, needs=(group, "variable", "n", "median"))
    if frame is None:
        return None
    rows = frame[frame["variable"] == variable]
    columns = _with_note(rows, [group, *(s for s in STATS if s in rows), "suppressed"])
    return rows[columns].rename(columns={group: "group"}).reset_index(drop=True)


def overall_row(result: PublicResult | None, variable: str) -> pd.Series | None:
    """The overall descriptive statistics of `variable`, if shown."""
    frame = table_frame(result, needs=("variable", "n", "mean"))
    if frame is None:
        return None
    rows = frame[frame["variable"] == variable]
    return None if rows.empty or bool(rows["suppressed"].iloc[0]) else rows.iloc[0]


def relation_tables(result: PublicResult | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(binned means, lines) of the SES-math relation, hidden rows included."""
    binned = table_frame(result, "binned", needs=("sector", "mean_ses", "mean_math", "n"))
    lines = table_frame(result, "lines", needs=("sector", "intercept", "slope", "n"))
    return None if binned is None or lines is None else (binned, lines)


def relation(result: PublicResult | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(binned means, lines) of the SES-math relation, without hidden rows."""
    found = relation_tables(result)
    if found is None:
        return None
    binned, lines = found
    return binned[~binned["suppressed"]].reset_index(drop=True), lines[~lines["suppressed"]].reset_index(
        drop=True
    )


def hidden_count(frame: pd.DataFrame | None) -> int:
    """How many rows of the frame are suppressed (0 without a frame)."""
    return 0 if frame is None else int(frame["suppressed"].sum())


# -- schools --------------------------------------------------------------------------------------

SCHOOL_COLUMNS = (
    "school_id",
    "name",
    "sector",
    "n",
    "mean_math",
    "mean_ses",
    "intercept",
    "intercept_se",
    "slope",
    "slope_se",
    "suppressed",
    "note",
)
# What a note of another document than the school's sizes is about, in the school's `note`.
NOTE_OF = {"by_school": "means", "effects": "school effects"}


def school_table(
    sizes: PublicResult | None, by_school: PublicResult | None, effects: PublicResult | None
) -> pd.DataFrame | None:
    """One row per school: code, name, sector and students (`distribution:schools`, else the
    per-school descriptives), mean score and SES (`descriptives:by_school`) and predicted school
    effects (`mixedlm:school_effects`); None when no school is known yet. A school under k is
    `suppressed`: its labels stay, its numbers are blank. `note` says why a school's figures are
    hidden or not updated, each document's reason once (None when every figure is as computed)."""
    means = table_frame(by_school, needs=("school_id", "variable", "mean"))
    base = table_frame(sizes, needs=("school_id", "sector", "n"))
    if base is None and means is not None and "sector" in means:
        base = means[means["variable"] == "math_score"].drop(columns=["variable"])
    if base is None:
        return None
    table = base[[c for c in ("school_id", "name", "sector", "n", "suppressed") if c in base]].copy()
    if "name" not in table:
        names = means.drop_duplicates("school_id").set_index("school_id")["name"] if means is not None and (
            "name" in means) else pd.Series(dtype=object)  # fmt: skip
        table["name"] = table["school_id"].map(names).fillna(table["school_id"])
    if means is not None:
        wide = means.pivot_table(index="school_id", columns="variable", values="mean", aggfunc="first")
        for variable, column in (("math_score", "mean_math"), ("ses", "mean_ses")):
            if variable in wide:
                table[column] = table["school_id"].map(wide[variable])
    effect = table_frame(effects, needs=("school_id", "intercept", "intercept_se"))
    others = {"by_school": means if sizes is not None else None, "effects": effect}
    table["note"] = _school_notes(table, base, others)
    if effect is not None:
        effect = effect[~effect["suppressed"]].set_index("school_id")
        for column in ("intercept", "intercept_se", "slope", "slope_se"):
            if column in effect:
                table[column] = table["school_id"].map(effect[column])
    for column in SCHOOL_COLUMNS:
        if column not in table:
            table[column] = None
    # A school under k shows its labels only, whatever another document holds for it.
    numbers = ["n", "mean_math", "mean_ses", "intercept", "intercept_se", "slope", "slope_se"]
    table[numbers] = table[numbers].astype(object).where(~table["suppressed"].astype(bool), None)
    return table[list(SCHOOL_COLUMNS)].sort_values("school_id", ignore_index=True)


def _school_notes(
    table: pd.DataFrame, base: pd.DataFrame, others: dict[str, pd.DataFrame | None]
) -> pd.Series:
    """Per school of `table`: the notes of its rows in `base` and in the `others` (named by what
    they hold; not for a school hidden in `base`, whose figures are all blank), distinct and
    joined by "; "; None without any."""
    found: dict[str, list[str]] = {}
    blank = set(base.loc[base["suppressed"].astype(bool), "school_id"])

    def add(frame: pd.DataFrame | None, prefix: str) -> None:
        if frame is None or "note" not in frame:
            return
        for school, note in zip(frame["school_id"], frame["note"], strict=True):
            text = f"{prefix}{note}" if isinstance(note, str) and not (prefix and school in blank) else None
            if text and text not in found.setdefault(school, []):
                found[school].append(text)

    add(base, "")
    for name, frame in others.items():
        add(frame, f"{NOTE_OF[name]}: ")
    return table["school_id"].map(lambda s: "; ".join(found[s]) if found.get(s) else None)


def filter_schools(schools: pd.DataFrame, sector: str | None, search: str) -> tuple[pd.DataFrame, pd.Series]:
    """(schools of `sector` (None: all), whether each matches `search`): a case-insensitive part
    of the school's code or name; an empty search matches none."""
    chosen = schools if not sector else schools[schools["sector"] == sector]
    words = search.strip().lower()
    if not words:
        return chosen.reset_index(drop=True), pd.Series(False, index=range(len(chosen)))
    text = (chosen["school_id"].astype(str) + " " + chosen["name"].astype(str)).str.lower()
    return chosen.reset_index(drop=True), text.str.contains(words, regex=False).reset_index(drop=True)


def effects_ranked(schools: pd.DataFrame, effect: str) -> pd.DataFrame:
    """Schools with a predicted `effect` (intercept or slope), lowest first, with 95% limits."""
    shown = schools.dropna(subset=[effect, f"{effect}_se"]).copy()
    shown[effect] = shown[effect].astype(float)
    half = Z_95 * shown[f"{effect}_se"].astype(float)
    shown["low"], shown["high"] = shown[effect] - half, shown[effect] + half
    return shown.sort_values([effect, "school_id"], ignore_index=True)


# -- runs -----------------------------------------------------------------------------------------

RUN_COUNTS = ("records_in", "cleaned", "quarantined", "duplicates_collapsed", "without_consent")


def clean_history(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per finished clean run that read records, oldest first, with its counts."""
    rows = [
        {
            "run_id": r.run_id,
            "started_at": r.started_at,
            "status": r.status,
            **{c: r.counts.get(c) for c in RUN_COUNTS},
        }
        for r in runs
        if r.notebook == "clean" and r.status != "running" and r.counts.get("records_in")
    ]
    frame = pd.DataFrame(rows, columns=["run_id", "started_at", "status", *RUN_COUNTS])
    return frame.sort_values("started_at", ignore_index=True)


def latest_runs(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Each notebook's latest run: what it is doing or how it ended, and when."""
    latest: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.started_at):
        latest[run.notebook] = run
    rows = [
        {
            "notebook": r.notebook,
            "status": r.status,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "duration_seconds": r.duration_seconds,
            "run_id": r.run_id,
            "problem": f"{r.error.exception} in cell {r.error.cell_index}"
            if r.error and r.error.cell_index is not None
            else (r.error.exception if r.error else (r.note or "")),
        }
        for r in latest.values()
    ]
    columns = ["notebook", "status", "started_at", "ended_at", "duration_seconds", "run_id", "problem"]
    return pd.DataFrame(rows, columns=columns).sort_values("notebook", ignore_index=True)
