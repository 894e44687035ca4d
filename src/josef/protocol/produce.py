"""Produce (api key 0) request decoder and response encoder, versions 3..11 (flexible from v9).

The request decoder never copies record data: each partition's ``records`` is a memoryview slice of
the frame, so a 1 MiB batch costs the same as a 1 KiB one. Record batches are not parsed here.
Layouts follow Kafka's ProduceRequest.json / ProduceResponse.json.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from josef.protocol.errors import MalformedRequest
from josef.protocol.primitives import (
    EMPTY_TAGGED_FIELDS, INT32, byte_view, encode_array_count, encode_compact_array_count,
    encode_compact_nullable_string, encode_compact_string, encode_nullable_string, encode_string,
    expect_end, read_array_count, read_compact_array_count,
    read_compact_nullable_string, read_compact_topics, read_nullable_string, read_string,
    read_struct, read_uvarint, skip_tagged_fields, slice_sized,
)

__all__ = [
    "MIN_VERSION", "MAX_VERSION", "FIRST_FLEXIBLE_VERSION",
    "ProduceRequest", "PartitionResponse", "decode_produce_request", "encode_produce_response",
]

MIN_VERSION = 3
MAX_VERSION = 11
FIRST_FLEXIBLE_VERSION = 9

_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_SIZE = struct.Struct(">ii")  # legacy partition: index + int32 records length
# Smallest encodings, used to reject counts that cannot fit in the bytes left.
_LEGACY_TOPIC_MIN, _LEGACY_PARTITION_MIN = 6, 8  # string len + array count; index + records len
_FLEX_TOPIC_MIN, _FLEX_PARTITION_MIN = 3, 6  # name, count, tags; index, records len, tags

# Partition response head (index, error_code, base_offset, log_append_time[, log_start_offset]).
_PARTITION_V3 = struct.Struct(">ihqq")
_PARTITION_V5 = struct.Struct(">ihqqq")

# A NamedTuple's generated __new__ costs three times tuple.__new__; requests are built directly.
_new = tuple.__new__


class ProduceRequest(NamedTuple):
    transactional_id: str | None
    acks: int
    timeout_ms: int
    # [(topic name, [(partition index, records as a memoryview of the frame, or None)])]
    topics: list[tuple[str, list[tuple[int, memoryview | None]]]]


class PartitionResponse(NamedTuple):
    index: int
    error_code: int
    base_offset: int
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    record_errors: Sequence[tuple[int, str | None]] = ()  # (batch_index, message)
    error_message: str | None = None


def _check_version(version: int) -> None:
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Produce v{version} is not supported (v{MIN_VERSION}..v{MAX_VERSION})")


# --------------------------------------------------------------------------- request

def decode_produce_request(buf, offset: int, version: int) -> ProduceRequest:
    """Decode the Produce body that starts at ``offset`` and runs to the end of ``buf``.

    Raises MalformedRequest for anything that is not exactly one valid body, ValueError for a
    version outside 3..11 (the caller answers UNSUPPORTED_VERSION before decoding).
    """
    _check_version(version)
    view = byte_view(buf)
    if version >= FIRST_FLEXIBLE_VERSION:
        request, pos = _read_flexible_request(view, offset)
    else:
        request, pos = _read_legacy_request(view, offset)
    expect_end(view, pos)
    return request


def _read_legacy_request(buf, pos: int) -> tuple[ProduceRequest, int]:
    transactional_id, pos = read_nullable_string(buf, pos)
    (acks, timeout_ms), pos = read_struct(_ACKS_TIMEOUT, buf, pos)
    count, pos = read_array_count(buf, pos, _LEGACY_TOPIC_MIN)
    topics = []
    for _ in range(count):
        name, pos = read_string(buf, pos)
        partitions, pos = _read_legacy_partitions(buf, pos)
        topics.append((name, partitions))
    return _new(ProduceRequest, (transactional_id, acks, timeout_ms, topics)), pos


def _read_legacy_partitions(buf, pos: int) -> tuple[list, int]:
    # Hot loop: checks and slicing are inlined, a Python call per field would double its cost.
    count, pos = read_array_count(buf, pos, _LEGACY_PARTITION_MIN)
    partitions = []
    unpack = _INDEX_SIZE.unpack_from
    end = len(buf)
    for _ in range(count):
        if pos + 8 > end:
            raise MalformedRequest(f"truncated partition at offset {pos}")
        index, size = unpack(buf, pos)
        pos += 8
        if size >= 0 and pos + size <= end:
            partitions.append((index, buf[pos:pos + size]))
            pos += size
        else:
            records, pos = slice_sized(buf, pos, size)  # null, or raises
            partitions.append((index, records))
    return partitions, pos


def _read_flexible_request(buf, pos: int) -> tuple[ProduceRequest, int]:
    transactional_id, pos = read_compact_nullable_string(buf, pos)
    (acks, timeout_ms), pos = read_struct(_ACKS_TIMEOUT, buf, pos)
    topics, pos = read_compact_topics(buf, pos, _FLEX_TOPIC_MIN, _read_flexible_partitions)
    pos = skip_tagged_fields(buf, pos)
    return _new(ProduceRequest, (transactional_id, acks, timeout_ms, topics)), pos


def _read_flexible_partitions(buf, pos: int) -> tuple[list, int]:
    # Hot loop: checks, slicing and the empty tagged-field case are inlined (see above).
    count, pos = read_compact_array_count(buf, pos, _FLEX_PARTITION_MIN)
    partitions = []
    unpack = INT32.unpack_from
    end = len(buf)
    for _ in range(count):
        if pos + 4 > end:
            raise MalformedRequest(f"truncated partition at offset {pos}")
        index = unpack(buf, pos)[0]
        size, pos = read_uvarint(buf, pos + 4)
        size -= 1  # compact: length+1, 0 = null
        if size >= 0 and pos + size <= end:
            records = buf[pos:pos + size]
            pos += size
        else:
            records, pos = slice_sized(buf, pos, size)  # null, or raises
        if pos < end and buf[pos] == 0:
            pos += 1
        else:
            pos = skip_tagged_fields(buf, pos)
        partitions.append((index, records))
    return partitions, pos


# --------------------------------------------------------------------------- response

def encode_produce_response(version: int, topics, throttle_time_ms: int = 0) -> bytes:
    """The Produce response body (no header) for ``topics`` = [(name, [PartitionResponse])].

    v10+ tagged fields (current leader, node endpoints) are never written.
    """
    _check_version(version)
    flexible = version >= FIRST_FLEXIBLE_VERSION
    write_string = encode_compact_string if flexible else encode_string
    write_count = encode_compact_array_count if flexible else encode_array_count
    out = [write_count(len(topics))]
    for name, partitions in topics:
        out.append(write_string(name))
        out.append(write_count(len(partitions)))
        for partition in partitions:
            _write_partition(out, version, flexible, partition)
        if flexible:
            out.append(EMPTY_TAGGED_FIELDS)
    out.append(INT32.pack(throttle_time_ms))
    if flexible:
        out.append(EMPTY_TAGGED_FIELDS)
    return b"".join(out)


def _write_partition(out: list, version: int, flexible: bool, p: PartitionResponse) -> None:
    if version >= 5:
        out.append(_PARTITION_V5.pack(
            p.index, p.error_code, p.base_offset, p.log_append_time_ms, p.log_start_offset))
    else:
        out.append(_PARTITION_V3.pack(p.index, p.error_code, p.base_offset, p.log_append_time_ms))
    if version >= 8:
        _write_record_errors(out, flexible, p.record_errors)
        write_message = encode_compact_nullable_string if flexible else encode_nullable_string
        out.append(write_message(p.error_message))
    if flexible:
        out.append(EMPTY_TAGGED_FIELDS)


def _write_record_errors(out: list, flexible: bool, record_errors) -> None:
    if flexible:
        out.append(encode_compact_array_count(len(record_errors)))
        for batch_index, message in record_errors:
            out.append(INT32.pack(batch_index))
            out.append(encode_compact_nullable_string(message))
            out.append(EMPTY_TAGGED_FIELDS)
    else:
        out.append(encode_array_count(len(record_errors)))
        for batch_index, message in record_errors:
            out.append(INT32.pack(batch_index))
            out.append(encode_nullable_string(message))
