"""What one clean run reports, whichever engine cleaned: counts, timings and the summaries of
rejects and changes that the notebook shows."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# The counts of a `CleanReport` its run record keeps.
COUNTS = (
    "records_in",
    "cleaned",
    "quarantined",
    "duplicates_collapsed",
    "conflicts_flagged",
    "without_consent",
    "raw_deleted",
)


@dataclass
class CleanReport:
    run_id: str
    dry_run: bool
    engine: str = "spark"  # which engine cleaned: spark or pandas
    records_in: int = 0
    cleaned: int = 0
    quarantined: int = 0
    duplicates_collapsed: int = 0
    conflicts_flagged: int = 0
    without_consent: int = 0
    raw_deleted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    reasons: pd.DataFrame = field(default_factory=pd.DataFrame)
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def summary(self) -> str:
        """The run in one sentence, for the report."""
        share = self.cleaned / self.records_in if self.records_in else 0
        dry = " (dry run: nothing committed)" if self.dry_run else ""
        return (
            f"Run `{self.run_id}`{dry}, {self.engine} engine: {self.records_in:,} raw records in, "
            f"{self.cleaned:,} cleaned ({share:.0%}), {self.quarantined:,} quarantined, "
            f"{self.duplicates_collapsed:,} exact resubmissions collapsed, "
            f"{self.conflicts_flagged:,} records of students with differing answers flagged, "
            f"{self.without_consent:,} without consent discarded; {self.raw_deleted:,} raw records removed."
        )
