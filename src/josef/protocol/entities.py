"""Build kio response entities from plain dicts, whatever the API version.

Handlers describe a response once as nested dicts with Kafka's field names; this module
keeps the fields the version's class has and drops the rest, wraps error codes, turns
millisecond ints into the timedeltas kio wants, and recurses into nested entities. One
handler thus serves every version without a branch per version.
"""
from __future__ import annotations

import dataclasses
import datetime
import typing
from functools import lru_cache

from kio.schema.errors import ErrorCode

_TIMEDELTA_TYPES = {"timedelta_i32", "timedelta_i64"}


@lru_cache(maxsize=None)
def _plan(cls) -> tuple:
    """(name, kind, nested class) per field: kind is 'entity', 'entities', 'error', 'ms' or 'plain'."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        kafka_type = f.metadata.get("kafka_type")
        nested = _nested_entity(hints[f.name])
        if nested is not None:
            kind = "entities" if _is_tuple(hints[f.name]) else "entity"
        elif kafka_type == "error_code":
            kind = "error"
        elif kafka_type in _TIMEDELTA_TYPES:
            kind = "ms"
        else:
            kind = "plain"
        plan.append((f.name, kind, nested))
    return tuple(plan)


def _strip_optional(tp):
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return tp


def _is_tuple(tp) -> bool:
    return typing.get_origin(_strip_optional(tp)) is tuple


def _nested_entity(tp):
    tp = _strip_optional(tp)
    if typing.get_origin(tp) is tuple:
        tp = typing.get_args(tp)[0]
    return tp if dataclasses.is_dataclass(tp) else None


def to_entity(cls, data: dict):
    """An instance of kio class `cls` from `data`; keys the class lacks are ignored."""
    kwargs = {}
    for name, kind, nested in _plan(cls):
        if name not in data:
            continue
        value = data[name]
        if value is None:
            kwargs[name] = None
        elif kind == "entities":
            kwargs[name] = tuple(to_entity(nested, item) for item in value)
        elif kind == "entity":
            kwargs[name] = to_entity(nested, value)
        elif kind == "error":
            kwargs[name] = ErrorCode(int(value))
        elif kind == "ms":
            kwargs[name] = datetime.timedelta(milliseconds=value)
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def ms(value) -> int:
    """Milliseconds from a kio timedelta field (or an int, or None)."""
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)
