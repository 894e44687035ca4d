"""One segment of a partition log, in Kafka's files and formats.

`<20-digit base offset>.log`   record batches, byte for byte as produced (offsets patched)
`<base>.index`                 sparse offset index: int32 relative offset, int32 file position
                               (big endian); an entry every `index.interval.bytes` of log,
                               holding the *last* offset of the batch at that position
`<base>.timeindex`             sparse time index: int64 timestamp, int32 relative offset;
                               written at the same points, only when the max timestamp grew

The log file is opened unbuffered and appended with one os.write per batch; reads use
os.pread. Index entries live in memory (array module) and reach their files at flush, roll
and close: a crash can lose only entries of unflushed data, and recovery rebuilds those.
Truncation cuts the index files at once (before the `.log`), so no file ever names a batch
that is gone; load() checks each index's last entry against the log all the same.
Nothing here decodes records; batch headers are all a segment ever looks at.
"""
from __future__ import annotations

import bisect
import os
import struct
import time
from array import array
from pathlib import Path
from typing import Iterator

from josef.protocol.errors import Error
from josef.records.batch import HEADER_SIZE, BatchHeader, InvalidRecord, crc_ok, read_header

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
INT32_MAX = 0x7FFFFFFF

_SCAN_BLOCK = 16 * 1024  # header walks: enough to cover an index interval of small batches
_RECOVER_BLOCK = 1024 * 1024
_READ_CACHE_LIMIT = 16


def file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


class _Index:
    """A sparse index of (key, value) int pairs, kept in memory and appended to its file."""

    entry: struct.Struct
    key_type = "i"
    value_type = "i"

    def __init__(self, path: Path):
        self.path = path
        self.keys = array(self.key_type)
        self.values = array(self.value_type)
        # The file is `_file_entries` entries long (-1: unknown, rewrite it whole), of which the
        # first `_persisted` are those in memory. After a truncation the file is longer than
        # that prefix until the next write() cuts it: the two counts must not be conflated, or
        # write() sees "nothing new" and leaves entries past the end of the `.log` on disk.
        self._persisted = 0
        self._file_entries = 0
        self._synced = True  # ... and the file is fsynced

    def __len__(self) -> int:
        return len(self.keys)

    def _append(self, key: int, value: int) -> None:
        self.keys.append(key)
        self.values.append(value)

    def _truncate(self, keep: int) -> None:
        """Keep the first `keep` entries in memory; the file is cut at the next write()."""
        if keep < len(self.keys):
            del self.keys[keep:]
            del self.values[keep:]
            self._persisted = min(self._persisted, keep)

    def reset(self) -> None:
        self._truncate(0)
        self._file_entries = -1  # force a rewrite: the file may hold anything

    @property
    def dirty(self) -> bool:
        """Whether the file differs from memory (entries to add, or a stale tail to cut)."""
        return not self._persisted == self._file_entries == len(self.keys)

    def load(self) -> bool:
        """Read the file into memory; False (and empty) if it is missing or fails the sanity check."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self.reset()
            return False
        if len(data) % self.entry.size:
            self.reset()
            return False
        keys, values = array(self.key_type), array(self.value_type)
        for key, value in self.entry.iter_unpack(data):
            keys.append(key)
            values.append(value)
        self.keys, self.values = keys, values
        self._persisted = self._file_entries = len(keys)
        return True

    def write(self, sync: bool = False) -> None:
        """Bring the file up to date with memory: append new entries, cut a truncated tail."""
        if not self.dirty and (self._synced or not sync):
            return
        n = len(self.keys)
        start = self._persisted if self._file_entries >= 0 else 0
        pack = self.entry.pack
        data = b"".join(pack(self.keys[i], self.values[i]) for i in range(start, n))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, start * self.entry.size)
            if data:
                os.pwrite(fd, data, start * self.entry.size)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._persisted = self._file_entries = n
        self._synced = sync


class OffsetIndex(_Index):
    """Keys: offsets relative to the segment base; values: file positions of batches."""

    entry = struct.Struct(">ii")

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch whose last offset is <= the target (0 if none)."""
        i = bisect.bisect_right(self.keys, relative_offset)
        return self.values[i - 1] if i else 0

    def append(self, relative_offset: int, position: int) -> None:
        self._append(relative_offset, position)

    def truncate_to_position(self, position: int) -> None:
        self._truncate(bisect.bisect_left(self.values, position))

    def sane(self, log_size: int) -> bool:
        k, v = self.keys, self.values
        return all(k[i] >= 0 and 0 <= v[i] < log_size and (i == 0 or (k[i] > k[i - 1] and v[i] > v[i - 1]))
                   for i in range(len(k)))


class TimeIndex(_Index):
    """Keys: max timestamp so far; values: relative offset of the batch holding it."""

    entry = struct.Struct(">qi")
    key_type = "q"

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        if timestamp >= 0 and (not self.keys or timestamp > self.keys[-1]):
            self._append(timestamp, relative_offset)

    def last(self) -> tuple[int, int] | None:
        return (self.keys[-1], self.values[-1]) if self.keys else None

    def lookup_before(self, timestamp: int) -> int | None:
        """Relative offset of the last entry with a timestamp strictly below `timestamp`."""
        i = bisect.bisect_left(self.keys, timestamp)
        return self.values[i - 1] if i else None

    def truncate_to_offset(self, relative_offset: int) -> None:
        self._truncate(bisect.bisect_left(self.values, relative_offset))

    def sane(self) -> bool:
        k, v = self.keys, self.values
        return all(v[i] >= 0 and (i == 0 or (k[i] > k[i - 1] and v[i] >= v[i - 1])) for i in range(len(k)))


class LogSegment:
    """A `.log` file with its two indexes; offsets `base_offset` up to `next_offset`."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int, *, truncate: bool = False):
        self.dir = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_path = directory / file_name(base_offset, LOG_SUFFIX)
        self.offset_index = OffsetIndex(directory / file_name(base_offset, INDEX_SUFFIX))
        self.time_index = TimeIndex(directory / file_name(base_offset, TIME_INDEX_SUFFIX))
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd = os.open(self.log_path, flags, 0o644)
        self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1  # last offset of the batch carrying max_timestamp
        self.first_batch_timestamp = -1  # what segment.ms measures age from, as in Kafka
        self.created_ms = int(time.time() * 1000)
        self._bytes_since_index = 0
        self._positions: dict[int, int] = {}  # offset -> position where previous reads ended

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, index_interval_bytes: int) -> "LogSegment":
        segment = cls(directory, base_offset, index_interval_bytes, truncate=True)
        segment.offset_index.reset()
        segment.time_index.reset()
        segment.write_indexes()
        return segment

    @classmethod
    def open(cls, directory: Path, base_offset: int, index_interval_bytes: int) -> "LogSegment":
        """Open an existing segment without recovering it (call `load()` or `recover()` next)."""
        return cls(directory, base_offset, index_interval_bytes)

    def load(self) -> int:
        """Trust the data: load the indexes and scan only the headers after the last index entry.

        Falls back to a full header rebuild when the index files look wrong, and to `recover()`
        when the headers do; returns the bytes that recovery had to truncate (normally 0).
        """
        if not (self.offset_index.load() and self.offset_index.sane(self.size)
                and self.time_index.load() and self.time_index.sane()) \
                or (len(self.offset_index) and not len(self.time_index)) \
                or not self._offset_index_tail_ok():
            return self._reindex()
        try:
            self._scan_tail()
        except InvalidRecord:
            return self.recover()
        if not self._time_index_tail_ok():
            return self._reindex()
        return 0

    # Entries past a truncation point are always the tail of a file (appends rewrite from the
    # first differing entry), so checking the last entry of each index against the batch it
    # names catches stale files, e.g. from a broker that did not cut them on truncation.

    def _offset_index_tail_ok(self) -> bool:
        """The last offset entry names the last offset of a whole batch at its position."""
        index = self.offset_index
        if not len(index):
            return True
        position = index.values[-1]
        try:
            header = self._header_at(position)
        except InvalidRecord:
            return False
        return header.last_offset == self.base_offset + index.keys[-1] and position + header.size <= self.size

    def _time_index_tail_ok(self) -> bool:
        """The last time entry names a batch below the log end whose last offset and max
        timestamp it holds (as `_track` writes it). Call after `_scan_tail`."""
        last = self.time_index.last()
        if last is None:
            return True
        timestamp, relative = last
        offset = self.base_offset + relative
        if offset >= self.next_offset:
            return False
        try:
            for _, header in self.headers(self.offset_index.lookup(relative)):
                if header.last_offset >= offset:
                    return header.last_offset == offset and header.max_timestamp == timestamp
        except InvalidRecord:
            return False
        return False

    def _reindex(self) -> int:
        """Rebuild both indexes from the batch headers (no CRC checks: the data is trusted)."""
        self.offset_index.reset()
        self.time_index.reset()
        self._reset_stats()
        try:
            for position, header in self.headers(0):
                self._track(position, header)
        except InvalidRecord:
            return self.recover()
        self.write_indexes()
        return 0

    def recover(self, on_batch=None) -> int:
        """Validate every batch (header, CRC, offsets), rebuild the indexes, cut a bad tail.

        `on_batch(header)` is called for each valid batch. Returns the bytes truncated.
        """
        self.offset_index.reset()
        self.time_index.reset()
        self._reset_stats()
        pos = 0
        while self.size - pos >= HEADER_SIZE:
            buf = os.pread(self._fd, min(_RECOVER_BLOCK, self.size - pos), pos)
            i, ok = 0, True
            while len(buf) - i >= HEADER_SIZE:
                try:
                    header = read_header(buf, i)
                except InvalidRecord:
                    ok = False
                    break
                if i + header.size > len(buf):
                    if i:
                        break  # re-read from this batch's start
                    if pos + header.size > self.size:
                        ok = False  # torn tail
                        break
                    buf = os.pread(self._fd, header.size, pos)
                if not self._batch_ok(buf, i, header):
                    ok = False
                    break
                self._track(pos + i, header)
                if on_batch is not None:
                    on_batch(header)
                i += header.size
            pos += i
            if not ok or i == 0:
                break
        truncated = self.size - pos
        if truncated:
            os.ftruncate(self._fd, pos)
            self.size = pos
        self.write_indexes()
        return truncated

    def _batch_ok(self, buf, i: int, header: BatchHeader) -> bool:
        return (header.base_offset >= self.next_offset
                and header.last_offset_delta >= 0
                and header.last_offset - self.base_offset <= INT32_MAX
                and crc_ok(buf, i, header))

    def _reset_stats(self) -> None:
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = -1
        self._bytes_since_index = 0
        self._positions.clear()

    def _scan_tail(self) -> None:
        """Recompute next offset and max timestamp from the indexes plus the headers after them."""
        self._reset_stats()
        last = self.time_index.last()
        if last is not None:
            self.max_timestamp, rel = last
            self.offset_of_max_timestamp = self.base_offset + rel
        start = self.offset_index.values[-1] if len(self.offset_index) else 0
        for _, header in self.headers(start):
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp = header.max_timestamp
                self.offset_of_max_timestamp = header.last_offset
            self.next_offset = header.next_offset
        self._bytes_since_index = self.size - start
        if self.size:
            self.first_batch_timestamp = self._header_at(0).max_timestamp

    # -- appending ---------------------------------------------------------------------------

    def append(self, buf, header: BatchHeader) -> None:
        """Write one batch (already patched; `header` describes it as written)."""
        position = self.size
        written = os.write(self._fd, buf)
        if written != len(buf):
            os.ftruncate(self._fd, position)  # never leave half a batch behind
            raise OSError(f"short write to {self.log_path}: {written} of {len(buf)} bytes")
        self.size = position + written
        self._track(position, header)

    def append_batches(self, buf, headers: list[BatchHeader]) -> None:
        """Write several consecutive batches (a follower's fetched records) in one call."""
        position = self.size
        written = os.write(self._fd, buf)
        if written != len(buf):
            os.ftruncate(self._fd, position)
            raise OSError(f"short write to {self.log_path}: {written} of {len(buf)} bytes")
        self.size = position + written
        for header in headers:
            self._track(position, header)
            position += header.size

    def _track(self, position: int, header: BatchHeader) -> None:
        """Account for a batch now at `position`: indexes, next offset, timestamps."""
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if position == 0:
            self.first_batch_timestamp = header.max_timestamp
        if self._bytes_since_index > self.index_interval_bytes:
            self.offset_index.append(header.last_offset - self.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
            self._bytes_since_index = 0
        self._bytes_since_index += header.size
        self.next_offset = header.next_offset

    def largest_timestamp(self) -> int:
        """What retention.ms measures: the max record timestamp, else the file's mtime (as Kafka)."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return int(os.stat(self.log_path).st_mtime * 1000)

    def index_full(self, max_index_bytes: int) -> bool:
        return (len(self.offset_index.keys) + 1) * 8 > max_index_bytes \
            or (len(self.time_index.keys) + 1) * 12 > max_index_bytes

    def fits_offset(self, offset: int) -> bool:
        return offset - self.base_offset <= INT32_MAX

    # -- reading -----------------------------------------------------------------------------

    def read(self, position: int, max_size: int) -> bytes:
        return os.pread(self._fd, max(0, min(max_size, self.size - position)), position)

    def _header_at(self, position: int) -> BatchHeader:
        return read_header(os.pread(self._fd, HEADER_SIZE, position), 0)

    def headers(self, position: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from `position` (a batch boundary) up to `end`.

        Raises InvalidRecord if a header is bad or a batch runs past `end`.
        """
        end = self.size if end is None else end
        while position < end:
            block = os.pread(self._fd, min(_SCAN_BLOCK, end - position), position)
            i, n = 0, len(block)
            while n - i >= HEADER_SIZE:
                header = read_header(block, i)
                if position + i + header.size > end:
                    raise InvalidRecord(Error.CORRUPT_MESSAGE, f"{self.log_path}: batch at {position + i} is torn")
                yield position + i, header
                i += header.size
            if i == 0:
                raise InvalidRecord(Error.CORRUPT_MESSAGE, f"{self.log_path}: torn header at {position}")
            position += i

    def locate(self, offset: int) -> int | None:
        """File position of the batch containing `offset` (or the first one after it), None past the end.

        Index lookup, then a forward walk over headers.
        """
        if offset >= self.next_offset:
            return None
        position = self._positions.get(offset)
        if position is not None:
            return position
        position = self.offset_index.lookup(offset - self.base_offset)
        for position, header in self.headers(position):
            if header.base_offset + header.last_offset_delta >= offset:
                return position
        return None

    def find_timestamp(self, timestamp: int) -> tuple[int, BatchHeader] | None:
        """The first batch whose max timestamp is >= `timestamp`, with its position."""
        if self.max_timestamp < timestamp:
            return None
        rel = self.time_index.lookup_before(timestamp)
        start = 0 if rel is None else self.offset_index.lookup(rel)
        for position, header in self.headers(start):
            if header.max_timestamp >= timestamp:
                return position, header
        return None

    def slice(self, position: int, max_bytes: int, max_offset: int, min_one: bool) -> tuple[bytes, bool]:
        """Whole batches from `position` (a batch start): at most `max_bytes` of them (or, with
        `min_one`, the first one whatever its size), none holding an offset >= `max_offset`.

        Returns the bytes and whether they run to the end of the segment (the read may go on in
        the next one). Batch boundaries come from the offset index plus a short header walk,
        so the cost does not grow with the number of batches returned.
        """
        stop = self.size
        if max_offset < self.next_offset:
            stop = self.locate(max_offset)  # the first batch holding max_offset or beyond
            self._remember(max_offset, stop)
        if stop <= position:
            return b"", stop == self.size
        if stop - position <= max_bytes:
            # Both ends are batch boundaries: everything in between is whole batches.
            return os.pread(self._fd, stop - position, position), stop == self.size
        # Find the last batch end within budget (index, then a short header walk), then read
        # exactly that much: slicing a bigger read would cost a copy of the whole fetch.
        limit = position + max_bytes
        positions = self.offset_index.values
        i = bisect.bisect_right(positions, limit) - 1
        cut = positions[i] if i >= 0 and positions[i] > position else position
        first = None
        for start, header in self.headers(cut, stop):
            if start + header.size > limit:
                self._remember(header.base_offset, start)
                if start == position:
                    first = header
                break
            cut = start + header.size
        if cut > position:
            return os.pread(self._fd, cut - position, position), False
        if not min_one:
            return b"", False
        # The first batch alone exceeds max_bytes: it goes whole (KIP-74).
        self._remember(first.next_offset, position + first.size)
        return os.pread(self._fd, first.size, position), position + first.size == self.size

    def _remember(self, offset: int, position: int) -> None:
        # Consumers and followers fetch from where their last read ended: skip the index walk.
        if offset < self.next_offset and position < self.size:
            if len(self._positions) >= _READ_CACHE_LIMIT:
                self._positions.clear()
            self._positions[offset] = position

    # -- changing and ending -----------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Drop the batch containing `offset` and everything after it; the bytes removed."""
        position = self.locate(offset)
        if position is None:
            return 0
        self.offset_index.truncate_to_position(position)
        # Every batch left ends before `offset`: time entries pointing at or past it are stale.
        self.time_index.truncate_to_offset(offset - self.base_offset)
        # Index files first: a crash in between leaves them short of the log (load() scans the
        # rest), never naming batches that are gone.
        self.write_indexes()
        removed = self.size - position
        os.ftruncate(self._fd, position)
        self.size = position
        self._scan_tail()
        return removed

    def on_become_inactive(self) -> None:
        """The segment was rolled: record its final max timestamp and write the indexes out."""
        if self.offset_of_max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
        self.write_indexes()

    def write_indexes(self, sync: bool = False) -> None:
        self.offset_index.write(sync)
        self.time_index.write(sync)

    def flush(self) -> None:
        os.fsync(self._fd)
        self.write_indexes(sync=True)

    def close(self) -> None:
        if self._fd < 0:
            return
        self.on_become_inactive()
        os.close(self._fd)
        self._fd = -1

    def delete(self) -> None:
        """Rename the files to `.deleted` (readers holding the fd finish safely), then unlink them."""
        paths = [self.log_path, self.offset_index.path, self.time_index.path]
        renamed = []
        for path in paths:
            target = path.with_name(path.name + DELETED_SUFFIX)
            try:
                os.replace(path, target)
                renamed.append(target)
            except FileNotFoundError:
                pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for path in renamed:
            path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LogSegment(base={self.base_offset}, next={self.next_offset}, size={self.size})"
