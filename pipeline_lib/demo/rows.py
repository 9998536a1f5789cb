"""The rows a demo run uploads: population, mistakes and stable submission ids together."""

from __future__ import annotations

import hashlib

import pandas as pd

from pipeline_lib.demo.dirt import add_dirt
from pipeline_lib.demo.population import Population, as_typed_text, generate_population


def demo_rows(students: int, schools: int, dirty: float, seed: int) -> tuple[Population, pd.DataFrame]:
    """The population and the rows to upload, each with a `submission_id` that depends only on
    the arguments, so the same demo sent twice is stored once."""
    population = generate_population(students, schools, seed)
    rows = add_dirt(as_typed_text(population.students), dirty, seed, population.schools["school_id"])
    key = hashlib.sha256(f"{students}:{schools}:{dirty!r}:{seed}".encode()).hexdigest()[:10]
    rows["submission_id"] = [f"demo-{key}-{i:07d}" for i in range(len(rows))]
    return population, rows
