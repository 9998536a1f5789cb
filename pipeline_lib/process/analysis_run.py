"""One run of an analysis notebook (`notebooks/analyses/NAME.ipynb`): the students the process run
analyses, and the documents the notebook publishes under its own keys `NAME:*`.

    run = AnalysisRun.start(spark, client, name="reading", run_id=run_id, k_min_group=5)
    means = run.students.groupby("sector", observed=True)["math_score"].agg(n="count", mean="mean")
    run.publish_table(means.reset_index(), key="reading:by_sector", title="...", labels=["sector"])
    run.publish(run.fit_ols("math_score ~ ses + C(sector)"), key="reading:ols", title="...")
    report = run.finish()

Publishing goes through the same disclosure control as the process run (docs/privacy.md), and
fails closed:

- Every public table names its group-size column (`n`): a group under k is hidden.
- The new documents are protected together with the documents already in `processed`, whose
  figures the public has seen. Cells of the new documents may be hidden to protect others; if
  that is not enough (the audit fails), or if protecting them would need a figure that is
  already public hidden, the new documents are withheld and say so.
- Between runs each document is held whole, showing what it showed before, until its students
  moved by at least k (`disclosure.documents`); its public versions are kept, analyst-only, in
  `releases` under `analysis-NAME`.

Each run writes every key it published and removes the notebook's keys it no longer publishes,
so no stale result survives. The keys of the process run and the dashboards are not the
notebook's to write.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Unpack

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import PROCESSED, RELEASES
from pipeline_lib.process.analysis import descriptive_results, model_results
from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.process.disclosure import Protection, Release, RowRef, protect
from pipeline_lib.process.disclosure.audit import unchanged
from pipeline_lib.process.disclosure.bins import with_empty_bins
from pipeline_lib.process.disclosure.documents import hold_documents
from pipeline_lib.process.disclosure.stored import annotate
from pipeline_lib.process.publication import pending_release, publish
from pipeline_lib.process.release_store import RELEASE_ID, previous_release
from pipeline_lib.process.report import ProcessReport, timed
from pipeline_lib.process.results import ChartSpec, DocumentProtection, ResultDocument
from pipeline_lib.process.run import Fit, ProcessRun, StartOptions
from pipeline_lib.settings import get_settings

NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
# Families of keys other writers own: the process run's analyses and the dashboards' documents.
RESERVED = frozenset(
    {key.partition(":")[0] for key in keys.ANALYSIS_KEYS}
    | {"distribution", "quality", "relation", "all", "clean", "process"}
)
MAX_DOCUMENTS = 200  # per notebook run: far beyond what a page lists
MAX_ROWS = 10_000  # per public table: a table, not a data dump
WITHHELD_BY_LINK = (
    "publishing it would need a figure that is already public hidden (its groups and earlier results "
    "together would tell a small group's figures)"
)


class AnalysisNameError(ValueError):
    """A notebook name that cannot own result keys."""


def check_name(name: str) -> str:
    """`name` if an analysis notebook may be called so (its keys are `name:*`)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise AnalysisNameError(
            f"an analysis name is a lower-case letter, then up to 39 letters, digits or _; got {name!r}"
        )
    if name in RESERVED:
        raise AnalysisNameError(f"{name!r} is taken by the pipeline's own results; choose another name")
    return name


class UnfinishedPublication(RuntimeError):
    """The process run's publication is cut off: the documents already public are a mix of two."""


def release_id(name: str) -> str:
    """Where the public versions of notebook `name`'s documents are kept (collection `releases`)."""
    return f"analysis-{name}"


class AnalysisRun:
    """The input of one analysis notebook run, read as the process run reads it, and its documents."""

    def __init__(self, name: str, inner: ProcessRun) -> None:
        self.name, self.inner = name, inner
        self.published: dict[str, ResultDocument] = {}

    @classmethod
    def start(
        cls,
        spark: SparkSession | None,
        client: DbApiClient,
        *,
        name: str,
        run_id: str,
        **options: Unpack[StartOptions],
    ) -> AnalysisRun:
        """Read `cleaned` with `schools` joined, once, as the process run does (`options` as
        `ProcessRun.start` takes them): one row per student of a known school."""
        check_name(name)  # before any reading
        return cls(name, ProcessRun.start(spark, client, run_id=run_id, **options))

    @property
    def students(self) -> pd.DataFrame:
        """The students as pandas (a sample stratified by school above `max_model_rows`)."""
        return self.inner.frame

    @property
    def spark_students(self) -> DataFrame | None:
        """Every student as a Spark DataFrame, for data too large for pandas (None: no students).
        Only a run on the Spark engine has one (`engine = "spark"` in the parameters)."""
        students = self.inner.students
        if isinstance(students, pd.DataFrame):
            raise ValueError(
                "this run uses the pandas engine, which has no Spark DataFrame: use `run.students`, or set "
                'engine = "spark" in the parameters cell'
            )
        return students

    @property
    def report(self) -> ProcessReport:
        return self.inner.report

    def fit_ols(self, formula: str, *, cov: str = "HC3") -> Fit:
        """OLS of `formula` (patsy's syntax) with `cov` standard errors, as the process notebook's."""
        return self.inner.fit_ols(formula, cov=cov)

    # -- publishing ------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        if not key.startswith(f"{self.name}:") or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", key):
            raise ValueError(
                f"this notebook publishes under {self.name}:<what> (letters, digits, _ . : -), not {key!r}"
            )
        if key in self.published:
            raise ValueError(f"{key!r} is published twice in this run; publish each result once")
        if len(self.published) >= MAX_DOCUMENTS:
            raise ValueError(f"a run publishes at most {MAX_DOCUMENTS} documents")
        return key

    def publish(self, fit: Fit, *, key: str, title: str) -> ResultDocument:
        """An OLS fit's document under `key`; a failed fit publishes a document that says why."""
        key = self._key(key)
        if fit.kind != keys.OLS:
            raise ValueError(
                f"publish takes a fit_ols result; publish tables with publish_table ({fit.kind!r})"
            )
        doc = model_results.ols_document(
            fit.result,
            self.inner.stamp,
            self.inner.sizes,
            sampled=self.inner.sampled,
            key=key,
            title=title,
            formula=fit.options.get("formula"),
        )
        if isinstance(fit.result, Failure) and fit.result.specification:
            self.report.specification_errors[key] = fit.result.reason
        self.published[key] = doc
        return doc

    def publish_table(
        self,
        table: pd.DataFrame,
        *,
        key: str,
        title: str,
        n: str = "n",
        labels: Sequence[str] = (),
        summary: str = "",
        chart: tuple[str, str] | None = None,
    ) -> ResultDocument:
        """One table of groups of students under `key`. Column `n` counts each row's students
        (public views hide a row under k); `labels` name each row's group (shown even when its
        figures are hidden); `chart` = (label column, value column) draws a bar chart."""
        key = self._key(key)
        frame = table.reset_index(drop=True)
        if n not in frame.columns:
            columns = ", ".join(map(str, frame.columns))
            raise ValueError(
                f"{key}: the table has no column {n!r} counting each row's students; every public table "
                f"needs one, so that groups under k can be hidden (columns: {columns})"
            )
        counts = pd.to_numeric(frame[n], errors="coerce")
        if counts.isna().any() or (counts < 0).any() or (counts != counts.round()).any():
            raise ValueError(f"{key}: column {n!r} must hold whole numbers of students, none missing")
        if len(frame) > MAX_ROWS:
            raise ValueError(f"{key}: a published table has at most {MAX_ROWS:,} rows, not {len(frame):,}")
        missing = [c for c in [*labels, *(chart or ())] if c not in frame.columns]
        if missing:
            raise ValueError(f"{key}: no column {', '.join(map(repr, missing))} in the table")
        if chart is not None and not pd.api.types.is_numeric_dtype(frame[chart[1]]):
            raise ValueError(f"{key}: the chart's values, column {chart[1]!r}, must be numbers")
        frame[n] = counts.astype("int64")
        doc = descriptive_results.document(
            key,
            self.inner.stamp,
            summary=summary,
            tables=[descriptive_results.table("table", title, frame, size=n, labels=list(labels))],
            engine="pandas",
            chart=ChartSpec(table="table", x=chart[0], y=chart[1], title=title) if chart else None,
            sampled=self.inner.sampled,
            title=title,
        )
        self.published[key] = doc
        return doc

    # -- the end of the run ----------------------------------------------------------------------

    def finish(self, *, write: bool = True) -> ProcessReport:
        """Protect the notebook's documents (jointly with what is already public), hold those whose
        students moved by fewer than k, write them, remove the notebook's keys it no longer
        publishes, and keep their public versions for the next run."""
        client, report, stamp = self.inner.client, self.report, self.inner.stamp
        k, now = stamp.k_min_group, stamp.computed_at
        settings = get_settings()
        if write and pending_release(client, RELEASE_ID) is not None:
            # `processed` holds part of the process run's last publication, whose release is staged:
            # protected against what the public is about to see replaced, these could give it away.
            raise UnfinishedPublication(
                "the process run's last publication was cut off and is not finished yet (the next "
                "process run finishes it): nothing of this notebook is published until then"
            )
        with timed(report, "disclosure"):
            stored, own_keys = _stored(client, self.name)
            new = [with_empty_bins(d) for d in self.published.values()]
            ratio = settings.protection_ratio
            k_quantiles = max(settings.k_quantiles or 2 * k, k)
            published = previous_release(client)
            protection = protect(
                [*stored, *new], k=k, k_quantiles=k_quantiles, ratio=ratio, previous=published, now=now
            )
            reasons = [f.reason for f in protection.audit.failures]
            if _needs_public_hidden(protection.row_reasons(), stored):
                reasons.append(WITHHELD_BY_LINK)
            annotated = _shown_where_unchanged(annotate(new, protection, k=k), protection, published)
            if reasons:  # fail closed: none of the notebook's documents is published
                annotated = [_withheld(d, k, reasons) for d in annotated]
            previous = _own_release(client, self.name)
            holding = hold_documents(annotated, previous or Release(), previous, k=k, now=now)
            report.documents = holding.documents
            report.audit_seconds = protection.audit.seconds
            report.audit_failures = reasons
            report.withheld = {d.key: reasons for d in annotated} if reasons else {}
        with timed(report, "write"):
            if write:
                gone = [key for key in own_keys if key not in self.published]
                kept = dataclasses.replace(holding.release, cells={})
                publish(client, release_id(self.name), report.documents, kept.to_dict(), removed=gone)
                report.results_written = len(report.documents)
        return report


def _stored(client: DbApiClient, name: str) -> tuple[list[ResultDocument], list[str]]:
    """From one listing of `processed`: the documents public views show (protected by their run)
    but the notebook's own, and the keys of the notebook's own (those it stops publishing go)."""
    found, own = [], []
    for raw in client.list_documents(PROCESSED, limit=10_000):
        key = str(raw["_id"])
        if key.startswith(f"{name}:"):
            own.append(key)
            continue
        doc = ResultDocument.model_validate({k: v for k, v in raw.items() if k != "_id"})
        if doc.protection is not None:
            found.append(doc)
    return found, own


def _own_release(client: DbApiClient, name: str) -> Release | None:
    raw = pending_release(client, release_id(name)) or client.get_document(RELEASES, release_id(name))
    return Release.from_dict(raw) if raw is not None else None


def _needs_public_hidden(reasons: dict[RowRef, Any], stored: Sequence[ResultDocument]) -> bool:
    """Whether the joint protection hides a row of an already published document that its own
    protection shows: the public has seen it, so hiding it now protects nothing."""
    by_key = {d.key: d for d in stored}
    for ref in reasons:
        doc = by_key.get(ref.key)
        if doc is None or doc.protection is None or doc.protection.held or doc.protection.withheld:
            continue  # the notebook's own, or a document whose figures public views do not show
        own = doc.protection.tables.get(ref.table)
        if own is None or ref.row not in own.hidden:
            table = next((t for t in doc.tables if t.name == ref.table), None)
            if (
                table is not None
                and table.audience == "public"
                and not _small(table, ref.row, doc.protection)
            ):
                return True
    return False


def _small(table: Any, row: int, protection: DocumentProtection | None) -> bool:
    """A row public views hide anyway: fewer than k students."""
    if not table.group_size_column or protection is None:
        return False
    value = table.rows[row][table.columns.index(table.group_size_column)]
    return isinstance(value, int | float) and value < protection.k


def _shown_where_unchanged(
    docs: list[ResultDocument], protection: Protection, published: Release | None
) -> list[ResultDocument]:
    """The notebook's rows of cells the process run published, unchanged since, are shown as they
    are: they describe the very students whose figures are public (a changed cell stays held, and
    its rows, never published, hidden)."""
    if published is None:
        return docs
    layout = protection.layout
    free = {
        ref
        for ref, key in layout.row_cells.items()
        if key in protection.held
        and key in published.cells
        and unchanged(layout.cells[key], published.cells[key])
    }
    found = []
    for doc in docs:
        if doc.protection is None:
            found.append(doc)
            continue
        tables = {
            name: guard.model_copy(
                update={
                    "held": {i: row for i, row in guard.held.items() if RowRef(doc.key, name, i) not in free}
                }
            )
            for name, guard in doc.protection.tables.items()
        }
        found.append(
            doc.model_copy(update={"protection": doc.protection.model_copy(update={"tables": tables})})
        )
    return found


def _withheld(doc: ResultDocument, k: int, reasons: list[str]) -> ResultDocument:
    protection = doc.protection or DocumentProtection(k=k)
    return doc.model_copy(update={"protection": protection.model_copy(update={"withheld": list(reasons)})})
