"""Delayed fetches: a long-poll waits here until enough bytes arrive or its time is up.

Appends wake the waiters of their partition directly; there is no polling loop.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Callable


class DelayedFetch:
    __slots__ = ("keys", "needed", "complete", "future", "timer", "purgatory")

    def __init__(self, purgatory, keys, needed: int, complete: Callable[[], object], timeout_s: float):
        loop = asyncio.get_running_loop()
        self.purgatory = purgatory
        self.keys = keys
        self.needed = needed  # bytes still missing before min_bytes is met
        self.complete = complete  # builds the answer when the wait ends
        self.future = loop.create_future()
        self.future.add_done_callback(self._forget)  # also when the connection goes away
        self.timer = loop.call_later(timeout_s, self.finish)

    def on_append(self, size: int) -> None:
        self.needed -= size
        if self.needed <= 0:
            self.finish()

    def finish(self) -> None:
        if self.future.done():
            return
        self._forget(None)
        try:
            self.future.set_result(self.complete())
        except Exception as exc:  # the connection closes; the broker goes on
            self.future.set_exception(exc)

    def _forget(self, _future) -> None:
        self.timer.cancel()
        self.purgatory.forget(self)


class FetchPurgatory:
    def __init__(self):
        self.waiting: dict[tuple[str, int], set[DelayedFetch]] = defaultdict(set)

    def park(self, keys, needed: int, complete: Callable[[], object], timeout_s: float) -> asyncio.Future:
        delayed = DelayedFetch(self, keys, needed, complete, timeout_s)
        for key in keys:
            self.waiting[key].add(delayed)
        return delayed.future

    def forget(self, delayed: DelayedFetch) -> None:
        for key in delayed.keys:
            waiters = self.waiting.get(key)
            if waiters is not None:
                waiters.discard(delayed)
                if not waiters:
                    del self.waiting[key]

    def appended(self, key: tuple[str, int], size: int) -> None:
        waiters = self.waiting.get(key)
        if waiters:
            for delayed in list(waiters):
                delayed.on_append(size)

    def finish_all(self) -> None:
        """Answer every parked fetch now (shutdown, or partitions going away)."""
        for delayed in {d for waiters in self.waiting.values() for d in waiters}:
            delayed.finish()
