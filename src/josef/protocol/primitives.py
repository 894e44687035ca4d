"""Bounds-checked readers and small writers for the Kafka wire primitives used on the hot path.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``. ``buf`` is ``bytes`` or a one-dimensional
byte-format ``memoryview`` (see :func:`byte_view`); the bytes readers return ``buf[start:end]``, which is a
zero-copy view when ``buf`` is a memoryview. Every length or count read from the wire is checked against
the bytes that remain *before* it is used, and every violation raises :class:`MalformedRequest`: a hostile
frame can never make us allocate or loop more than its own size.

Writers return ``bytes``; the codecs join or chain them (they never copy record data).
"""
from __future__ import annotations

import struct

from josef.protocol.errors import MalformedRequest

__all__ = [
    "INT8", "INT16", "INT32", "INT64", "EMPTY_TAGGED_FIELDS",
    "byte_view", "expect_end", "read_struct", "slice_sized",
    "read_int8", "read_int16", "read_int32", "read_int64",
    "read_uvarint", "read_uvarint64",
    "read_string", "read_nullable_string", "read_compact_string", "read_compact_nullable_string",
    "read_bytes", "read_nullable_bytes", "read_compact_bytes", "read_compact_nullable_bytes",
    "read_array_count", "read_nullable_array_count",
    "read_compact_array_count", "read_compact_nullable_array_count",
    "skip_tagged_fields",
    "encode_uvarint", "encode_string", "encode_nullable_string",
    "encode_compact_string", "encode_compact_nullable_string",
    "encode_bytes_length", "encode_compact_bytes_length",
    "encode_array_count", "encode_nullable_array_count",
    "encode_compact_array_count", "encode_compact_nullable_array_count",
]

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")

# An empty KIP-482 tagged-field section: a uvarint count of zero.
EMPTY_TAGGED_FIELDS = b"\x00"

_MAX_UVARINT32 = 0xFFFFFFFF
_MAX_UVARINT64 = 0xFFFFFFFFFFFFFFFF


# --------------------------------------------------------------------------- errors and helpers

def _truncated(buf, pos: int, need: int) -> MalformedRequest:
    return MalformedRequest(f"need {need} bytes at offset {pos}, only {len(buf) - pos} left")


def byte_view(buf) -> memoryview:
    """A flat byte memoryview over ``buf`` (no copy), so slices of it are zero-copy."""
    kind = type(buf)
    if kind is bytes or kind is bytearray:  # always flat bytes: no checks needed
        return memoryview(buf)
    view = buf if kind is memoryview else memoryview(buf)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def expect_end(buf, pos: int) -> None:
    """A request must be consumed exactly: trailing bytes mean we misread it."""
    if pos != len(buf):
        raise MalformedRequest(f"{len(buf) - pos} unexpected trailing bytes at offset {pos}")


def read_struct(st: struct.Struct, buf, pos: int) -> tuple[tuple, int]:
    """Unpack several fixed-size fields with one precompiled Struct (one bounds check, one call)."""
    end = pos + st.size
    if end > len(buf):
        raise _truncated(buf, pos, st.size)
    return st.unpack_from(buf, pos), end


# --------------------------------------------------------------------------- fixed-size integers

def read_int8(buf, pos: int) -> tuple[int, int]:
    if pos + 1 > len(buf):
        raise _truncated(buf, pos, 1)
    return INT8.unpack_from(buf, pos)[0], pos + 1


def read_int16(buf, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise _truncated(buf, pos, 2)
    return INT16.unpack_from(buf, pos)[0], pos + 2


def read_int32(buf, pos: int) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise _truncated(buf, pos, 4)
    return INT32.unpack_from(buf, pos)[0], pos + 4


def read_int64(buf, pos: int) -> tuple[int, int]:
    if pos + 8 > len(buf):
        raise _truncated(buf, pos, 8)
    return INT64.unpack_from(buf, pos)[0], pos + 8


# --------------------------------------------------------------------------- unsigned varints

def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """An unsigned varint in the uint32 range (at most 5 bytes): lengths, counts and tags.

    Unrolled: record lengths take 2-3 bytes, and a loop costs more than the decoding itself.
    ``pos`` is never negative, so IndexError can only mean the buffer ended.
    """
    try:
        byte = buf[pos]
        if byte < 0x80:  # nearly every count and string length fits one byte
            return byte, pos + 1
        value = byte & 0x7F
        byte = buf[pos + 1]
        if byte < 0x80:
            return value | byte << 7, pos + 2
        value |= (byte & 0x7F) << 7
        byte = buf[pos + 2]
        if byte < 0x80:
            return value | byte << 14, pos + 3
        value |= (byte & 0x7F) << 14
        byte = buf[pos + 3]
        if byte < 0x80:
            return value | byte << 21, pos + 4
        value |= (byte & 0x7F) << 21
        byte = buf[pos + 4]
    except IndexError:
        raise _truncated(buf, pos, 1) from None
    if byte > 0x0F:  # a continuation bit (a 6th byte) or bits beyond 32
        raise MalformedRequest(f"varint at offset {pos} is longer than 5 bytes or exceeds uint32")
    return value | byte << 28, pos + 5


def read_uvarint64(buf, pos: int) -> tuple[int, int]:
    """An unsigned varint in the uint64 range (at most 10 bytes)."""
    start = pos
    end = min(len(buf), pos + 10)
    value = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _MAX_UVARINT64:
                raise MalformedRequest(f"varint at offset {start} exceeds uint64")
            return value, pos
        shift += 7
    if pos - start == 10:
        raise MalformedRequest(f"varint at offset {start} is longer than 10 bytes")
    raise _truncated(buf, pos, 1)


# --------------------------------------------------------------------------- lengths

def _legacy_length(buf, pos: int, st: struct.Struct) -> tuple[int, int]:
    """An int16/int32 length or count; -1 means null, anything below is malformed."""
    end = pos + st.size
    if end > len(buf):
        raise _truncated(buf, pos, st.size)
    size = st.unpack_from(buf, pos)[0]
    if size < -1:
        raise MalformedRequest(f"negative length {size} at offset {pos}")
    return size, end


def _null(pos: int, what: str) -> MalformedRequest:
    return MalformedRequest(f"null {what} at offset {pos} where a value is required")


def _too_long(buf, pos: int, size: int) -> MalformedRequest:
    return MalformedRequest(f"length {size} at offset {pos} exceeds the {len(buf) - pos} bytes left")


# --------------------------------------------------------------------------- strings

def _text(buf, pos: int, size: int, errors: str) -> tuple[str | None, int]:
    """The ``size`` UTF-8 bytes at ``pos`` whose length the caller already read (-1 = null)."""
    if size < 0:
        if size == -1:
            return None, pos
        raise MalformedRequest(f"negative length {size} before offset {pos}")
    end = pos + size
    if end > len(buf):
        raise _too_long(buf, pos, size)
    try:
        return str(buf[pos:end], "utf-8", errors), end
    except UnicodeDecodeError:
        raise MalformedRequest(f"invalid UTF-8 in string at offset {pos}") from None


def read_nullable_string(buf, pos: int, errors: str = "strict") -> tuple[str | None, int]:
    """Legacy string: int16 length (-1 = null) then UTF-8 bytes."""
    size, pos = _legacy_length(buf, pos, INT16)
    return _text(buf, pos, size, errors)


def read_string(buf, pos: int, errors: str = "strict") -> tuple[str, int]:
    size, start = _legacy_length(buf, pos, INT16)
    if size == -1:
        raise _null(pos, "string")
    return _text(buf, start, size, errors)


def read_compact_nullable_string(buf, pos: int, errors: str = "strict") -> tuple[str | None, int]:
    """Compact string: uvarint length+1 (0 = null) then UTF-8 bytes."""
    size, pos = read_uvarint(buf, pos)
    return _text(buf, pos, size - 1, errors)


def read_compact_string(buf, pos: int, errors: str = "strict") -> tuple[str, int]:
    size, start = read_uvarint(buf, pos)
    if size == 0:
        raise _null(pos, "string")
    return _text(buf, start, size - 1, errors)


# --------------------------------------------------------------------------- bytes (zero-copy)

def slice_sized(buf, pos: int, size: int):
    """The ``size`` bytes at ``pos`` whose length the caller already read (-1 = null)."""
    if size < 0:
        if size == -1:
            return None, pos
        raise MalformedRequest(f"negative length {size} before offset {pos}")
    end = pos + size
    if end > len(buf):
        raise _too_long(buf, pos, size)
    return buf[pos:end], end


def read_nullable_bytes(buf, pos: int):
    """Legacy bytes: int32 length (-1 = null) then the bytes, returned as ``buf[pos:end]``."""
    size, pos = _legacy_length(buf, pos, INT32)
    return slice_sized(buf, pos, size)


def read_bytes(buf, pos: int):
    value, end = read_nullable_bytes(buf, pos)
    if value is None:
        raise _null(pos, "bytes")
    return value, end


def read_compact_nullable_bytes(buf, pos: int):
    """Compact bytes: uvarint length+1 (0 = null) then the bytes, returned as ``buf[pos:end]``."""
    size, pos = read_uvarint(buf, pos)
    return slice_sized(buf, pos, size - 1)


def read_compact_bytes(buf, pos: int):
    value, end = read_compact_nullable_bytes(buf, pos)
    if value is None:
        raise _null(pos, "bytes")
    return value, end


# --------------------------------------------------------------------------- array counts

def _check_count(buf, pos: int, count: int, min_size: int) -> None:
    """Each element takes at least ``min_size`` bytes, so a count that cannot fit is a lie."""
    if count * min_size > len(buf) - pos:
        raise MalformedRequest(
            f"array of {count} elements at offset {pos} cannot fit in {len(buf) - pos} bytes")


def read_nullable_array_count(buf, pos: int, min_size: int = 1) -> tuple[int, int]:
    """Legacy array: int32 count, -1 = null (returned as -1)."""
    count, end = _legacy_length(buf, pos, INT32)
    if count * min_size > len(buf) - end:
        _check_count(buf, end, count, min_size)
    return count, end


def read_array_count(buf, pos: int, min_size: int = 1) -> tuple[int, int]:
    count, end = _legacy_length(buf, pos, INT32)
    if count < 0:
        raise _null(pos, "array")
    if count * min_size > len(buf) - end:
        _check_count(buf, end, count, min_size)
    return count, end


def read_compact_nullable_array_count(buf, pos: int, min_size: int = 1) -> tuple[int, int]:
    """Compact array: uvarint count+1, 0 = null (returned as -1)."""
    count, end = read_uvarint(buf, pos)
    count -= 1  # stored as count+1 so that 0 can mean null
    if count * min_size > len(buf) - end:
        _check_count(buf, end, count, min_size)
    return count, end


def read_compact_array_count(buf, pos: int, min_size: int = 1) -> tuple[int, int]:
    count, end = read_uvarint(buf, pos)
    if count == 0:
        raise _null(pos, "array")
    count -= 1  # stored as count+1 so that 0 can mean null
    if count * min_size > len(buf) - end:
        _check_count(buf, end, count, min_size)
    return count, end


# --------------------------------------------------------------------------- tagged fields

def skip_tagged_fields(buf, pos: int) -> int:
    """Skip a KIP-482 tagged-field section; unknown tags must be ignored, so we ignore them all.

    Callers that need a specific tag read the section themselves.
    """
    end = len(buf)
    if pos < end and buf[pos] == 0:  # the usual case: no tags
        return pos + 1
    count, pos = read_uvarint(buf, pos)
    _check_count(buf, pos, count, 2)  # each tag needs at least a tag byte and a size byte
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > end:
            raise _too_long(buf, pos - size, size)
    return pos


# --------------------------------------------------------------------------- writers

# Most varints we write are small: precompute them.
_SMALL_UVARINTS = tuple(bytes((i,)) for i in range(128))


def encode_uvarint(value: int) -> bytes:
    # Unrolled for the sizes records lengths take (up to 256 MiB in four bytes).
    if value < 0x80:
        if value < 0:
            raise ValueError(f"uvarint out of range: {value}")
        return _SMALL_UVARINTS[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80,
                      value >> 21))
    return _encode_uvarint_long(value)


def _encode_uvarint_long(value: int) -> bytes:
    if value > _MAX_UVARINT64:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_nullable_string(value: str | None) -> bytes:
    """Legacy string: int16 length (-1 = null) then UTF-8 bytes."""
    if value is None:
        return b"\xff\xff"
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise ValueError(f"string of {len(raw)} bytes does not fit an int16 length")
    return INT16.pack(len(raw)) + raw


def encode_string(value: str) -> bytes:
    if value is None:
        raise ValueError("null string where a value is required")
    return encode_nullable_string(value)


def encode_compact_nullable_string(value: str | None) -> bytes:
    """Compact string: uvarint length+1 (0 = null) then UTF-8 bytes."""
    if value is None:
        return b"\x00"
    raw = value.encode()
    return encode_uvarint(len(raw) + 1) + raw


def encode_compact_string(value: str) -> bytes:
    if value is None:
        raise ValueError("null string where a value is required")
    return encode_compact_nullable_string(value)


def encode_bytes_length(size: int | None) -> bytes:
    """The int32 prefix of legacy (nullable) bytes; the caller sends the bytes themselves."""
    return b"\xff\xff\xff\xff" if size is None else INT32.pack(size)


def encode_compact_bytes_length(size: int | None) -> bytes:
    """The uvarint prefix of compact (nullable) bytes; the caller sends the bytes themselves."""
    return b"\x00" if size is None else encode_uvarint(size + 1)


def encode_array_count(count: int) -> bytes:
    return INT32.pack(count)


def encode_nullable_array_count(count: int | None) -> bytes:
    return b"\xff\xff\xff\xff" if count is None else INT32.pack(count)


def encode_compact_array_count(count: int) -> bytes:
    return encode_uvarint(count + 1)


def encode_compact_nullable_array_count(count: int | None) -> bytes:
    return b"\x00" if count is None else encode_uvarint(count + 1)


def read_compact_topics(buf, pos: int, min_size: int, read_partitions) -> tuple[list, int]:
    """A flexible version's topic array, [(name, partitions)]: a compact string, the partitions
    `read_partitions(buf, pos)` reads, tagged fields; Produce requests and Fetch responses."""
    count, pos = read_compact_array_count(buf, pos, min_size)
    topics = []
    for _ in range(count):
        name, pos = read_compact_string(buf, pos)
        partitions, pos = read_partitions(buf, pos)
        pos = skip_tagged_fields(buf, pos)
        topics.append((name, partitions))
    return topics, pos
