"""Small helpers for handlers whose answer arrives later."""
from __future__ import annotations

import asyncio
from typing import Callable


def then(future: asyncio.Future, fn: Callable) -> asyncio.Future:
    """A future of `fn(result)`: lets a handler shape a delayed reply into its response."""
    out = future.get_loop().create_future()

    def done(f: asyncio.Future) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
        elif f.exception() is not None:
            out.set_exception(f.exception())
        else:
            try:
                out.set_result(fn(f.result()))
            except Exception as exc:
                out.set_exception(exc)

    future.add_done_callback(done)
    return out
