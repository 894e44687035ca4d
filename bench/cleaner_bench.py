"""Log cleaner throughput: clean a ~100 MB compacted log holding 100k keys.

    .venv/bin/python bench/cleaner_bench.py [--mb 100] [--keys 100000] [--value-bytes 100]
                                            [--batch 100] [--compression none|gzip|snappy|lz4|zstd]
                                            [--loop-impact]

Builds the log with PartitionLog.append (segment.bytes 16 MiB), then runs one cleaning
round the way the broker does: select on the caller's thread, prepare (the off-loop part:
offset map + rewrite) and commit (the on-loop swap). Prints MB/s of log cleaned (bytes read
by the rewrite / prepare time), records/s and keys/s, and how long commit held the loop.

--loop-impact instead runs LogCleaner.run() on an asyncio loop that also does busy work
(CPU plus a 1 ms timer, like a broker under load), once with no cleaner and once per worker
kind ("process", "thread"), and prints the loop's work rate and timer lag (p50/p99) while
the log is cleaned.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from josef.records.batch import read_header  # noqa: E402
from josef.records.compression import CODEC_NAMES  # noqa: E402
from josef.records.records import build_batch  # noqa: E402
from josef.storage.cleaner import LogCleaner  # noqa: E402
from josef.storage.log import LogConfig, PartitionLog  # noqa: E402

T0 = 1_700_000_000_000


def build_log(root: Path, mb: int, keys: int, value_bytes: int, batch: int, codec: int) -> PartitionLog:
    config = LogConfig(cleanup_policy="compact", segment_bytes=16 << 20)
    plog = PartitionLog.open(root / "bench-0", "bench", 0, config)
    rng = random.Random(42)
    payload = rng.randbytes(1 << 16)
    target = mb << 20
    n = 0
    while plog.size_bytes < target:
        records = []
        for _ in range(batch):
            k = rng.randrange(keys)
            start = rng.randrange(len(payload) - value_bytes)
            records.append((b"key-%08d" % k, payload[start:start + value_bytes], [], T0 + n))
            n += 1
        data = build_batch(records, compression=codec, base_timestamp=T0 + n)
        plog.append(data, read_header(data), 0, T0 + n)
    plog.roll()  # make everything cleanable
    plog.high_watermark = plog.log_end_offset
    return plog


async def _loop_impact(root: Path, plog: PartitionLog, worker: str | None, seconds: float) -> str:
    """Busy loop + 1 ms timer while `worker` cleans `plog` (None: no cleaner)."""
    stop = asyncio.Event()
    work = [0]
    lags: list[float] = []
    blob = bytes(2000)

    async def busy():
        while not stop.is_set():
            for _ in range(20):
                zlib.crc32(blob)
                sum(range(100))
                work[0] += 1
            await asyncio.sleep(0)

    async def ticker():
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1000)

    cleaner = None
    tasks = [asyncio.create_task(busy()), asyncio.create_task(ticker())]
    started = time.perf_counter()
    if worker is not None:
        cleaner = LogCleaner(root, worker=worker)
        tasks.append(asyncio.create_task(cleaner.run(lambda: [(("bench", 0), plog)], 1.0)))
        while cleaner.last_stats is None and time.perf_counter() - started < 600:
            await asyncio.sleep(0.05)
    else:
        await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    stop.set()
    for task in tasks[2:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lags.sort()
    p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99)]
    done = f", cleaned in {elapsed:.2f} s ({cleaner.last_stats.bytes_read / 1e6 / elapsed:.1f} MB/s)" \
        if cleaner is not None else ""
    return f"loop work {work[0] / elapsed:,.0f}/s, timer lag p50 {p50:.2f} ms p99 {p99:.2f} ms{done}"


def loop_impact(args, codec: int) -> None:
    for worker in (None, "process", "thread"):
        root = Path(tempfile.mkdtemp(prefix="cleaner-bench-", dir=args.dir))
        try:
            plog = build_log(root, args.mb, args.keys, args.value_bytes, args.batch, codec)
            line = asyncio.run(_loop_impact(root, plog, worker, 3.0))
            print(f"{worker or 'no cleaner':>10}: {line}")
            plog.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--compression", default="none", choices=list(CODEC_NAMES.values()))
    parser.add_argument("--dir", default=None, help="where to build the log (default: a temp dir)")
    parser.add_argument("--loop-impact", action="store_true",
                        help="measure what cleaning does to a busy event loop, per worker kind")
    args = parser.parse_args()
    codec = {v: k for k, v in CODEC_NAMES.items()}[args.compression]
    if args.loop_impact:
        loop_impact(args, codec)
        return
    root = Path(tempfile.mkdtemp(prefix="cleaner-bench-", dir=args.dir))
    try:
        started = time.perf_counter()
        plog = build_log(root, args.mb, args.keys, args.value_bytes, args.batch, codec)
        print(f"built {plog.size_bytes / 1e6:.1f} MB, {plog.log_end_offset:,} records, "
              f"{len(plog.segments)} segments in {time.perf_counter() - started:.1f} s "
              f"({args.compression}, {args.batch} records/batch, {args.value_bytes}-byte values)")
        cleaner = LogCleaner(root)
        [task] = cleaner.select([(("bench", 0), plog)], T0 + plog.log_end_offset)
        t0 = time.perf_counter()
        prepared = cleaner.prepare(task)
        t1 = time.perf_counter()
        stats = cleaner.commit(prepared, defer_io=True)
        t2 = time.perf_counter()
        cleaner.finish_io(cleaner.checkpoint_entries())
        prepare_s = t1 - t0
        map_s = stats.map_elapsed_s
        print(stats.summary())
        print(f"prepare (off the loop): {prepare_s:.2f} s, of which offset map {map_s:.2f} s")
        print(f"  {stats.bytes_read / 1e6 / prepare_s:.1f} MB/s of log cleaned")
        print(f"  {stats.records_read / prepare_s:,.0f} records/s, {stats.map_keys / prepare_s:,.0f} keys/s "
              f"({stats.map_keys:,} distinct keys mapped, {stats.map_memory / 1e6:.1f} MB map)")
        print(f"  {stats.map_records_read / map_s:,.0f} records/s while mapping")
        print(f"commit (on the loop): {1000 * (t2 - t1):.2f} ms for {stats.segments_before} -> "
              f"{stats.segments_after} segments")
        plog.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
