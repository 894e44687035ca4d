"""Where metadata writes run, so that no ZooKeeper round trip ever holds up the event loop.

Admin requests (topics, configs, reassignments, elections, producer-id blocks) are validated
on the loop against the snapshot; their store write then goes through `MetadataWriter.submit`,
which returns a future of its outcome, and the handler answers from it with
`josef.broker.futures.after`.

- ZooKeeper store: writes run in one thread, one at a time, in the order they were submitted,
  so the writes of one request, and of requests pipelined on one connection, reach ZooKeeper
  in request order. A slow or unreachable ZooKeeper (up to zk_store.OP_TIMEOUT_S per round
  trip) delays only the admin answers waiting on it, never a produce or a fetch. The future is
  an asyncio one, settled on the loop through call_soon_threadsafe after the write returns; a
  write that wants its effect in the snapshot first (read-your-writes for configs) queues the
  publish the same way, so the loop runs it before the future can be seen done.
- Embedded store: the write runs at once on the caller's thread, the event loop, where its
  on_change hook must run; the future (a concurrent.futures one: no loop is needed, as when a
  broker is built outside one) is done on return, so answers stay synchronous.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Callable

Write = asyncio.Future | concurrent.futures.Future  # the outcome of one metadata write


class MetadataWriter:
    def __init__(self, off_loop: bool):
        self._executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metadata-writer")
                          if off_loop else None)

    def submit(self, fn: Callable, *args) -> Write:
        """Run `fn(*args)` where metadata writes run; its result or exception lands in the future."""
        if self._executor is not None:
            return asyncio.wrap_future(self._executor.submit(fn, *args), loop=asyncio.get_running_loop())
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as e:
            future.set_exception(e)
        return future

    def close(self) -> None:
        """Drop writes not started yet; one under way finishes (or times out) on its own."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def failed(error: Exception) -> concurrent.futures.Future:
    """A write refused before it started (the request was invalid), as a done future."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_exception(error)
    return future
