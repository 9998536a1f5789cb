"""Filter semantics as pure logic (the contract tests compare them with MongoDB's)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from db_api.errors import InvalidArgument
from db_api.filters import Condition, Op, matches, parse_condition, to_mongo_query


@pytest.mark.parametrize(
    ("doc", "condition", "expected"),
    [
        ({"a": 1}, Condition("a", Op.EQ, 1.0), True),
        ({"a": True}, Condition("a", Op.EQ, 1), False),  # booleans are not numbers
        ({"a": "5"}, Condition("a", Op.LT, 10), False),  # text never compares with numbers
        ({}, Condition("a", Op.EQ, None), True),  # missing equals null, as in MongoDB
        ({}, Condition("a", Op.NE, None), False),
        ({}, Condition("a", Op.GT, 0), False),
        ({"a": "abc"}, Condition("a", Op.PREFIX, "ab"), True),
        ({"a": 3}, Condition("a", Op.PREFIX, "3"), False),
        ({"a": 2}, Condition("a", Op.IN, [1, 2]), True),
        ({"a": None}, Condition("a", Op.EXISTS, True), True),
        (
            {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
            Condition("t", Op.GTE, dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
            True,
        ),
    ],
)
def test_matches_follows_mongodb_semantics(doc: dict, condition: Condition, expected: bool) -> None:
    assert matches(doc, [condition]) is expected


def test_mongo_query_is_an_and_of_conditions_with_prefix_escaped() -> None:
    query = to_mongo_query([Condition("a", Op.GT, 1), Condition("b", Op.PREFIX, "x.y")])
    assert query == {"$and": [{"a": {"$gt": 1}}, {"b": {"$regex": r"^x\.y"}}]}
    assert to_mongo_query([]) == {}


@pytest.mark.parametrize(
    ("field", "op", "value_json", "needle"),
    [
        ("a", "between", "1", "unknown filter operator"),
        ("a", "eq", "{", "not valid JSON"),
        ("$a", "eq", "1", "starts with '$'"),
        ("a", "in", "1", "needs a list"),
        ("a", "exists", "1", "true or false"),
        ("a", "prefix", "1", "needs a string"),
    ],
)
def test_bad_conditions_are_explained(field: str, op: str, value_json: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        parse_condition(field, op, value_json)
