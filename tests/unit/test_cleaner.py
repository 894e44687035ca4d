"""Log compaction: the cleaner's selection, rewriting, tombstones, crash safety and limits."""
from __future__ import annotations

import asyncio
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from josef.records.batch import iter_batches, read_header
from josef.records.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from josef.records.records import build_batch, iter_records
from josef.storage.checkpoint import read_checkpoint
from josef.storage.cleaner import (
    CHECKPOINT_FILE, DELETE_HORIZON_FLAG, LogCleaner, SimulatedCrash, complete_swaps, is_compacted,
)
from josef.storage.log import LogConfig, PartitionLog

T0 = 1_700_000_000_000
TP = ("t", 0)
DAY = 86_400_000


# -- helpers ------------------------------------------------------------------------------------

def open_log(path: Path, **config) -> PartitionLog:
    config.setdefault("cleanup_policy", "compact")
    config.setdefault("segment_bytes", 2048)
    config.setdefault("index_interval_bytes", 256)
    return PartitionLog.open(path / "t-0", "t", 0, LogConfig(**config))


def reopen(plog: PartitionLog, *, crashed: bool = False) -> PartitionLog:
    """Open the directory again (after a crash: swaps completed first, full recovery)."""
    if not crashed:
        plog.close()
    complete_swaps(plog.dir)
    return PartitionLog.open(plog.dir, plog.topic, plog.partition, plog.config, clean_shutdown=not crashed,
                             log_start_offset=plog.log_start_offset,
                             recovery_point=0 if crashed else plog.recovery_point)


def produce(plog: PartitionLog, records, *, ts: int = T0, compression: int = NONE, pid: int = -1,
            epoch: int = -1, seq: int = -1, transactional: bool = False, append_time: bool = False):
    """Append one batch of (key, value) records; returns the AppendResult."""
    data = build_batch([(k, v, [], ts) for k, v in records], compression=compression, producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, base_timestamp=ts,
                       is_transactional=transactional)
    result = plog.append(data, read_header(data), 0, ts)
    plog.high_watermark = plog.log_end_offset
    return result


def produce_many(plog: PartitionLog, ops, *, per_batch: int = 5, ts: int = T0, compression: int = NONE):
    """Append (key, value) ops in batches; returns [(offset, key, value)] as written."""
    written = []
    for i in range(0, len(ops), per_batch):
        chunk = ops[i:i + per_batch]
        result = produce(plog, chunk, ts=ts, compression=compression)
        written += [(result.base_offset + j, k, v) for j, (k, v) in enumerate(chunk)]
    return written


def records_of(plog: PartitionLog) -> list:
    out = []
    for chunk in plog.read(plog.log_start_offset, 1 << 30).chunks:
        for pos, _ in iter_batches(chunk):
            out += [(r.offset, r.key, r.value) for r in iter_records(memoryview(chunk)[pos:])]
    return out


def headers_of(plog: PartitionLog) -> list:
    return [h for chunk in plog.read(plog.log_start_offset, 1 << 30).chunks for _, h in iter_batches(chunk)]


def _first_record(plog: PartitionLog, offset: int) -> int | None:
    for chunk in plog.read(offset, 1 << 30).chunks:
        for pos, _ in iter_batches(chunk):
            for r in iter_records(memoryview(chunk)[pos:]):
                if r.offset >= offset:
                    return r.offset
    return None


def replay(records) -> dict:
    state = {}
    for _, key, value in records:
        state[key] = value
    return state


def latest(written) -> dict:
    return {k: (o, v) for o, k, v in written}


def clean(cleaner: LogCleaner, plog: PartitionLog, now: int = T0):
    task = cleaner.make_task(TP, plog, now)
    assert task is not None
    return cleaner.commit(cleaner.prepare(task))


def stray(plog: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(plog.dir) if n.endswith((".cleaned", ".swap", ".deleted")))


def keyed_ops(keys: int, rounds: int, size: int = 20) -> list:
    return [(b"key-%03d" % k, b"v%03d-%03d-" % (k, r) + b"x" * size) for r in range(rounds) for k in range(keys)]


# -- the basic job ------------------------------------------------------------------------------

def test_keeps_the_latest_value_of_every_key_across_segments(tmp_path):
    plog = open_log(tmp_path)
    written = produce_many(plog, keyed_ops(40, 15))
    before = records_of(plog)
    segments_before = len(plog.segments)
    assert segments_before > 10
    cleaner = LogCleaner(tmp_path)
    stats = clean(cleaner, plog)
    assert stats.aborted is None
    after = records_of(plog)
    clean_point = cleaner.clean_point(TP)
    assert clean_point == plog.active_segment.base_offset
    # every key's last value survives, at its original offset
    assert replay(after) == replay(before)
    offsets_by_value = {(k, v): o for o, k, v in written}
    for offset, key, value in after:
        assert offsets_by_value[(key, value)] == offset
    # in the cleaned range each key appears once: its latest offset below the clean point
    cleaned = [r for r in after if r[0] < clean_point]
    last_below = {}
    for offset, key, _ in before:
        if offset < clean_point:
            last_below[key] = offset
    assert sorted(r[0] for r in cleaned) == sorted(last_below.values())
    assert len(plog.segments) == segments_before  # groups are formed from the old (full) sizes
    assert stats.records_read == sum(1 for r in before if r[0] < clean_point)
    assert stats.records_kept == len(cleaned)
    assert stray(plog) == []
    # offsets are still monotonic, reads from a removed offset land on the next record
    assert [r[0] for r in after] == sorted(r[0] for r in after)
    first_gap = next(o for o in range(clean_point) if o not in {r[0] for r in after})
    got = plog.read(first_gap, 1 << 20)
    first = next(r for chunk in got.chunks for pos, _ in iter_batches(chunk)
                 for r in iter_records(memoryview(chunk)[pos:]))
    assert first.offset > first_gap and first.offset == min(r[0] for r in after if r[0] > first_gap)
    # offset_for_timestamp still works: reading from the offset it gives starts at the first record
    # (log.py answers with an empty batch's base offset where Kafka would skip to the next batch)
    offset, timestamp = plog.offset_for_timestamp(T0)
    assert timestamp == T0 and offset <= after[0][0]
    assert _first_record(plog, offset) == after[0][0]
    assert plog.offset_for_timestamp(T0 + 1) is None
    # appends continue, and everything survives a restart
    result = produce(plog, [(b"key-000", b"after")])
    assert result.base_offset == written[-1][0] + 1
    expected = records_of(plog)
    plog = reopen(plog)
    assert records_of(plog) == expected
    assert replay(records_of(plog))[b"key-000"] == b"after"


def test_segment_files_keep_kafka_names_and_indexes_work(tmp_path):
    plog = open_log(tmp_path, index_interval_bytes=64)
    produce_many(plog, keyed_ops(10, 40), per_batch=2)
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    names = sorted(os.listdir(plog.dir))
    for seg in plog.segments:
        stem = f"{seg.base_offset:020d}"
        assert f"{stem}.log" in names and f"{stem}.index" in names and f"{stem}.timeindex" in names
        assert seg.offset_index.sane(seg.size) and seg.time_index.sane()
    # every surviving offset is found through the indexes
    for offset, key, value in records_of(plog):
        chunk = plog.read(offset, 1).chunks[0]
        assert any(r.offset == offset and r.value == value for r in iter_records(chunk))
    # a reopen that trusts the indexes sees the same thing as one that rebuilds them
    expected = records_of(plog)
    plog = reopen(plog)
    assert records_of(plog) == expected


def test_second_round_groups_small_cleaned_segments(tmp_path):
    plog = open_log(tmp_path, segment_bytes=4096)
    produce_many(plog, keyed_ops(5, 200), per_batch=5)
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    # groups come from the old sizes: as many (now tiny) segments as before
    n = len(plog.segments)
    assert n > 10 and sum(s.size for s in plog.segments[:-1]) < 4096
    # the next round merges the tiny ones (up to segment.bytes) into one
    produce_many(plog, keyed_ops(5, 20), per_batch=5)
    produce(plog, [(b"key-000", b"last")])
    expected = replay(records_of(plog))
    clean(cleaner, plog)
    assert len(plog.segments) <= 3
    assert all(s.size <= 4096 for s in plog.segments)
    assert replay(records_of(plog)) == expected
    bases = [s.base_offset for s in plog.segments]
    assert sorted(int(n[:20]) for n in os.listdir(plog.dir) if n.endswith(".log")) == bases
    plog = reopen(plog)
    assert replay(records_of(plog)) == expected


# -- selection ------------------------------------------------------------------------------------

def test_dirty_ratio_threshold(tmp_path):
    plog = open_log(tmp_path, min_cleanable_dirty_ratio=0.5)
    produce_many(plog, keyed_ops(200, 3))
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    assert task.dirty_ratio == 1.0
    assert cleaner.select([(TP, plog)], T0) == []  # in progress
    cleaner.commit(cleaner.prepare(task))
    # a little new data: dirty ratio below 0.5, nothing to do
    produce_many(plog, keyed_ops(30, 1))
    plog.roll()
    task = cleaner.make_task(TP, plog, T0)
    assert 0 < task.dirty_ratio <= 0.5
    assert cleaner.select([(TP, plog)], T0) == []
    # a lot of new data: cleaned again
    produce_many(plog, keyed_ops(30, 30))
    [task] = cleaner.select([(TP, plog)], T0)
    assert task.dirty_ratio > 0.5
    stats = cleaner.commit(cleaner.prepare(task))
    assert stats.aborted is None and stats.records_removed > 0


def test_only_compacted_logs_are_selected(tmp_path):
    plog = open_log(tmp_path, cleanup_policy="delete")
    produce_many(plog, keyed_ops(30, 10))
    cleaner = LogCleaner(tmp_path)
    assert cleaner.select([(TP, plog)], T0) == []
    assert is_compacted("compact,delete") and is_compacted("delete, compact") and is_compacted("[compact]")
    assert not is_compacted("delete")


def test_min_compaction_lag(tmp_path):
    hour = 3_600_000
    plog = open_log(tmp_path, min_compaction_lag_ms=hour)
    old = produce_many(plog, keyed_ops(20, 8), ts=T0)
    boundary = plog.log_end_offset
    produce_many(plog, keyed_ops(20, 8), ts=T0 + 2 * hour)
    cleaner = LogCleaner(tmp_path)
    # at T0 + 30 min nothing is old enough
    assert cleaner.select([(TP, plog)], T0 + hour // 2) == []
    # at T0 + 90 min only the first run's segments may be cleaned
    [task] = cleaner.select([(TP, plog)], T0 + hour + hour // 2)
    assert task.first_uncleanable <= boundary
    before = records_of(plog)
    cleaner.commit(cleaner.prepare(task))
    after = records_of(plog)
    newer = [r for r in before if r[0] >= task.first_uncleanable]
    assert [r for r in after if r[0] >= task.first_uncleanable] == newer  # untouched
    assert len(after) < len(before)
    assert replay(after) == replay(before)
    # the first run's values were deduplicated among themselves only
    cleaned = [r for r in after if r[0] < task.first_uncleanable]
    assert len(cleaned) == len({k for _, k, _ in cleaned}) == len({k for _, k, _ in old})
    # later everything (but the active segment) is cleanable
    [task] = cleaner.select([(TP, plog)], T0 + 4 * hour)
    assert task.first_uncleanable == plog.active_segment.base_offset


def test_max_compaction_lag_forces_cleaning(tmp_path):
    plog = open_log(tmp_path, min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=DAY)
    produce_many(plog, keyed_ops(20, 8), ts=T0)
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    produce_many(plog, keyed_ops(20, 1), ts=T0 + 1000)
    plog.roll()
    assert cleaner.select([(TP, plog)], T0 + 2000) == []  # ratio far below 0.99
    [task] = cleaner.select([(TP, plog)], T0 + 1000 + DAY + 1)
    assert task.need_compaction_now
    cleaner.abort(task)


def test_high_watermark_bounds_the_cleanable_range(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    plog.high_watermark = plog.segments[3].base_offset + 1
    cleaner = LogCleaner(tmp_path)
    task = cleaner.make_task(TP, plog, T0)
    assert task.first_uncleanable == plog.segments[3].base_offset


# -- tombstones -----------------------------------------------------------------------------------

def test_tombstones_survive_delete_retention_then_go(tmp_path):
    retention = 60_000
    plog = open_log(tmp_path, delete_retention_ms=retention)
    produce(plog, [(b"a", b"a1"), (b"b", b"b1"), (b"c", b"c1")])
    produce(plog, [(b"a", None), (b"b", b"b2")])
    produce_many(plog, keyed_ops(20, 5))  # filler, rolls segments
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog, T0 + 1000)
    state = replay(records_of(plog))
    assert b"a" in state and state[b"a"] is None  # the tombstone stays for now
    assert state[b"b"] == b"b2" and state[b"c"] == b"c1"
    assert all(not (k == b"a" and v is not None) for _, k, v in records_of(plog))
    tombstone_batches = [h for h in headers_of(plog) if h.attributes & DELETE_HORIZON_FLAG]
    assert len(tombstone_batches) == 1
    assert tombstone_batches[0].base_timestamp == T0 + 1000 + retention  # the delete horizon
    # record timestamps are unchanged by the horizon
    for chunk in plog.read(plog.log_start_offset, 1 << 30).chunks:
        for pos, _ in iter_batches(chunk):
            assert all(r.timestamp == T0 for r in iter_records(memoryview(chunk)[pos:]))
    # before the horizon: kept
    clean(cleaner, plog, T0 + 1000 + retention - 1)
    assert replay(records_of(plog))[b"a"] is None
    # at the horizon: gone, and nothing of "a" comes back
    stats = clean(cleaner, plog, T0 + 1000 + retention)
    assert stats.tombstones_removed == 1
    state = replay(records_of(plog))
    assert b"a" not in state and state[b"b"] == b"b2"
    # and after a restart
    plog = reopen(plog)
    assert b"a" not in replay(records_of(plog))


def test_tombstone_in_the_active_segment_is_not_touched(tmp_path):
    plog = open_log(tmp_path, delete_retention_ms=0)
    produce_many(plog, keyed_ops(10, 10))
    produce(plog, [(b"key-001", None)])
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog, T0 + DAY)
    clean(cleaner, plog, T0 + 2 * DAY)
    assert replay(records_of(plog))[b"key-001"] is None


def test_keyless_records_are_dropped(tmp_path):
    plog = open_log(tmp_path)
    produce(plog, [(None, b"no key"), (b"k", b"v")])
    produce_many(plog, keyed_ops(20, 5))
    cleaner = LogCleaner(tmp_path)
    stats = clean(cleaner, plog)
    assert stats.invalid_records == 1
    assert all(k is not None for _, k, _ in records_of(plog))
    assert replay(records_of(plog))[b"k"] == b"v"


# -- batch formats ---------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD, NONE])
def test_compressed_batches_are_recompressed_with_their_codec(tmp_path, codec):
    plog = open_log(tmp_path, segment_bytes=4096)
    rng = random.Random(codec)
    ops = [(b"key-%d" % k, b"%d-" % r + rng.randbytes(100)) for r in range(12) for k in range(15)]
    written = produce_many(plog, ops, per_batch=10, compression=codec)
    assert len(plog.segments) > 3
    before = records_of(plog)
    cleaner = LogCleaner(tmp_path)
    stats = clean(cleaner, plog)
    assert stats.records_removed > 0
    assert all(h.compression == codec for h in headers_of(plog) if h.record_count)
    after = records_of(plog)
    assert replay(after) == replay(before)
    offsets_by_value = {(k, v): o for o, k, v in written}
    assert all(offsets_by_value[(k, v)] == o for o, k, v in after)
    plog = reopen(plog, crashed=True)  # full recovery re-validates every CRC
    assert records_of(plog) == after


def test_rebuilt_batches_keep_offsets_and_producer_metadata(tmp_path):
    plog = open_log(tmp_path)
    # pid 7 writes keys that are all overwritten later by pid 8; pid 8's last batch is superseded too
    seq7 = 0
    for i in range(6):
        produce(plog, [(b"k%d" % j, b"p7-%d" % i) for j in range(4)], pid=7, epoch=1, seq=seq7)
        seq7 += 4
    produce(plog, [(b"k%d" % j, b"p8") for j in range(4)], pid=8, epoch=3, seq=0)
    produce_many(plog, [(b"k%d" % j, b"plain-%d" % r) for r in range(20) for j in range(4)])
    before_headers = {h.base_offset: h for h in headers_of(plog)}
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    headers = headers_of(plog)
    for h in headers:
        original = before_headers[h.base_offset]
        assert (h.last_offset_delta, h.producer_id, h.producer_epoch, h.base_sequence) == \
            (original.last_offset_delta, original.producer_id, original.producer_epoch, original.base_sequence)
    # each producer's last batch is kept (empty: all its records are superseded)
    last7 = max(b for b, h in before_headers.items() if h.producer_id == 7)
    kept = {h.base_offset: h for h in headers}
    assert kept[last7].record_count == 0 and kept[last7].producer_id == 7
    assert [h for h in headers if h.producer_id == 7] == [kept[last7]]
    assert any(h.producer_id == 8 for h in headers)
    # the idempotence state survives a restart rebuilt from the log alone
    for snap in plog.dir.glob("*.snapshot"):
        snap.unlink()
    plog = reopen(plog, crashed=True)
    assert plog.producers.producers[7].last_seq == seq7 - 1
    assert plog.producers.producers[8].last_seq == 3
    result = produce(plog, [(b"k0", b"next")], pid=7, epoch=1, seq=seq7)
    assert not result.duplicate


def test_control_and_transactional_batches_are_untouched(tmp_path):
    plog = open_log(tmp_path)
    produce(plog, [(b"k", b"txn-1"), (b"k", b"txn-2")], pid=5, epoch=0, seq=0, transactional=True)
    produce_many(plog, keyed_ops(20, 5) + [(b"k", b"plain")])
    produce_many(plog, keyed_ops(20, 3))
    txn_before = [h for h in headers_of(plog) if h.is_transactional]
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    assert [h for h in headers_of(plog) if h.is_transactional] == txn_before
    assert replay(records_of(plog))[b"k"] == b"plain"


def test_log_append_time_batches(tmp_path):
    plog = open_log(tmp_path, message_timestamp_type="LogAppendTime")
    for r in range(10):
        data = build_batch([(b"k%d" % i, b"v%d" % r, [], T0) for i in range(10)], base_timestamp=T0)
        plog.append(data, read_header(data), 0, T0 + r)
        plog.high_watermark = plog.log_end_offset
        plog.roll()
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    for chunk in plog.read(plog.log_start_offset, 1 << 30).chunks:
        for pos, h in iter_batches(chunk):
            assert h.is_log_append_time
            assert all(r.timestamp == h.max_timestamp for r in iter_records(memoryview(chunk)[pos:]))
    assert replay(records_of(plog)) == {b"k%d" % i: b"v9" for i in range(10)}


# -- the dedupe buffer ----------------------------------------------------------------------------

def test_tiny_dedupe_buffer_cleans_in_several_rounds(tmp_path):
    plog = open_log(tmp_path)
    written = produce_many(plog, keyed_ops(60, 6))
    before = records_of(plog)
    end = plog.active_segment.base_offset
    cleaner = LogCleaner(tmp_path, dedupe_buffer_bytes=20 * (7 + 128))  # ~18 keys per round
    points = []
    for _ in range(50):
        stats = clean(cleaner, plog)
        assert stats.aborted is None
        points.append(cleaner.clean_point(TP))
        assert replay(records_of(plog)) == replay(before)
        if points[-1] >= end:
            break
    assert len(points) > 3 and points == sorted(points) and points[-1] == end
    assert stats.map_keys <= 30
    # once fully cleaned: the cleaned range holds each key once
    cleaned = [r for r in records_of(plog) if r[0] < end]
    assert len(cleaned) == len({k for _, k, _ in cleaned})
    assert {(o, k, v) for o, k, v in cleaned} <= set(written)


# -- concurrency with the log ---------------------------------------------------------------------

def test_commit_aborts_when_retention_deleted_segments(tmp_path):
    plog = open_log(tmp_path, cleanup_policy="compact,delete", retention_ms=DAY)
    produce_many(plog, keyed_ops(20, 10), ts=T0)
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    prepared = cleaner.prepare(task)
    produce(plog, [(b"x", b"y")], ts=T0 + 3 * DAY)  # so the retention check may roll
    assert plog.delete_old_segments(T0 + 2 * DAY) > 0
    expected = records_of(plog)
    stats = cleaner.commit(prepared)
    assert stats.aborted
    assert records_of(plog) == expected
    assert stray(plog) == []
    assert TP not in cleaner._in_progress  # not stuck: the next round starts from the new log start
    task = cleaner.make_task(TP, plog, T0 + 3 * DAY)
    assert task is None or task.first_dirty >= plog.log_start_offset


def test_commit_aborts_after_truncation(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    prepared = cleaner.prepare(task)
    cut = plog.segments[2].base_offset + 3
    plog.truncate_to(cut)
    cleaner.truncated(TP, cut)
    expected = records_of(plog)
    assert cleaner.commit(prepared).aborted
    assert records_of(plog) == expected and stray(plog) == []


def test_commit_detects_truncation_without_being_told(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    prepared = cleaner.prepare(task)
    plog.truncate_to(plog.segments[-2].base_offset + 1)
    assert cleaner.commit(prepared).aborted


def test_appends_during_prepare_are_kept(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    prepared = cleaner.prepare(task)
    produce_many(plog, keyed_ops(20, 5))  # rolls new segments meanwhile
    before = records_of(plog)
    assert cleaner.commit(prepared).aborted is None
    assert replay(records_of(plog)) == replay(before)
    assert records_of(plog)[-100:] == before[-100:]


def test_clean_point_is_checkpointed(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    cleaner = LogCleaner(tmp_path)
    clean(cleaner, plog)
    point = cleaner.clean_point(TP)
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE, 3) == [["t", "0", str(point)]]
    again = LogCleaner(tmp_path)
    assert again.clean_point(TP) == point
    # a clean point beyond the log end (lost tail) resets to the log start
    plog.truncate_to(point - 5)
    task = again.make_task(TP, plog, T0)
    assert task is None or task.first_dirty == plog.log_start_offset
    again.partition_deleted(TP)
    again.write_checkpoint()
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE, 3) == []


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_run_cleans_in_the_background(tmp_path, worker):
    plog = open_log(tmp_path)
    import time as _time
    now = int(_time.time() * 1000)
    produce_many(plog, keyed_ops(30, 10), ts=now)
    before = records_of(plog)
    cleaner = LogCleaner(tmp_path, worker=worker)

    async def main():
        task = asyncio.create_task(cleaner.run(lambda: [(TP, plog)], 0.01))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if cleaner.last_stats is not None:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    cleaner.close()
    assert cleaner.last_stats is not None and cleaner.last_stats.records_removed > 0
    assert "MB/s" in cleaner.last_stats.summary()
    assert len(records_of(plog)) < len(before)
    assert replay(records_of(plog)) == replay(before)
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE, 3)[0][2] == str(cleaner.clean_point(TP))
    assert stray(plog) == []
    assert cleaner._process is None  # the worker process is stopped with run()


def test_cancelling_run_mid_round_kills_the_worker_and_leaves_nothing(tmp_path):
    plog = open_log(tmp_path, segment_bytes=256 * 1024)
    rng = random.Random(1)
    ops = [(b"k%05d" % rng.randrange(5000), rng.randbytes(100)) for _ in range(60000)]
    produce_many(plog, ops, per_batch=100)
    before = records_of(plog)
    cleaner = LogCleaner(tmp_path, worker="process")
    seen = {}

    async def main():
        task = asyncio.create_task(cleaner.run(lambda: [(TP, plog)], 0.01))
        for _ in range(1000):
            await asyncio.sleep(0.002)
            if cleaner._in_progress and cleaner._process is not None and cleaner._process.pid:
                seen["pid"] = cleaner._process.pid
                await asyncio.sleep(0.05)  # mid-prepare
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "pid" in seen and cleaner.last_stats is None
    with pytest.raises(ProcessLookupError):
        os.kill(seen["pid"], 0)
    assert stray(plog) == [] and records_of(plog) == before
    assert not cleaner._in_progress


# -- crash safety ---------------------------------------------------------------------------------

CRASH_POINTS = ["prepared", "swap_renamed_one", "after_swap", "mid_delete", "after_delete", "mid_final_rename"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_step_recovers_old_or_new(tmp_path, point):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(25, 12))
    produce(plog, [(b"key-003", None)])
    produce_many(plog, keyed_ops(25, 2))
    old = records_of(plog)
    # the outcome of a clean run, computed on a copy
    import shutil
    shutil.copytree(tmp_path / "t-0", tmp_path / "copy" / "t-0")
    twin = open_log(tmp_path / "copy")
    clean(LogCleaner(tmp_path / "copy"), twin)
    new = records_of(twin)
    assert new != old

    cleaner = LogCleaner(tmp_path)
    task = cleaner.make_task(TP, plog, T0)
    prepared = cleaner.prepare(task)
    assert len(prepared.groups) > 1
    if point != "prepared":
        def hook(step):
            if step == point:
                raise SimulatedCrash(step)
        cleaner._crash_hook = hook
        with pytest.raises(SimulatedCrash):
            cleaner.commit(prepared)
    recovered = reopen(plog, crashed=True)
    got = records_of(recovered)
    assert stray(recovered) == []
    assert replay(got) == replay(old)  # every key's last value (and the tombstone)
    assert set(new) <= set(got) <= set(old)
    if point == "prepared":
        assert got == old
    elif point != "swap_renamed_one":
        assert got == new  # every swap file existed: the whole round completes
    else:
        # the first group came through, the others are as they were
        first_end = prepared.groups[1].base_offset
        assert [r for r in got if r[0] < first_end] == [r for r in new if r[0] < first_end]
        assert [r for r in got if r[0] >= first_end] == [r for r in old if r[0] >= first_end]
    # the recovered log cleans to the same result
    (tmp_path / "again").mkdir()
    clean(LogCleaner(tmp_path / "again"), recovered)
    assert records_of(recovered) == new


def test_complete_swaps_replaces_exactly_the_swapped_range(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(10, 20))
    bases = [s.base_offset for s in plog.segments]
    cleaner = LogCleaner(tmp_path)
    prepared = cleaner.prepare(cleaner.make_task(TP, plog, T0))
    first = prepared.groups[0]
    covered = [r.base_offset for r in first.old]
    for src, final in first.cleaned_paths(plog.dir):
        os.replace(src, final.with_name(final.name + ".swap"))
    for group in prepared.groups[1:]:
        for src, _ in group.cleaned_paths(plog.dir):
            src.unlink()
    assert complete_swaps(plog.dir) == 1
    remaining = sorted(int(n[:20]) for n in os.listdir(plog.dir) if n.endswith(".log"))
    assert remaining == [covered[0]] + [b for b in bases if b not in covered]
    assert complete_swaps(plog.dir) == 0


# -- the model ------------------------------------------------------------------------------------

ops_strategy = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"]),
              st.one_of(st.none(), st.binary(min_size=0, max_size=40))),
    min_size=1, max_size=150)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy, per_batch=st.integers(1, 7), codec=st.sampled_from([NONE, GZIP, LZ4]),
       segment_bytes=st.sampled_from([300, 700, 2000]), buffer_keys=st.sampled_from([3, 1000]))
def test_model(ops, per_batch, codec, segment_bytes, buffer_keys):
    retention = 1000
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        plog = open_log(root, segment_bytes=segment_bytes, delete_retention_ms=retention)
        written = produce_many(plog, ops, per_batch=per_batch, compression=codec)
        model = replay(written)
        cleaner = LogCleaner(root, dedupe_buffer_bytes=buffer_keys * (1 + 128))
        # clean to the end of the cleanable range (several rounds with a small buffer)
        for _ in range(len(ops) + 2):
            task = cleaner.make_task(TP, plog, T0)
            if task is None:
                break
            cleaner.commit(cleaner.prepare(task))
            assert replay(records_of(plog)) == model
            if cleaner.clean_point(TP) >= plog.active_segment.base_offset:
                break
        clean_point = cleaner.clean_point(TP) or 0
        got = records_of(plog)
        cleaned = [r for r in got if r[0] < clean_point]
        assert len(cleaned) == len({k for _, k, _ in cleaned})
        assert set(got) <= set(written)
        # past the delete horizon, cleaned tombstones disappear, values never do
        for _ in range(len(ops) + 2):
            task = cleaner.make_task(TP, plog, T0 + retention)
            if task is None:
                break
            cleaner.commit(cleaner.prepare(task))
            if cleaner.clean_point(TP) >= plog.active_segment.base_offset:
                break
        got = records_of(plog)
        state = replay(got)
        assert {k: v for k, v in state.items() if v is not None} == {k: v for k, v in model.items() if v is not None}
        assert all(v is not None for o, _, v in got if o < clean_point)
        plog = reopen(plog, crashed=True)
        assert records_of(plog) == got
        plog.close()


# -- odd inputs ---------------------------------------------------------------------------------------

def test_batches_larger_than_the_io_buffer(tmp_path, monkeypatch):
    import josef.storage.cleaner as cleaner_module
    monkeypatch.setattr(cleaner_module, "IO_BUFFER_BYTES", 100)
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(10, 12, size=60), per_batch=6)
    before = records_of(plog)
    cleaner = LogCleaner(tmp_path)
    stats = clean(cleaner, plog)
    assert stats.records_removed > 0
    assert replay(records_of(plog)) == replay(before)


def test_a_corrupt_segment_fails_the_round_cleanly(tmp_path):
    plog = open_log(tmp_path)
    produce_many(plog, keyed_ops(20, 10))
    victim = plog.segments[2]
    with open(victim.log_path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    before = records_of(plog)
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    with pytest.raises(Exception) as info:
        cleaner.prepare(task)
    assert "CRC" in str(info.value) or "malformed" in str(info.value) or "record" in str(info.value)
    cleaner.abort(task)
    assert stray(plog) == [] and records_of(plog) == before
    assert cleaner.clean_point(TP) is None


def test_compact_delete_logs_are_cleaned_and_retention_still_applies(tmp_path):
    plog = open_log(tmp_path, cleanup_policy="compact,delete", retention_ms=DAY)
    produce_many(plog, keyed_ops(20, 10), ts=T0)
    cleaner = LogCleaner(tmp_path)
    [task] = cleaner.select([(TP, plog)], T0)
    assert cleaner.commit(cleaner.prepare(task)).records_removed > 0
    produce_many(plog, keyed_ops(20, 1), ts=T0 + 2 * DAY)
    assert plog.delete_old_segments(T0 + 2 * DAY) > 0
    assert all(v.startswith(b"v") for _, _, v in records_of(plog))
    assert cleaner.make_task(TP, plog, T0 + 2 * DAY) is None or \
        cleaner.make_task(TP, plog, T0 + 2 * DAY).first_dirty >= plog.log_start_offset


def _crash_after_delete(tmp_path):
    plog = open_log(tmp_path)
    produce(plog, [(b"first", b"only value, in the first group")])
    produce_many(plog, keyed_ops(20, 10))
    produce(plog, [(b"key-000", b"latest")])
    plog.roll()
    produce(plog, [(b"other", b"x")])
    old = records_of(plog)
    cleaner = LogCleaner(tmp_path)
    prepared = cleaner.prepare(cleaner.make_task(TP, plog, T0))

    def hook(step):
        if step == "after_delete":
            raise SimulatedCrash(step)
    cleaner._crash_hook = hook
    with pytest.raises(SimulatedCrash):
        cleaner.commit(prepared)
    assert any(n.endswith(".log.swap") for n in os.listdir(plog.dir))
    return plog, old


def test_complete_swaps_then_open_recovers_a_crash_after_delete(tmp_path):
    plog, old = _crash_after_delete(tmp_path)
    recovered = reopen(plog, crashed=True)  # complete_swaps, then open
    assert replay(records_of(recovered)) == replay(old)


def test_partition_log_open_alone_completes_swaps(tmp_path):
    plog, old = _crash_after_delete(tmp_path)
    recovered = PartitionLog.open(plog.dir, plog.topic, plog.partition, plog.config)
    assert replay(records_of(recovered)) == replay(old)
