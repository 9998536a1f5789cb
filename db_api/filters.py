"""Simple filters: an AND of conditions on top-level fields.

The embedded store evaluates them in Python (`matches`); the MongoDB store sends the equivalent
query (`to_mongo_query`). Both follow MongoDB's semantics, which the contract tests compare:
comparisons only match values of the same kind (numbers with numbers, strings with strings).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from db_api.documents import check_field_name
from db_api.errors import InvalidArgument


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    IN = "in"
    EXISTS = "exists"
    PREFIX = "prefix"


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: Any

    def __post_init__(self) -> None:
        check_field_name(self.field)
        if self.op is Op.IN and not isinstance(self.value, list):
            raise InvalidArgument(f"'in' on {self.field!r} needs a list of values")
        if self.op is Op.EXISTS and not isinstance(self.value, bool):
            raise InvalidArgument(f"'exists' on {self.field!r} needs true or false")
        if self.op is Op.PREFIX and not isinstance(self.value, str):
            raise InvalidArgument(f"'prefix' on {self.field!r} needs a string")


def parse_condition(field: str, op: str, value_json: str) -> Condition:
    try:
        parsed_op = Op(op)
    except ValueError:
        raise InvalidArgument(f"unknown filter operator {op!r} on field {field!r}") from None
    try:
        value = json.loads(value_json) if value_json else None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"filter value for {field!r} is not valid JSON: {exc}") from None
    return Condition(field, parsed_op, value)


def _kind(value: Any) -> str | None:
    """MongoDB compares values only within a kind (its BSON type bracket)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "date"
    return None


def _compare(stored: Any, op: Op, wanted: Any) -> bool:
    if _kind(stored) is None or _kind(stored) != _kind(wanted):
        return False
    if op is Op.LT:
        return stored < wanted
    if op is Op.LTE:
        return stored <= wanted
    if op is Op.GT:
        return stored > wanted
    return stored >= wanted


def _equal(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return type(stored) is type(wanted) and stored == wanted
    return stored == wanted


def _matches_one(doc: dict, cond: Condition) -> bool:
    present = cond.field in doc
    stored = doc.get(cond.field)
    if cond.op is Op.EXISTS:
        return present == cond.value
    if cond.op is Op.EQ:
        return _equal(stored, cond.value)
    if cond.op is Op.NE:
        return not _equal(stored, cond.value)
    if cond.op is Op.IN:
        return any(_equal(stored, v) for v in cond.value)
    if cond.op is Op.PREFIX:
        return isinstance(stored, str) and stored.startswith(cond.value)
    return present and _compare(stored, cond.op, cond.value)


def matches(doc: dict, conditions: Sequence[Condition]) -> bool:
    return all(_matches_one(doc, cond) for cond in conditions)


def to_mongo_query(conditions: Iterable[Condition]) -> dict:
    clauses = []
    for cond in conditions:
        if cond.op is Op.PREFIX:
            clause: Any = {"$regex": "^" + re.escape(cond.value)}
        elif cond.op is Op.EQ:
            clause = {"$eq": cond.value}
        else:
            clause = {"$" + cond.op.value: cond.value}
        clauses.append({cond.field: clause})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
