"""Small request-parsing helpers shared by the v2 resources (Jackson-like leniency)."""
from __future__ import annotations

import json

from josef.rest import errors, jsoncodec

INT_MIN, INT_MAX = -(2 ** 31), 2 ** 31 - 1
LONG_MIN, LONG_MAX = -(2 ** 63), 2 ** 63 - 1


def parse_json_body(raw: bytes):
    """The JSON value of a request body; None for an empty body; 400 when it is not JSON."""
    if not raw or not raw.strip():
        return None
    try:
        return jsoncodec.loads(raw)
    except UnicodeDecodeError:
        raise errors.json_error("Invalid UTF-8 in request body") from None
    except json.JSONDecodeError as e:
        raise errors.json_error(f"Unexpected character at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise errors.json_error("Request body nested too deeply") from None


def describe_json(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean value"
    if isinstance(value, (int, float)):
        return "Number value"
    if isinstance(value, str):
        return f"String value ({json.dumps(value)[:100]})"
    if isinstance(value, list):
        return "Array value (token `JsonToken.START_ARRAY`)"
    return "Object value (token `JsonToken.START_OBJECT`)"


def expect_int(value, where: str, *, long: bool = False) -> int:
    """An integer as Jackson coerces one (numbers, numeric strings); 400 otherwise."""
    kind = "Long" if long else "Integer"
    lo, hi = (LONG_MIN, LONG_MAX) if long else (INT_MIN, INT_MAX)
    result = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            result = None
    if result is None:
        raise errors.json_error(f"Cannot deserialize value of type `{kind}` from {describe_json(value)} ({where})")
    if not lo <= result <= hi:
        raise errors.json_error(f"Numeric value ({result}) out of range of {kind} ({where})")
    return result


def expect_str(value, where: str) -> str | None:
    """A string as Jackson coerces one (scalars become their text); 400 for arrays/objects."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise errors.json_error(f"Cannot deserialize value of type `String` from {describe_json(value)} ({where})")


def expect_object(value, entity: str) -> dict:
    if not isinstance(value, dict):
        raise errors.json_error(f"Cannot deserialize value of type `{entity}` from {describe_json(value)}")
    return value


def expect_list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.json_error(f"Cannot deserialize value of type `ArrayList` from {describe_json(value)} ({where})")
    return value


def path_int(value: str) -> int:
    """A path parameter declared `int` in kafka-rest: Jersey answers 404 when it does not parse."""
    try:
        n = int(value)
    except ValueError:
        raise errors.http_error(404) from None
    if not INT_MIN <= n <= INT_MAX or not value.strip().lstrip("+-").isdigit():
        raise errors.http_error(404)
    return n


def query_long(value: str | None, default: int) -> int:
    """A `long` query parameter; Jersey answers 404 when it does not parse."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise errors.http_error(404) from None
    if not LONG_MIN <= n <= LONG_MAX:
        raise errors.http_error(404)
    return n


def topic_partitions(items, where: str) -> list[tuple[str, int]]:
    """[{topic, partition}] as kafka-rest's v2 TopicPartition entities."""
    out = []
    for i, item in enumerate(expect_list(items, where)):
        item = expect_object(item, "TopicPartition")
        errors.reject_unknown_fields(item, ("topic", "partition"))
        topic = expect_str(item.get("topic"), f"{where}[{i}].topic")
        if item.get("partition") is None or not topic:
            raise errors.unprocessable(f"{where}[{i}]: topic and partition are required")
        partition = expect_int(item.get("partition"), f"{where}[{i}].partition")
        if partition < 0:
            raise errors.unprocessable(f"{where}[{i}].partition must be greater than or equal to 0")
        out.append((topic, partition))
    return out
