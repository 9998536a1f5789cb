"""The fast path: a value the rules call canonical is one every step leaves unchanged.

Engines skip the steps for canonical values, so a pattern that admitted a value some step would
change would silently skip a repair. Checked on every canonical value in the test data and on
generated ones, by running the full programs without the fast path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.rules import FieldRule
from pipeline_lib.demo.rows import demo_rows
from tests.notebooks.dirty_data import dirty_raw

RULES = {rule.name: rule for rule in rules.STUDENT_RULES}


def _all_steps(rule: FieldRule, text: pd.Series) -> pd.Series:
    for step in rule.steps:
        text = pandas_engine._apply(step, text)
    return text


def _generated(rule: FieldRule, rng: np.random.Generator) -> list[str]:
    kind = rule.field.kind
    if kind in ("float", "int"):
        values = rng.normal(0, 10 ** rng.integers(0, 6, 400), 400)
        return [f"{v:.{d}f}" for v, d in zip(values, rng.integers(0, 6, 400), strict=True)] + [
            "0", "-0", "007", "1.234", "12.345", "1234.567", "-1.5", "99.99", "1.2345", "100.000",
        ]  # fmt: skip
    if kind == "choice":
        return [*rule.field.choices, *rule.field.synonyms]
    if kind == "bool":
        return ["true", "false", "yes", "no", "y", "n", "1", "0"]
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _/-.0"))
    words = ["".join(rng.choice(alphabet, rng.integers(1, 9))) for _ in range(400)]
    return [*words, "NA", "n/a", "N/A", "null", "NULL", "None", "-", "0123", "A-12", "12 34"]


def _samples(name: str) -> pd.Series:
    rule = RULES[name]
    dirty = dirty_raw(3000, seed=5)
    _, demo = demo_rows(2000, 40, 0.5, seed=3)
    found = [frame[name] for frame in (dirty, demo) if name in frame.columns]
    found.append(pd.Series(_generated(rule, np.random.default_rng(7)), dtype=object))
    values = pd.concat(found, ignore_index=True).dropna().astype(str).drop_duplicates()
    return values.reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_canonical_value_is_left_unchanged_by_every_step(name: str) -> None:
    rule = RULES[name]
    values = _samples(name)
    canonical = values[pandas_engine.is_canonical(rule, values)]
    kind = rule.field.kind
    enough = len(rule.field.choices) if kind == "choice" else 2 if kind == "bool" else 50
    assert len(canonical) >= enough, f"the test data has too few canonical {name} values to prove anything"
    after = _all_steps(rule, canonical.astype(object))
    moved = canonical[after != canonical]
    assert moved.empty, f"{name}: canonical values changed by the steps: {list(moved)[:10]}"


@pytest.mark.parametrize("name", sorted(RULES))
def test_the_fast_path_gives_what_the_full_program_gives(name: str) -> None:
    rule = RULES[name]
    values = pd.concat([_samples(name), pd.Series([None, "", " ", "<b>x</b>"])], ignore_index=True)
    fast, _ = pandas_engine.normalise(rule, values)
    full = _all_steps(rule, values.astype(object).where(values.notna(), None))
    assert fast.fillna("<none>").tolist() == full.fillna("<none>").tolist()
