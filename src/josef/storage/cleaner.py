"""Log compaction (`cleanup.policy=compact` / `compact,delete`), as Kafka's LogCleaner does it.

One round on one partition log:

1. **select** (event loop, cheap). The *clean point* (first dirty offset) comes from
   `cleaner-offset-checkpoint` at the data-dir root (Kafka's checkpoint format), reset to
   the log start offset when it is below it or beyond the log end. The cleanable range
   ends at the first *uncleanable* offset: the lowest of the high watermark, the active
   segment's base and the base of the first dirty segment whose largest timestamp is
   within `min.compaction.lag.ms` of now -- rounded down to a segment base. A log is
   cleaned when its dirty ratio (cleanable bytes / total bytes, Kafka's `LogToClean`) is
   strictly above `min.cleanable.dirty.ratio`, or when some dirty segment's first batch
   is older than `max.compaction.lag.ms` (and there is something cleanable). Filthiest
   first. The task snapshots everything the worker needs (segment paths and sizes,
   configs, the active producers' last offsets, now), so the worker never touches the
   PartitionLog.

2. **prepare** (off the loop, in the cleaner's worker process -- or a thread, see below;
   pure file work through its own file descriptors, only on non-active segments). Builds
   the offset map key -> latest offset over the dirty range, bounded by the dedupe buffer
   (the map stops at the first batch boundary where its estimated memory reaches
   `dedupe_buffer_bytes * 0.9`; the round then cleans only up to there, `end_offset`).
   Then it rewrites the segments from the log start up to the one holding
   `end_offset - 1`, grouped as Kafka groups them (consecutive segments whose
   `.log` sizes add up to at most `segment.bytes`, whose index sizes fit
   `segment.index.bytes` and whose offsets fit an int32 delta), each group into
   `<first base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`), fsynced. A
   record survives iff its offset is past the map's range, or it has a key and its offset
   is the latest for that key (tombstones: see below). Records without a key are dropped.
   A batch whose records all survive is copied byte for byte; otherwise it is rebuilt
   with the same base offset, last offset delta (so the producer's last sequence
   survives), producer id/epoch/base sequence, leader epoch, attributes and codec (the
   surviving records' bytes are copied, recompressed with the batch's codec); an emptied
   batch disappears, except that it is kept as a header-only (empty) batch when it is the
   last data batch of a still-active producer (Kafka's rule, so idempotence state
   survives) or the last batch of its group (Kafka keeps the last batch of the round; we
   keep it per group, which makes every swap file's offset range cover exactly the
   segments it replaces -- see crash safety). Control and transactional batches are
   copied untouched and their keys are not mapped (there are no transactions yet; an
   aborted record must never shadow a committed one). Offsets never change (gaps are
   fine); CRCs are checked on every batch read.

3. **commit** (event loop, one short synchronous step). Verifies that every segment
   the round read (all segments below the first uncleanable offset) is still in the log,
   the same object with the same size, and that the log was not truncated or closed;
   otherwise the round is aborted and the `.cleaned` files removed. Then, for the groups
   in offset order: `.cleaned` -> `.swap` (indexes first, the `.log` last), one directory
   fsync; then per group the old segments are closed and renamed to `.deleted`, and the
   `.swap` files renamed to their final Kafka names; the new LogSegment objects (indexes
   built in the worker, nothing re-read) replace the old ones in the PartitionLog; the
   clean point advances to `end_offset`. Unlinking the `.deleted` files, the final
   directory fsync and the checkpoint write are left to `finish_io()`, which `run()` calls
   in a worker thread (`commit(..., defer_io=False)` does them inline).

Where prepare runs: the work is pure Python (record parsing), so in a thread it would hold
the GIL against the event loop -- measured: every loop tick delayed by up to the 5 ms switch
interval and a busy loop losing ~40% of its throughput. `run()` therefore hands each round
to a long-lived child process (`ProcessWorker`: pickled orders and results over pipes,
started on first use, killed with run(), dying with the broker); there the loop keeps its
CPU. `LogCleaner(worker="thread")` uses asyncio.to_thread instead.

Tombstones follow Kafka's current rule (KIP-534, record format v2): a tombstone that is
the latest record of its key survives the first cleaning that sees it, and that cleaning
stamps its batch with a *delete horizon* = now + `delete.retention.ms` (attribute bit 6,
stored in the batch's base timestamp, record timestamp deltas re-based so every reader
still sees the same record timestamps). A later cleaning at or after the horizon drops
it. (Kafka never re-cleans a log just for expiring tombstones either: they go at the next
round the dirty ratio triggers, since every round rewrites the whole log from its start.)

Crash safety: a crash before the `.swap` renames leaves `.cleaned` files that opening the
log deletes: old contents. Once `<base>.log.swap` exists its group is committed:
`complete_swaps(dir)` -- to be run before `PartitionLog.open` -- deletes every segment file
whose base offset lies in [swap base, swap's next offset) and renames the swap files to
their final names (missing or dropped indexes are rebuilt by the segment's own load).
Groups are swapped in offset order, so after a crash the log is new up to some group and
old after it, never losing a key's latest record and never resurrecting a value that a
removed tombstone deleted.

The offset map holds the exact key bytes (a Python dict; no hash collisions, unlike
Kafka's MD5 map); memory is accounted per distinct key as `len(key) + 128` bytes, the
measured cost of a dict entry with its bytes key and int offset.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from crc32c import crc32c

from josef.protocol.errors import Error
from josef.records.batch import (
    CONTROL_FLAG, CRC_START, HEADER_SIZE, LOG_OVERHEAD, TIMESTAMP_TYPE_FLAG, TRANSACTIONAL_FLAG,
    BatchHeader, InvalidRecord, crc_ok, read_header,
)
from josef.records.compression import compress, decompress
from josef.storage.checkpoint import CorruptCheckpoint, fsync_dir, read_checkpoint, write_checkpoint
from josef.storage.segment import (
    DELETED_SUFFIX, INDEX_SUFFIX, INT32_MAX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, OffsetIndex, TimeIndex,
    file_name,
)

if TYPE_CHECKING:  # log.py may import this module (complete_swaps): no runtime import back
    from josef.storage.log import PartitionLog

log = logging.getLogger("josef.storage.cleaner")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETE_HORIZON_FLAG = 0x40  # attribute bit 6: the base timestamp is the delete horizon (KIP-534)

DEFAULT_DEDUPE_BUFFER_BYTES = 128 << 20  # log.cleaner.dedupe.buffer.size
DEFAULT_BACKOFF_MS = 15_000  # log.cleaner.backoff.ms
DEDUPE_LOAD_FACTOR = 0.9  # log.cleaner.io.buffer.load.factor
MAP_ENTRY_OVERHEAD = 128  # bytes a dict entry costs beyond its key's length (measured)
IO_BUFFER_BYTES = 512 * 1024  # log.cleaner.io.buffer.size: reads and write-behind

_HEADER = struct.Struct(">qiibIhiqqqhii")  # the RecordBatch v2 header, as records.batch
_FRAME = struct.Struct(">I")  # worker pipe frames: length, then a pickle
_PARENT_PID: int | None = None  # set in the worker process: it stops when the broker is gone
_CRC = struct.Struct(">I")
_KEEP_ATTRIBUTES_EMPTY = TIMESTAMP_TYPE_FLAG | TRANSACTIONAL_FLAG | CONTROL_FLAG

TopicPartition = tuple[str, int]


class CleanerAborted(Exception):
    """The log changed under the round (truncation, retention, deletion): try again later."""


class SimulatedCrash(BaseException):
    """Raised by the test hook to stop a commit half-way, as a kill would."""


# -- the round's data ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentRef:
    """What the worker may know of one non-active segment (captured on the loop)."""

    segment: LogSegment  # identity check at commit only; never used off the loop
    base_offset: int
    size: int
    next_offset: int
    log_path: Path
    index_bytes: int
    time_index_bytes: int
    mtime_ns: int


@dataclass
class CleanTask:
    tp: TopicPartition
    log: "PartitionLog"
    dir: Path
    now_ms: int
    first_dirty: int
    first_uncleanable: int  # a segment base: the round reads only segments below it
    segments: list[SegmentRef]  # every segment below first_uncleanable, in order
    dirty_start_position: int  # file position to start mapping at, in the segment holding first_dirty
    segment_bytes: int
    segment_index_bytes: int
    index_interval_bytes: int
    delete_retention_ms: int
    active_producers: dict[int, int]  # producer id -> offset of its last data batch's last record
    clean_bytes: int
    cleanable_bytes: int
    need_compaction_now: bool
    invalidated: str | None = None  # set on the loop (truncation, deletion, cancel): the round must not commit

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0


@dataclass
class CleanStats:
    tp: TopicPartition
    first_dirty: int = 0
    end_offset: int = 0
    map_bytes_read: int = 0
    map_records_read: int = 0
    map_keys: int = 0
    map_memory: int = 0
    buffer_utilization: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_kept: int = 0
    invalid_records: int = 0  # keyless records dropped
    tombstones_removed: int = 0
    segments_before: int = 0
    segments_after: int = 0
    start_ns: int = field(default_factory=time.perf_counter_ns)
    map_done_ns: int = 0
    end_ns: int = 0
    aborted: str | None = None

    @property
    def records_removed(self) -> int:
        return self.records_read - self.records_kept

    @property
    def elapsed_s(self) -> float:
        return max((self.end_ns or time.perf_counter_ns()) - self.start_ns, 1) / 1e9

    @property
    def map_elapsed_s(self) -> float:
        return max((self.map_done_ns or self.end_ns) - self.start_ns, 0) / 1e9

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / self.elapsed_s

    @property
    def records_per_s(self) -> float:
        return self.records_read / self.elapsed_s

    def summary(self) -> str:
        t, p = self.tp
        if self.aborted:
            return f"cleaning of {t}-{p} aborted: {self.aborted}"
        mb = 1e6
        total = self.elapsed_s
        clean_s = max(total - self.map_elapsed_s, 1e-9)
        reduction = 100.0 * (1 - self.bytes_written / self.bytes_read) if self.bytes_read else 0.0
        fewer = 100.0 * self.records_removed / self.records_read if self.records_read else 0.0
        return (f"cleaned {t}-{p} (dirty section = [{self.first_dirty}, {self.end_offset})): "
                f"{self.bytes_read / mb:.1f} MB of log processed in {total:.2f} s ({self.mb_per_s:.1f} MB/s, "
                f"{self.records_per_s:,.0f} records/s). Indexed {self.map_bytes_read / mb:.1f} MB, "
                f"{self.map_keys:,} keys in {self.map_elapsed_s:.2f} s; buffer utilization "
                f"{100 * self.buffer_utilization:.1f}%. Cleaned {self.bytes_read / mb:.1f} MB in {clean_s:.2f} s. "
                f"Start size {self.bytes_read / mb:.1f} MB ({self.records_read:,} records), end size "
                f"{self.bytes_written / mb:.1f} MB ({self.records_kept:,} records): {reduction:.1f}% size "
                f"reduction ({fewer:.1f}% fewer records, {self.tombstones_removed:,} tombstones removed); "
                f"{self.segments_before} segments -> {self.segments_after}")


@dataclass
class _CleanedSegment:
    """One group's replacement, written by the worker; its indexes already in memory."""

    base_offset: int
    old: list[SegmentRef]
    size: int
    next_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    first_batch_timestamp: int
    bytes_since_index: int
    offset_index: OffsetIndex
    time_index: TimeIndex

    def cleaned_paths(self, directory: Path) -> list[tuple[Path, Path]]:
        """(.cleaned path, final path) for the indexes, then the log (renamed last)."""
        out = []
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            final = directory / file_name(self.base_offset, suffix)
            out.append((final.with_name(final.name + CLEANED_SUFFIX), final))
        return out


@dataclass
class PreparedClean:
    task: CleanTask
    end_offset: int
    groups: list[_CleanedSegment]
    stats: CleanStats


# -- the cleaner ----------------------------------------------------------------------------------

class LogCleaner:
    """Kafka's LogCleaner + LogCleanerManager for one data directory (one cleaner thread)."""

    def __init__(self, data_dir: Path, dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES, *,
                 load_factor: float = DEDUPE_LOAD_FACTOR, worker: str = "process"):
        """`worker` is where run() does the heavy part: "process" (a child Python process, so the
        event loop keeps its GIL and its CPU) or "thread" (asyncio.to_thread)."""
        if worker not in ("process", "thread"):
            raise ValueError(f"worker must be 'process' or 'thread', not {worker!r}")
        self.worker = worker
        self._process: ProcessWorker | None = None
        self.data_dir = Path(data_dir)
        self.dedupe_buffer_bytes = dedupe_buffer_bytes
        self.load_factor = load_factor
        self.checkpoint_path = self.data_dir / CHECKPOINT_FILE
        self._clean_points: dict[TopicPartition, int] = self._read_checkpoint()
        self._in_progress: dict[TopicPartition, CleanTask] = {}
        self.uncleanable: set[TopicPartition] = set()  # failed with a corrupt log; skipped until reset
        self._pending_unlink: list[Path] = []
        self._pending_lock = threading.Lock()
        self._checkpoint_dirty = False
        self._crash_hook: Callable[[str], None] | None = None  # tests: raise SimulatedCrash at a step
        self.last_stats: CleanStats | None = None

    # -- clean points ----------------------------------------------------------------------------

    def _read_checkpoint(self) -> dict[TopicPartition, int]:
        try:
            entries = read_checkpoint(self.checkpoint_path, 3)
        except (CorruptCheckpoint, ValueError):
            log.warning("%s is corrupt: every compacted log will be cleaned from its start", self.checkpoint_path)
            return {}
        out = {}
        for topic, partition, offset in entries:
            try:
                out[(topic, int(partition))] = int(offset)
            except ValueError:
                continue
        return out

    def clean_point(self, tp: TopicPartition) -> int | None:
        """The first dirty offset recorded for `tp`, if any."""
        return self._clean_points.get(tp)

    def checkpoint_entries(self) -> list[tuple[str, int, int]]:
        """A snapshot of the clean points (take it on the loop), for write_checkpoint()."""
        self._checkpoint_dirty = False
        return [(t, p, o) for (t, p), o in sorted(self._clean_points.items())]

    def write_checkpoint(self, entries: list[tuple[str, int, int]] | None = None) -> None:
        """Write `cleaner-offset-checkpoint` (blocking). From a worker thread pass
        `checkpoint_entries()` taken on the loop; without it the snapshot is taken here."""
        if entries is None:
            entries = self.checkpoint_entries()
        with self._pending_lock:
            write_checkpoint(self.checkpoint_path, entries)

    def truncated(self, tp: TopicPartition, offset: int) -> None:
        """The log of `tp` was truncated to `offset` (Kafka's maybeTruncateCheckpoint).

        Call it from wherever PartitionLog.truncate_to / truncate_fully_and_start_at is called.
        The clean point is pulled back and a round in flight on `tp` will abort at commit.
        """
        point = self._clean_points.get(tp)
        if point is not None and point > offset:
            self._clean_points[tp] = offset
            self._checkpoint_dirty = True
        task = self._in_progress.get(tp)
        if task is not None:
            task.invalidated = f"the log was truncated to {offset}"

    def partition_deleted(self, tp: TopicPartition) -> None:
        """Forget `tp` (its log was deleted): its clean point leaves the checkpoint."""
        if self._clean_points.pop(tp, None) is not None:
            self._checkpoint_dirty = True
        task = self._in_progress.get(tp)
        if task is not None:
            task.invalidated = "the partition was deleted"
        self.uncleanable.discard(tp)

    # -- select (on the loop) ----------------------------------------------------------------------

    def select(self, logs: Iterable[tuple[TopicPartition, "PartitionLog"]], now_ms: int) -> list[CleanTask]:
        """The logs to clean now, filthiest first; each task must end in commit() or abort()."""
        tasks = []
        for tp, plog in logs:
            if tp in self._in_progress or tp in self.uncleanable or not is_compacted(plog.config.cleanup_policy):
                continue
            try:
                task = self.make_task(tp, plog, now_ms, only_if_cleanable=True)
            except Exception:
                self.uncleanable.add(tp)
                log.exception("measuring %s-%d for cleaning failed; it is uncleanable until restart", *tp)
                continue
            if task is not None:
                tasks.append(task)
        tasks.sort(key=lambda t: t.dirty_ratio, reverse=True)
        for task in tasks:
            self._in_progress[task.tp] = task
        return tasks

    def make_task(self, tp: TopicPartition, plog: "PartitionLog", now_ms: int, *,
                  only_if_cleanable: bool = False) -> CleanTask | None:
        """A round for `tp`; None if there is nothing to rewrite.

        Without `only_if_cleanable` the thresholds (dirty ratio, max.compaction.lag.ms) are
        ignored: a forced round. The task is not registered as in progress: select() does that.
        """
        segments = plog.segments
        if getattr(plog, "_closed", False) or len(segments) < 2:
            return None
        config = plog.config
        log_start, leo = plog.log_start_offset, plog.log_end_offset
        first_dirty = self._clean_points.get(tp, log_start)
        if first_dirty < log_start or first_dirty > leo:
            first_dirty = log_start
            self._clean_points[tp] = first_dirty
            self._checkpoint_dirty = True
        active = segments[-1]
        # The first uncleanable offset: high watermark, active segment, min.compaction.lag.ms.
        uncleanable = min(plog.high_watermark, active.base_offset)
        dirty_from = _floor_index(segments, first_dirty)
        non_active_dirty = segments[dirty_from:-1]
        lag = max(config.min_compaction_lag_ms, 0)
        if lag > 0:
            for seg in non_active_dirty:
                if seg.largest_timestamp() > now_ms - lag:
                    uncleanable = min(uncleanable, seg.base_offset)
                    break
        uncleanable = max(first_dirty, uncleanable)
        # ... rounded down to the base of the segment holding it (Kafka's calculateCleanableBytes).
        first_uncleanable_index = _floor_index(segments[:-1], uncleanable) if uncleanable < active.base_offset \
            else len(segments) - 1
        first_uncleanable = segments[first_uncleanable_index].base_offset
        clean_bytes = sum(s.size for s in segments if s.base_offset < first_dirty)
        start = min(first_dirty, first_uncleanable)
        cleanable_bytes = sum(s.size for s in segments[_floor_index(segments, start):first_uncleanable_index])
        # max.compaction.lag.ms: the oldest first-batch timestamp among the dirty non-active segments.
        max_lag = max(config.max_compaction_lag_ms, 0)
        first_stamps = [s.first_batch_timestamp for s in non_active_dirty if s.first_batch_timestamp > 0]
        need_now = bool(first_stamps) and min(first_stamps) < now_ms - max_lag
        if only_if_cleanable:
            total = clean_bytes + cleanable_bytes
            if not total or not ((need_now and cleanable_bytes > 0)
                                 or cleanable_bytes / total > config.min_cleanable_dirty_ratio):
                return None
        refs = [SegmentRef(s, s.base_offset, s.size, s.next_offset, s.log_path, len(s.offset_index) * 8,
                           len(s.time_index) * 12, _mtime_ns(s.log_path))
                for s in segments[:first_uncleanable_index]]
        if not refs:
            return None
        dirty_position = 0
        if dirty_from < first_uncleanable_index:
            seg = segments[dirty_from]
            if first_dirty > seg.base_offset:
                dirty_position = seg.offset_index.lookup(first_dirty - seg.base_offset)
        producers = {}
        for pid, entry in plog.producers.producers.items():
            last = entry.last_offset
            if last >= 0:
                producers[pid] = last
        return CleanTask(tp, plog, plog.dir, now_ms, first_dirty, first_uncleanable, refs, dirty_position,
                         config.segment_bytes, config.segment_index_bytes, config.index_interval_bytes,
                         config.delete_retention_ms, producers, clean_bytes, cleanable_bytes, need_now)

    # -- prepare (off the loop) --------------------------------------------------------------------

    def prepare(self, task: CleanTask) -> PreparedClean:
        """Map the dirty range and write the cleaned segments as `.cleaned` files.

        Thread-safe and free of PartitionLog mutation: reads the task's segment files through
        its own descriptors. Raises CleanerAborted if a segment changed underneath, InvalidRecord
        if the log is corrupt; either way no `.cleaned` file is left behind. run() calls it in
        the worker process (or a thread); call it directly only off the event loop.
        """
        return _prepare(task, self.dedupe_buffer_bytes, self.load_factor)

    async def prepare_async(self, task: CleanTask) -> PreparedClean:
        """prepare() in the worker process (worker="process") or a thread (worker="thread")."""
        if self.worker == "thread":
            return await asyncio.to_thread(self.prepare, task)
        if self._process is None:
            self._process = ProcessWorker()
        return await self._process.prepare(task, self.dedupe_buffer_bytes, self.load_factor)

    # -- commit (on the loop) ----------------------------------------------------------------------

    def commit(self, prepared: PreparedClean, *, defer_io: bool = False) -> CleanStats:
        """Swap the cleaned segments into the log and advance its clean point.

        Aborts (removing the `.cleaned` files, returning stats with `aborted` set) if the log
        changed since select(). With `defer_io` the unlinking of the replaced files, the final
        directory fsync and the checkpoint write wait for finish_io().
        """
        task = prepared.task
        stats = prepared.stats
        try:
            reason = _changed(task)
            if reason is not None:
                stats.aborted = reason
                for cleaned in prepared.groups:
                    _remove_cleaned(task.dir, cleaned)
                log.info("%s", stats.summary())
                return stats
            self._swap_in(prepared)
            self._clean_points[task.tp] = prepared.end_offset
            self._checkpoint_dirty = True
        finally:
            self._in_progress.pop(task.tp, None)
        if not defer_io:
            self.finish_io(self.checkpoint_entries())
        self.last_stats = stats
        return stats

    def _swap_in(self, prepared: PreparedClean) -> None:
        task = prepared.task
        plog = task.log
        directory = task.dir
        hook = self._crash_hook or (lambda step: None)
        # 1. .cleaned -> .swap, group by group in offset order, each group's .log last:
        #    from here on a restart completes the group (complete_swaps).
        for cleaned in prepared.groups:
            for src, final in cleaned.cleaned_paths(directory):
                os.replace(src, final.with_name(final.name + SWAP_SUFFIX))
            hook("swap_renamed_one")
        fsync_dir(directory)
        hook("after_swap")
        # 2. Per group: retire the old segments, give the swap files their final names.
        segments, bases = plog._segments, plog._bases
        for cleaned in prepared.groups:
            first = cleaned.old[0].segment
            i = next(k for k, s in enumerate(segments) if s is first)
            n = len(cleaned.old)
            for ref in cleaned.old:
                ref.segment.close()
                for path in (ref.log_path, ref.segment.offset_index.path, ref.segment.time_index.path):
                    target = path.with_name(path.name + DELETED_SUFFIX)
                    try:
                        os.replace(path, target)
                    except FileNotFoundError:
                        continue
                    with self._pending_lock:
                        self._pending_unlink.append(target)
                hook("mid_delete")
            hook("after_delete")
            paths = cleaned.cleaned_paths(directory)
            for _, final in paths[::-1]:  # the .log first (it must be there), then its indexes
                try:
                    os.replace(final.with_name(final.name + SWAP_SUFFIX), final)
                except FileNotFoundError:
                    if final.name.endswith(LOG_SUFFIX):
                        raise
                hook("mid_final_rename")
            segment = _install(directory, cleaned, task.index_interval_bytes)
            segments[i:i + n] = [segment]
            bases[i:i + n] = [segment.base_offset]

    def abort(self, task: CleanTask) -> None:
        """End a round that will not be committed (prepare failed or was cancelled)."""
        self._in_progress.pop(task.tp, None)
        _remove_cleaned_for(task.dir, task.segments)

    def finish_io(self, checkpoint: list[tuple[str, int, int]] | None = None) -> None:
        """The blocking tail of commits: unlink retired files, fsync their directories, write the
        checkpoint `checkpoint_entries()` taken on the loop (None leaves the checkpoint alone).
        """
        with self._pending_lock:
            paths, self._pending_unlink = self._pending_unlink, []
        dirs = {p.parent for p in paths}
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        for directory in dirs:
            fsync_dir(directory)
        if checkpoint is not None:
            self.write_checkpoint(checkpoint)

    def close(self) -> None:
        """At shutdown, after cancelling run(): finish pending I/O and write the checkpoint."""
        for task in list(self._in_progress.values()):
            task.invalidated = "the cleaner was closed"
        self.finish_io(self.checkpoint_entries())

    # -- the background task -----------------------------------------------------------------------

    async def run(self, get_logs: Callable[[], Iterable[tuple[TopicPartition, "PartitionLog"]]],
                  interval_s: float = DEFAULT_BACKOFF_MS / 1000) -> None:
        """Clean forever: select -> prepare off the loop -> commit on the loop; back off when idle.

        `interval_s` is `log.cleaner.backoff.ms` / 1000. Cancel the task to stop it: a round in
        flight is abandoned (the worker process is stopped) and its `.cleaned` files removed.
        """
        try:
            while True:
                cleaned_any = False
                try:
                    tasks = self.select(get_logs(), int(time.time() * 1000))
                except Exception:
                    log.exception("log cleaner failed to select logs")
                    tasks = []
                for index, task in enumerate(tasks):
                    try:
                        if await self._clean_one(task):
                            cleaned_any = True
                    except BaseException:
                        for rest in tasks[index + 1:]:
                            self.abort(rest)
                        raise
                if self._checkpoint_dirty:
                    try:
                        await asyncio.to_thread(self.write_checkpoint, self.checkpoint_entries())
                    except OSError:
                        log.exception("writing %s failed", self.checkpoint_path)
                if not cleaned_any:
                    await asyncio.sleep(interval_s)
        finally:
            if self._process is not None:
                await self._process.stop()
                self._process = None

    async def _clean_one(self, task: CleanTask) -> bool:
        """One round on one log; whether it was committed."""
        tp = task.tp
        try:
            prepared = await self.prepare_async(task)
        except asyncio.CancelledError:
            task.invalidated = "the cleaner was stopped"  # a thread worker stops at its next batch
            if self._process is not None:
                await self._process.stop()  # the process worker is killed mid-round
                self._process = None
            self.abort(task)
            raise
        except (CleanerAborted, FileNotFoundError) as exc:
            self.abort(task)
            log.info("cleaning of %s-%d aborted: %s", tp[0], tp[1], exc)
            return False
        except Exception as exc:
            self.abort(task)
            changed = _changed(task)
            if changed is not None:  # the log moved under the round: not the log's fault
                log.info("cleaning of %s-%d aborted: %s (%s)", tp[0], tp[1], changed, exc)
                return False
            self.uncleanable.add(tp)
            log.error("cleaning of %s-%d failed; the partition is uncleanable until restart: %s",
                      tp[0], tp[1], exc, exc_info=not isinstance(exc, InvalidRecord))
            return False
        try:
            stats = self.commit(prepared, defer_io=True)
        except Exception:
            self.uncleanable.add(tp)
            log.exception("swapping in the cleaned segments of %s-%d failed", tp[0], tp[1])
            return False
        try:
            entries = self.checkpoint_entries() if self._checkpoint_dirty else None
            await asyncio.to_thread(self.finish_io, entries)
        except OSError:
            log.exception("log cleaner I/O failed")
        if stats.aborted is not None:
            return False
        log.info("%s", stats.summary())
        return True


# -- the worker process -----------------------------------------------------------------------------

class ProcessWorker:
    """A child Python process running prepare(): pure-Python cleaning in a thread would hold the
    GIL against the event loop (every loop tick waits up to the 5 ms switch interval).

    Orders and results travel as length-prefixed pickles over the child's stdin/stdout. The
    child exits when its stdin closes, dies with the broker (PR_SET_PDEATHSIG on Linux) and
    stops a round as soon as it notices its parent changed.
    """

    def __init__(self):
        self._proc: asyncio.subprocess.Process | None = None

    async def _start(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            env = dict(os.environ)
            src = str(Path(__file__).resolve().parents[2])  # josef importable even when not installed
            env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "from josef.storage.cleaner import serve_worker; serve_worker()",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        return self._proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def prepare(self, task: CleanTask, dedupe_buffer_bytes: int, load_factor: float) -> PreparedClean:
        proc = await self._start()
        order = dataclasses.replace(task, log=None, segments=[dataclasses.replace(r, segment=None)
                                                              for r in task.segments])
        payload = pickle.dumps((order, dedupe_buffer_bytes, load_factor), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            proc.stdin.write(_FRAME.pack(len(payload)) + payload)
            await proc.stdin.drain()
            (size,) = _FRAME.unpack(await proc.stdout.readexactly(_FRAME.size))
            kind, value = pickle.loads(await proc.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            await self.stop()
            raise CleanerAborted(f"the cleaner process died: {exc!r}") from None
        if kind == "ok":
            by_base = {r.base_offset: r for r in task.segments}
            value.task = task
            for cleaned in value.groups:
                cleaned.old = [by_base[r.base_offset] for r in cleaned.old]
            return value
        if kind == "aborted":
            raise CleanerAborted(value)
        if kind == "invalid":
            raise InvalidRecord(*value)
        raise RuntimeError(f"the cleaner process failed:\n{value}")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        await proc.wait()


def serve_worker() -> None:
    """The cleaner process: read orders from stdin, prepare, write results to stdout."""
    global _PARENT_PID
    _PARENT_PID = os.getppid()
    try:  # Linux: die with the broker even when it is SIGKILLed
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != _PARENT_PID:
        return
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe carries frames only
    while True:
        head = inp.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return
        (size,) = _FRAME.unpack(head)
        order, dedupe_buffer_bytes, load_factor = pickle.loads(inp.read(size))
        try:
            result = ("ok", _prepare(order, dedupe_buffer_bytes, load_factor))
        except (CleanerAborted, FileNotFoundError) as exc:
            result = ("aborted", str(exc))
        except InvalidRecord as exc:
            result = ("invalid", (exc.code, str(exc)))
        except Exception:
            result = ("error", traceback.format_exc())
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_FRAME.pack(len(data)) + data)
        out.flush()


# -- the work of prepare (a worker process or thread) ---------------------------------------------

def _prepare(task: CleanTask, dedupe_buffer_bytes: int, load_factor: float) -> PreparedClean:
    """LogCleaner.prepare, as a function a worker process can run."""
    stats = CleanStats(task.tp, first_dirty=task.first_dirty)
    written: list[_CleanedSegment] = []
    try:
        offset_map, latest = _build_offset_map(task, stats, dedupe_buffer_bytes, load_factor)
        end_offset = latest + 1
        stats.map_done_ns = time.perf_counter_ns()
        stats.end_offset = end_offset
        to_clean = [r for r in task.segments if r.base_offset < end_offset]
        stats.segments_before = len(to_clean)
        for group in group_segments(to_clean, task.segment_bytes, task.segment_index_bytes,
                                    task.first_uncleanable):
            written.append(_clean_group(task, group, offset_map, latest, stats))
        fsync_dir(task.dir)
    except BaseException:
        for cleaned in written:
            _remove_cleaned(task.dir, cleaned)
        _remove_cleaned_for(task.dir, task.segments)
        raise
    stats.segments_after = len(written)
    stats.end_ns = time.perf_counter_ns()
    return PreparedClean(task, end_offset, written, stats)


def _build_offset_map(task: CleanTask, stats: CleanStats, dedupe_buffer_bytes: int,
                      load_factor: float) -> tuple[dict[bytes, int], int]:
    """key -> latest offset over [first_dirty, first_uncleanable); the last offset mapped."""
    budget = int(dedupe_buffer_bytes * load_factor)
    offset_map: dict[bytes, int] = {}
    memory = 0
    first_dirty = task.first_dirty
    latest = first_dirty - 1
    dirty = [r for r in task.segments if r.next_offset > first_dirty or r.base_offset >= first_dirty]
    bounds = [r.base_offset for r in dirty[1:]] + [task.first_uncleanable]
    full = False
    for ref, next_start in zip(dirty, bounds):
        position = task.dirty_start_position if ref.base_offset <= first_dirty else 0
        fd = _open_segment(ref)
        try:
            for buf, pos, header in _read_batches(fd, ref, position):
                if task.invalidated:
                    raise CleanerAborted(task.invalidated)
                stats.map_bytes_read += header.size
                last = header.base_offset + header.last_offset_delta
                if last < first_dirty:
                    continue
                if not (header.attributes & (CONTROL_FLAG | TRANSACTIONAL_FLAG)) and header.record_count:
                    added, records = _map_batch(buf, pos, header, offset_map, first_dirty)
                    memory += added
                    stats.map_records_read += records
                if last > latest:
                    latest = last
                if memory >= budget:
                    full = True
                    break
        finally:
            os.close(fd)
        if full:
            log.info("offset map for %s-%d is full after %d keys: cleaning up to offset %d",
                     task.tp[0], task.tp[1], len(offset_map), latest + 1)
            break
        latest = max(latest, next_start - 1)  # fast-forward over an offset gap
    stats.map_keys = len(offset_map)
    stats.map_memory = memory
    stats.buffer_utilization = memory / dedupe_buffer_bytes if dedupe_buffer_bytes else 0.0
    return offset_map, latest


# -- crash recovery -------------------------------------------------------------------------------

def complete_swaps(directory: Path) -> int:
    """Finish swaps a crash interrupted: call before `PartitionLog.open` on `directory`.

    Every `<base>.log.swap` is a complete, fsynced cleaned segment: the segment files whose
    base offset lies in [base, its next offset) are the ones it replaces and are deleted,
    then the swap files take their final names (a swap index without its swap log is
    dropped: the segment rebuilds it). Returns the number of swaps completed.
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    log_swap = LOG_SUFFIX + SWAP_SUFFIX
    swaps = []
    for name in names:
        if name.endswith(log_swap) and _is_offset(name[:-len(log_swap)]):
            base = int(name[:-len(log_swap)])
            swaps.append((base, _next_offset_of(directory / name, base)))
    if not swaps:
        return 0
    for name in names:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            stem = name[:-len(suffix)]
            if name.endswith(suffix) and _is_offset(stem):
                offset = int(stem)
                if any(base <= offset < max(end, base + 1) for base, end in swaps):
                    (directory / name).unlink(missing_ok=True)
    for base, end in sorted(swaps):
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            final = directory / file_name(base, suffix)
            swap = final.with_name(final.name + SWAP_SUFFIX)
            if swap.exists():
                os.replace(swap, final)
        log.info("completed an interrupted swap of %s (offsets %d to %d)", directory / file_name(base, LOG_SUFFIX),
                 base, end)
    fsync_dir(directory)
    return len(swaps)


def _next_offset_of(path: Path, base: int) -> int:
    """The offset after the last whole batch of a segment file."""
    next_offset = base
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while size - pos >= HEADER_SIZE:
            try:
                header = read_header(os.pread(fd, HEADER_SIZE, pos), 0)
            except InvalidRecord:
                break
            if pos + header.size > size:
                break
            next_offset = header.base_offset + header.last_offset_delta + 1
            pos += header.size
    finally:
        os.close(fd)
    return next_offset


# -- helpers: selection -----------------------------------------------------------------------------

def is_compacted(cleanup_policy: str) -> bool:
    return "compact" in {p.strip().strip("[]").lower() for p in str(cleanup_policy).split(",")}


def _floor_index(segments: list[LogSegment], offset: int) -> int:
    """Index of the last segment whose base is <= offset (0 if none)."""
    index = 0
    for i, seg in enumerate(segments):
        if seg.base_offset <= offset:
            index = i
        else:
            break
    return index


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def group_segments(refs: list[SegmentRef], max_size: int, max_index_bytes: int,
                   first_uncleanable: int) -> list[list[SegmentRef]]:
    """Kafka's groupSegmentsBySize: runs of segments that fit one segment (log, indexes, offsets)."""
    groups = []
    i = 0
    while i < len(refs):
        group = [refs[i]]
        log_size, index_size, time_size = refs[i].size, refs[i].index_bytes, refs[i].time_index_bytes
        i += 1
        while i < len(refs):
            ref = refs[i]
            last_offset = refs[i + 1].base_offset - 1 if i + 1 < len(refs) else first_uncleanable - 1
            if (log_size + ref.size > max_size or index_size + ref.index_bytes > max_index_bytes
                    or time_size + ref.time_index_bytes > max_index_bytes
                    or (ref.size and last_offset - group[0].base_offset > INT32_MAX)):
                break
            group.append(ref)
            log_size += ref.size
            index_size += ref.index_bytes
            time_size += ref.time_index_bytes
            i += 1
        groups.append(group)
    return groups


# -- helpers: reading -----------------------------------------------------------------------------

def _open_segment(ref: SegmentRef) -> int:
    try:
        fd = os.open(ref.log_path, os.O_RDONLY)
    except FileNotFoundError:
        raise CleanerAborted(f"{ref.log_path} is gone") from None
    if os.fstat(fd).st_size < ref.size:
        os.close(fd)
        raise CleanerAborted(f"{ref.log_path} shrank")
    return fd


def _read_batches(fd: int, ref: SegmentRef, position: int = 0):
    """(block, position in block, header) of each batch of the segment from `position` to its size."""
    end = ref.size
    while position < end:
        if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
            raise CleanerAborted("the broker is gone")
        want = min(IO_BUFFER_BYTES, end - position)
        buf = os.pread(fd, want, position)
        if len(buf) < want:
            raise CleanerAborted(f"{ref.log_path} shrank while being cleaned")
        i, n = 0, len(buf)
        while n - i >= HEADER_SIZE:
            header = read_header(buf, i)
            size = header.batch_length + LOG_OVERHEAD
            if i + size > n:
                if i:
                    break
                if position + size > end:
                    raise InvalidRecord(Error.CORRUPT_MESSAGE, f"{ref.log_path}: batch at {position} is torn")
                buf = os.pread(fd, size, position)  # one batch larger than the I/O buffer
                if len(buf) < size:
                    raise CleanerAborted(f"{ref.log_path} shrank while being cleaned")
                n = size
                continue
            yield buf, i, header
            i += size
        if i == 0:
            raise InvalidRecord(Error.CORRUPT_MESSAGE, f"{ref.log_path}: torn batch header at {position}")
        position += i


def _records_area(buf, pos: int, header: BatchHeader):
    """(data, start, end) of the batch's records, decompressed if need be."""
    end = pos + header.batch_length + LOG_OVERHEAD
    if header.attributes & 0x07:
        data = decompress(header.attributes & 0x07, memoryview(buf)[pos + HEADER_SIZE:end])
        return data, 0, len(data)
    return buf, pos + HEADER_SIZE, end


def _corrupt(message: str) -> InvalidRecord:
    return InvalidRecord(Error.CORRUPT_MESSAGE, message)


def _varint(data, pos: int) -> tuple[int, int]:
    raw = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise _corrupt("varint is too long")


# Varints are read inline (one- and two-byte forms, which cover record lengths up to 8 KiB and
# offset/timestamp deltas up to 8191) with _varint for the rest: this loop is the cleaner's cost.

def _map_batch(buf, pos: int, header: BatchHeader, offset_map: dict, first_dirty: int) -> tuple[int, int]:
    """Put every keyed record of the batch at or past `first_dirty` into the map.

    Returns (estimated bytes the new keys cost, records read).
    """
    data, pos, end = _records_area(buf, pos, header)
    base = header.base_offset
    added = 0
    count = header.record_count
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                raw = (b & 0x7F) | (data[pos + 1] << 7)
                length = (raw >> 1) ^ -(raw & 1)
                pos += 2
            else:
                length, pos = _varint(data, pos)
            record_end = pos + length
            if length < 1 or record_end > end:
                raise _corrupt(f"record length {length} does not fit its batch")
            p = pos + 1  # attributes
            while data[p] & 0x80:  # timestamp delta, skipped
                p += 1
            p += 1
            b = data[p]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
                p += 1
            elif data[p + 1] < 0x80:
                raw = (b & 0x7F) | (data[p + 1] << 7)
                delta = (raw >> 1) ^ -(raw & 1)
                p += 2
            else:
                delta, p = _varint(data, p)
            b = data[p]
            if b < 0x80:
                key_len = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                key_len, p = _varint(data, p)
            pos = record_end
            if key_len < 0:
                continue
            if p + key_len > record_end:
                raise _corrupt("record key runs past its record")
            offset = base + delta
            if offset < first_dirty:
                continue
            key = data[p:p + key_len]
            if key not in offset_map:
                added += key_len + MAP_ENTRY_OVERHEAD
            offset_map[key] = offset
    except IndexError:
        raise _corrupt(f"batch at offset {header.base_offset} is malformed") from None
    if pos != end:
        raise _corrupt(f"batch at offset {header.base_offset} declares {count} records but holds other bytes")
    return added, count


def _filter_batch(data, pos: int, end: int, header: BatchHeader, get, latest: int, now: int,
                  stats: "CleanStats") -> tuple[list[tuple], int]:
    """The records of the batch to keep, as (start, end, timestamp delta, position after it,
    is tombstone), and how many of those are tombstones."""
    base = header.base_offset
    horizon = header.base_timestamp if header.attributes & DELETE_HORIZON_FLAG else None
    tombstones_expired = horizon is not None and now >= horizon
    kept = []
    tombstones = 0
    try:
        for _ in range(header.record_count):
            start = pos
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                raw = (b & 0x7F) | (data[pos + 1] << 7)
                length = (raw >> 1) ^ -(raw & 1)
                pos += 2
            else:
                length, pos = _varint(data, pos)
            record_end = pos + length
            if length < 1 or record_end > end:
                raise _corrupt(f"record length {length} does not fit its batch")
            p = pos + 1
            b = data[p]
            if b < 0x80:
                ts_delta = (b >> 1) ^ -(b & 1)
                p += 1
            elif data[p + 1] < 0x80:
                raw = (b & 0x7F) | (data[p + 1] << 7)
                ts_delta = (raw >> 1) ^ -(raw & 1)
                p += 2
            else:
                ts_delta, p = _varint(data, p)
            after_ts = p
            b = data[p]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
                p += 1
            elif data[p + 1] < 0x80:
                raw = (b & 0x7F) | (data[p + 1] << 7)
                delta = (raw >> 1) ^ -(raw & 1)
                p += 2
            else:
                delta, p = _varint(data, p)
            b = data[p]
            if b < 0x80:
                key_len = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                key_len, p = _varint(data, p)
            pos = record_end
            if key_len >= 0:
                if p + key_len > record_end:
                    raise _corrupt("record key runs past its record")
                p += key_len
            b = data[p]
            tombstone = b == 1  # zig-zag -1: a null value
            offset = base + delta
            if offset <= latest:
                if key_len < 0:
                    stats.invalid_records += 1
                    continue
                if offset < get(data[p - key_len:p], -1):
                    continue  # a later record of the key exists
                if tombstone and tombstones_expired:
                    stats.tombstones_removed += 1
                    continue
            if tombstone:
                tombstones += 1
            kept.append((start, record_end, ts_delta, after_ts, tombstone))
    except IndexError:
        raise _corrupt(f"batch at offset {header.base_offset} is malformed") from None
    if pos != end:
        raise _corrupt(f"batch at offset {header.base_offset} declares {header.record_count} records "
                       f"but holds other bytes")
    return kept, tombstones


# -- helpers: writing -------------------------------------------------------------------------------

def _write_varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)
    while raw > 0x7F:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


class _SegmentWriter:
    """Writes one `.log.cleaned` file and builds its indexes exactly as LogSegment._track does."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int):
        self.base_offset = base_offset
        self.interval = index_interval_bytes
        self.path = directory / (file_name(base_offset, LOG_SUFFIX) + CLEANED_SUFFIX)
        self.offset_index = OffsetIndex(directory / (file_name(base_offset, INDEX_SUFFIX) + CLEANED_SUFFIX))
        self.time_index = TimeIndex(directory / (file_name(base_offset, TIME_INDEX_SUFFIX) + CLEANED_SUFFIX))
        self.offset_index.reset()  # so that write() creates the file even with no entries
        self.time_index.reset()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.buffer = bytearray()
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = -1
        self.bytes_since_index = 0

    def append(self, data, header: BatchHeader) -> None:
        position = self.size
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.base_offset + header.last_offset_delta
        if position == 0:
            self.first_batch_timestamp = header.max_timestamp
        if self.bytes_since_index > self.interval:
            self.offset_index.append(header.base_offset + header.last_offset_delta - self.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
            self.bytes_since_index = 0
        size = header.batch_length + LOG_OVERHEAD
        self.bytes_since_index += size
        self.next_offset = header.base_offset + header.last_offset_delta + 1
        self.buffer += data
        self.size = position + size
        if len(self.buffer) >= IO_BUFFER_BYTES:
            self._drain()

    def _drain(self) -> None:
        view = memoryview(self.buffer)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        view.release()
        self.buffer.clear()

    def finish(self, mtime_ns: int) -> None:
        """Flush and fsync everything; the final time index entry as on_become_inactive adds it."""
        try:
            self._drain()
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        if self.offset_of_max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
        self.offset_index.write(sync=True)
        self.time_index.write(sync=True)
        if mtime_ns:
            os.utime(self.path, ns=(mtime_ns, mtime_ns))  # as Kafka: keep the replaced segments' mtime

    def discard(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _clean_group(task: CleanTask, group: list[SegmentRef], offset_map: dict[bytes, int], latest: int,
                 stats: CleanStats) -> _CleanedSegment:
    """Write the cleaned copy of `group` as `<first base>.*.cleaned`."""
    writer = _SegmentWriter(task.dir, group[0].base_offset, task.index_interval_bytes)
    try:
        now = task.now_ms
        horizon_if_set = now + task.delete_retention_ms
        producers = task.active_producers
        get = offset_map.get
        for g, ref in enumerate(group):
            last_segment = g == len(group) - 1
            fd = _open_segment(ref)
            try:
                for buf, pos, header in _read_batches(fd, ref):
                    if task.invalidated:
                        raise CleanerAborted(task.invalidated)
                    size = header.batch_length + LOG_OVERHEAD
                    stats.bytes_read += size
                    if not crc_ok(buf, pos, header):
                        raise _corrupt(f"{ref.log_path}: batch at offset {header.base_offset} has a bad CRC")
                    attributes = header.attributes
                    count = header.record_count
                    stats.records_read += count
                    if attributes & (CONTROL_FLAG | TRANSACTIONAL_FLAG):
                        writer.append(memoryview(buf)[pos:pos + size], header)
                        stats.records_kept += count
                        stats.bytes_written += size
                        continue
                    last_offset = header.base_offset + header.last_offset_delta
                    retain_empty = (header.producer_id >= 0 and producers.get(header.producer_id) == last_offset) \
                        or (last_segment and last_offset + 1 >= ref.next_offset)
                    kept: list[tuple] = []
                    data = None
                    tombstones = 0
                    if count:
                        data, start, end = _records_area(buf, pos, header)
                        kept, tombstones = _filter_batch(data, start, end, header, get, latest, now, stats)
                    if not kept:
                        if retain_empty:
                            empty = _empty_batch(header)
                            writer.append(empty, read_header(empty))
                            stats.bytes_written += len(empty)
                        continue
                    stats.records_kept += len(kept)
                    set_horizon = tombstones > 0 and not attributes & DELETE_HORIZON_FLAG
                    if len(kept) == count and not set_horizon:
                        writer.append(memoryview(buf)[pos:pos + size], header)
                        stats.bytes_written += size
                        continue
                    batch = _rebuild(header, data, kept, horizon_if_set if set_horizon else None)
                    writer.append(batch, read_header(batch))
                    stats.bytes_written += len(batch)
            finally:
                os.close(fd)
        writer.finish(group[-1].mtime_ns)
    except BaseException:
        writer.discard()
        for path in (writer.path, writer.offset_index.path, writer.time_index.path):
            path.unlink(missing_ok=True)
        raise
    return _CleanedSegment(writer.base_offset, group, writer.size, writer.next_offset, writer.max_timestamp,
                           writer.offset_of_max_timestamp, writer.first_batch_timestamp, writer.bytes_since_index,
                           writer.offset_index, writer.time_index)


def _rebuild(header: BatchHeader, data, kept: list[tuple], new_horizon: int | None) -> bytes:
    """The batch with only the `kept` records; same base offset, last offset delta and metadata.

    Records are copied as bytes (their deltas are relative to the unchanged base offset and,
    unless a delete horizon is being set, the unchanged base timestamp); setting a horizon
    re-bases every timestamp delta on it.
    """
    attributes = header.attributes
    append_time = bool(attributes & TIMESTAMP_TYPE_FLAG)
    base_timestamp = header.base_timestamp
    if new_horizon is None:
        body = b"".join([data[r[0]:r[1]] for r in kept])
        max_timestamp = header.max_timestamp if append_time else base_timestamp + max(r[2] for r in kept)
    else:
        body = bytearray()
        timestamps = [base_timestamp + r[2] for r in kept]
        for record, timestamp in zip(kept, timestamps):
            start, record_end, _, after_ts = record[:4]
            # the length prefix, then attributes | new timestamp delta | the rest as it was
            p = start
            while data[p] & 0x80:
                p += 1
            attr_pos = p + 1
            inner = bytearray(data[attr_pos:attr_pos + 1])
            _write_varint(inner, timestamp - new_horizon)
            inner += data[after_ts:record_end]
            _write_varint(body, len(inner))
            body += inner
        max_timestamp = header.max_timestamp if append_time else max(timestamps)
        base_timestamp = new_horizon
        attributes |= DELETE_HORIZON_FLAG
    codec = attributes & 0x07
    if codec:
        body = compress(codec, body)
    out = bytearray(HEADER_SIZE)
    out += body
    _HEADER.pack_into(out, 0, header.base_offset, len(out) - LOG_OVERHEAD, header.partition_leader_epoch, 2, 0,
                      attributes, header.last_offset_delta, base_timestamp, max_timestamp, header.producer_id,
                      header.producer_epoch, header.base_sequence, len(kept))
    _CRC.pack_into(out, CRC_START - 4, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def _empty_batch(header: BatchHeader) -> bytes:
    """A header-only batch keeping the offsets and producer metadata (Kafka's writeEmptyHeader)."""
    out = bytearray(HEADER_SIZE)
    _HEADER.pack_into(out, 0, header.base_offset, HEADER_SIZE - LOG_OVERHEAD, header.partition_leader_epoch, 2, 0,
                      header.attributes & _KEEP_ATTRIBUTES_EMPTY, header.last_offset_delta, -1,
                      header.max_timestamp, header.producer_id, header.producer_epoch, header.base_sequence, 0)
    _CRC.pack_into(out, CRC_START - 4, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def _remove_cleaned(directory: Path, cleaned: _CleanedSegment) -> None:
    for path, _ in cleaned.cleaned_paths(directory):
        path.unlink(missing_ok=True)


def _remove_cleaned_for(directory: Path, refs: list[SegmentRef]) -> None:
    for ref in refs:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            (directory / (file_name(ref.base_offset, suffix) + CLEANED_SUFFIX)).unlink(missing_ok=True)


# -- helpers: commit ----------------------------------------------------------------------------------

def _changed(task: CleanTask) -> str | None:
    """Why the round's snapshot no longer matches the log, or None."""
    plog = task.log
    if getattr(plog, "_closed", False):
        return "the log was closed"
    if task.invalidated:
        return task.invalidated
    segments = plog._segments
    refs = task.segments
    if len(segments) <= len(refs):
        return "segments were deleted"
    start = next((k for k, s in enumerate(segments) if s is refs[0].segment), None)
    if start is None:
        return "segments were deleted"
    for k, ref in enumerate(refs):
        seg = segments[start + k] if start + k < len(segments) else None
        if seg is not ref.segment or seg.size != ref.size or seg.next_offset != ref.next_offset:
            return f"segment {ref.base_offset} changed"
    following = segments[start + len(refs)] if start + len(refs) < len(segments) else None
    if following is None or following.base_offset != task.first_uncleanable:
        return "the log was truncated"
    return None


def _install(directory: Path, cleaned: _CleanedSegment, index_interval_bytes: int) -> LogSegment:
    """A LogSegment for the renamed files, given the state the worker built (nothing is re-read)."""
    segment = LogSegment.open(directory, cleaned.base_offset, index_interval_bytes)
    cleaned.offset_index.path = segment.offset_index.path
    cleaned.time_index.path = segment.time_index.path
    segment.offset_index = cleaned.offset_index
    segment.time_index = cleaned.time_index
    segment.next_offset = cleaned.next_offset
    segment.max_timestamp = cleaned.max_timestamp
    segment.offset_of_max_timestamp = cleaned.offset_of_max_timestamp
    segment.first_batch_timestamp = cleaned.first_batch_timestamp
    segment._bytes_since_index = cleaned.bytes_since_index
    return segment


def _is_offset(stem: str) -> bool:
    return len(stem) == 20 and stem.isdigit()
