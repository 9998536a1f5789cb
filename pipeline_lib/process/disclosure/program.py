"""Linear programs over named unknowns, solved per connected component with SciPy's HiGHS
`linprog`: the audit's solver, kept apart from the rules that build the constraints."""

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

    def unknown(self, name: object, low: float | None, high: float | None) -> None:
        if name not in self.index:
            self.index[name] = len(self.bounds)
            self.bounds.append((low, high))

    def add(self, terms: Mapping[Any, float], known: float, sense: str, scale: float = 0.0) -> None:
        """sum(terms) + known  (== | <=)  0, over unknowns and constants; `scale` is the size of
        the figures `known` was summed from (its rounding error grows with them, not with it)."""
        coefficients: dict[int, float] = defaultdict(float)
        for name, a in terms.items():
            coefficients[self.index[name]] += a
        coefficients = {c: a for c, a in coefficients.items() if a}
        if not coefficients:
            return
        self._parts = None
        slack = TOLERANCE * (1 + max(abs(known), scale))
        self.rows.append((dict(coefficients), -known + slack))
        if sense == "==":
            self.rows.append(({i: -a for i, a in coefficients.items()}, known + slack))

    def interval(self, objective: Mapping[object, float]) -> tuple[float, float, int]:
        """min and max of `objective` over the constraints of its unknowns' component."""
        if self._parts is None:
            self._parts = self._components()
        names = [self.index[n] for n in objective]
        columns, A, b, signature = self._parts[self._root(names[0])]
        key = (signature, frozenset(objective.items()))
        if key in self.solved:
            return (*self.solved[key], 0)
        position = {c: i for i, c in enumerate(columns)}
        c = np.zeros(len(columns))
        for name, a in objective.items():
            c[position[self.index[name]]] += a
        # Imported here: a process run's kernel imports this module at its start, and the solver
        # (0.2 s) is needed only once the results are in.
        from scipy.optimize import linprog

        bounds = [self.bounds[j] for j in columns]
        ends = []
        for sign in (1.0, -1.0):
            result = linprog(sign * c, A_ub=A, b_ub=b, bounds=bounds, method="highs")
            if result.status == 2:  # presolve is stricter than the solver's tolerances: ask again
                options = {"presolve": False}
                result = linprog(sign * c, A_ub=A, b_ub=b, bounds=bounds, method="highs", options=options)
            if result.status == 3:  # unbounded: the figure is free on that side
                ends.append(-math.inf if sign > 0 else math.inf)
            elif result.status == 2:  # published figures that contradict each other: fail closed
                ends.append(math.nan)
            elif result.status != 0:
                raise ValueError(f"the audit's linear program failed: {result.message}")
            else:
                ends.append(sign * result.fun)
        self.solved[key] = (ends[0], ends[1])
        return ends[0], ends[1], 2

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
