"""One process run: read `cleaned` (with `schools` joined) through the db-api with Spark, run
the analyses of `pipeline_lib.process.analysis`, and upsert one document per result into `processed`.

Every run writes the same fixed set of keys (`result_keys.ANALYSIS_KEYS`), a failed analysis as a
document that says why, so no stale result of an earlier run survives beside new ones. Documents are
written only after every analysis has finished: a run that dies leaves the previous results
whole. The same input and seed give the same documents, apart from `run_id` and `computed_at`.
`notebooks/process.ipynb` calls `run_process` and shows the report.

Before writing, the disclosure control (`pipeline_lib.process.disclosure`, docs/privacy.md)
protects every document's public view: binned tables list every bin, and each document carries
its `protection` (hidden rows and why, quantile rows, held rows, withholding). The release it
publishes is kept, analyst-only, in `releases` under `RELEASE_ID` for the next run to difference against.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import CLEANED, PROCESSED, RELEASES, SCHOOLS
from pipeline_lib.process import inputs
from pipeline_lib.process.analysis import (
    classification,
    correlations,
    cv,
    descriptive_results,
    descriptives,
    mllib,
    model_results,
    multilevel,
    ols,
    regression,
)
from pipeline_lib.process.analysis.base import AnalysisError, Failure
from pipeline_lib.process.analysis.distributions import distribution_documents
from pipeline_lib.process.analysis.frame import NUMERIC, category_sizes
from pipeline_lib.process.analysis.sampling import stratified_sample
from pipeline_lib.process.disclosure import Release, protect
from pipeline_lib.process.disclosure.bins import with_empty_bins
from pipeline_lib.process.disclosure.documents import drop_rows, hold_documents
from pipeline_lib.process.disclosure.stored import annotate, public_release
from pipeline_lib.process.quality_documents import quality_documents
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.settings import get_settings
from pipeline_lib.spark.source import read

log = logging.getLogger(__name__)

DEFAULT_MAX_MODEL_ROWS = 2_000_000
CLEANED_SCHEMA = StructType(
    [
        StructField(name, StringType())
        for name in ("submission_id", "received_at", "school_id", "student_ref", "sex")
    ]
    + [StructField("minority", BooleanType())]
    + [StructField(name, DoubleType()) for name in NUMERIC]
)
SCHOOLS_SCHEMA = StructType(
    [StructField(name, StringType()) for name in ("school_id", "name", "sector")]
    + [StructField("size", DoubleType())]
)
# The counts of a `ProcessReport` its run record keeps.
COUNTS = (
    "records_in",
    "students",
    "repeats_set_aside",
    "without_school",
    "results_written",
    "results_failed",
)
T = TypeVar("T")
# The published release (what public views showed, and when), in its own collection `releases`:
# analyst-only; not in `processed` (result listings stay results) nor in `runs` (run records only).
RELEASE_ID = "disclosure-release"


@dataclass
class ProcessReport:
    run_id: str
    records_in: int = 0  # cleaned records read
    students: int = 0  # analysed: one per identified student, each with a known school
    repeats_set_aside: int = 0  # earlier records of a student (same school and student number)
    without_school: int = 0  # records whose school is no longer in `schools`
    input_high_water_mark: int = 0
    sample_size: int | None = None
    model_engine: str = ""
    documents: list[ResultDocument] = field(default_factory=list)
    # Distributions and data quality: drawn by the dashboards, not part of the analysis report.
    dashboard_documents: list[ResultDocument] = field(default_factory=list)
    results_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # The disclosure audit: its solver time, its failures (analyst-only detail), withheld documents.
    audit_seconds: float = 0.0
    audit_failures: list[str] = field(default_factory=list)
    withheld: dict[str, list[str]] = field(default_factory=dict)

    @property
    def results_failed(self) -> int:
        return sum(d.status == "failed" for d in self.documents)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def summary(self) -> str:
        """The run in one sentence, for the report."""
        sampled = (
            f"; the statsmodels models used a sample of {self.sample_size:,} stratified by school"
            if self.sample_size is not None
            else ""
        )
        failed = f", {self.results_failed} of them failures" if self.results_failed else ""
        withheld = (
            f"; {len(self.withheld)} withheld from public views ({', '.join(sorted(self.withheld))})"
            if self.withheld
            else ""
        )
        return (
            f"Run `{self.run_id}`: {self.records_in:,} cleaned records in (up to high-water mark "
            f"{self.input_high_water_mark:,}), {self.students:,} students analysed "
            f"({self.repeats_set_aside:,} earlier {_record(self.repeats_set_aside)} of the same student and "
            f"{self.without_school:,} {_record(self.without_school)} of unknown schools set aside); "
            f"prediction models on "
            f"{self.model_engine}{sampled}; "
            f"{self.results_written} results written{failed}; disclosure audit "
            f"{self.audit_seconds:.1f} s, {len(self.audit_failures)} "
            f"{'failure' if len(self.audit_failures) == 1 else 'failures'}{withheld}."
        )


def _record(n: int) -> str:
    return "record" if n == 1 else "records"


@contextmanager
def _timed(report: ProcessReport, step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.seconds[step] = time.perf_counter() - started
        log.info(
            "process step done",
            extra={"run_id": report.run_id, "step": step, "seconds": round(report.seconds[step], 2)},
        )


def _attempt(analysis: str, compute: Callable[[], T]) -> T | Failure:
    """The analysis' result, or a `Failure` when the data cannot support it."""
    try:
        return compute()
    except AnalysisError as exc:
        return Failure(analysis, str(exc))


def read_schools(client: DbApiClient) -> pd.DataFrame:
    """The `schools` collection with the columns of `SCHOOLS_SCHEMA` (a size that is not a
    number counts as missing)."""
    found = client.scan_pandas(SCHOOLS, columns=SCHOOLS_SCHEMA.names, arrow_strings=False)
    schools = found.reindex(columns=SCHOOLS_SCHEMA.names)
    for name in ("school_id", "name", "sector"):
        schools[name] = schools[name].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    schools["size"] = pd.to_numeric(schools["size"], errors="coerce")
    return schools


def run_process(
    spark: SparkSession,
    client: DbApiClient,
    *,
    run_id: str,
    k_min_group: int = 5,
    k_quantiles: int | None = None,
    protection_ratio: float | None = None,
    max_model_rows: int = DEFAULT_MAX_MODEL_ROWS,
    seed: int = 0,
    at_risk_quantile: float = 0.25,
    partitions: int | None = None,
    write: bool = True,
    now: dt.datetime | None = None,
) -> ProcessReport:
    """Analyse `cleaned`, protect the public views and (unless not `write`) upsert the documents
    into `processed`. `k_quantiles` and `protection_ratio` default to the settings' (k_quantiles:
    twice `k_min_group` unless set)."""
    if max_model_rows < 1:
        raise ValueError(f"max_model_rows must be at least 1, got {max_model_rows}")
    report = ProcessReport(run_id=run_id)
    with _timed(report, "read"):
        previous = previous_release(client)  # first: an unreadable one stops the run before any work
        # Read before the scan: every record committed up to this mark is in the input.
        report.input_high_water_mark = client.high_water_mark(CLEANED)
        # Reference data, small: read by the client, so Spark plans one data source read only.
        schools = read_schools(client)
        school_rows = spark.createDataFrame(
            schools.astype(object).where(schools.notna(), None), SCHOOLS_SCHEMA
        )
        # The scan is materialised once (every later step reads it, not the db-api again), and
        # so is the marked input (its window would otherwise run again for every action).
        cleaned = read(spark, client, CLEANED, CLEANED_SCHEMA, partitions=partitions)
        cleaned = cleaned.localCheckpoint(eager=True)
        marked = inputs.mark(cleaned, school_rows).localCheckpoint(eager=True)
        report.records_in, report.repeats_set_aside, report.without_school = inputs.counts(marked)
        report.students = report.records_in - report.repeats_set_aside - report.without_school
        students = inputs.students(marked)

    n = report.students
    sampled = n > max_model_rows
    report.sample_size = max_model_rows if sampled else None
    report.model_engine = mllib.ENGINE if sampled else "scikit-learn"
    stamp = descriptive_results.Stamp(
        run_id=run_id,
        computed_at=(now or dt.datetime.now(dt.UTC)),
        n_input=n,
        input_high_water_mark=report.input_high_water_mark,
        k_min_group=k_min_group,
        seed=seed,
        sample_size=report.sample_size,
    )
    docs: list[ResultDocument] = []
    if n == 0:
        empty = Failure("all", "there are no cleaned students of known schools to analyse")
        docs = [
            descriptive_results.failure_document(key, stamp, empty, engine="none")
            for key in keys.ANALYSIS_KEYS
        ]
    else:
        docs = _analyse(
            students,
            schools,
            stamp,
            report,
            sampled=sampled,
            max_model_rows=max_model_rows,
            seed=seed,
            quantile=at_risk_quantile,
        )
    differing = set(keys.ANALYSIS_KEYS) ^ {d.key for d in docs}
    if differing:  # a stale result of an earlier run would otherwise stay beside the new ones
        raise RuntimeError(
            f"a run must write exactly the keys of result_keys.ANALYSIS_KEYS; differs in {sorted(differing)}"
        )
    report.documents = docs
    # What the dashboards draw besides the analyses: distributions and the data's quality.
    if n > 0:
        with _timed(report, "distributions"):
            report.dashboard_documents += distribution_documents(
                students, run_id=run_id, computed_at=stamp.computed_at
            )
    with _timed(report, "data quality"):
        report.dashboard_documents += quality_documents(client, run_id=run_id, computed_at=stamp.computed_at)

    with _timed(report, "disclosure"):
        release = _protect(
            previous,
            report,
            k=k_min_group,
            k_quantiles=k_quantiles,
            ratio=protection_ratio,
            now=stamp.computed_at,
        )
    with _timed(report, "write"):
        if write:
            for doc in [*report.documents, *report.dashboard_documents]:
                client.put_document(PROCESSED, doc.key, doc.model_dump(mode="json"))
            # After the documents: a run that dies before leaves the previous release beside them.
            client.put_document(RELEASES, RELEASE_ID, release.to_dict())
            report.results_written = len(report.documents) + len(report.dashboard_documents)
    return report


class UnreadableRelease(RuntimeError):
    """The kept release cannot be read: publishing without it could undo its protection."""


def previous_release(client: DbApiClient) -> Release | None:
    """The release the previous run published, if any. One that cannot be read stops the run before
    anything is written (fail closed): without it, new figures could be differenced against the
    ones the public already saw. Public views keep showing the previous results meanwhile."""
    raw = client.get_document(RELEASES, RELEASE_ID)
    if raw is None:
        return None
    try:
        return Release.from_dict(raw)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UnreadableRelease(
            f"the published release (collection {RELEASES!r}, document {RELEASE_ID!r}) cannot be read "
            f"({type(exc).__name__}: {exc}); nothing was written. Restore it, or remove it with "
            f"`workbench release reset` to start a new release (earlier public figures can then be "
            f"differenced against the new ones)"
        ) from exc


def _protect(
    previous: Release | None,
    report: ProcessReport,
    *,
    k: int,
    k_quantiles: int | None,
    ratio: float | None,
    now: dt.datetime,
) -> Release:
    """Set each document's protection (bins completed first), and the audit's findings on the
    report; the release to keep for the next run."""
    settings = get_settings()
    quantile_min = k_quantiles or settings.k_quantiles or 2 * k
    documents = [with_empty_bins(d) for d in [*report.documents, *report.dashboard_documents]]
    protection = protect(
        documents,
        k=k,
        k_quantiles=max(quantile_min, k),
        ratio=ratio if ratio is not None else settings.protection_ratio,
        previous=previous,
        now=now,
    )
    holding = hold_documents(annotate(documents, protection, k=k), protection.release, previous, k=k, now=now)
    analyses = {d.key for d in report.documents}
    report.documents = [d for d in holding.documents if d.key in analyses]
    report.dashboard_documents = [d for d in holding.documents if d.key not in analyses]
    report.audit_seconds = protection.audit.seconds
    report.audit_failures = [f.reason for f in protection.audit.failures]
    report.withheld = protection.withheld()
    if report.withheld:
        log.warning(
            "documents withheld from public views: the disclosure audit failed",
            extra={"run_id": report.run_id, "withheld": sorted(report.withheld)},
        )
    return drop_rows(public_release(holding.release, report.withheld), holding.held, now=now)


def _analyse(
    students: DataFrame,
    schools: pd.DataFrame,
    stamp: descriptive_results.Stamp,
    report: ProcessReport,
    *,
    sampled: bool,
    max_model_rows: int,
    seed: int,
    quantile: float,
) -> list[ResultDocument]:
    docs: list[ResultDocument] = []
    with _timed(report, "model frame"):
        chosen = stratified_sample(students, max_model_rows, seed) if sampled else students
        frame = inputs.model_frame(chosen)
        sizes = category_sizes(frame)
    with _timed(report, "descriptives"):
        # The frame holds every student unless sampled: its quartiles then come from pandas.
        tables = descriptives.describe(students, stamp.k_min_group, in_memory=None if sampled else frame)
        docs += descriptive_results.descriptives_documents(tables, stamp, schools)
    with _timed(report, "correlations"):
        docs.append(descriptive_results.correlations_document(correlations.correlate(students), stamp))
    with _timed(report, "ols"):
        docs.append(
            model_results.ols_document(
                _attempt(keys.OLS, lambda: ols.fit_ols(frame)), stamp, sizes, sampled=sampled
            )
        )
    with _timed(report, "mixedlm null"):
        null = _attempt(keys.MIXEDLM_NULL, lambda: multilevel.fit_null(frame))
        docs.append(model_results.null_model_document(null, stamp, sampled=sampled))
    with _timed(report, "mixedlm school effects"):
        effects = _attempt(keys.MIXEDLM_SCHOOL_EFFECTS, lambda: multilevel.fit_school_effects(frame))
        docs.append(model_results.school_effects_document(effects, stamp, sizes, sampled=sampled))

    def folds() -> pd.Series:
        counts = mllib.school_counts(students) if sampled else frame["school_id"].value_counts()
        return cv.assign_folds(counts, cv.n_folds(len(counts)), seed)

    school_folds = _attempt("folds", folds)
    with _timed(report, "classification"):
        if isinstance(school_folds, Failure):
            result = Failure(keys.AT_RISK, school_folds.reason)
        elif sampled:
            result = _attempt(
                keys.AT_RISK,
                lambda: mllib.classify(students, school_folds, quantile=quantile, seed=seed),
            )
        else:
            result = _attempt(
                keys.AT_RISK,
                lambda: classification.classify(frame, school_folds, quantile=quantile, seed=seed),
            )
        docs.append(
            model_results.classification_document(result, stamp, engine=report.model_engine, seed=seed)
        )
    with _timed(report, "regression"):
        if isinstance(school_folds, Failure):
            fitted = Failure(keys.PREDICTION, school_folds.reason)
        elif sampled:
            fitted = _attempt(keys.PREDICTION, lambda: mllib.regress(students, school_folds))
        else:
            fitted = _attempt(keys.PREDICTION, lambda: regression.regress(frame, school_folds))
        docs.append(model_results.regression_document(fitted, stamp, engine=report.model_engine, seed=seed))
    return docs
