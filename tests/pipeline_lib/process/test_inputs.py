"""The process input's pure parts, on both engines' side: SES rounded as Spark rounds it, and one
row per school however `schools` was written."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.process.inputs import round_half_away
from pipeline_lib.process.run import read_schools


def test_whole_numbers_are_rounded_half_away_from_zero_as_spark_does() -> None:
    # Spark's round of a double: HALF_UP on the decimal the double prints as.
    values = [0.49999999999999994, 0.5, -0.5, 1.5, 2.5, -2.5, -0.49999999999999994, 499999999.49999994,
              1e15 + 0.5, 3.0, -0.0, 1234567.5000000002]  # fmt: skip
    expected = [float(Decimal(repr(v)).quantize(Decimal(1), ROUND_HALF_UP)) for v in values]
    assert round_half_away(np.array(values)).tolist() == expected
    assert np.isnan(round_half_away(np.array([np.nan]))).all()


def test_schools_are_read_once_per_id(sqlite_client: DbApiClient) -> None:
    sqlite_client.put_document("schools", "a", {"school_id": 1224, "name": "First", "sector": "public"})
    sqlite_client.put_document("schools", "b", {"school_id": "1224", "name": "Second", "sector": "private"})
    sqlite_client.put_document("schools", "c", {"school_id": None, "name": "No id"})
    sqlite_client.put_document("schools", "d", {"school_id": "2305", "name": "Other", "size": "n/a"})
    schools = read_schools(sqlite_client)
    assert schools["school_id"].tolist() == ["1224", "2305"]
    assert schools.loc[0, "name"] == "First" and np.isnan(schools.loc[1, "size"])
