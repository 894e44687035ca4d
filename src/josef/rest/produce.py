"""v2 produce: `POST /topics/{t}` and `POST /topics/{t}/partitions/{p}`.

Body: `{"records": [{"key": .., "value": .., "partition": ..}], "key_schema": .., ...}`; the
Content-Type names the embedded format (binary = base64 strings, json = any JSON value).
As kafka-rest: a body that is not JSON or does not fit the entity is 400, an empty (or
missing) `records` list is 422, bad base64 is 400; avro/jsonschema/protobuf need a Schema
Registry, which josef does not have, so they get Confluent's 422 errors (42206 / 42207).
A record's own `partition` wins over the partition in the URL (kafka-rest does the same).
"""
from __future__ import annotations

import base64
import binascii
import json
import re

from josef.rest import errors, jsoncodec
from josef.rest.media import SCHEMA_FORMATS
from josef.rest.errors import reject_unknown_fields
from josef.rest.util import describe_json, expect_int, expect_str, parse_json_body

# the fields of kafka-rest's v2 ProduceRequest and ProduceRecord entities
_REQUEST_FIELDS = ("records", "key_schema_id", "key_schema", "value_schema_id", "value_schema")
_RECORD_FIELDS = ("partition", "key", "value")
_BASE64_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")


def _optional_int(value, where: str) -> int | None:
    if value is None:
        return None
    return expect_int(value, where)


def parse_produce_body(raw: bytes, fmt: str) -> tuple[list[tuple[int | None, bytes | None, bytes | None]], int]:
    """([(partition, key, value)], number of records) serialized for Kafka, or a RestError."""
    body = parse_json_body(raw)
    if body is None:
        raise errors.unprocessable("records may not be empty")
    if not isinstance(body, dict):
        raise errors.json_error(f"Cannot deserialize value of type `ProduceRequest` from {describe_json(body)}")
    for name, field in body.items():  # unknown fields are 422, in document order as Jackson reads
        reject_unknown_fields({name: None}, _REQUEST_FIELDS)
        if name == "records" and isinstance(field, list):
            for rec in field:
                if isinstance(rec, dict):
                    reject_unknown_fields(rec, _RECORD_FIELDS)
    records = body.get("records")
    if records is None:
        records = []
    if not isinstance(records, list):
        raise errors.json_error(
            f"Cannot deserialize value of type `ArrayList<ProduceRecord>` from {describe_json(records)}")
    for key in ("key_schema", "value_schema"):
        expect_str(body.get(key), key)  # Jackson takes a number or boolean as its text
    key_schema_id = _optional_int(body.get("key_schema_id"), "key_schema_id")
    value_schema_id = _optional_int(body.get("value_schema_id"), "value_schema_id")
    parsed = []
    for i, rec in enumerate(records):
        if rec is None:  # kafka-rest copies the list into an ImmutableList, which refuses nulls
            raise errors.json_error(f"Cannot construct instance of `ProduceRequest`, problem: records[{i}] is null")
        if not isinstance(rec, dict):
            raise errors.json_error(f"Cannot deserialize value of type `ProduceRecord` from {describe_json(rec)}")
        parsed.append((_optional_int(rec.get("partition"), f"records[{i}].partition"),
                       rec.get("key"), rec.get("value")))
    if not parsed:
        raise errors.unprocessable("records may not be empty")

    if fmt in SCHEMA_FORMATS:
        if (key_schema_id is not None or body.get("key_schema") is not None
                or value_schema_id is not None or body.get("value_schema") is not None):
            raise errors.schema_registry_required()
        raise errors.schema_serialization_unavailable()

    serialize = _serialize_binary if fmt == "binary" else _serialize_json
    out = [(partition, serialize(key), serialize(value)) for partition, key, value in parsed]
    return out, len(out)


def _serialize_binary(data) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise errors.bad_request(f"data={_render(data)} is not a base64 string.")
    # Guava's BaseEncoding.base64(), which kafka-rest decodes with: trailing '=' optional
    # (any number of them), nothing but the alphabet before them, no length of 4n+1
    body = data.rstrip("=")
    if len(body) % 4 == 1 or not _BASE64_ALPHABET.fullmatch(body):
        raise errors.bad_request(f"data={_render(data)} is not a valid base64 string.")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the checks above rule it out
        raise errors.bad_request(f"data={_render(data)} is not a valid base64 string.") from None


def _serialize_json(data) -> bytes | None:
    return None if data is None else jsoncodec.dumps(data)


def _render(data) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 200 else text[:200] + "..."


def produce_response(raw_results: list[tuple]) -> tuple[int, dict]:
    """(HTTP status, body): 200 unless a record failed authentication/authorization."""
    from josef.rest.kafka import v2_result
    results = [v2_result(r) for r in raw_results]
    status = 200
    for r in results:
        code = r.get("error_code")
        if code == errors.KAFKA_AUTHENTICATION:
            status = 401
            break
        if code == errors.KAFKA_AUTHORIZATION:
            status = 403
            break
    return status, {"offsets": results, "key_schema_id": None, "value_schema_id": None}
