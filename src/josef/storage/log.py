"""A partition's log: its segments, offsets, leader epochs and producer state (Kafka's UnifiedLog).

Batches arrive validated (header and CRC, by `records.batch`) and leave as the bytes that were
stored. Appending patches the base offset and leader epoch into a copy of the batch and
writes it with one os.write; reading returns whole batches with os.pread. Neither decodes a
record; only `offset_for_timestamp` and `max_timestamp` decode the single batch they land on.
"""
from __future__ import annotations

import bisect
import dataclasses
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

from crc32c import crc32c

from josef.protocol.errors import Error
from josef.records.batch import CRC_START, TIMESTAMP_TYPE_FLAG, BatchHeader, InvalidRecord, crc_ok, iter_batches, patch
from josef.records.records import iter_records
from josef.storage.cleaner import complete_swaps
from josef.storage.checkpoint import fsync_dir
from josef.storage.leader_epoch import FILE_NAME as EPOCH_FILE, LeaderEpochCache
from josef.storage.producer_state import ProducerStateManager
from josef.storage.segment import DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment

LONG_MAX = 2**63 - 1
STRAY_SUFFIXES = (DELETED_SUFFIX, ".cleaned", ".swap", ".tmp")

_ATTRIBUTES = struct.Struct(">h")  # at byte 21
_MAX_TIMESTAMP = struct.Struct(">q")  # at byte 35
_CRC = struct.Struct(">I")  # at byte 17
_NEW_TUPLE = tuple.__new__  # builds a BatchHeader without NamedTuple._replace's overhead


@dataclass
class LogConfig:
    """Kafka's topic configs as storage sees them; attribute = Kafka name with '.' -> '_'."""

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10485760
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_after_max_ms: int = LONG_MAX
    message_timestamp_difference_max_ms: int = LONG_MAX
    retention_ms: int = 604800000
    retention_bytes: int = -1
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 86400000
    file_delete_delay_ms: int = 60000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    min_insync_replicas: int = 1
    compression_type: str = "producer"
    unclean_leader_election_enable: bool = False
    preallocate: bool = False

    def __post_init__(self) -> None:
        if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
            raise ValueError(f"message.timestamp.type must be CreateTime or LogAppendTime, "
                             f"not {self.message_timestamp_type!r}")
        if self.segment_bytes < 14 or self.segment_bytes > 2**31 - 1:
            raise ValueError(f"segment.bytes {self.segment_bytes} is out of range")
        if self.index_interval_bytes < 0 or self.segment_index_bytes < 4:
            raise ValueError("index.interval.bytes and segment.index.bytes must be positive")

    @classmethod
    def from_dict(cls, values: dict[str, str], base: "LogConfig | None" = None) -> "LogConfig":
        """A config from Kafka's dotted names ("segment.bytes": "1024"); unknown keys are ignored."""
        base = base or cls()
        changes = {}
        for f in dataclasses.fields(cls):
            key = f.name.replace("_", ".")
            if key not in values:
                continue
            raw = values[key]
            default = getattr(base, f.name)
            try:
                if isinstance(default, bool):
                    if str(raw).lower() not in ("true", "false"):
                        raise ValueError(raw)
                    changes[f.name] = str(raw).lower() == "true"
                elif isinstance(default, int):
                    changes[f.name] = int(raw)
                elif isinstance(default, float):
                    changes[f.name] = float(raw)
                else:
                    changes[f.name] = str(raw)
            except ValueError:
                raise ValueError(f"invalid value {raw!r} for {key}") from None
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, str]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name.replace("_", ".")] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


class OffsetOutOfRange(Exception):
    code = Error.OFFSET_OUT_OF_RANGE


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    duplicate: bool


class ReadResult(NamedTuple):
    chunks: list[bytes]
    size: int


EMPTY_READ = ReadResult([], 0)


class PartitionLog:
    """One partition directory `<topic>-<partition>`: segments, offsets, epochs, producers."""

    def __init__(self, path: Path, topic: str, partition: int, config: LogConfig):
        self.dir = path
        self.topic = topic
        self.partition = partition
        self.config = config
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []  # base offsets, for bisect
        self._leo = 0
        self.log_start_offset = 0
        self.recovery_point = 0
        self.high_watermark = 0  # owned by the replica manager
        self.epochs = LeaderEpochCache(path / EPOCH_FILE)
        self.producers = ProducerStateManager(path)
        self._last_flush_ms = _now_ms()
        self._dir_dirty = False  # segment files created since the last directory fsync
        self._closed = False

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, topic: str, partition: int, config: LogConfig, *,
             recovery_point: int = 0, log_start_offset: int = 0, clean_shutdown: bool = False) -> "PartitionLog":
        path.mkdir(parents=True, exist_ok=True)
        log = cls(path, topic, partition, config)
        log._load(recovery_point, log_start_offset, clean_shutdown)
        return log

    def _load(self, recovery_point: int, log_start_offset: int, clean_shutdown: bool) -> None:
        bases = self._clean_directory()
        interval = self.config.index_interval_bytes
        # Segments from the one holding the recovery point on may hold unflushed, torn data.
        first_unflushed = len(bases) if clean_shutdown else max(0, bisect.bisect_right(bases, recovery_point) - 1)
        for i, base in enumerate(bases):
            segment = LogSegment.open(self.dir, base, interval)
            if i >= first_unflushed:
                truncated = segment.recover(self._recovered_batch)
            else:
                truncated = segment.load()
            self._add_segment(segment)
            if truncated and i + 1 < len(bases):
                # Whatever follows a damaged stretch cannot be trusted to continue it.
                for later in bases[i + 1:]:
                    LogSegment.open(self.dir, later, interval).delete()
                break
        if not self._segments:
            self._add_segment(LogSegment.create(self.dir, log_start_offset, interval))
        self._leo = self._segments[-1].next_offset
        self.log_start_offset = max(log_start_offset, self._bases[0])
        if self.log_start_offset > self._leo:
            self.truncate_fully_and_start_at(self.log_start_offset)
            return
        self.epochs.truncate_from_end(self._leo)
        self.epochs.truncate_from_start(self.log_start_offset)
        self.recovery_point = self._leo if clean_shutdown else min(max(recovery_point, self.log_start_offset), self._leo)
        self._rebuild_producer_state()
        self.high_watermark = self._leo

    def _clean_directory(self) -> list[int]:
        """Finish an interrupted compaction swap, delete leftovers of interrupted deletions and
        cleanings; the base offsets of the `.log` files."""
        complete_swaps(self.dir)
        names = os.listdir(self.dir)
        bases = set()
        for name in names:
            if name.endswith(STRAY_SUFFIXES):
                (self.dir / name).unlink(missing_ok=True)
            elif name.endswith(LOG_SUFFIX) and _is_offset(name[:-len(LOG_SUFFIX)]):
                bases.add(int(name[:-len(LOG_SUFFIX)]))
        for name in names:
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                stem = name[:-len(suffix)]
                if name.endswith(suffix) and _is_offset(stem) and int(stem) not in bases:
                    (self.dir / name).unlink(missing_ok=True)  # an index without its log
        return sorted(bases)

    def _recovered_batch(self, header: BatchHeader) -> None:
        if header.partition_leader_epoch > self.epochs.latest_epoch:
            self.epochs.assign(header.partition_leader_epoch, header.base_offset)

    def _add_segment(self, segment: LogSegment) -> None:
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    def _rebuild_producer_state(self) -> None:
        """Latest snapshot, then the batch headers written after it."""
        # Batches below the log start but still on disk count: their producers are still live.
        start = self.producers.load_latest_snapshot(self._bases[0], self._leo)
        update = self.producers.update
        for header in self._headers_from(start):
            if header.producer_id >= 0:
                update(header)

    def _headers_from(self, offset: int) -> Iterator[BatchHeader]:
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        for segment in self._segments[i:]:
            position = segment.locate(offset)
            if position is None:
                continue
            for _, header in segment.headers(position):
                yield header

    # -- offsets -----------------------------------------------------------------------------

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def last_flush_ms(self) -> int:
        return self._last_flush_ms

    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    # -- appending ---------------------------------------------------------------------------

    def append(self, batch: bytes | memoryview, header: BatchHeader, leader_epoch: int, now_ms: int) -> AppendResult:
        """Append one validated client batch as the leader: assign offsets, check idempotence."""
        size = len(batch)
        if size != header.size:
            raise InvalidRecord(Error.CORRUPT_MESSAGE, f"batch of {size} bytes declares {header.size}")
        if size > self.config.max_message_bytes:
            raise InvalidRecord(Error.MESSAGE_TOO_LARGE,
                                f"batch of {size} bytes exceeds max.message.bytes {self.config.max_message_bytes}")
        append_time = self.config.message_timestamp_type == "LogAppendTime"
        if header.producer_id >= 0:
            duplicate = self.producers.check(header)
            if duplicate is not None:
                return AppendResult(duplicate.first_offset, duplicate.last_offset,
                                    duplicate.timestamp if append_time else -1, self.log_start_offset, True)
        base = self._leo
        buf = bytearray(batch)
        patch(buf, 0, base, leader_epoch)
        if append_time:
            header = _set_log_append_time(buf, header, now_ms)
        header = _NEW_TUPLE(BatchHeader, (base, header[1], leader_epoch) + header[3:])
        self._segment_for(header, now_ms).append(buf, header)
        self._leo = last = base + header.last_offset_delta + 1
        if leader_epoch > self.epochs.latest_epoch:
            self.epochs.assign(leader_epoch, base)
        if header.producer_id >= 0:
            self.producers.update(header)
        config = self.config
        if last - self.recovery_point >= config.flush_messages or now_ms - self._last_flush_ms >= config.flush_ms:
            self.flush(now_ms=now_ms)
        return AppendResult(base, last - 1, now_ms if append_time else -1, self.log_start_offset, False)

    def append_as_follower(self, records: bytes | memoryview, now_ms: int) -> int:
        """Append batches fetched from the leader, offsets and epochs as the leader assigned them.

        Every batch is checked (header, CRC, offsets not below the log end); producer state
        and the epoch cache follow the batches without fencing. A trailing partial batch
        (fetch responses may cut one) is ignored. Returns the new log end offset.
        """
        view = memoryview(records)
        batches: list[tuple[int, BatchHeader]] = []
        expected = self._leo
        for position, header in iter_batches(view):
            if header.base_offset < expected:
                raise InvalidRecord(Error.CORRUPT_MESSAGE,
                                    f"replicated batch at offset {header.base_offset} is below {expected}")
            if not crc_ok(view, position, header):
                raise InvalidRecord(Error.CORRUPT_MESSAGE,
                                    f"replicated batch at offset {header.base_offset} has a bad CRC")
            batches.append((position, header))
            expected = header.next_offset
        i = 0
        while i < len(batches):
            start, first = batches[i]
            segment = self._segment_for(first, now_ms)
            # One write for the run of batches that fits the segment.
            j, size = i + 1, first.size
            while j < len(batches):
                header = batches[j][1]
                if segment.size + size + header.size > self.config.segment_bytes \
                        or not segment.fits_offset(header.last_offset):
                    break
                size += header.size
                j += 1
            headers = [h for _, h in batches[i:j]]
            segment.append_batches(view[start:start + size], headers)
            self._leo = headers[-1].next_offset
            for header in headers:
                if header.partition_leader_epoch > self.epochs.latest_epoch:
                    self.epochs.assign(header.partition_leader_epoch, header.base_offset)
                if header.producer_id >= 0:
                    self.producers.update(header)
            i = j
        self._maybe_flush(now_ms)
        return self._leo

    def assign_epoch(self, epoch: int, start_offset: int | None = None) -> None:
        """Record a new leader epoch beginning at `start_offset` (the LEO when leadership starts)."""
        self.epochs.assign(epoch, self._leo if start_offset is None else start_offset)

    def _segment_for(self, header: BatchHeader, now_ms: int) -> LogSegment:
        """The active segment, rolled first if `header`'s batch should start a new one."""
        segment = self._segments[-1]
        if not segment.size:
            return segment
        config = self.config
        # As Kafka: age is measured between record timestamps when the segment has any.
        first = segment.first_batch_timestamp
        waited = header.max_timestamp - first if first >= 0 else now_ms - segment.created_ms
        if (segment.size + header.size > config.segment_bytes
                or waited > config.segment_ms - config.segment_jitter_ms
                or segment.index_full(config.segment_index_bytes)
                or not segment.fits_offset(header.last_offset)):
            segment = self.roll(header.base_offset)
        return segment

    def roll(self, base_offset: int | None = None) -> LogSegment:
        """Start a new active segment at the log end offset (unless the active one is empty)."""
        base_offset = self._leo if base_offset is None else base_offset
        active = self._segments[-1]
        if active.size == 0:
            return active
        active.on_become_inactive()
        segment = LogSegment.create(self.dir, base_offset, self.config.index_interval_bytes)
        self._add_segment(segment)
        self._dir_dirty = True
        # A snapshot per segment bounds the replay after a crash or truncation.
        self.producers.take_snapshot(base_offset, sync=False)
        return segment

    def _maybe_flush(self, now_ms: int) -> None:
        config = self.config
        if self._leo - self.recovery_point >= config.flush_messages or now_ms - self._last_flush_ms >= config.flush_ms:
            self.flush(now_ms=now_ms)

    def flush(self, offset: int | None = None, *, now_ms: int | None = None) -> None:
        """fsync everything below `offset` (default: the log end) and advance the recovery point."""
        offset = self._leo if offset is None else min(offset, self._leo)
        if offset > self.recovery_point:
            for segment in self._segments:
                if segment.base_offset >= offset:
                    break
                if segment.next_offset > self.recovery_point:
                    segment.flush()
            self.recovery_point = offset
        if self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False
        self._last_flush_ms = _now_ms() if now_ms is None else now_ms

    # -- reading -----------------------------------------------------------------------------

    def read(self, fetch_offset: int, max_bytes: int, *, min_one: bool = True,
             max_offset: int | None = None) -> ReadResult:
        """Whole batches from the one containing `fetch_offset`, up to `max_bytes`.

        With `min_one` a first batch larger than `max_bytes` is returned whole (KIP-74).
        Batches holding offsets at or beyond `max_offset` (the high watermark) are never returned.
        """
        if fetch_offset < self.log_start_offset or fetch_offset > self._leo:
            raise OffsetOutOfRange(f"offset {fetch_offset} is outside [{self.log_start_offset}, {self._leo}] "
                                   f"of {self.topic}-{self.partition}")
        limit = self._leo if max_offset is None else min(max_offset, self._leo)
        if fetch_offset >= limit:
            return EMPTY_READ
        segments = self._segments
        i = max(0, bisect.bisect_right(self._bases, fetch_offset) - 1)
        chunks: list[bytes] = []
        size = 0
        while i < len(segments):
            segment = segments[i]
            i += 1
            position = segment.locate(fetch_offset)
            if position is None:
                continue  # an offset gap between segments
            data, at_end = segment.slice(position, max_bytes - size, limit, min_one and not size)
            if data:
                chunks.append(data)
                size += len(data)
            if not at_end or size >= max_bytes:
                break
            fetch_offset = segment.next_offset
        return ReadResult(chunks, size)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp` (ListOffsets), or None.

        Finds the batch from headers, then decodes that one batch for the exact record.
        """
        for segment in self._segments:
            if segment.max_timestamp < timestamp:
                continue
            found = segment.find_timestamp(timestamp)
            if found is None:
                continue
            position, header = found
            batch = segment.read(position, header.size)
            try:
                for record in iter_records(batch):
                    if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                        return record.offset, record.timestamp
            except InvalidRecord:
                pass
            return max(header.base_offset, self.log_start_offset), header.max_timestamp
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (ListOffsets -3), or None if empty."""
        best = None
        for segment in self._segments:
            if segment.max_timestamp >= 0 and (best is None or segment.max_timestamp > best.max_timestamp):
                best = segment
        if best is None:
            return None
        found = best.find_timestamp(best.max_timestamp)
        if found is not None:
            position, header = found
            try:
                for record in iter_records(best.read(position, header.size)):
                    if record.timestamp == header.max_timestamp:
                        return record.offset, record.timestamp
            except InvalidRecord:
                pass
        return best.offset_of_max_timestamp, best.max_timestamp

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= `epoch`, its end offset), (-1, -1) if unknown."""
        return self.epochs.end_offset_for(epoch, self._leo)

    # -- truncation and deletion -------------------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Drop everything from `offset` on (a follower diverged); whole batches, as Kafka.

        Returns whether anything was removed.
        """
        if offset >= self._leo:
            return False
        if offset < self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return True
        keep = max(1, bisect.bisect_left(self._bases, offset))
        for segment in self._segments[keep:]:
            segment.delete()
        del self._segments[keep:], self._bases[keep:]
        self._segments[-1].truncate_to(offset)
        self._leo = self._segments[-1].next_offset
        # A batch straddling `offset` goes whole, possibly taking the log start with it.
        self.log_start_offset = min(self.log_start_offset, self._leo)
        self.epochs.truncate_from_end(self._leo)
        self.producers.delete_snapshots(above=self._leo)
        self._rebuild_producer_state()
        self.recovery_point = min(self.recovery_point, self._leo)
        self.high_watermark = min(self.high_watermark, self._leo)
        return True

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log and continue at `offset` (a follower far behind the leader's log start)."""
        for segment in self._segments:
            segment.delete()
        self._segments, self._bases = [], []
        self._add_segment(LogSegment.create(self.dir, offset, self.config.index_interval_bytes))
        self._dir_dirty = True
        self._leo = self.log_start_offset = self.recovery_point = self.high_watermark = offset
        self.epochs.clear()
        self.producers.clear()
        self.producers.delete_snapshots(below=LONG_MAX)

    def delete_records_before(self, offset: int) -> int:
        """Advance the log start offset (DeleteRecords); drops segments wholly below it."""
        if offset > self._leo or offset < 0:
            raise OffsetOutOfRange(f"offset {offset} is beyond the log end {self._leo}")
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self._delete_segments(lambda segment, next_base: next_base <= offset)
            self.epochs.truncate_from_start(offset)
            self.high_watermark = max(self.high_watermark, offset)
            self.recovery_point = max(self.recovery_point, offset)
        return self.log_start_offset

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention (cleanup.policy=delete): drop segments past retention.ms or beyond retention.bytes.

        Only segments below the high watermark go; the active one is rolled first when it must
        go too. Returns the number of segments deleted.
        """
        config = self.config
        if "delete" not in config.cleanup_policy:
            return 0
        deleted = 0
        if config.retention_ms >= 0:
            deleted += self._delete_segments(
                lambda s, _: now_ms - s.largest_timestamp() > config.retention_ms, roll=True)
        if config.retention_bytes >= 0:
            excess = self.size_bytes - config.retention_bytes

            def over(segment: LogSegment, _next_base: int) -> bool:
                nonlocal excess
                if excess - segment.size < 0:
                    return False
                excess -= segment.size
                return True
            deleted += self._delete_segments(over, roll=True)
        return deleted

    def _delete_segments(self, predicate, *, roll: bool = False) -> int:
        """Delete leading segments while `predicate(segment, next base offset)` holds."""
        count = 0
        while count < len(self._segments):
            segment = self._segments[count]
            last = count + 1 == len(self._segments)
            upper = self._leo if last else self._bases[count + 1]
            if upper > self.high_watermark or not predicate(segment, upper) or (last and not (roll and segment.size)):
                break
            count += 1
        if not count:
            return 0
        if count == len(self._segments):
            self.roll()
        for segment in self._segments[:count]:
            segment.delete()
        del self._segments[:count], self._bases[:count]
        self.log_start_offset = max(self.log_start_offset, self._bases[0])
        self.epochs.truncate_from_start(self.log_start_offset)
        self.producers.delete_snapshots(below=self._bases[0])
        return count

    # -- closing -----------------------------------------------------------------------------

    def close(self, *, flush: bool = True) -> None:
        """Flush, write the producer snapshot at the log end, close the files.

        `flush=False` only closes the files (the log is about to be deleted).
        """
        if self._closed:
            return
        if flush:
            self.active_segment.on_become_inactive()  # its final time index entry, flushed below
            self.flush()
            self.producers.take_snapshot(self._leo, sync=True)
        for segment in self._segments:
            segment.close()
        self._closed = True

    def __repr__(self) -> str:
        return (f"PartitionLog({self.topic}-{self.partition}, start={self.log_start_offset}, "
                f"end={self._leo}, hw={self.high_watermark}, segments={len(self._segments)})")


def _set_log_append_time(buf: bytearray, header: BatchHeader, now_ms: int) -> BatchHeader:
    """Stamp the batch with the broker's time (LogAppendTime); the CRC covers both fields."""
    attributes = header.attributes | TIMESTAMP_TYPE_FLAG
    _ATTRIBUTES.pack_into(buf, 21, attributes)
    _MAX_TIMESTAMP.pack_into(buf, 35, now_ms)
    crc = crc32c(memoryview(buf)[CRC_START:])
    _CRC.pack_into(buf, 17, crc)
    return header._replace(attributes=attributes, max_timestamp=now_ms, crc=crc)


def _is_offset(stem: str) -> bool:
    return len(stem) == 20 and stem.isdigit()


def _now_ms() -> int:
    return int(time.time() * 1000)
