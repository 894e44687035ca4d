"""The fetch purgatory: woken by appends, bounded by its timeout, leaving nothing behind."""
from __future__ import annotations

import asyncio

from josef.broker.purgatory import FetchPurgatory


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_enough_appended_bytes_complete_the_fetch_before_its_timeout():
    async def scenario():
        purgatory = FetchPurgatory()
        future = purgatory.park([("t", 0), ("t", 1)], 100, lambda: "answer", timeout_s=30)
        purgatory.appended(("t", 1), 60)
        assert not future.done()  # 60 of 100 bytes
        purgatory.appended(("other", 0), 500)
        assert not future.done()  # not a partition it waits on
        purgatory.appended(("t", 0), 40)
        assert await future == "answer"
        assert not purgatory.waiting
    run(scenario())


def test_timeout_answers_with_what_there_is():
    async def scenario():
        purgatory = FetchPurgatory()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await purgatory.park([("t", 0)], 1, lambda: "empty", timeout_s=0.05) == "empty"
        assert loop.time() - started >= 0.04
        assert not purgatory.waiting
    run(scenario())


def test_a_cancelled_fetch_leaves_the_purgatory():
    async def scenario():
        purgatory = FetchPurgatory()
        future = purgatory.park([("t", 0)], 1, lambda: "never", timeout_s=30)
        future.cancel()  # the client's connection closed
        await asyncio.sleep(0)
        assert not purgatory.waiting
        purgatory.appended(("t", 0), 10)  # nothing left to wake
    run(scenario())


def test_finish_all_answers_every_parked_fetch():
    async def scenario():
        purgatory = FetchPurgatory()
        futures = [purgatory.park([("t", p)], 1, lambda p=p: p, timeout_s=30) for p in range(3)]
        purgatory.finish_all()
        assert [await f for f in futures] == [0, 1, 2]
        assert not purgatory.waiting
    run(scenario())
