"""Kafka's record compression codecs (attribute bits 0-2 of a v2 batch), all via cramjam.

  0 none | 1 gzip (RFC 1952) | 2 snappy | 3 lz4 (frame format) | 4 zstd (frame format)

Snappy comes in two shapes on the wire: librdkafka writes one raw snappy block, the Java client
writes snappy-java ("xerial") framing: an 8-byte magic, two int32s (version, compatible) and then
blocks of [int32 length][raw snappy]. Every client reads both, so we read both and write xerial
like the Java client (librdkafka only treats a buffer as xerial when it is longer than 20 bytes,
which ours always are: see _snappy_compress).
"""
from __future__ import annotations

import struct

import cramjam

from josef.records.batch import InvalidRecord
from josef.protocol.errors import Error

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_HEADER_SIZE = 16
_XERIAL_BLOCK = 32 * 1024  # snappy-java's default block size
_INT32 = struct.Struct(">i")

# A snappy tag can expand at most 64 output bytes from 2 input bytes; a raw block claiming
# more than this is corrupt, and checking first keeps a forged length from being allocated.
_SNAPPY_MAX_RATIO = 32

_ERRORS = (cramjam.DecompressionError, ValueError, OverflowError, MemoryError)


def compress(codec: int, data) -> bytes:
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == SNAPPY:
        return _snappy_compress(data)
    if codec == LZ4:
        return _lz4_compress(data)
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data, level=3))
    raise InvalidRecord(Error.CORRUPT_MESSAGE, f"unknown compression codec {codec}")


def decompress(codec: int, data) -> bytes:
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == SNAPPY:
            return _snappy_decompress(data)
        if codec == LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except _ERRORS as exc:
        raise InvalidRecord(Error.CORRUPT_MESSAGE,
                            f"cannot decompress {CODEC_NAMES[codec]} records: {exc}") from None
    raise InvalidRecord(Error.CORRUPT_MESSAGE, f"unknown compression codec {codec}")


def _lz4_compress(data) -> bytes:
    # The Java client decodes each LZ4 block on its own, so blocks must not reference
    # earlier ones (lz4's default is linked blocks).
    compressor = cramjam.lz4.Compressor(block_linked=False, content_checksum=False)
    compressor.compress(bytes(data))  # the streaming API takes only bytes
    return bytes(compressor.finish())


def _snappy_compress(data) -> bytes:
    view = memoryview(data).cast("B")
    out = bytearray(_XERIAL_HEADER)
    # range(..) or [0]: empty input still gets one (empty) block, keeping the frame > 20 bytes.
    for start in range(0, len(view), _XERIAL_BLOCK) or [0]:
        block = cramjam.snappy.compress_raw(view[start:start + _XERIAL_BLOCK])
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data) -> bytes:
    view = memoryview(data).cast("B")
    if len(view) < _XERIAL_HEADER_SIZE or view[:8] != XERIAL_MAGIC:
        return _snappy_block(view)
    # Version and compatible are ignored: some producers (redpanda) write them little endian.
    out = bytearray()
    pos, end = _XERIAL_HEADER_SIZE, len(view)
    while pos < end:
        if end - pos < 4:
            raise ValueError("truncated snappy-java block length")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or length > end - pos:
            raise ValueError(f"snappy-java block length {length} exceeds the data")
        out += _snappy_block(view[pos:pos + length])
        pos += length
    return bytes(out)


def _snappy_block(view: memoryview) -> bytes:
    claimed = _snappy_length(view)
    if claimed > _SNAPPY_MAX_RATIO * len(view) + 64:
        raise ValueError(f"snappy block claims {claimed} bytes from {len(view)}")
    return bytes(cramjam.snappy.decompress_raw(view))


def _snappy_length(view: memoryview) -> int:
    """The uncompressed length a raw snappy block starts with (an unsigned varint)."""
    value = shift = 0
    for i in range(min(len(view), 5)):
        byte = view[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise ValueError("bad snappy length preamble")
