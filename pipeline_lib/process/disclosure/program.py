"""Linear programs over named unknowns, solved per connected component with HiGHS (`highspy`):
the audit's solver, kept apart from the rules that build the constraints.

Each component's program is built once and kept: the audit asks for the least and the largest
value of many figures under the same constraints, and HiGHS solves each next objective from the
last optimal basis (68 solves at 20,000 students: 0.07 s, against 0.27 s with SciPy's `linprog`,
which builds and presolves the program anew each time)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

# Relative slack of an equality. Published figures have 12 significant digits, but HiGHS's
# presolve calls a system of equalities with much less slack infeasible (measured: 1e-8 failed).
TOLERANCE = 1e-6


def squares_range(lo: float, hi: float) -> tuple[float, float]:
    """The least and largest x^2 for x in [lo, hi]."""
    least = 0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi)
    return least, max(lo * lo, hi * hi)


class Program:
    """Linear constraints over named unknowns; known figures folded into the right-hand side."""

    def __init__(self, solved: dict | None = None) -> None:
        # Intervals already solved, by component and objective: the suppression loop audits again
        # after each step, and most components have not changed.
        self.solved = {} if solved is None else solved
        self.index: dict[object, int] = {}
        self.bounds: list[tuple[float | None, float | None]] = []
        self.rows: list[tuple[dict[int, float], float]] = []  # sum(a x) <= b
        self._parts: dict | None = None
        self._parent: list[int] = []
        self._solvers: dict[int, Any] = {}  # per component root, while `_parts` holds

    def unknown(self, name: object, low: float | None, high: float | None) -> None:
        if name not in self.index:
            self.index[name] = len(self.bounds)
            self.bounds.append((low, high))
            self._changed()

    def add(self, terms: Mapping[Any, float], known: float, sense: str, scale: float = 0.0) -> None:
        """sum(terms) + known  (== | <=)  0, over unknowns and constants; `scale` is the size of
        the figures `known` was summed from (its rounding error grows with them, not with it)."""
        coefficients: dict[int, float] = defaultdict(float)
        for name, a in terms.items():
            coefficients[self.index[name]] += a
        coefficients = {c: a for c, a in coefficients.items() if a}
        if not coefficients:
            return
        self._changed()
        slack = TOLERANCE * (1 + max(abs(known), scale))
        self.rows.append((dict(coefficients), -known + slack))
        if sense == "==":
            self.rows.append(({i: -a for i, a in coefficients.items()}, known + slack))

    def _changed(self) -> None:
        """The components, and the solvers kept for them, are found again when next asked."""
        self._parts, self._solvers = None, {}

    def interval(self, objective: Mapping[object, float]) -> tuple[float, float, int]:
        """min and max of `objective` over the constraints of its unknowns' component."""
        if self._parts is None:
            self._parts = self._components()
        names = [self.index[n] for n in objective]
        root = self._root(names[0])
        columns, A, b, signature = self._parts[root]
        key = (signature, frozenset(objective.items()))
        if key in self.solved:
            return (*self.solved[key], 0)
        position = {c: i for i, c in enumerate(columns)}
        c = np.zeros(len(columns))
        for name, a in objective.items():
            c[position[self.index[name]]] += a
        if root not in self._solvers:
            self._solvers[root] = _solver([self.bounds[j] for j in columns], A, b)
        ends = [_optimum(self._solvers[root], sign * c) for sign in (1.0, -1.0)]
        low, high = ends[0], -ends[1]
        self.solved[key] = (low, high)
        return low, high, 2

    def _root(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def _components(self) -> dict[int, tuple[list[int], sparse.csr_matrix | None, np.ndarray | None, int]]:
        """Unknowns joined by a constraint solve together; others never enter the same program."""
        from scipy import sparse

        self._parent = list(range(len(self.bounds)))
        for coefficients, _ in self.rows:
            first, *rest = coefficients
            for c in rest:
                a, b = self._root(first), self._root(c)
                if a != b:
                    self._parent[max(a, b)] = min(a, b)
        columns: dict[int, list[int]] = defaultdict(list)
        for j in range(len(self.bounds)):
            columns[self._root(j)].append(j)
        rows: dict[int, list[int]] = defaultdict(list)
        for i, (coefficients, _) in enumerate(self.rows):
            rows[self._root(next(iter(coefficients)))].append(i)
        names = {j: name for name, j in self.index.items()}
        parts: dict[int, tuple[list[int], sparse.csr_matrix | None, np.ndarray | None, int]] = {}
        for root, members in columns.items():
            position = {c: i for i, c in enumerate(members)}
            mine = rows.get(root, [])
            signature = hash(
                (
                    frozenset((names[j], self.bounds[j]) for j in members),
                    frozenset(
                        (frozenset((names[c], a) for c, a in self.rows[r][0].items()), self.rows[r][1])
                        for r in mine
                    ),
                )
            )
            if not mine:
                parts[root] = (members, None, None, signature)
                continue
            data = [(i, position[c], a) for i, r in enumerate(mine) for c, a in self.rows[r][0].items()]
            A = sparse.csr_matrix(
                ([d[2] for d in data], ([d[0] for d in data], [d[1] for d in data])),
                shape=(len(mine), len(members)),
            )
            parts[root] = (members, A, np.array([self.rows[r][1] for r in mine]), signature)
        return parts


def _solver(
    bounds: list[tuple[float | None, float | None]], A: sparse.csr_matrix | None, b: np.ndarray | None
) -> Any:
    """A silent HiGHS instance holding the program `A x <= b` within `bounds`, costs zero."""
    # Imported here: a process run's kernel imports this module at its start, and the solver is
    # needed only once the results are in.
    import highspy

    # The base class: `highspy.Highs()` prints HiGHS's banner as it is made, before any option
    # can be set, and a run's notebook would show it.
    solver = highspy._Highs()  # type: ignore[attr-defined]
    solver.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    low = np.array([-inf if lo is None else lo for lo, _ in bounds], dtype=float)
    high = np.array([inf if hi is None else hi for _, hi in bounds], dtype=float)
    solver.addVars(len(bounds), low, high)
    if b is not None and not np.isfinite(b).all():
        # HiGHS would drop a row bounded by infinity; a figure that is not a number fails the run.
        raise ValueError("the audit's linear program has a bound that is not a finite number")
    if A is not None and b is not None:
        A = A.tocsr()
        solver.addRows(
            A.shape[0], np.full(A.shape[0], -inf), np.asarray(b, dtype=float), A.nnz,
            A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32), A.data.astype(float),
        )  # fmt: skip
    return solver


def _optimum(solver: Any, costs: np.ndarray) -> float:
    """The least value of `costs . x` over the solver's program: -inf when unbounded below, NaN
    when the program has no solution (published figures that contradict each other: the audit
    fails closed)."""
    import highspy

    status = highspy.HighsModelStatus
    solver.changeColsCost(len(costs), np.arange(len(costs), dtype=np.int32), costs)
    solver.run()
    found = solver.getModelStatus()
    if found in (status.kInfeasible, status.kUnboundedOrInfeasible):
        # Presolve is stricter than the solver's tolerances, and cannot tell the two apart: ask
        # again without it, from scratch.
        solver.setOptionValue("presolve", "off")
        solver.clearSolver()
        solver.run()
        found = solver.getModelStatus()
        solver.setOptionValue("presolve", "choose")
    if found == status.kOptimal:
        return float(solver.getInfo().objective_function_value)
    if found == status.kUnbounded:
        return -math.inf
    if found == status.kInfeasible:
        return math.nan
    raise ValueError(f"the audit's linear program failed: {solver.modelStatusToString(found)}")
