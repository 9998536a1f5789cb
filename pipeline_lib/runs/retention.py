"""Forgetting old runs: run records, and their archived notebooks and dashboard snapshots, older
than `WORKBENCH_RUN_KEEP_DAYS`.

The default schedule runs the clean every 10 minutes and the process hourly: 168 runs a day, about
61,000 records and 16 GB of archive a year at the demo's size, which nothing deleted; every
`/results` view also reads `runs` to say how fresh the figures are. The scheduler prunes once a
day (`due`), `workbench prune-runs` by hand.

Kept whatever their age: every run the current results or dashboard snapshots name (`run_id` of
`processed` and `dashboards`: a run may have written results and then failed, or a dashboard may
keep an older run's snapshot), each notebook's newest run and newest successful run, and every run
still running. Records are deleted first, then their files: a file whose record is gone (a prune
stopped midway, a record deleted by hand) is removed by the next prune once its day's folder
(`runs/YYYY/MM/DD`) is older than the horizon.
Nothing outside the run archive is touched: a symbolic link in it is removed as a link, never
followed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import DASHBOARDS, PROCESSED, RUNS

_RECORDS = pa.schema(
    [
        ("_id", pa.string()),
        ("notebook", pa.string()),
        ("status", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
    ]
)
DELETE_BATCH = 1000  # run ids per DeleteIds call
MARKER = ".pruned"  # in the run archive: when the last prune ran (its modification time)


@dataclass(frozen=True)
class Run:
    run_id: str
    notebook: str
    status: str
    started_at: dt.datetime


@dataclass
class Pruned:
    """What a prune deleted (or, dry, would delete)."""

    records: int = 0
    files: int = 0
    bytes: int = 0
    kept_old: list[str] = field(default_factory=list)  # run ids past the horizon kept on purpose

    def summary(self, keep_days: int, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        return (
            f"runs older than {keep_days} days: {verb} {self.records:,} run records and "
            f"{self.files:,} archived files ({self.bytes / 2**20:,.1f} MiB); kept {len(self.kept_old)} "
            "older runs (a notebook's newest or newest successful, running, or named by the results)"
        )


def to_keep(runs: Iterable[Run]) -> set[str]:
    """Runs kept whatever their age: each notebook's newest and newest successful, and every run
    still running."""
    newest: dict[str, Run] = {}
    newest_success: dict[str, Run] = {}
    kept = set()
    for run in runs:
        if run.status == "running":
            kept.add(run.run_id)
        if run.notebook not in newest or run.started_at > newest[run.notebook].started_at:
            newest[run.notebook] = run
        if run.status == "succeeded" and (
            run.notebook not in newest_success or run.started_at > newest_success[run.notebook].started_at
        ):
            newest_success[run.notebook] = run
    return kept | {r.run_id for r in newest.values()} | {r.run_id for r in newest_success.values()}


def referenced(client: DbApiClient) -> set[str]:
    """The runs the current results and dashboard snapshots say they come from."""
    named = pa.schema([("run_id", pa.string())])
    found: set[str] = set()
    for collection in (PROCESSED, DASHBOARDS):
        run_ids = client.scan(collection, columns=["run_id"], schema=named).column("run_id").to_pylist()
        found.update(run_id for run_id in run_ids if run_id)
    return found


def _runs(client: DbApiClient) -> list[Run]:
    table = client.scan(RUNS, columns=list(_RECORDS.names), schema=_RECORDS)
    return [
        Run(row["_id"], row["notebook"] or "", row["status"] or "", row["started_at"])
        for row in table.to_pylist()
        if row["started_at"] is not None
    ]


def _day_folders(archive: Path) -> Iterator[tuple[dt.date, Path]]:
    """The archive's `YYYY/MM/DD` folders and their dates; anything else is left alone."""
    for year in _folders(archive, "[0-9][0-9][0-9][0-9]"):
        for month in _folders(year, "[0-9][0-9]"):
            for day in _folders(month, "[0-9][0-9]"):
                try:
                    yield dt.date(int(year.name), int(month.name), int(day.name)), day
                except ValueError:
                    continue


def _folders(parent: Path, pattern: str) -> list[Path]:
    """`parent`'s folders matching `pattern`, sorted; links left out (they may lead anywhere)."""
    return sorted(p for p in parent.glob(pattern) if p.is_dir() and not p.is_symlink())


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
    return path.lstat().st_size


def _of_kept_run(entry: Path, kept: set[str]) -> bool:
    """Whether an archived entry (`<run id>-<notebook>.ipynb`, `<run id>-dashboards`) is a kept run's."""
    return any(entry.name.startswith(f"{run_id}-") for run_id in kept)


def _prune_files(archive: Path, horizon: dt.date, kept: set[str], dry_run: bool) -> Pruned:
    """Entries of day folders before `horizon` that belong to no kept run."""
    pruned = Pruned()
    for day, folder in _day_folders(archive):
        if day >= horizon:
            break  # sorted: every later folder is newer
        for entry in list(folder.iterdir()):
            if _of_kept_run(entry, kept):
                continue
            pruned.files += 1
            pruned.bytes += _size(entry)
            if dry_run:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if not dry_run:
            for empty in (folder, folder.parent, folder.parent.parent):
                try:
                    empty.rmdir()  # only if empty
                except OSError:
                    break
    return pruned


def prune_runs(
    client: DbApiClient, archive: Path, keep_days: int, now: dt.datetime, *, dry_run: bool = False
) -> Pruned:
    """Delete the run records and archived files of runs started more than `keep_days` before
    `now` (UTC), except those `to_keep`. `keep_days` 0 keeps everything."""
    if keep_days <= 0:
        return Pruned()
    horizon = now.astimezone(dt.UTC) - dt.timedelta(days=keep_days)
    runs = _runs(client)
    kept = to_keep(runs) | referenced(client)
    old = [r for r in runs if r.started_at < horizon]
    doomed = [r.run_id for r in old if r.run_id not in kept]
    if not dry_run:
        for start in range(0, len(doomed), DELETE_BATCH):
            client.delete_ids(RUNS, doomed[start : start + DELETE_BATCH])
    pruned = _prune_files(archive, horizon.date(), kept, dry_run) if archive.is_dir() else Pruned()
    pruned.records = len(doomed)
    pruned.kept_old = sorted(r.run_id for r in old if r.run_id in kept)
    return pruned


def due(archive: Path, every: dt.timedelta, now: float) -> bool:
    """Whether the last prune (the marker's time) was `every` ago; a new archive starts the clock
    (the first prune comes `every` after), so a fresh system does no prune at its start."""
    marker = archive / MARKER
    try:
        return now - marker.stat().st_mtime >= every.total_seconds()
    except FileNotFoundError:
        mark(archive, now)
        return False


def mark(archive: Path, now: float) -> None:
    """Note that a prune ran at `now`."""
    archive.mkdir(parents=True, exist_ok=True)
    marker = archive / MARKER
    marker.touch()
    os.utime(marker, (now, now))
