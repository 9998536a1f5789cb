"""One process run, step by step, as `notebooks/process.ipynb` writes it: the notebook says *what*
is analysed (a formula, a threshold, a title), this module does *how*.

    run = ProcessRun.start(spark, client, run_id=run_id, k_min_group=5, seed=1)
    run.publish(run.describe())
    ols = run.fit_ols("math_score ~ ses + C(sex) + minority + C(sector)", cov="HC3")
    run.publish(ols, key=keys.OLS, title="Math score on SES, sex, minority and sector")
    ...
    report = run.finish()

`start` reads `cleaned` (with `schools` joined) through the db-api once: with Spark, or with pandas
in this process when given no Spark session (the engine choice, `pipeline_lib.spark.engine`, keeps
that to inputs that fit in memory; both engines give the same documents). Each `fit_*`
returns a `Fit`: the result, or a `Failure` saying why the data cannot support it (never an
exception, so one broken analysis does not stop the others). `publish` turns a fit into its
result document. `finish` adds the dashboards' documents (distributions, and the data quality
counts a thread took of `quarantine` and `cleaned` from just after the read, beside the analyses),
runs the disclosure control over everything and upserts it into `processed`.

The process notebook owns the catalog's keys (`result_keys.ANALYSIS_KEYS`) and publishes each of
them once every run, a failed analysis as a document that says why: no stale result of an earlier
run survives beside new ones. A new result is a new analysis notebook (`workbench new analysis`),
whose keys it owns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import CLEANED, SCHOOLS
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
from pipeline_lib.process.analysis.base import AnalysisError, Failure, SpecificationError
from pipeline_lib.process.analysis.distributions import distribution_documents, distribution_documents_pandas
from pipeline_lib.process.analysis.frame import NUMERIC, category_sizes
from pipeline_lib.process.analysis.sampling import stratified_sample
from pipeline_lib.process.beside import Beside
from pipeline_lib.process.disclosure import Release
from pipeline_lib.process.publication import publish
from pipeline_lib.process.quality_documents import quality_documents
from pipeline_lib.process.release_store import RELEASE_ID, previous_release, protect_run
from pipeline_lib.process.report import ProcessReport, timed
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.spark.source import read, reader_arrow_schema

# What the models and the disclosure audit import only when they run (importing this module stays
# quick for an analyst's first cell); a warm kernel imports them ahead (`runs.kernel_ahead`,
# `warm_up_code`). tests/pipeline_lib/process/test_start_imports.py keeps it complete.
WARM_IMPORTS = (
    "highspy",
    "patsy",
    "patsy.categorical",
    "scipy.optimize",
    "scipy.sparse",
    "scipy.stats",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "statsmodels.regression.linear_model",
    "statsmodels.regression.mixed_linear_model",
)

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
T = TypeVar("T")


class StartOptions(TypedDict, total=False):
    """What `ProcessRun.start` takes besides the run id, for callers that pass them on."""

    k_min_group: int
    max_model_rows: int
    seed: int
    partitions: int | None
    now: dt.datetime | None


@dataclass(frozen=True)
class Fit:
    """One analysis of a run: its kind, and its result or why there is none."""

    kind: str  # the catalog key its document is published under
    result: Any  # the analysis' result, or a `Failure`
    options: dict[str, Any] = field(default_factory=dict)  # what the notebook chose (formula, ...)

    @property
    def failed(self) -> bool:
        return isinstance(self.result, Failure)


def _attempt(analysis: str, compute: Callable[[], T]) -> T | Failure:
    """The analysis' result, or a `Failure` when the data cannot support it."""
    try:
        return compute()
    except AnalysisError as exc:
        return Failure(analysis, str(exc), specification=isinstance(exc, SpecificationError))


def read_schools(client: DbApiClient) -> pd.DataFrame:
    """The `schools` collection with the columns of `SCHOOLS_SCHEMA` (a size that is not a
    number counts as missing)."""
    found = client.scan_pandas(SCHOOLS, columns=SCHOOLS_SCHEMA.names, arrow_strings=False)
    schools = found.reindex(columns=SCHOOLS_SCHEMA.names)
    for name in ("school_id", "name", "sector"):
        schools[name] = schools[name].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    schools["size"] = pd.to_numeric(schools["size"], errors="coerce")
    # One row per school id, the first stored: ids 1224 and "1224" both read as "1224", and a
    # school twice would repeat its students in a join (both engines are given this table).
    schools = schools[schools["school_id"].notna()].drop_duplicates("school_id", keep="first")
    return schools.reset_index(drop=True)


class ProcessRun:
    """The input of one process run, read once, and the documents it publishes."""

    def __init__(
        self,
        client: DbApiClient,
        report: ProcessReport,
        stamp: descriptive_results.Stamp,
        previous: Release | None,
        students: DataFrame | pd.DataFrame | None,
        schools: pd.DataFrame,
        *,
        max_model_rows: int,
        seed: int,
        quality: Beside[list[ResultDocument]],
    ) -> None:
        """`quality`: the data quality documents, counted beside the analyses."""
        self.client, self.report, self.stamp, self.previous = client, report, stamp, previous
        self._quality = quality
        self.students, self.schools = students, schools
        self.engine = report.engine  # spark or pandas: what reads and aggregates
        self.seed = seed
        self.sampled = report.sample_size is not None
        self.published: dict[str, ResultDocument] = {}
        self.frame = pd.DataFrame()
        self.sizes: dict[str, int] = {}
        self._folds: pd.Series | Failure | None = None
        if isinstance(students, pd.DataFrame):
            with timed(report, "model frame"):
                self.frame = inputs.model_frame_pandas(students)
                self.sizes = category_sizes(self.frame)
        elif students is not None:
            with timed(report, "model frame"):
                chosen = stratified_sample(students, max_model_rows, seed) if self.sampled else students
                rows = min(report.students, max_model_rows)
                self.frame = inputs.model_frame(chosen, rows)
                self.sizes = category_sizes(self.frame)

    @classmethod
    def start(
        cls,
        spark: SparkSession | None,
        client: DbApiClient,
        *,
        run_id: str,
        k_min_group: int = 5,
        max_model_rows: int = DEFAULT_MAX_MODEL_ROWS,
        seed: int = 0,
        partitions: int | None = None,
        now: dt.datetime | None = None,
    ) -> ProcessRun:
        """Read the input: the kept release first (an unreadable one stops the run before any
        work), then `schools` and `cleaned`, once; with Spark, or with pandas when `spark` is None.
        Then the data quality counts start in a thread (`finish` takes them)."""
        if max_model_rows < 1:
            raise ValueError(f"max_model_rows must be at least 1, got {max_model_rows}")
        report = ProcessReport(run_id=run_id, engine="spark" if spark is not None else "pandas")
        with timed(report, "read"):
            previous = previous_release(client)
            # Read before the scan: every record committed up to this mark is in the input.
            report.input_high_water_mark = client.high_water_mark(CLEANED)
            # Reference data, small: read by the client, so Spark plans one data source read only.
            schools = read_schools(client)
            if spark is None:
                cleaned_rows = read_cleaned(client)
            else:
                # The scan is materialised once: every later step reads it, not the db-api again.
                cleaned = read(spark, client, CLEANED, CLEANED_SCHEMA, partitions=partitions)
                cleaned = cleaned.localCheckpoint(eager=True)
        # Which records are students of this run: repeats set aside, schools joined (timed apart
        # from the read, so the read's figure is the scan's).
        with timed(report, "input"):
            students: DataFrame | pd.DataFrame
            if spark is None:
                marked_rows = inputs.mark_pandas(cleaned_rows, schools)
                report.records_in, report.repeats_set_aside, report.without_school = inputs.counts_pandas(
                    marked_rows
                )
                students = inputs.students_pandas(marked_rows)
            else:
                school_rows = spark.createDataFrame(
                    schools.astype(object).where(schools.notna(), None), SCHOOLS_SCHEMA
                )
                # Materialised too: its window would otherwise run again for every action.
                marked = inputs.mark(cleaned, school_rows).localCheckpoint(eager=True)
                report.records_in, report.repeats_set_aside, report.without_school = inputs.counts(marked)
                students = inputs.students(marked)
            report.students = report.records_in - report.repeats_set_aside - report.without_school
        sampled = report.students > max_model_rows
        if sampled and spark is None:
            raise ValueError(
                f"{report.students:,} students are more than max_model_rows ({max_model_rows:,}): the "
                "pandas engine holds every student in memory; use engine spark, which samples for the models"
            )
        report.sample_size = max_model_rows if sampled else None
        report.model_engine = mllib.ENGINE if sampled else "scikit-learn"
        stamp = descriptive_results.Stamp(
            run_id=run_id,
            computed_at=(now or dt.datetime.now(dt.UTC)),
            n_input=report.students,
            input_high_water_mark=report.input_high_water_mark,
            k_min_group=k_min_group,
            seed=seed,
            sample_size=report.sample_size,
        )
        # The db-api decodes both collections on the other core while this kernel fits the models,
        # so `finish` does not wait for the scans (0.4 s at 20,000 records). They start after the
        # read and count what the collections hold then (not bounded by its high-water mark).
        quality = Beside(
            lambda: quality_documents(client, run_id=run_id, computed_at=stamp.computed_at), "data quality"
        )
        return cls(
            client,
            report,
            stamp,
            previous,
            students if report.students else None,
            schools,
            max_model_rows=max_model_rows,
            seed=seed,
            quality=quality,
        )

    def _input(self) -> DataFrame:
        """The students as Spark (a fit is computed only when there are some)."""
        assert self.students is not None and not isinstance(self.students, pd.DataFrame)
        return self.students

    # -- analyses: each returns a Fit (the notebook says what; these say how) -------------------

    def _fit(self, kind: str, step: str, compute: Callable[[], Any], **options: Any) -> Fit:
        with timed(self.report, step):
            if self.students is None:
                return Fit(kind, Failure("all", "there are no cleaned students of known schools to analyse"))
            return Fit(kind, _attempt(kind, compute), options)

    def describe(self) -> Fit:
        """Per group (everyone, sector, sex, minority, school) and numeric field: n, mean, SD and
        quartiles (every student: the sample, when there is one, is for the models only)."""

        def compute() -> list[ResultDocument]:
            k = self.stamp.k_min_group
            if isinstance(self.students, pd.DataFrame):
                tables = descriptives.describe_pandas(self.students, k)
            else:
                in_memory = None if self.sampled else self.frame
                tables = descriptives.describe(self._input(), k, in_memory=in_memory)
            return descriptive_results.descriptives_documents(
                tables, self.stamp, self.schools, engine=self.engine
            )

        return self._fit("descriptives", "descriptives", compute)

    def correlate(self) -> Fit:
        """Pearson correlations of every pair of numeric fields, with confidence intervals."""

        def compute() -> pd.DataFrame:
            if isinstance(self.students, pd.DataFrame):
                return correlations.correlate_pandas(self.students)
            return correlations.correlate(self._input())

        return self._fit(keys.CORRELATIONS, "correlations", compute)

    def fit_ols(self, formula: str = ols.DEFAULT_FORMULA, *, cov: str = "HC3") -> Fit:
        """OLS of `formula` (patsy's syntax: `C(x)` for a category, `a:b` an interaction) with `cov`
        standard errors (HC3 robust by default; `nonrobust` for the classical ones)."""
        return self._fit(
            keys.OLS, "ols", lambda: ols.fit_ols(self.frame, formula, cov=cov), formula=formula, cov=cov
        )

    def fit_null_model(self) -> Fit:
        """The random-intercept model of math scores by school: the share of variance between schools."""
        return self._fit(keys.MIXEDLM_NULL, "mixedlm null", lambda: multilevel.fit_null(self.frame))

    def fit_school_effects(
        self,
        formula: str = multilevel.SCHOOL_EFFECTS_FORMULA,
        *,
        random_slope: str = multilevel.RANDOM_SLOPE,
    ) -> Fit:
        """The fixed effects of `formula` (patsy's syntax; `mean_ses` is the school's mean SES and
        `cses` a student's SES minus it) with a random intercept and `random_slope` slope by school."""
        return self._fit(
            keys.MIXEDLM_SCHOOL_EFFECTS,
            "mixedlm school effects",
            lambda: multilevel.fit_school_effects(self.frame, formula, random_slope=random_slope),
            formula=formula,
            random_slope=random_slope,
        )

    def classify_at_risk(self, *, quantile: float = 0.25) -> Fit:
        """Which students score in the bottom `quantile` of math, validated on unseen schools."""
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be between 0 and 1, got {quantile}")

        def compute() -> Any:
            folds = self._school_folds()
            if isinstance(folds, Failure):
                raise AnalysisError(folds.reason)
            if self.sampled:
                return mllib.classify(self._input(), folds, quantile=quantile, seed=self.seed)
            return classification.classify(self.frame, folds, quantile=quantile, seed=self.seed)

        return self._fit(keys.AT_RISK, "classification", compute, quantile=quantile)

    def predict_scores(self) -> Fit:
        """Math scores predicted from the student and school fields, validated on unseen schools."""

        def compute() -> Any:
            folds = self._school_folds()
            if isinstance(folds, Failure):
                raise AnalysisError(folds.reason)
            if self.sampled:
                return mllib.regress(self._input(), folds)
            return regression.regress(self.frame, folds)

        return self._fit(keys.PREDICTION, "regression", compute)

    def _school_folds(self) -> pd.Series | Failure:
        """The school-grouped folds, drawn once per run so both prediction models share them."""
        if self._folds is None:

            def folds() -> pd.Series:
                counts = (
                    mllib.school_counts(self._input())
                    if self.sampled
                    else self.frame["school_id"].value_counts()
                )
                return cv.assign_folds(counts, cv.n_folds(len(counts)), self.seed)

            self._folds = _attempt("folds", folds)
        return self._folds

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, fit: Fit, *, key: str | None = None, title: str | None = None) -> list[ResultDocument]:
        """The fit's documents (one, or one per scope for `describe`), kept for `finish`; `title`
        replaces the catalog's. A failed fit publishes a document that says why."""
        key = key or fit.kind
        if key != fit.kind:
            raise ValueError(
                f"a {fit.kind} fit is published under {fit.kind!r}, not {key!r}; a new result belongs in "
                f"an analysis notebook (`workbench new analysis NAME`), under its own keys"
            )
        docs = self._documents(fit)
        if title:
            docs = [d.model_copy(update={"title": title}) for d in docs]
        for doc in docs:
            if doc.key in self.published:
                raise ValueError(f"{doc.key!r} is published twice in this run; publish each result once")
            self.published[doc.key] = doc
            if isinstance(fit.result, Failure) and fit.result.specification:
                self.report.specification_errors[doc.key] = fit.result.reason
        return docs

    def _documents(self, fit: Fit) -> list[ResultDocument]:
        stamp, result, sampled = self.stamp, fit.result, self.sampled
        engine = self.report.model_engine
        if self.students is None:  # nothing to analyse: every document of the fit says so
            scoped = [k for k in keys.ANALYSIS_KEYS if k.startswith("descriptives:")]
            return [
                descriptive_results.failure_document(k, stamp, result, engine="none")
                for k in (scoped if fit.kind == "descriptives" else [fit.kind])
            ]
        if fit.kind == "descriptives":
            if isinstance(result, Failure):
                return [
                    descriptive_results.failure_document(k, stamp, result, engine=self.engine)
                    for k in keys.ANALYSIS_KEYS
                    if k.startswith("descriptives:")
                ]
            return list(result)
        if fit.kind == keys.CORRELATIONS:
            if isinstance(result, Failure):
                return [descriptive_results.failure_document(fit.kind, stamp, result, engine=self.engine)]
            return [descriptive_results.correlations_document(result, stamp, engine=self.engine)]
        if fit.kind == keys.OLS:
            formula = fit.options.get("formula")
            return [model_results.ols_document(result, stamp, self.sizes, sampled=sampled, formula=formula)]
        if fit.kind == keys.MIXEDLM_NULL:
            return [model_results.null_model_document(result, stamp, sampled=sampled)]
        if fit.kind == keys.MIXEDLM_SCHOOL_EFFECTS:
            return [model_results.school_effects_document(result, stamp, self.sizes, sampled=sampled)]
        if fit.kind == keys.AT_RISK:
            return [model_results.classification_document(result, stamp, engine=engine, seed=self.seed)]
        if fit.kind == keys.PREDICTION:
            return [model_results.regression_document(result, stamp, engine=engine, seed=self.seed)]
        raise ValueError(f"no documents for a fit of kind {fit.kind!r}")

    # -- the end of the run ----------------------------------------------------------------------

    def finish(
        self,
        *,
        write: bool = True,
        k_quantiles: int | None = None,
        protection_ratio: float | None = None,
    ) -> ProcessReport:
        """Check that every catalog key was published, add the dashboards' documents, protect the
        public views and (unless not `write`) upsert everything into `processed`, then the release."""
        missing = [k for k in keys.ANALYSIS_KEYS if k not in self.published]
        extra = sorted(set(self.published) - set(keys.ANALYSIS_KEYS))
        if missing or extra:  # a stale result of an earlier run would otherwise stay beside new ones
            raise RuntimeError(
                "the process notebook publishes each result of result_keys.ANALYSIS_KEYS once per run; "
                + (f"not published: {', '.join(missing)}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"not in the catalog: {', '.join(extra)}" if extra else "")
            )
        report, stamp = self.report, self.stamp
        report.documents = [self.published[k] for k in keys.ANALYSIS_KEYS]
        if self.students is not None:
            with timed(report, "distributions"):
                documents = (
                    distribution_documents_pandas
                    if isinstance(self.students, pd.DataFrame)
                    else distribution_documents
                )
                report.dashboard_documents += documents(
                    self.students, run_id=report.run_id, computed_at=stamp.computed_at
                )
        with timed(report, "data quality"):  # what is left of it to wait for
            try:
                quality = self._quality.result()
            except Exception as exc:  # the db-api away for a moment during the fits: counted again now
                log.warning("data quality counts failed beside the analyses (%s); counting again", exc)
                quality = quality_documents(self.client, run_id=report.run_id, computed_at=stamp.computed_at)
            report.dashboard_documents += quality
        with timed(report, "disclosure"):
            release = protect_run(
                self.previous,
                report,
                k=stamp.k_min_group,
                k_quantiles=k_quantiles,
                ratio=protection_ratio,
                now=stamp.computed_at,
            )
        with timed(report, "write"):
            if write:
                published = [*report.documents, *report.dashboard_documents]
                publish(self.client, RELEASE_ID, published, release.to_dict())  # all or nothing
                report.results_written = len(report.documents) + len(report.dashboard_documents)
        return report


def read_cleaned(client: DbApiClient) -> pd.DataFrame:
    """`cleaned` with the columns and types of `CLEANED_SCHEMA`, as the Spark read gives them."""
    schema = reader_arrow_schema(CLEANED_SCHEMA)
    table = client.scan(CLEANED, columns=schema.names, schema=schema).select(schema.names)
    frame = table.to_pandas()
    for name in ("submission_id", "received_at", "school_id", "student_ref", "sex", "minority"):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def publish_default(run: ProcessRun, *, at_risk_quantile: float = 0.25) -> None:
    """The catalog's analyses as shipped: what `notebooks/process.ipynb` writes out cell by cell."""
    run.publish(run.describe())
    run.publish(run.correlate())
    run.publish(run.fit_ols(), key=keys.OLS)
    run.publish(run.fit_null_model())
    run.publish(run.fit_school_effects())
    run.publish(run.classify_at_risk(quantile=at_risk_quantile))
    run.publish(run.predict_scores())


__all__: Sequence[str] = (
    "CLEANED_SCHEMA",
    "DEFAULT_MAX_MODEL_ROWS",
    "SCHOOLS_SCHEMA",
    "Fit",
    "ProcessRun",
    "publish_default",
    "read_cleaned",
    "read_schools",
)
