"""What one process run reports: its counts, its documents, the time of each step and the
disclosure audit's findings (the notebook shows it; the run record keeps its counts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipeline_lib.process.analysis.base import SpecificationError
from pipeline_lib.process.results import ResultDocument

log = logging.getLogger(__name__)

# The counts of a `ProcessReport` its run record keeps.
COUNTS = (
    "records_in",
    "students",
    "repeats_set_aside",
    "without_school",
    "results_written",
    "results_failed",
)


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
    engine: str = "spark"  # what read and aggregated the input: spark or pandas
    documents: list[ResultDocument] = field(default_factory=list)
    # Distributions and data quality: drawn by the dashboards, not part of the analysis report.
    dashboard_documents: list[ResultDocument] = field(default_factory=list)
    results_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # The disclosure audit: its solver time, its failures (analyst-only detail), withheld documents.
    audit_seconds: float = 0.0
    audit_failures: list[str] = field(default_factory=list)
    withheld: dict[str, list[str]] = field(default_factory=dict)
    # Analyses the notebook's own specification broke (a formula naming no column, ...): key -> why.
    specification_errors: dict[str, str] = field(default_factory=dict)

    @property
    def results_failed(self) -> int:
        return sum(d.status == "failed" for d in self.documents)

    def check_specification(self) -> None:
        """Fail the run (its documents are stored by now, each saying why) when the notebook's
        specification broke an analysis: only an edit of the notebook can mend it."""
        if self.specification_errors:
            broken = "; ".join(f"{key}: {why}" for key, why in sorted(self.specification_errors.items()))
            raise SpecificationError(f"the notebook's specification is broken ({broken}); edit it and rerun")

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
            f"Run `{self.run_id}`, {self.engine} engine: {self.records_in:,} cleaned records in "
            f"(up to high-water mark {self.input_high_water_mark:,}), {self.students:,} students analysed "
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
def timed(report: ProcessReport, step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.seconds[step] = time.perf_counter() - started
        log.info(
            "process step done",
            extra={"run_id": report.run_id, "step": step, "seconds": round(report.seconds[step], 2)},
        )
