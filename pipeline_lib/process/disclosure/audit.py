"""The audit: for every hidden cell, the interval its figures can still take given everything
published, by linear programming (HiGHS, one minimisation and one maximisation per figure).

Unknowns are the hidden cells' counts `n`, sums `s` and sums of squares `q`, and figures no row
publishes (a histogram bin's sum). Constraints, all linear:
- every margin: total = sum of parts, for `n` and, when exhaustive, `s` and `q` of each variable;
  a partial margin gives sum of parts' `n` <= total;
- the reason shown: a `small` cell has 1 <= n <= k-1, a `complementary` one n >= k;
- one student's value lies in its range [lo, hi] (the contract's, or a histogram bin's):
  lo*n <= s <= hi*n and m2*n <= q <= M2*n (m2, M2 the least and largest square in the range);
- an optional field is counted among a group's students: n(field) <= n(students);
- with a previous release: the same relations among its figures, and a figure held back moved
  by fewer than k students.

Only non-empty `small` cells (and changes of fewer than k students between releases) are
sensitive; a `complementary` cell is hidden to protect them and needs no protection of its own. A
sensitive figure fails when its interval does not reach the protection interval around its true value: a
count must stay free over `ratio` of the range 1..k-1 its reason allows (0..k-1 in a table that
lists empty groups too), centred on it where the range allows; a sum (or sum of squares) over
value -/+ `ratio` x its magnitude (at least a tenth of the field's range per student, so values
near zero are protected too), cut to what the range allows. With ratio 0.5 a lone student's score
cannot be placed closer than +-50% of itself, nor her school's size within the range 1..k-1
narrowed by more than half. The LP relaxation ignores integrality and
the bound q >= s^2/n, so it can report an interval wider than an attacker using those could
reach; see docs/privacy.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline_lib.process.disclosure.cells import Cell, CellKey, Layout, Quantity, Reason
from pipeline_lib.process.disclosure.program import TOLERANCE, Program, squares_range
from pipeline_lib.process.disclosure.releases import PublishedCell, Release

FLOOR = 0.1  # least magnitude of a sum per student, as a share of the range


@dataclass(frozen=True)
class Interval:
    """What can be known of one sensitive figure: its true value, its feasible [low, high] and
    the width it must keep."""

    cell: CellKey
    figure: str
    value: float
    low: float
    high: float
    needed_low: float  # the interval must reach down to here ...
    needed_high: float  # ... and up to here

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def ok(self) -> bool:
        slack = 1e-6 * (1 + abs(self.value))  # NaN bounds (contradicting figures) fail
        return self.low <= self.needed_low + slack and self.high >= self.needed_high - slack


@dataclass(frozen=True)
class AuditFailure:
    cell: CellKey
    reason: str


@dataclass
class AuditReport:
    intervals: list[Interval] = field(default_factory=list)
    failures: list[AuditFailure] = field(default_factory=list)
    seconds: float = 0.0
    programs: int = 0  # linear programs solved

    @property
    def passed(self) -> bool:
        return not self.failures

    def updated(self, later: AuditReport, checked: set[CellKey]) -> AuditReport:
        """This report with the cells `later` checked again replaced by its findings."""
        kept = [i for i in self.intervals if i.cell not in checked]
        return AuditReport(
            intervals=[*kept, *later.intervals],
            failures=later.failures,
            seconds=self.seconds + later.seconds,
            programs=self.programs + later.programs,
        )


def audit(
    layout: Layout,
    hidden: Mapping[CellKey, Reason],
    *,
    k: int,
    ratio: float,
    previous: Release | None = None,
    held: frozenset[CellKey] = frozenset(),
    solved: dict | None = None,
    only: set[CellKey] | None = None,
) -> AuditReport:
    """Each sensitive hidden figure's feasible interval, and the cells that fail (see module).
    `held` cells show `previous`'s figures: this run's are unknown, within k-1 students of them.
    `solved` (a dict kept between calls) reuses the intervals of components that did not change;
    `only` limits the checks to those cells (hiding more never narrows an interval)."""
    started = time.perf_counter()
    program = Program(solved)
    # A held cell that did not change shows its true figures: known, as if published now. (An
    # attacker cannot be sure of that, so this only narrows intervals: conservative, and it keeps
    # the program as small as a first release's when little changed.)
    moved = frozenset(
        c for c in held if previous is None or not unchanged(layout.cells[c], previous.cells[c])
    )
    _relations(program, layout, {**{c: "held" for c in moved}, **hidden}, k)
    report = AuditReport()
    for key in sorted(moved, key=lambda c: c.label):
        if previous is None or key in hidden:
            continue
        _held_change(program, layout.cells[key], previous.cells[key], k)
    for key in sorted((c for c, r in hidden.items() if r == "small"), key=lambda c: c.label):
        if layout.cells[key].modelled and (only is None or key in only):
            _check(report, program, layout.cells[key], k, ratio)
    for key in sorted(held, key=lambda c: c.label):
        if previous is not None and key not in hidden and (only is None or key in only):
            _check_change(report, program, layout.cells[key], previous, k, ratio)
    report.seconds = time.perf_counter() - started
    return report


def _relations(program: Program, layout: Layout, unknown: Mapping[CellKey, str], k: int) -> None:
    """Unknowns, bounds and constraints of this run's figures."""
    known: dict[tuple, float] = {}
    for key, cell in layout.cells.items():
        if not cell.modelled:
            continue
        reason = unknown.get(key)
        if reason is None:
            known[(key, "n")] = cell.n
        else:
            floor = 0 if cell.may_be_empty else 1  # a listed row shows its group has a student
            low, high = {"small": (floor, k - 1), "complementary": (k, None)}.get(reason, (0, None))
            program.unknown((key, "n"), low, high)
        for variable, (bounds, s, q) in cell.sums.items():
            for kind, value, (lo, hi) in (("s", s, bounds), ("q", q, squares_range(*bounds))):
                name = (key, kind + ":" + variable)
                if reason is None and value is not None:
                    known[name] = value
                    continue
                program.unknown(name, None, None)
                _between(program, name, (key, "n"), lo, hi, known)
    for margin in layout.margins:
        members = [margin.total, *margin.parts]
        if not all(layout.cells[m].modelled for m in members):
            continue
        terms = {(margin.total, "n"): 1.0, **{(p, "n"): -1.0 for p in margin.parts}}
        _constrain(program, terms, known, "==" if margin.exhaustive else ">=")
        if not margin.exhaustive:
            continue
        shared = set.intersection(*(set(layout.cells[m].sums) for m in members))
        for variable in sorted(shared):
            for kind in ("s", "q"):
                what = kind + ":" + variable
                terms = {(margin.total, what): 1.0, **{(p, what): -1.0 for p in margin.parts}}
                _constrain(program, terms, known, "==")
    for narrow, wide in layout.nested:
        _constrain(program, {(wide, "n"): 1.0, (narrow, "n"): -1.0}, known, ">=")


def unchanged(cell: Cell, published: PublishedCell) -> bool:
    """The same count, and sums equal to the published ones but for rounding (Spark may add the
    same values in another order)."""
    if cell.n != published.n:
        return False
    for variable, (_, s, q) in cell.sums.items():
        for now, then in zip((s, q), published.sums.get(variable, (None, None)), strict=True):
            if (now is None) != (then is None):
                return False
            if now is not None and then is not None and abs(now - then) > 1e-9 * (1 + abs(then)):
                return False
    return True


def _held_change(program: Program, cell: Cell, published: PublishedCell, k: int) -> None:
    """A held cell moved by fewer than k students. An attacker is assumed to guess the simplest
    story, students only added (or only removed): then each sum moved by between lo and hi per
    student. The story is used when this run's true figures fit it (otherwise guessing it gains
    nothing exact, and only the count's bound is kept)."""
    before, change = float(published.n), cell.n - float(published.n)
    sign = 1.0 if change >= 0 else -1.0
    stories: list[tuple[str, float, float, float]] = []
    simple = True  # the change fits the simple story in every figure
    for variable, (bounds, s, q) in cell.sums.items():
        old_s, old_q = published.sums.get(variable, (None, None))
        for kind, now, then, (lo, hi) in (("s", s, old_s, bounds), ("q", q, old_q, squares_range(*bounds))):
            if now is None or then is None:
                continue
            moved = sign * (now - then)
            # Within a tenth of the solver's slack, so a story that fits stays feasible there.
            fits = 0.1 * TOLERANCE * (1 + abs(then) + max(abs(lo), abs(hi)) * before)
            if not lo * abs(change) - fits <= moved <= hi * abs(change) + fits:
                simple = False
                break
            stories.append((kind + ":" + variable, then, lo, hi))
        if not simple:
            break
    n = (cell.key, "n")
    # Held because it moved by fewer than k (an attacker may assume so of every held cell), or
    # held besides to protect another (a change of any size).
    small = abs(change) < k
    if not simple:  # no simple story: only |change| <= k-1
        if small:
            program.add({n: 1.0}, -(before + k - 1), "<=")
            program.add({n: -1.0}, before - (k - 1), "<=")
        return
    # 0 <= sign*(n - before) <= k-1, and lo <= sign*(figure - then) / sign*(n - before) <= hi.
    program.add({n: -sign}, sign * before, "<=")
    if small:
        program.add({n: sign}, -sign * before - (k - 1), "<=")
    for what, then, lo, hi in stories:
        name = (cell.key, what)
        # sign*(x - then) - lo*sign*(n - before) >= 0  and  <= hi*...
        scale = abs(then) + max(abs(lo), abs(hi)) * before
        program.add({name: -sign, n: lo * sign}, sign * then - lo * sign * before, "<=", scale)
        program.add({name: sign, n: -hi * sign}, -sign * then + hi * sign * before, "<=", scale)


def _between(program: Program, name: tuple, n_name: tuple, lo: float, hi: float, known: dict) -> None:
    """lo*n <= figure <= hi*n."""
    _constrain(program, {name: 1.0, n_name: -lo}, known, ">=")
    _constrain(program, {name: 1.0, n_name: -hi}, known, "<=")


def _constrain(
    program: Program, terms: Mapping[tuple, float], known: Mapping[tuple, float], sense: str
) -> None:
    """sum(terms) (== | <= | >=) 0, constants taken from `known`."""
    constant = sum(a * known[n] for n, a in terms.items() if n in known)
    unknowns = {n: a for n, a in terms.items() if n not in known}
    if sense == ">=":
        unknowns, constant = {n: -a for n, a in unknowns.items()}, -constant
    scale = sum(abs(a * known[n]) for n, a in terms.items() if n in known)
    program.add(unknowns, constant, "==" if sense == "==" else "<=", scale)


def _protection(
    kind: str, n: float, value: float, bounds: tuple[float, float], ratio: float
) -> tuple[float, float]:
    """The interval a sensitive sum must stay free to reach: value -/+ ratio x its magnitude, where
    the magnitude is at least a tenth of the range per student (its square for a sum of squares:
    so values near zero are protected too), cut to what the range itself allows."""
    least = FLOOR * (bounds[1] - bounds[0])
    lo, hi = bounds if kind == "s" else squares_range(*bounds)
    width = ratio * max(abs(value), abs(n) * (least if kind == "s" else least * least))
    return max(value - width, lo * abs(n)), min(value + width, hi * abs(n))


def _check(report: AuditReport, program: Program, cell: Cell, k: int, ratio: float) -> None:
    """Intervals of a small hidden cell's count and sums; one failure per cell, naming the first
    figure that is too narrow."""
    if (cell.key, "n") not in program.index:
        return  # not hidden: some row still shows its count
    if cell.n == 0:
        # An empty group describes nobody (tau-Argus's default too: zeros are safe). It is hidden
        # so its label proves nothing; if the tables prove it empty, any student they then place
        # in the other hidden cells is caught by those cells' own checks.
        return
    # The reason already tells 1 <= n <= k-1: the tables may narrow that by no more than `ratio`.
    floor = 0 if cell.may_be_empty else 1
    spare = ratio * (k - 1 - floor) / 2  # each side
    count = (max(cell.n - spare, floor), min(cell.n + spare, k - 1))
    checks = [(f"n of {cell.key.label}", {(cell.key, "n"): 1.0}, cell.n, count)]
    for variable, (bounds, s, q) in sorted(cell.sums.items()):
        for kind, value in (("s", s), ("q", q)):
            if value is not None:
                label = Quantity(kind, cell.key, variable).label  # type: ignore[arg-type]
                name = (cell.key, kind + ":" + variable)
                checks.append((label, {name: 1.0}, value, _protection(kind, cell.n, value, bounds, ratio)))
    _solve(report, program, cell.key, checks, 0.0)


def _check_change(
    report: AuditReport, program: Program, cell: Cell, previous: Release, k: int, ratio: float
) -> None:
    """A held cell that changed by fewer than k students: this run's sums, less the published
    ones, must stay as uncertain as a small cell's."""
    published = previous.cells[cell.key]
    change = cell.n - float(published.n)
    if change == 0 or abs(change) >= k:
        return
    for variable, (bounds, s, _) in sorted(cell.sums.items()):
        before = published.sums.get(variable, (None, None))[0]
        if s is None or before is None:
            continue
        label = f"change of s({variable}) of {cell.key.label} since {published.published_at:%Y-%m-%d %H:%M}"
        needed = _protection("s", change, s - before, bounds, ratio)
        checks = [(label, {(cell.key, "s:" + variable): 1.0}, s - before, needed)]
        _solve(report, program, cell.key, checks, -before)


def _solve(report: AuditReport, program: Program, key: CellKey, checks: list, offset: float) -> None:
    failed = None
    for label, terms, value, (needed_low, needed_high) in checks:
        low, high, solved = program.interval(terms)
        report.programs += solved
        interval = Interval(key, label, float(value), low + offset, high + offset, needed_low, needed_high)
        report.intervals.append(interval)
        if not interval.ok and failed is None and math.isnan(interval.low + interval.high):
            failed = f"{label}: the published figures admit no value at all (they contradict each other)"
        elif not interval.ok and failed is None:
            failed = (
                f"{label} can be narrowed to [{interval.low:.6g}, {interval.high:.6g}] from what is "
                f"published; it must stay free over [{needed_low:.6g}, {needed_high:.6g}]"
            )
    if failed:
        report.failures.append(AuditFailure(key, failed))
