"""Where metadata writes run (josef.broker.metadata_writer) and how handlers answer from them
(josef.broker.futures.after): at once for the embedded store, off the loop for ZooKeeper."""
from __future__ import annotations

import asyncio
import threading

import pytest

from josef.broker.futures import after, then
from josef.broker.metadata_writer import MetadataWriter, failed


def test_embedded_store_writes_run_at_once_on_the_callers_thread_and_answers_stay_synchronous():
    writer = MetadataWriter(off_loop=False)
    ran_on = []
    ok = writer.submit(lambda x: ran_on.append(threading.current_thread()) or x * 2, 21)
    bad = writer.submit(lambda: 1 / 0)
    assert ok.done() and ok.result() == 42 and ran_on == [threading.current_thread()]
    assert isinstance(bad.exception(), ZeroDivisionError)
    # no event loop needed, and the answer is the value itself, not a future
    assert after([ok, bad], lambda: (ok.result(), type(bad.exception()).__name__)) == (42, "ZeroDivisionError")
    assert after([], lambda: "nothing to wait for") == "nothing to wait for"
    assert isinstance(failed(ValueError("no")).exception(), ValueError)


def test_zookeeper_writes_run_in_one_thread_in_order_while_the_loop_keeps_running():
    writer = MetadataWriter(off_loop=True)
    release = threading.Event()
    done_order: list[int] = []
    threads: set[str] = set()

    def write(i: int) -> int:
        if i == 0:
            assert release.wait(10)  # a slow ZooKeeper
        threads.add(threading.current_thread().name)
        done_order.append(i)
        return i

    async def scenario():
        loop_thread = threading.current_thread()
        writes = [writer.submit(write, i) for i in range(5)]
        answered_on = []
        answer = after(writes, lambda: answered_on.append(threading.current_thread()) or [w.result() for w in writes])
        assert isinstance(answer, asyncio.Future)
        ticks = 0
        for _ in range(20):  # the loop is free while the first write is stuck
            await asyncio.sleep(0.001)
            ticks += 1
        assert not answer.done() and done_order == [] and ticks == 20
        release.set()
        assert await asyncio.wait_for(answer, 10) == [0, 1, 2, 3, 4]
        assert answered_on == [loop_thread]

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        writer.close()
    assert done_order == [0, 1, 2, 3, 4] and len(threads) == 1 and threading.main_thread().name not in threads


def test_a_write_callback_queued_on_the_loop_runs_before_the_answer():
    """Read-your-writes: the ZooKeeper store publishes its snapshot with call_soon_threadsafe
    from the write; the handler's answer, called back later, must already see it."""
    writer = MetadataWriter(off_loop=True)
    seen: list[str] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        write = writer.submit(lambda: loop.call_soon_threadsafe(seen.append, "published"))
        return await asyncio.wait_for(after([write], lambda: seen.append("answered") or list(seen)), 10)

    try:
        assert asyncio.run(scenario()) == ["published", "answered"]
    finally:
        writer.close()


def test_then_waits_for_a_future_returned_by_its_callback():
    async def scenario():
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        out = then(first, lambda v: then(second, lambda w: (v, w)))
        first.set_result("write done")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not out.done()  # still waiting on the second future
        second.set_result("snapshot shows it")
        return await asyncio.wait_for(out, 5)

    assert asyncio.run(scenario()) == ("write done", "snapshot shows it")


def test_an_unexpected_write_error_reaches_the_answer():
    writer = MetadataWriter(off_loop=True)

    async def scenario():
        write = writer.submit(lambda: 1 / 0)
        return await asyncio.wait_for(after([write], lambda: write.result()), 10)

    try:
        with pytest.raises(ZeroDivisionError):
            asyncio.run(scenario())
    finally:
        writer.close()
