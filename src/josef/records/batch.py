"""RecordBatch v2 as bytes: a header view, validation, and in-place patching.

Layout (big endian), offsets into the batch:
  0 baseOffset int64 | 8 batchLength int32 | 12 partitionLeaderEpoch int32 | 16 magic int8
  17 crc uint32 (CRC-32C of bytes 21..end) | 21 attributes int16 | 23 lastOffsetDelta int32
  27 baseTimestamp int64 | 35 maxTimestamp int64 | 43 producerId int64 | 51 producerEpoch int16
  53 baseSequence int32 | 57 recordCount int32 | 61 records...
Base offset and leader epoch lie outside the CRC, so a broker assigns them without recomputing it.
"""
from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from crc32c import crc32c

from josef.protocol.errors import Error

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part not counted in batchLength
MAGIC_OFFSET = 16
CRC_START = 21

_HEADER = struct.Struct(">qiibIhiqqqhii")
_PATCH_OFFSET = struct.Struct(">q")
_PATCH_EPOCH = struct.Struct(">i")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_FLAG = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20


class InvalidRecord(Exception):
    """A batch Kafka would refuse; `code` is the error to return for its partition."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_FLAG)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf, pos: int = 0) -> BatchHeader:
    """The header of the batch starting at `pos`; InvalidRecord if it cannot be one."""
    if len(buf) - pos < HEADER_SIZE:
        raise InvalidRecord(Error.CORRUPT_MESSAGE, "record batch shorter than its header")
    header = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if header.magic != 2:
        raise InvalidRecord(Error.INVALID_RECORD, f"message format v{header.magic} is not supported; only v2 record batches")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise InvalidRecord(Error.CORRUPT_MESSAGE, f"batch length {header.batch_length} is too small")
    return header


def crc_ok(buf, pos: int, header: BatchHeader) -> bool:
    end = pos + header.size
    return crc32c(memoryview(buf)[pos + CRC_START:end]) == header.crc


def validate_produce_records(buf, api_version: int) -> BatchHeader:
    """Check the records of one partition in a Produce request (v3+: exactly one v2 batch).

    Only the header and the CRC are examined; the records themselves stay bytes.
    """
    if len(buf) >= MAGIC_OFFSET + 1 and buf[MAGIC_OFFSET] != 2:
        raise InvalidRecord(Error.INVALID_RECORD,
                            f"Produce v{api_version} only accepts record batches with magic 2")
    header = read_header(buf, 0)
    if header.size != len(buf):
        if header.size > len(buf):
            raise InvalidRecord(Error.CORRUPT_MESSAGE, "record batch is truncated")
        raise InvalidRecord(Error.INVALID_RECORD,
                            f"Produce v{api_version} accepts exactly one record batch per partition")
    if header.compression > 4:
        raise InvalidRecord(Error.CORRUPT_MESSAGE, f"unknown compression codec {header.compression}")
    if header.compression == 4 and api_version < 7:
        raise InvalidRecord(Error.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7 or later")
    # Like Kafka, check the CRC before trusting the fields it covers: damage there is corruption.
    if not crc_ok(buf, 0, header):
        raise InvalidRecord(Error.CORRUPT_MESSAGE, "record batch CRC mismatch")
    if header.is_control:
        raise InvalidRecord(Error.INVALID_RECORD, "clients may not write control batches")
    if header.record_count <= 0 or header.last_offset_delta != header.record_count - 1:
        raise InvalidRecord(Error.INVALID_RECORD,
                            f"batch has {header.record_count} records but last offset delta {header.last_offset_delta}")
    return header


def patch(buf, pos: int, base_offset: int, leader_epoch: int) -> None:
    """Assign the batch at `pos` its base offset and leader epoch, in place (CRC unaffected)."""
    _PATCH_OFFSET.pack_into(buf, pos, base_offset)
    _PATCH_EPOCH.pack_into(buf, pos + 12, leader_epoch)


def iter_batches(buf, pos: int = 0) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each complete batch in `buf`; stops at a truncated tail.

    Raises InvalidRecord on a header that cannot be a v2 batch; the CRC is not checked here.
    """
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        header = read_header(buf, pos)
        if pos + header.size > end:
            return
        yield pos, header
        pos += header.size
