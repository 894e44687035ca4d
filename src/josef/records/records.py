"""The records inside one RecordBatch v2: decoding them and building batches from them.

Record layout (after the 61-byte batch header, compressed as a whole when the codec is set):
  length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
  keyLength varint | key | valueLength varint | value | headerCount varint
  headers: keyLength varint | key (utf-8) | valueLength varint | value
Varints are zig-zag encoded base-128 (protobuf style); a length of -1 means null.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator, NamedTuple, Optional

from crc32c import crc32c

from josef.protocol.errors import Error
from josef.records.batch import (
    _HEADER, CRC_START, HEADER_SIZE, LOG_OVERHEAD, TIMESTAMP_TYPE_FLAG, TRANSACTIONAL_FLAG,
    InvalidRecord, read_header,
)
from josef.records.compression import compress, decompress

_VARINT_MAX = 5  # bytes an int32 takes at most
_VARLONG_MAX = 10
_INT32_MAX = 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Record(NamedTuple):
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list[tuple[str, Optional[bytes]]]


def _corrupt(message: str) -> InvalidRecord:
    return InvalidRecord(Error.CORRUPT_MESSAGE, message)


# -- decoding ---------------------------------------------------------------------------------

def iter_records(batch) -> Iterator[Record]:
    """The records of the batch at the start of `batch`, decompressed, with absolute offsets.

    Malformed input raises InvalidRecord(CORRUPT_MESSAGE); being a generator, possibly only
    after the records before the damage have been yielded.
    """
    header = read_header(batch, 0)
    if header.size > len(batch):
        raise _corrupt(f"record batch of {header.size} bytes is truncated to {len(batch)}")
    if header.record_count < 0:
        raise _corrupt(f"negative record count {header.record_count}")
    if header.compression:
        data = decompress(header.compression, memoryview(batch)[HEADER_SIZE:header.size])
        pos, end = 0, len(data)
    else:
        # Parse in place; bytes and bytearray index faster than a memoryview.
        data = batch if isinstance(batch, (bytes, bytearray)) else memoryview(batch).cast("B")
        pos, end = HEADER_SIZE, header.size
    return _decode(data, pos, end, header)


def _decode(data, pos: int, end: int, header) -> Iterator[Record]:
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    append_time = header.max_timestamp if header.is_log_append_time else None
    for index in range(header.record_count):
        if pos >= end:
            raise _corrupt(f"batch declares {header.record_count} records but holds {index}")
        length, pos = _read_varint(data, pos, end, _VARINT_MAX)
        record_end = pos + length
        if length < 1 or record_end > end:
            raise _corrupt(f"record length {length} does not fit the batch")
        pos += 1  # attributes: unused by v2
        timestamp_delta, pos = _read_varint(data, pos, record_end, _VARLONG_MAX)
        offset_delta, pos = _read_varint(data, pos, record_end, _VARINT_MAX)
        key, pos = _read_bytes(data, pos, record_end)
        value, pos = _read_bytes(data, pos, record_end)
        headers, pos = _read_headers(data, pos, record_end)
        if pos != record_end:
            raise _corrupt(f"record declares {length} bytes but its fields take {length + pos - record_end}")
        timestamp = base_timestamp + timestamp_delta if append_time is None else append_time
        yield Record(base_offset + offset_delta, timestamp, key, value, headers)
    if pos != end:
        raise _corrupt(f"{end - pos} bytes left over after the batch's {header.record_count} records")


def _read_varint(data, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """Zig-zag varint at `pos`, reading no further than `end`; returns (value, next pos)."""
    if pos < end:
        byte = data[pos]
        if byte < 0x80:  # the common one-byte case
            return (byte >> 1) ^ -(byte & 1), pos + 1
    raw = shift = 0
    limit = min(end, pos + max_bytes)
    while pos < limit:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
    raise _corrupt("varint runs past its record" if limit == end else "varint is too long")


def _read_bytes(data, pos: int, end: int) -> tuple[Optional[bytes], int]:
    length, pos = _read_varint(data, pos, end, _VARINT_MAX)
    if length < 0:
        if length != -1:
            raise _corrupt(f"invalid field length {length}")
        return None, pos
    stop = pos + length
    if stop > end:
        raise _corrupt(f"field of {length} bytes runs past its record")
    return bytes(data[pos:stop]), stop


def _read_headers(data, pos: int, end: int) -> tuple[list, int]:
    count, pos = _read_varint(data, pos, end, _VARINT_MAX)
    if count < 0:
        raise _corrupt(f"invalid header count {count}")
    headers = []
    # A huge count costs nothing up front: every header takes at least two bytes, so the
    # loop hits the record's end (and raises) long before it could allocate much.
    for _ in range(count):
        key, pos = _read_bytes(data, pos, end)
        if key is None:
            raise _corrupt("record header with a null key")
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupt("record header key is not valid UTF-8") from None
        value, pos = _read_bytes(data, pos, end)
        headers.append((name, value))
    return headers, pos


# -- building ---------------------------------------------------------------------------------

def build_batch(records: Iterable, *, base_offset: int = 0, compression: int = 0,
                producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                base_timestamp: Optional[int] = None, is_transactional: bool = False,
                leader_epoch: int = -1, log_append_time: bool = False) -> bytes:
    """One v2 batch holding `records`, with a correct CRC.

    Each record is (key, value), (key, value, headers) or (key, value, headers, timestamp_ms),
    taking consecutive offsets; or a Record (any 5-tuple offset, timestamp, key, value,
    headers), which keeps its own absolute offset (so compaction can leave gaps).
    Keys, values and header values are bytes-like, str (utf-8) or None; header keys str.
    Records without a timestamp get `base_timestamp`, or the current time. The batch's base
    timestamp is `base_timestamp` or else the first record's; its max timestamp the largest.
    With log_append_time only the timestamp-type flag is set, so readers report the max
    timestamp for every record: pass the append time as base_timestamp.
    """
    body = bytearray()
    count = 0
    last_delta = -1
    first_timestamp = base_timestamp
    max_timestamp = None
    default_timestamp = base_timestamp
    for record in records:
        offset_delta, timestamp, key, value, headers = _unpack(record, base_offset, last_delta)
        if offset_delta <= last_delta or offset_delta > _INT32_MAX:
            raise ValueError(f"record offset {base_offset + offset_delta} is out of order or range")
        if timestamp is None:
            if default_timestamp is None:
                default_timestamp = int(time.time() * 1000)
            timestamp = default_timestamp
        if first_timestamp is None:
            first_timestamp = timestamp
        if not _INT64_MIN <= timestamp - first_timestamp <= _INT64_MAX:
            raise ValueError(f"timestamp {timestamp} is too far from the base timestamp {first_timestamp}")
        max_timestamp = timestamp if max_timestamp is None else max(max_timestamp, timestamp)
        _write_record(body, offset_delta, timestamp - first_timestamp, key, value, headers)
        count += 1
        last_delta = offset_delta
    if not count:
        raise ValueError("a record batch needs at least one record")

    if compression:
        body = compress(compression, body)
    attributes = compression
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_FLAG
    if is_transactional:
        attributes |= TRANSACTIONAL_FLAG
    out = bytearray(HEADER_SIZE)
    out += body
    _HEADER.pack_into(out, 0, base_offset, len(out) - LOG_OVERHEAD, leader_epoch, 2, 0, attributes,
                      last_delta, first_timestamp, max_timestamp, producer_id, producer_epoch,
                      base_sequence, count)
    crc = crc32c(memoryview(out)[CRC_START:])
    out[CRC_START - 4:CRC_START] = crc.to_bytes(4, "big")
    return bytes(out)


def _unpack(record, base_offset: int, last_delta: int):
    """(offset delta, timestamp or None, key, value, headers) from any accepted record shape."""
    if len(record) == 5:
        offset, timestamp, key, value, headers = record
        return offset - base_offset, timestamp, key, value, headers
    if not 2 <= len(record) <= 4:
        raise ValueError(f"a record is (key, value[, headers[, timestamp]]), not {len(record)} items")
    key, value, headers, timestamp = (tuple(record) + (None, None))[:4]
    return last_delta + 1, timestamp, key, value, headers


def _write_record(out: bytearray, offset_delta: int, timestamp_delta: int, key, value,
                  headers) -> None:
    record = bytearray(b"\x00")  # attributes
    _write_varint(record, timestamp_delta)
    _write_varint(record, offset_delta)
    _write_bytes(record, key)
    _write_bytes(record, value)
    headers = headers or ()
    _write_varint(record, len(headers))
    for name, header_value in headers:
        _write_bytes(record, name)
        _write_bytes(record, header_value)
    _write_varint(out, len(record))
    out += record


def _write_bytes(out: bytearray, data) -> None:
    if data is None:
        out.append(1)  # zig-zag -1
        return
    if isinstance(data, str):
        data = data.encode("utf-8")
    _write_varint(out, len(data))
    out += data


def _write_varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)  # zig-zag: small magnitudes become small unsigned
    while raw > 0x7F:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
