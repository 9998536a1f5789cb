"""Quotas of the stratified sample: proportional to school size, adding up to the target."""

from __future__ import annotations

import pandas as pd

from pipeline_lib.process.analysis.sampling import quotas


def test_quotas_add_up_to_the_target_in_proportion_to_size() -> None:
    counts = pd.Series({"A": 500, "B": 300, "C": 200, "D": 7})
    kept = quotas(counts, 100)
    assert kept.sum() == 100
    assert kept["A"] in (49, 50) and kept["B"] in (29, 30) and kept["C"] in (19, 20) and kept["D"] <= 1
    assert (kept <= counts).all()


def test_largest_remainders_get_the_rounding() -> None:
    kept = quotas(pd.Series({"A": 1, "B": 1, "C": 1}), 2)
    assert kept.to_dict() == {"A": 1, "B": 1, "C": 0}  # equal remainders: the first listed
    assert quotas(pd.Series({"A": 19, "B": 1}), 10).to_dict() == {"A": 10, "B": 0}


def test_nothing_is_cut_when_the_data_fits() -> None:
    counts = pd.Series({"A": 5, "B": 3})
    assert quotas(counts, 8).equals(counts) and quotas(counts, 100).equals(counts)
