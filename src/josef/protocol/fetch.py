"""Fetch (api key 1) codecs, versions 4..12 (flexible in v12): the broker's request decoder and
response encoder, and the response decoder of the replica fetcher.

The response encoder returns the body as a list of bytes-like chunks for ``transport.writelines``:
the record chunks the caller passes are placed in the list as they are, never copied or joined, so a
multi-megabyte response costs a few small ``struct.pack`` calls. The response decoder is its mirror:
each partition's records come back as a memoryview slice of the frame, never copied or parsed.
Layouts follow Kafka's FetchRequest.json / FetchResponse.json.

Framing a response (the caller's job)::

    chunks = encode_fetch_response(version, topics)
    header = response_header(correlation_id, flexible=version >= 12)
    size = len(header) + fetch_response_size(chunks)
    transport.writelines([struct.pack(">i", size), header, *chunks])
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from josef.protocol.errors import MalformedRequest, MalformedResponse
from josef.protocol.primitives import (
    EMPTY_TAGGED_FIELDS, INT32, byte_view, encode_array_count, encode_compact_array_count,
    encode_compact_string, encode_string, encode_uvarint, expect_end,
    read_array_count, read_compact_array_count, read_compact_nullable_array_count, read_compact_string,
    read_compact_topics,
    read_int32, read_nullable_array_count, read_string, read_struct, read_uvarint, skip_tagged_fields,
    slice_sized,
)

__all__ = [
    "MIN_VERSION", "MAX_VERSION", "FIRST_FLEXIBLE_VERSION",
    "FetchRequest", "FetchPartition", "FetchPartitionResponse", "FetchResponse", "FetchedPartition",
    "decode_fetch_request", "encode_fetch_response", "fetch_response_size", "decode_fetch_response",
]

MIN_VERSION = 4
MAX_VERSION = 12
FIRST_FLEXIBLE_VERSION = 12


class FetchPartition(NamedTuple):
    partition: int
    current_leader_epoch: int  # -1 before v9
    fetch_offset: int
    last_fetched_epoch: int  # -1 before v12
    log_start_offset: int  # -1 before v5
    partition_max_bytes: int


class FetchRequest(NamedTuple):
    replica_id: int
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    isolation_level: int
    session_id: int  # 0 before v7
    session_epoch: int  # -1 before v7
    topics: list[tuple[str, list[FetchPartition]]]
    forgotten: list[tuple[str, list[int]]]  # empty before v7
    rack_id: str  # "" before v11


class FetchPartitionResponse(NamedTuple):
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: Sequence[tuple[int, int]] | None = None  # (producer_id, first_offset)
    preferred_read_replica: int = -1
    # Bytes-like chunks whose concatenation is the records field; [] is empty, None is null.
    records: Sequence | None = ()


def _check_version(version: int) -> None:
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not supported (v{MIN_VERSION}..v{MAX_VERSION})")


# --------------------------------------------------------------------------- request

# replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level[, session_id, session_epoch]
_REQUEST_HEAD_V4 = struct.Struct(">iiiib")
_REQUEST_HEAD_V7 = struct.Struct(">iiiibii")


# A NamedTuple's generated __new__ costs three times tuple.__new__; per-partition objects are
# built directly.
_new = tuple.__new__


def _partition_v4(t: tuple) -> FetchPartition:  # partition, fetch_offset, partition_max_bytes
    return _new(FetchPartition, (t[0], -1, t[1], -1, -1, t[2]))


def _partition_v5(t: tuple) -> FetchPartition:  # + log_start_offset
    return _new(FetchPartition, (t[0], -1, t[1], -1, t[2], t[3]))


def _partition_v9(t: tuple) -> FetchPartition:  # + current_leader_epoch
    return _new(FetchPartition, (t[0], t[1], t[2], -1, t[3], t[4]))


def _partition_v12(t: tuple) -> FetchPartition:  # + last_fetched_epoch: exactly our field order
    return _new(FetchPartition, t)


# Per version: the partition's fixed fields as one Struct, and how to map them to FetchPartition.
# v12 adds last_fetched_epoch, making the wire order exactly FetchPartition's.
_PARTITION_LAYOUTS = {
    4: (struct.Struct(">iqi"), _partition_v4),
    5: (struct.Struct(">iqqi"), _partition_v5),
    9: (struct.Struct(">iiqqi"), _partition_v9),
    12: (struct.Struct(">iiqiqi"), _partition_v12),
}
for _v in range(MIN_VERSION + 1, MAX_VERSION + 1):  # versions without changes reuse the previous one
    if _v not in _PARTITION_LAYOUTS:
        _PARTITION_LAYOUTS[_v] = _PARTITION_LAYOUTS[_v - 1]
del _v


def decode_fetch_request(buf, offset: int, version: int) -> FetchRequest:
    """Decode the Fetch body that starts at ``offset`` and runs to the end of ``buf``.

    Unknown tagged fields (and v12's cluster_id tag) are skipped. Raises MalformedRequest for
    anything that is not exactly one valid body, ValueError for a version outside 4..12.
    """
    _check_version(version)
    buf = byte_view(buf)
    flexible = version >= FIRST_FLEXIBLE_VERSION
    head, pos = _read_request_head(buf, offset, version)
    topics, pos = _read_topics(buf, pos, version, flexible)
    forgotten = []
    if version >= 7:
        forgotten, pos = _read_forgotten(buf, pos, flexible)
    rack_id = ""
    if version >= 11:
        rack_id, pos = (read_compact_string if flexible else read_string)(buf, pos)
    if flexible:
        pos = skip_tagged_fields(buf, pos)
    expect_end(buf, pos)
    return _new(FetchRequest, (*head, topics, forgotten, rack_id))


def _read_request_head(buf, pos: int, version: int) -> tuple[tuple, int]:
    if version >= 7:
        return read_struct(_REQUEST_HEAD_V7, buf, pos)
    head, pos = read_struct(_REQUEST_HEAD_V4, buf, pos)
    return head + (0, -1), pos  # no fetch sessions before v7


def _topic_min_size(flexible: bool) -> int:
    """Smallest topic entry (name length, array count[, tags]), to reject counts that cannot fit."""
    return 3 if flexible else 6


def _read_topics(buf, pos: int, version: int, flexible: bool) -> tuple[list, int]:
    layout, make = _PARTITION_LAYOUTS[version]
    read_name = read_compact_string if flexible else read_string
    read_count = read_compact_array_count if flexible else read_array_count
    count, pos = read_count(buf, pos, _topic_min_size(flexible))
    topics = []
    for _ in range(count):
        name, pos = read_name(buf, pos)
        n_partitions, pos = read_count(buf, pos, layout.size + flexible)
        partitions = []
        for _ in range(n_partitions):
            fields, pos = read_struct(layout, buf, pos)
            if flexible:
                pos = skip_tagged_fields(buf, pos)
            partitions.append(make(fields))
        if flexible:
            pos = skip_tagged_fields(buf, pos)
        topics.append((name, partitions))
    return topics, pos


def _read_forgotten(buf, pos: int, flexible: bool) -> tuple[list, int]:
    read_name = read_compact_string if flexible else read_string
    read_count = read_compact_array_count if flexible else read_array_count
    count, pos = read_count(buf, pos, _topic_min_size(flexible))
    forgotten = []
    for _ in range(count):
        name, pos = read_name(buf, pos)
        n, pos = read_count(buf, pos, 4)
        # The count was checked against the bytes left, so this unpack is in bounds.
        partitions = list(struct.unpack_from(f">{n}i", buf, pos))
        pos += 4 * n
        if flexible:
            pos = skip_tagged_fields(buf, pos)
        forgotten.append((name, partitions))
    return forgotten, pos


# --------------------------------------------------------------------------- response

# throttle_time_ms[, error_code, session_id]
_RESPONSE_HEAD_V4 = struct.Struct(">i")
_RESPONSE_HEAD_V7 = struct.Struct(">ihi")
# partition, error_code, high_watermark, last_stable_offset[, log_start_offset]
_PARTITION_FIELDS_V4 = struct.Struct(">ihqq")
_PARTITION_FIELDS_V5 = struct.Struct(">ihqqq")
_ABORTED = struct.Struct(">qq")  # producer_id, first_offset
_ABORTED_FLEX = struct.Struct(">qqB")  # ... + empty tagged fields
# A null array or null records field: legacy int32 -1, compact uvarint 0. Indexed by `flexible`.
_NULL = (b"\xff\xff\xff\xff", b"\x00")


def fetch_response_size(chunks) -> int:
    """Byte length of an encoded body (for the frame's size prefix); chunks must be byte-format."""
    return sum(map(len, chunks))


def encode_fetch_response(version: int, topics, *, throttle_time_ms: int = 0,
                          error_code: int = 0, session_id: int = 0) -> list:
    """The Fetch response body (no header, no size prefix) as a list of bytes-like chunks.

    ``topics`` = [(name, [FetchPartitionResponse])]. Each partition's record chunks appear in the
    list as given (same objects); everything between two partitions' records is one bytes chunk.
    Tagged fields (v12) are always empty. Size the frame with :func:`fetch_response_size`.
    """
    _check_version(version)
    flexible = version >= FIRST_FLEXIBLE_VERSION
    write_string = encode_compact_string if flexible else encode_string
    write_count = encode_compact_array_count if flexible else encode_array_count
    tags = EMPTY_TAGGED_FIELDS if flexible else b""
    chunks = []
    pending = _response_head(version, throttle_time_ms, error_code, session_id) + write_count(len(topics))
    for name, partitions in topics:
        pending += write_string(name) + write_count(len(partitions))
        for partition in partitions:
            chunks.append(pending + _partition_head(version, flexible, partition))
            if partition.records:
                chunks.extend(partition.records)
            pending = tags  # the partition's tagged fields follow its records
        pending += tags
    pending += tags
    if pending:
        chunks.append(pending)
    return chunks


def _response_head(version: int, throttle_time_ms: int, error_code: int, session_id: int) -> bytes:
    if version >= 7:
        return _RESPONSE_HEAD_V7.pack(throttle_time_ms, error_code, session_id)
    return _RESPONSE_HEAD_V4.pack(throttle_time_ms)


def _partition_head(version: int, flexible: bool, p: FetchPartitionResponse) -> bytes:
    """Everything of a partition before its record bytes, the records length included."""
    records = p.records
    if p.aborted_transactions is None and records is not None:
        return _plain_partition_head(version, p, sum(map(len, records)))
    if version >= 5:
        head = _PARTITION_FIELDS_V5.pack(
            p.partition, p.error_code, p.high_watermark, p.last_stable_offset, p.log_start_offset)
    else:
        head = _PARTITION_FIELDS_V4.pack(
            p.partition, p.error_code, p.high_watermark, p.last_stable_offset)
    aborted = p.aborted_transactions
    head += _NULL[flexible] if aborted is None else _encode_aborted(flexible, aborted)
    if version >= 11:
        head += INT32.pack(p.preferred_read_replica)
    if records is None:
        return head + _NULL[flexible]
    size = sum(map(len, records))
    return head + (encode_uvarint(size + 1) if flexible else INT32.pack(size))


# The usual partition (no aborted transactions, records present) as one pack per version:
# fields, null aborted array, [preferred_read_replica], records length (v12: a varint, appended).
_PLAIN_V4 = struct.Struct(">ihqqii")
_PLAIN_V5 = struct.Struct(">ihqqqii")
_PLAIN_V11 = struct.Struct(">ihqqqiii")
_PLAIN_V12 = struct.Struct(">ihqqqBi")


def _plain_partition_head(version: int, p: FetchPartitionResponse, size: int) -> bytes:
    """Fast path of _partition_head: half the calls for the partitions nearly every fetch has."""
    if version >= 12:
        return _PLAIN_V12.pack(p.partition, p.error_code, p.high_watermark, p.last_stable_offset,
                               p.log_start_offset, 0, p.preferred_read_replica) + encode_uvarint(size + 1)
    if version == 11:
        return _PLAIN_V11.pack(p.partition, p.error_code, p.high_watermark, p.last_stable_offset,
                               p.log_start_offset, -1, p.preferred_read_replica, size)
    if version >= 5:
        return _PLAIN_V5.pack(p.partition, p.error_code, p.high_watermark, p.last_stable_offset,
                              p.log_start_offset, -1, size)
    return _PLAIN_V4.pack(p.partition, p.error_code, p.high_watermark, p.last_stable_offset, -1, size)


def _encode_aborted(flexible: bool, aborted) -> bytes:
    if flexible:
        pack = _ABORTED_FLEX.pack
        return encode_uvarint(len(aborted) + 1) + b"".join(
            [pack(producer_id, first_offset, 0) for producer_id, first_offset in aborted])
    pack = _ABORTED.pack
    return INT32.pack(len(aborted)) + b"".join(
        [pack(producer_id, first_offset) for producer_id, first_offset in aborted])


# --------------------------------------------------------------------------- response decoder

class FetchedPartition(NamedTuple):
    """One partition of a decoded Fetch response; fields a version lacks hold Kafka's defaults."""
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int  # -1 before v5
    aborted_transactions: list[tuple[int, int]] | None  # (producer_id, first_offset); None = null
    preferred_read_replica: int  # -1 before v11
    records: memoryview | None  # a slice of the frame (never copied); None = null
    # v12 tagged fields, None when absent: tag 0 (epoch, end_offset), tag 1 (leader_id, leader_epoch),
    # tag 2 (end_offset, epoch).
    diverging_epoch: tuple[int, int] | None = None
    current_leader: tuple[int, int] | None = None
    snapshot_id: tuple[int, int] | None = None


class FetchResponse(NamedTuple):
    throttle_time_ms: int
    error_code: int  # 0 before v7
    session_id: int  # 0 before v7
    topics: list[tuple[str, list[FetchedPartition]]]


# A partition's fixed head: partition, error_code, high_watermark, last_stable_offset[, log_start_offset]
_HEAD_V4 = _PARTITION_FIELDS_V4
_HEAD_V5 = _PARTITION_FIELDS_V5
# v12's usual partition up to its records: the v5 head, a null aborted array (uvarint 0) and
# preferred_read_replica, read with one unpack (same layout as the encoder's _PLAIN_V12).
_HEAD_PLAIN_V12 = _PLAIN_V12
_ABORTED_NULL_AT = _HEAD_V5.size  # where the aborted array starts in a v12 partition
# Smallest encodings, to reject counts that cannot fit in the bytes left:
# flexible topic = name length + partition count + tags; partition = head + aborted count +
# preferred_read_replica + records length + tags; aborted entry = two int64 + tags.
_FLEX_TOPIC_MIN, _FLEX_PARTITION_MIN, _FLEX_ABORTED_MIN = 3, _HEAD_V5.size + 7, 17
_LEGACY_TOPIC_MIN, _LEGACY_ABORTED_MIN = 6, 16
# v12 partition tags: tag -> (layout, field order as returned). EpochEndOffset (epoch, end_offset),
# LeaderIdAndEpoch (leader_id, leader_epoch), SnapshotId (end_offset, epoch); each a flexible struct.
_PARTITION_TAGS = {0: struct.Struct(">iq"), 1: struct.Struct(">ii"), 2: struct.Struct(">qi")}

_truncated = MalformedRequest  # primitives' error, turned into MalformedResponse at the top


def decode_fetch_response(buf, offset: int, version: int) -> FetchResponse:
    """Decode the Fetch response body that starts at ``offset`` and runs to the end of ``buf``.

    ``buf`` is the frame (bytes, bytearray or memoryview); every partition's records are a memoryview
    slice of it. Unknown tagged fields are skipped; known ones must fill exactly their declared size.
    Raises MalformedResponse for anything that is not exactly one valid body (a length or count that
    cannot fit in the bytes left is refused before it is used), ValueError for a version outside 4..12.
    """
    _check_version(version)
    view = byte_view(buf)
    try:
        if version >= FIRST_FLEXIBLE_VERSION:
            response, pos = _read_flexible_response(view, offset)
        else:
            response, pos = _read_legacy_response(view, offset, version)
        expect_end(view, pos)
    except MalformedRequest as e:  # the primitives' error type names requests
        raise MalformedResponse(f"Fetch v{version} response: {e}") from None
    return response


def _read_flexible_response(buf, pos: int) -> tuple[FetchResponse, int]:
    (throttle_time_ms, error_code, session_id), pos = read_struct(_RESPONSE_HEAD_V7, buf, pos)
    topics, pos = read_compact_topics(buf, pos, _FLEX_TOPIC_MIN, _read_flexible_partitions)
    pos = skip_tagged_fields(buf, pos)
    return _new(FetchResponse, (throttle_time_ms, error_code, session_id, topics)), pos


def _read_flexible_partitions(buf, pos: int) -> tuple[list, int]:
    # Hot loop: the usual partition (null aborted array, no tags) is one unpack, one varint and a slice.
    count, pos = read_compact_array_count(buf, pos, _FLEX_PARTITION_MIN)
    partitions = []
    end = len(buf)
    plain = _HEAD_PLAIN_V12.unpack_from
    plain_size = _HEAD_PLAIN_V12.size
    for _ in range(count):
        if pos + plain_size > end:  # every partition, aborted transactions or not, is longer
            raise _truncated(f"truncated partition at offset {pos}")
        if buf[pos + _ABORTED_NULL_AT] == 0:
            index, error_code, high_watermark, last_stable, log_start, _, preferred = plain(buf, pos)
            pos += plain_size
            aborted = None
        else:
            index, error_code, high_watermark, last_stable, log_start = _HEAD_V5.unpack_from(buf, pos)
            aborted, pos = _read_flexible_aborted(buf, pos + _ABORTED_NULL_AT)
            preferred, pos = read_int32(buf, pos)
        size, pos = read_uvarint(buf, pos)
        size -= 1  # compact: length+1, 0 = null
        if size >= 0 and pos + size <= end:
            records = buf[pos:pos + size]
            pos += size
        else:
            records, pos = slice_sized(buf, pos, size)  # null, or raises
        if pos < end and buf[pos] == 0:
            pos += 1
            partitions.append(_new(FetchedPartition, (
                index, error_code, high_watermark, last_stable, log_start, aborted, preferred, records,
                None, None, None)))
        else:
            tags, pos = _read_partition_tags(buf, pos)
            partitions.append(_new(FetchedPartition, (
                index, error_code, high_watermark, last_stable, log_start, aborted, preferred, records,
                *tags)))
    return partitions, pos


def _read_flexible_aborted(buf, pos: int) -> tuple[list | None, int]:
    count, pos = read_compact_nullable_array_count(buf, pos, _FLEX_ABORTED_MIN)
    if count < 0:
        return None, pos
    aborted = []
    unpack = _ABORTED.unpack_from
    end = len(buf)
    for _ in range(count):  # bounded by the count check; each entry's tags may be longer than one byte
        if pos + 16 > end:
            raise _truncated(f"truncated aborted transaction at offset {pos}")
        aborted.append(unpack(buf, pos))
        pos = skip_tagged_fields(buf, pos + 16)
    return aborted, pos


def _read_partition_tags(buf, pos: int) -> tuple[list, int]:
    """A partition's tagged-field section: [diverging_epoch, current_leader, snapshot_id]."""
    values = [None, None, None]
    count, pos = read_uvarint(buf, pos)
    end = len(buf)
    if count * 2 > end - pos:  # a tag number and a size take a byte each at least
        raise _truncated(f"{count} tagged fields at offset {pos} cannot fit in {end - pos} bytes")
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        stop = pos + size
        if stop > end:
            raise _truncated(f"tagged field {tag} of {size} bytes at offset {pos} exceeds the {end - pos} left")
        layout = _PARTITION_TAGS.get(tag)
        if layout is not None:  # a known tag is a flexible struct: its fields, then its own tags
            if pos + layout.size > stop:
                raise _truncated(f"tagged field {tag} at offset {pos}: {size} bytes are too few")
            values[tag] = layout.unpack_from(buf, pos)
            if skip_tagged_fields(buf, pos + layout.size) != stop:
                raise _truncated(f"tagged field {tag} at offset {pos} does not fill its {size} bytes")
        pos = stop
    return values, pos


def _read_legacy_response(buf, pos: int, version: int) -> tuple[FetchResponse, int]:
    if version >= 7:
        (throttle_time_ms, error_code, session_id), pos = read_struct(_RESPONSE_HEAD_V7, buf, pos)
    else:
        (throttle_time_ms,), pos = read_struct(_RESPONSE_HEAD_V4, buf, pos)
        error_code = session_id = 0
    head = _HEAD_V5 if version >= 5 else _HEAD_V4
    # head + aborted count + [preferred_read_replica] + records length
    partition_min = head.size + 8 + 4 * (version >= 11)
    count, pos = read_array_count(buf, pos, _LEGACY_TOPIC_MIN)
    topics = []
    for _ in range(count):
        name, pos = read_string(buf, pos)
        n_partitions, pos = read_array_count(buf, pos, partition_min)
        partitions = []
        for _ in range(n_partitions):  # bounded by the count check; earlier records may leave too few
            fields, pos = read_struct(head, buf, pos)
            if version < 5:
                fields += (-1,)
            aborted, pos = _read_legacy_aborted(buf, pos)
            preferred = -1
            if version >= 11:
                preferred, pos = read_int32(buf, pos)
            size, pos = read_int32(buf, pos)
            records, pos = slice_sized(buf, pos, size)
            partitions.append(_new(FetchedPartition, (*fields, aborted, preferred, records, None, None, None)))
        topics.append((name, partitions))
    return _new(FetchResponse, (throttle_time_ms, error_code, session_id, topics)), pos


def _read_legacy_aborted(buf, pos: int) -> tuple[list | None, int]:
    count, pos = read_nullable_array_count(buf, pos, _LEGACY_ABORTED_MIN)
    if count < 0:
        return None, pos
    unpack = _ABORTED.unpack_from
    aborted = [unpack(buf, pos + 16 * i) for i in range(count)]  # in bounds: the count was checked
    return aborted, pos + 16 * count
