"""Small helpers for handlers whose answer arrives later."""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Callable, Iterable


def then(future: asyncio.Future, fn: Callable) -> asyncio.Future:
    """A future of `fn(result)`: lets a handler shape a delayed reply into its response.

    `fn` may answer with a future of its own (a further wait); its result is then the answer.
    """
    out = future.get_loop().create_future()

    def settle(f: asyncio.Future, shape: Callable) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
        elif f.exception() is not None:
            out.set_exception(f.exception())
        else:
            try:
                value = shape(f.result())
            except Exception as exc:
                out.set_exception(exc)
                return
            if isinstance(value, asyncio.Future):
                value.add_done_callback(lambda g: settle(g, lambda v: v))
            else:
                out.set_result(value)

    future.add_done_callback(lambda f: settle(f, fn))
    return out


def after(writes: Iterable[asyncio.Future | concurrent.futures.Future], fn: Callable[[], object]):
    """`fn()` once every metadata write is done (see josef.broker.metadata_writer).

    When they all are already (the embedded store writes on the spot) `fn` runs at once and
    its answer is returned as is; otherwise the answer is a future, and `fn` runs on the event
    loop as soon as the last write is done. `fn` reads each write's outcome itself.
    """
    pending = [w for w in writes if not w.done()]
    if not pending:
        return fn()
    loop = asyncio.get_running_loop()
    done = asyncio.gather(*(asyncio.wrap_future(w, loop=loop) for w in pending), return_exceptions=True)
    return then(done, lambda _: fn())
