"""What every analysis shares: the error for data that cannot support it, and the record of a
failed fit, so a failure is stored as a clear document rather than as a result."""

from __future__ import annotations

from dataclasses import dataclass, field

# The normal quantile of a two-sided 95% interval (scipy.stats.norm.ppf(0.975)), for every
# confidence interval the analyses compute and the views draw.
Z_95 = 1.959963984540054


class AnalysisError(Exception):
    """The data cannot support this analysis (too few rows, schools or classes); the message
    says what was missing, in words a person can act on."""


class SpecificationError(AnalysisError):
    """The analysis as written cannot be fitted on any data: a formula naming an unknown column,
    one that cannot be read, terms that repeat each other, an unknown option. The analyst must
    edit the notebook; the run that meets one fails (after storing a document that says why)."""


@dataclass(frozen=True)
class Attempt:
    """One try at fitting a model: the optimizer, whether it gave a usable fit, and why not."""

    optimizer: str
    converged: bool
    seconds: float
    message: str


@dataclass(frozen=True)
class Failure:
    """An analysis that produced no result; `reason` is stored as the document's error."""

    analysis: str
    reason: str
    attempts: tuple[Attempt, ...] = ()
    n_students: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    specification: bool = False  # the notebook's specification is at fault, not the data
