"""The asyncio side of a broker: listening sockets and connections.

A connection cuts its byte stream into frames and hands each to the dispatcher. Answers
leave in request order: an answer that is not ready yet (an acks=all produce, a long-poll
fetch) holds back the ones queued behind it on this connection only.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

from josef.protocol.errors import MalformedRequest

log = logging.getLogger("josef.server")

# Stop reading from a client that has this many answers outstanding (it pipelines too far).
MAX_PENDING = 128


class Connection(asyncio.Protocol):
    def __init__(self, dispatcher, max_request_size: int, connections: set):
        self.dispatcher = dispatcher
        self.max_request_size = max_request_size
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: deque = deque()
        self.peer = "?"
        self.closed = False
        self._reading_paused = False
        self._writing_paused = False
        self.listener = None  # name of the listener the client came in on

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.connections.add(self)

    def connection_lost(self, exc):
        self.closed = True
        self.connections.discard(self)
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()

    def pause_writing(self):
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self):
        self._writing_paused = False
        self._update_reading()

    def data_received(self, data: bytes):
        buf = self.buffer
        buf += data
        start = 0
        end = len(buf)
        while end - start >= 4 and not self.closed:
            size = int.from_bytes(buf[start:start + 4], "big", signed=True)
            if size <= 0 or size > self.max_request_size:
                log.warning("closing %s: frame size %d outside 1..%d", self.peer, size, self.max_request_size)
                self.close()
                return
            if end - start - 4 < size:
                break
            frame = buf[start + 4:start + 4 + size]
            start += 4 + size
            self._handle(frame)
        if start:
            del buf[:start]

    # --- requests and answers -------------------------------------------------

    def _handle(self, frame: bytearray) -> None:
        try:
            answer = self.dispatcher.dispatch(frame, self)
        except MalformedRequest as e:
            log.warning("closing %s: malformed request: %s", self.peer, e)
            log.debug("malformed frame: %s", bytes(frame[:256]).hex())
            self.close()
            return
        except Exception:
            log.exception("closing %s: request could not be handled", self.peer)
            self.close()
            return
        if answer is None:
            return  # acks=0 produce: no answer at all
        if isinstance(answer, asyncio.Future):
            self.pending.append(answer)
            answer.add_done_callback(self._flush)
            self._update_reading()
        elif self.pending:
            self.pending.append(answer)
        else:
            self.transport.writelines(answer)

    def _flush(self, _future=None) -> None:
        while self.pending and not self.closed:
            head = self.pending[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    break
                if head.cancelled():
                    self.close()
                    return
                exc = head.exception()
                if exc is not None:
                    log.error("closing %s: delayed request failed", self.peer, exc_info=exc)
                    self.close()
                    return
                chunks = head.result()
            else:
                chunks = head
            self.pending.popleft()
            if chunks is not None:
                self.transport.writelines(chunks)
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        should_pause = self._writing_paused or len(self.pending) >= MAX_PENDING
        if should_pause and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class KafkaServer:
    """Listens on one address and feeds every connection's frames to `dispatcher`."""

    def __init__(self, dispatcher, host: str, port: int, max_request_size: int, listener: str = "PLAINTEXT"):
        self.dispatcher = dispatcher
        self.host, self.port = host, port
        self.max_request_size = max_request_size
        self.listener = listener
        self.connections: set[Connection] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory():
            conn = Connection(self.dispatcher, self.max_request_size, self.connections)
            conn.listener = self.listener
            return conn

        self.server = await loop.create_server(factory, self.host, self.port, reuse_address=True, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def drain(self, timeout: float) -> None:
        """Let answers already owed go out (delayed ones included), then close every connection."""
        owed = [item for conn in self.connections for item in conn.pending if isinstance(item, asyncio.Future)]
        if owed:
            await asyncio.wait(owed, timeout=timeout)
        for conn in list(self.connections):
            if conn.transport is not None and not conn.closed:
                conn.transport.close()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), timeout)
            except asyncio.TimeoutError:
                log.warning("some connections did not close within %.1fs", timeout)
