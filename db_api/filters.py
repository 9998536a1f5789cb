"""Simple filters: an AND of conditions on top-level fields.

The embedded store evaluates them in Python (`matches`); the MongoDB store sends the equivalent
query (`to_mongo_query`). Both must select the same documents, so `matches` follows MongoDB's
query semantics where Python's `==` and `<` would differ (the contract tests compare them on real
servers):

* a condition on an array matches if the whole array or any one of its elements matches (`ne` is
  the negation of `eq`, so it excludes arrays that contain the value);
* values compare only within a kind: numbers (int, double and Decimal128, by exact value) with
  numbers, strings with strings; a bool is not a number;
* NaN equals NaN but is neither less nor greater than anything;
* a missing field equals null, so `eq`, `lte` and `gte` null match it;
* embedded documents are equal only with the same keys in the same order.

Conditions that `matches` could not follow are refused: a range operator takes a single value
(MongoDB would also order arrays and documents), values may not hold keys that MongoDB forbids, nor
whole numbers BSON cannot hold. Every filter is bounded (size, nesting, `in` values), and `in`
looks listed scalars up in a set, so a condition costs time linear in what it reads.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from pipeline_lib.wire.bson_codec import MAX_DEPTH, check_field_name, check_keys
from pipeline_lib.wire.errors import InvalidArgument

MAX_VALUE_JSON_BYTES = 1 << 20  # one condition's value, as JSON
MAX_IN_VALUES = 10_000
_INT64 = range(-(2**63), 2**63)
_TOO_DEEP = "the filter value for {field!r} nests too deeply (at most {depth} levels)"


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


_RANGE_OPS = (Op.LT, Op.LTE, Op.GT, Op.GTE)


@dataclass(frozen=True)
class _Wanted:
    """The values an `eq`, `ne` or `in` looks for, as keys (`_key`) in a set: one look-up per
    stored value, whatever the values are. A value without a key (a type JSON cannot write) is
    compared one by one; a filter from JSON has none."""

    keys: frozenset[Any]
    others: tuple[Any, ...]

    @classmethod
    def of(cls, values: list[Any]) -> _Wanted:
        keys, others = set(), []
        for value in values:
            key = _key(value)
            if key is None:
                others.append(value)
            else:
                keys.add(key)
        return cls(frozenset(keys), tuple(others))

    def has(self, stored: Any) -> bool:
        key = _key(stored)
        if key is not None:
            return key in self.keys
        return any(_equal(stored, other) for other in self.others)


def _key(value: Any) -> Any:
    """A hashable key, equal for values `_equal` holds equal: numbers by value across int, float
    and Decimal (Python's hash agrees with `==`), a bool apart from a number, NaN equal to NaN,
    documents by their keys in order, arrays item by item. None for a value of another type (BSON
    code, binary, an id), which `_equal` compares with `==`."""
    value = _plain(value)
    if _is_nan(value):
        return ("nan",)
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = []
        for name, item in items:
            key = _key(item)
            if key is None:
                return None
            inner.append((name, key) if isinstance(value, dict) else key)
        return ("document" if isinstance(value, dict) else "array", tuple(inner))
    kind = _kind(value)
    if kind is None or (kind == "string" and type(value) is not str):  # BSON code is a str
        return None
    return (kind, value)


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: Any

    def __post_init__(self) -> None:
        check_field_name(self.field)
        # A stored document never has such keys (MongoDB may refuse them); also bounds the nesting.
        check_keys(self.value, self.field)
        _check_whole_numbers(self.value, self.field)
        if self.op is Op.IN and not isinstance(self.value, list):
            raise InvalidArgument(f"'in' on {self.field!r} needs a list of values")
        if self.op is Op.IN and len(self.value) > MAX_IN_VALUES:
            raise InvalidArgument(
                f"'in' on {self.field!r} lists {len(self.value):,} values; it takes at most {MAX_IN_VALUES:,}"
            )
        if self.op is Op.EXISTS and not isinstance(self.value, bool):
            raise InvalidArgument(f"'exists' on {self.field!r} needs true or false")
        if self.op is Op.PREFIX and not isinstance(self.value, str):
            raise InvalidArgument(f"'prefix' on {self.field!r} needs a string")
        if self.op in _RANGE_OPS and isinstance(self.value, list | dict):
            raise InvalidArgument(
                f"{self.op.value!r} on {self.field!r} needs a single value, not an array or object"
            )

    @functools.cached_property
    def wanted(self) -> _Wanted:
        """What `eq`, `ne` and `in` look for, built once per condition."""
        return _Wanted.of(self.value if self.op is Op.IN else [self.value])


def _check_whole_numbers(value: Any, field: str) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, int) and not isinstance(item, bool) and item not in _INT64:
            raise InvalidArgument(
                f"the filter value for {field!r} holds a whole number that does not fit BSON's 64 bits"
            )
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def parse_condition(field: str, op: str, value_json: str) -> Condition:
    try:
        parsed_op = Op(op)
    except ValueError:
        raise InvalidArgument(f"unknown filter operator {op!r} on field {field!r}") from None
    if len(value_json) > MAX_VALUE_JSON_BYTES:
        raise InvalidArgument(f"the filter value for {field!r} is over the limit: at most 1 MiB of JSON")
    try:
        value = json.loads(value_json) if value_json else None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"filter value for {field!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(_TOO_DEEP.format(field=field, depth=MAX_DEPTH)) from None
    except ValueError:  # Python's limit on the digits of a whole number
        raise InvalidArgument(
            f"the filter value for {field!r} holds a number with more digits than BSON can hold"
        ) from None
    return Condition(field, parsed_op, value)


def _plain(value: Any) -> Any:
    return value.to_decimal() if isinstance(value, Decimal128) else value


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (isinstance(value, Decimal) and value.is_nan())


def _kind(value: Any) -> str | None:
    """MongoDB compares values only within a kind (its BSON type bracket)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "date"
    return None


def _equal(stored: Any, wanted: Any) -> bool:
    stored, wanted = _plain(stored), _plain(wanted)
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return list(stored) == list(wanted) and all(_equal(stored[k], wanted[k]) for k in stored)
    if isinstance(stored, list) and isinstance(wanted, list):
        return len(stored) == len(wanted) and all(map(_equal, stored, wanted))
    if _kind(stored) != _kind(wanted):
        return False
    if _is_nan(stored) or _is_nan(wanted):
        return _is_nan(stored) and _is_nan(wanted)
    return bool(stored == wanted)


def _compare(stored: Any, op: Op, wanted: Any) -> bool:
    stored, wanted = _plain(stored), _plain(wanted)
    if _kind(stored) is None or _kind(stored) != _kind(wanted):
        return False
    if _equal(stored, wanted):
        return op in (Op.LTE, Op.GTE)
    if _is_nan(stored) or _is_nan(wanted):
        return False
    return stored < wanted if op in (Op.LT, Op.LTE) else stored > wanted


def _matches_one(doc: dict, cond: Condition) -> bool:
    if cond.op is Op.EXISTS:
        return (cond.field in doc) == cond.value
    stored = doc.get(cond.field)
    candidates = [stored, *stored] if isinstance(stored, list) else [stored]
    if cond.op in (Op.EQ, Op.NE, Op.IN):
        wanted = cond.wanted
        found = any(wanted.has(c) for c in candidates)
        return found != (cond.op is Op.NE)
    if cond.op is Op.PREFIX:
        return any(isinstance(c, str) and c.startswith(cond.value) for c in candidates)
    return any(_compare(c, cond.op, cond.value) for c in candidates)


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
