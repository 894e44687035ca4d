"""Idempotent-producer state of one partition: epoch and last batches per producer id.

Before a client batch with a producer id is appended, `check()` fences older epochs, spots a
retried batch (one of the last five, matched by first and last sequence) and rejects sequence
gaps; after the append, `update()` records it. Only batch headers are used.

Snapshot files `<20-digit offset>.snapshot` (state after every batch below that offset) use
Kafka's own PidSnapshot v1 layout, big endian, so Kafka's tools can read them:

    version int16 (=1) | crc uint32 (CRC-32C of everything after it) | count int32 |
    count x (producerId int64, producerEpoch int16, lastSequence int32, lastOffset int64,
             offsetDelta int32, timestamp int64, coordinatorEpoch int32,
             currentTxnFirstOffset int64)

Kafka writes one entry per producer (its last batch). We write one entry per cached batch,
oldest first, so the whole five-batch window survives a restart; Kafka reading our file keeps
the last entry per producer, which is exactly its own view. A producer with no data batch is
written with lastSequence = lastOffset = -1.
"""
from __future__ import annotations

import os
import struct
from collections import deque
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from josef.protocol.errors import Error
from josef.records.batch import BatchHeader, InvalidRecord

NUM_BATCHES_TO_RETAIN = 5
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
INT32_MAX = 0x7FFFFFFF

_SNAPSHOT_HEAD = struct.Struct(">hI")
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqiqiq")


class CorruptSnapshot(Exception):
    pass


class BatchMetadata(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


class ProducerStateEntry:
    __slots__ = ("producer_id", "epoch", "batches", "coordinator_epoch", "last_timestamp", "txn_first_offset")

    def __init__(self, producer_id: int, epoch: int = -1):
        self.producer_id = producer_id
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(maxlen=NUM_BATCHES_TO_RETAIN)
        self.coordinator_epoch = -1
        self.last_timestamp = -1
        self.txn_first_offset = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.batches.clear()  # sequences restart with every epoch
            self.epoch = epoch

    def __repr__(self) -> str:
        return f"ProducerStateEntry({self.producer_id}, epoch={self.epoch}, batches={list(self.batches)})"


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def first_sequence(last_seq: int, offset_delta: int) -> int:
    return (last_seq - offset_delta) & INT32_MAX


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


class ProducerStateManager:
    """The producers of one partition, and their snapshot files in its directory."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.producers: dict[int, ProducerStateEntry] = {}

    # -- the append path -------------------------------------------------------------------

    def check(self, header: BatchHeader) -> BatchMetadata | None:
        """Validate a client batch before it is written: its cached metadata if it is a retry.

        Raises InvalidRecord with INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE_NUMBER.
        """
        entry = self.producers.get(header.producer_id)
        if entry is None:
            return None  # an unknown producer may start at any sequence (its history may be gone)
        epoch = header.producer_epoch
        if epoch < entry.epoch:
            raise InvalidRecord(Error.INVALID_PRODUCER_EPOCH,
                                f"producer {header.producer_id} epoch {epoch} is older than {entry.epoch}")
        first_seq = header.base_sequence
        if first_seq < 0 or header.is_control:
            return None
        if epoch != entry.epoch:
            if first_seq != 0 and entry.epoch != -1:
                raise InvalidRecord(Error.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                    f"producer {header.producer_id} epoch {epoch} must start at sequence 0, "
                                    f"not {first_seq}")
            return None
        last_seq = header.last_sequence
        for cached in entry.batches:
            if cached.first_seq == first_seq and cached.last_seq == last_seq:
                return cached
        if not in_sequence(entry.last_seq, first_seq):
            raise InvalidRecord(Error.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                f"producer {header.producer_id} sent sequence {first_seq} after {entry.last_seq}")
        return None

    def update(self, header: BatchHeader) -> None:
        """Record a batch that is now in the log (its header carries its final offsets)."""
        pid = header.producer_id
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerStateEntry(pid)
        entry.set_epoch(header.producer_epoch)
        entry.last_timestamp = header.max_timestamp
        if header.is_control:
            entry.txn_first_offset = -1  # a commit/abort marker ends the transaction
            return
        if header.base_sequence >= 0:
            entry.batches.append(BatchMetadata(header.base_sequence, header.last_sequence,
                                               header.base_offset, header.last_offset, header.max_timestamp))
        if header.is_transactional and entry.txn_first_offset < 0:
            entry.txn_first_offset = header.base_offset

    def remove_expired(self, now_ms: int, max_idle_ms: int) -> None:
        """Forget producers idle for `max_idle_ms` (Kafka's producer.id.expiration.ms) outside a transaction."""
        expired = [pid for pid, e in self.producers.items()
                   if e.txn_first_offset < 0 and now_ms - e.last_timestamp >= max_idle_ms]
        for pid in expired:
            del self.producers[pid]

    def clear(self) -> None:
        self.producers.clear()

    # -- snapshots -------------------------------------------------------------------------

    def snapshot_offsets(self) -> list[int]:
        offsets = []
        for name in os.listdir(self.dir):
            if name.endswith(SNAPSHOT_SUFFIX) and name[:-len(SNAPSHOT_SUFFIX)].isdigit():
                offsets.append(int(name[:-len(SNAPSHOT_SUFFIX)]))
        return sorted(offsets)

    def take_snapshot(self, offset: int, *, sync: bool = True) -> Path:
        """Write the current state as of `offset` (every batch below it is included)."""
        path = snapshot_path(self.dir, offset)
        data = encode_snapshot(self.producers.values())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return path

    def load_latest_snapshot(self, first_offset: int, log_end_offset: int) -> int:
        """Replace the state with the newest usable snapshot; the offset to replay the log from.

        Snapshots outside [first_offset, log_end_offset] (the log was truncated or its start
        deleted) and corrupt ones are deleted.
        """
        self.producers.clear()
        for offset in reversed(self.snapshot_offsets()):
            path = snapshot_path(self.dir, offset)
            if offset > log_end_offset or offset < first_offset:
                path.unlink(missing_ok=True)
                continue
            try:
                self.producers = decode_snapshot(path.read_bytes())
                return offset
            except (CorruptSnapshot, OSError):
                path.unlink(missing_ok=True)
        return first_offset

    def delete_snapshots(self, *, below: int | None = None, above: int | None = None) -> None:
        for offset in self.snapshot_offsets():
            if (below is not None and offset < below) or (above is not None and offset > above):
                snapshot_path(self.dir, offset).unlink(missing_ok=True)


def encode_snapshot(entries) -> bytes:
    parts = []
    for e in entries:
        if e.batches:
            for b in e.batches:
                parts.append(_ENTRY.pack(e.producer_id, e.epoch, b.last_seq, b.last_offset,
                                         b.last_offset - b.first_offset, b.timestamp,
                                         e.coordinator_epoch, e.txn_first_offset))
        else:
            parts.append(_ENTRY.pack(e.producer_id, e.epoch, -1, -1, 0, e.last_timestamp,
                                     e.coordinator_epoch, e.txn_first_offset))
    body = _COUNT.pack(len(parts)) + b"".join(parts)
    return _SNAPSHOT_HEAD.pack(SNAPSHOT_VERSION, crc32c(body)) + body


def decode_snapshot(data: bytes) -> dict[int, ProducerStateEntry]:
    if len(data) < _SNAPSHOT_HEAD.size + _COUNT.size:
        raise CorruptSnapshot("snapshot too short")
    version, crc = _SNAPSHOT_HEAD.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshot(f"unknown snapshot version {version}")
    body = memoryview(data)[_SNAPSHOT_HEAD.size:]
    if crc32c(body) != crc:
        raise CorruptSnapshot("snapshot CRC mismatch")
    (count,) = _COUNT.unpack_from(body, 0)
    if count < 0 or len(body) != _COUNT.size + count * _ENTRY.size:
        raise CorruptSnapshot("snapshot length does not match its entry count")
    producers: dict[int, ProducerStateEntry] = {}
    for pid, epoch, last_seq, last_offset, delta, ts, coord_epoch, txn_first in \
            _ENTRY.iter_unpack(body[_COUNT.size:]):
        entry = producers.get(pid)
        if entry is None:
            entry = producers[pid] = ProducerStateEntry(pid, epoch)
        entry.set_epoch(epoch)
        if last_offset >= 0:
            entry.batches.append(BatchMetadata(first_sequence(last_seq, delta), last_seq,
                                               last_offset - delta, last_offset, ts))
        entry.last_timestamp = ts
        entry.coordinator_epoch = coord_epoch
        entry.txn_first_offset = txn_first
    return producers
