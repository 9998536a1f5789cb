"""The audit's linear programs: each component's program is kept and solved for objective after
objective; the least and largest values must be what a fresh solve (SciPy's `linprog`) finds,
including programs unbounded on a side or without any solution, and the solver prints nothing."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

from pipeline_lib.process.disclosure.program import Program


def _fresh(program: Program, objective: dict[str, float]) -> tuple[float, float]:
    """min and max of `objective` over the whole program, each solved from nothing by `linprog`."""
    n = len(program.bounds)
    A = np.zeros((len(program.rows), n))
    for i, (coefficients, _) in enumerate(program.rows):
        for j, a in coefficients.items():
            A[i, j] = a
    b = np.array([bound for _, bound in program.rows])
    c = np.zeros(n)
    for name, a in objective.items():
        c[program.index[name]] += a
    ends = []
    for sign in (1.0, -1.0):
        found = linprog(
            sign * c, A_ub=A if len(b) else None, b_ub=b if len(b) else None, bounds=program.bounds
        )
        if found.status == 3:
            ends.append(-math.inf)
        elif found.status == 2:
            ends.append(math.nan)
        else:
            assert found.status == 0, found.message
            ends.append(found.fun)
    return ends[0], -ends[1]


def _margins(rng: np.random.Generator, cells: int) -> Program:
    """Hidden counts of a table's row (each 1..9 or free above 0) under published totals of pairs
    and of the whole row: the kind of program the audit solves."""
    program = Program()
    counts = rng.integers(1, 10, cells)
    for i in range(cells):
        program.unknown(f"n{i}", 0.0, None if i % 4 == 3 else 9.0)
    program.add({f"n{i}": 1.0 for i in range(cells)}, -float(counts.sum()), "==")
    for i in range(0, cells - 1, 2):
        program.add({f"n{i}": 1.0, f"n{i + 1}": 1.0}, -float(counts[i] + counts[i + 1]), "==")
    return program


def test_kept_programs_give_what_a_fresh_solve_gives_for_every_objective() -> None:
    rng = np.random.default_rng(7)
    for cells in (3, 8, 21):
        program = _margins(rng, cells)
        objectives = [{f"n{i}": 1.0} for i in range(cells)]
        objectives += [{f"n{i}": 1.0, f"n{(i + 1) % cells}": -2.0} for i in range(cells)]
        for objective in objectives:
            low, high, solved = program.interval(objective)
            assert solved == 2
            assert (low, high) == pytest.approx(_fresh(program, objective), abs=1e-6)
        assert program.interval(objectives[0])[2] == 0  # asked again: remembered, not solved


def test_a_side_without_bound_is_infinite_and_contradicting_figures_have_no_value() -> None:
    free = Program()
    free.unknown("a", 0.0, None)
    free.unknown("b", 0.0, None)
    free.add({"a": 1.0, "b": -1.0}, 0.0, "==")  # a = b, neither bounded above
    assert free.interval({"a": 1.0})[:2] == (0.0, math.inf)
    assert free.interval({"a": -1.0})[:2] == (-math.inf, 0.0)

    contradiction = Program()
    contradiction.unknown("a", 0.0, 9.0)
    contradiction.add({"a": 1.0}, -20.0, "==")  # a = 20, outside its range
    low, high, _ = contradiction.interval({"a": 1.0})
    assert math.isnan(low) and math.isnan(high)


def test_a_kept_program_answers_alike_after_an_unbounded_or_contradictory_objective() -> None:
    """One program, asked in turn for objectives unbounded on a side and bounded ones, and again
    after a constraint is added (its kept solver is dropped then)."""
    program = Program()
    for name in "abc":
        program.unknown(name, 0.0, None)
    program.add({"a": 1.0, "b": -1.0}, 0.0, "==")  # a = b, both unbounded above
    program.add({"c": 1.0}, -4.0, "<=")  # c <= 4
    asked = [{"a": 1.0}, {"c": 1.0}, {"a": -1.0, "b": 1.0}, {"c": -1.0}, {"b": 1.0}, {"a": 2.0, "b": 1.0}]
    for objective in asked:  # each within one component, as the audit asks
        assert program.interval(objective)[:2] == pytest.approx(_fresh(program, objective), abs=1e-5)
    program.unknown("d", 1.0, 2.0)  # an unknown after the components were found: they are again
    assert program.interval({"d": 1.0})[:2] == pytest.approx((1.0, 2.0))
    program.add({"a": 1.0, "c": 1.0}, -6.0, "<=")  # now a <= 6 - c: bounded, one component
    for objective in [*asked, {"a": 1.0, "c": 1.0}]:
        assert program.interval(objective)[:2] == pytest.approx(_fresh(program, objective), abs=1e-5)
    assert program.interval({"a": 1.0})[1] == pytest.approx(6.0, abs=1e-4)


def test_a_figure_that_is_not_a_number_fails_the_program() -> None:
    """HiGHS would take a row bounded by infinity as no row at all, widening every interval."""
    for known in (math.nan, math.inf, -math.inf):
        program = Program()
        program.unknown("a", 0.0, 9.0)
        program.add({"a": 1.0}, known, "<=")
        with pytest.raises(ValueError, match="not a finite number"):
            program.interval({"a": 1.0})


def test_a_component_without_constraints_is_its_bounds() -> None:
    program = Program()
    program.unknown("a", 1.0, 4.0)
    program.unknown("b", 0.0, 9.0)
    program.add({"b": 1.0}, -3.0, "==")
    assert program.interval({"a": 2.0})[:2] == pytest.approx((2.0, 8.0))
    assert program.interval({"b": 1.0})[:2] == pytest.approx((3.0, 3.0), abs=1e-4)


def test_the_solver_prints_nothing() -> None:
    """HiGHS writes a banner to the process's stdout (once per process, as its first instance is
    made) unless told not to first; a run's notebook would show it under the disclosure cell."""
    code = (
        "from pipeline_lib.process.disclosure.program import Program\n"
        "p = Program()\n"
        "p.unknown('a', 0.0, 9.0)\n"
        "p.unknown('b', 0.0, None)\n"
        "p.add({'a': 1.0, 'b': 1.0}, -5.0, '==')\n"
        "low, high, _ = p.interval({'a': 1.0})\n"
        "assert abs(low) < 1e-4 and abs(high - 5) < 1e-4, (low, high)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
