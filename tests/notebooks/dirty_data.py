"""Dirty raw submissions for the clean tests: typos, synonyms, bad values, unknown schools,
exact resubmissions, conflicting ones and records without consent, all from a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

SCHOOLS = pd.DataFrame(
    {
        "school_id": ["1224", "2305", "4711", "7890"],
        "name": ["North", "Hill", "Lake", "Park"],
        "sector": ["public", "catholic", "private", "public"],
        "size": [800, 400, 300, 120],
    }
)


def dirty_raw(n: int, seed: int = 1, prefix: str = "r") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pick = lambda options, p=None: rng.choice(np.array(options, dtype=object), n, p=p)  # noqa: E731
    frame = pd.DataFrame(
        {
            "submission_id": [f"{prefix}{i:07d}" for i in range(n)],
            "received_at": [f"2026-11-29T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00" for i in range(n)],
            "source": pick(["api", "form", "bulk"]),
            "school_id": pick(
                ["1224", " 01224", "2305", "4711 ", "7890", "9999", ""],
                [0.3, 0.1, 0.2, 0.15, 0.15, 0.05, 0.05],
            ),
            "student_ref": [str(v) if v < 2000 else None for v in rng.integers(0, 3000, n)],
            "sex": pick(["F", "female", "M", "boy", "girl", "other", "x", "?", "cat"]),
            "minority": pick(["yes", "no", "N", "Y", "1", "0", "maybe"]),
            "ses": [f"{v:.2f}".replace(".", "," if v > 0 else ".") for v in rng.normal(0, 2, n)],
            "math_score": pick(["45", "72,5", "88 %", "-3", "101", "abc", "1e309", "", "50"]),
            "age": pick(["12", "13", "", "NA", "12.5", "40"]),
            "consent": pick(["yes", "yes", "yes", "yes", "no"]),
        }
    )
    # Exact resubmissions: some records sent again with the same answers, later.
    again = frame.sample(frac=0.05, random_state=seed).assign(
        submission_id=lambda d: d["submission_id"] + "-again", received_at="2026-11-29T01:00:00+00:00"
    )
    return pd.concat([frame, again], ignore_index=True)
