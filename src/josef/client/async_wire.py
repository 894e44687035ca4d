"""An asyncio Kafka connection for the replica fetcher: one request at a time, on the event loop.

Frames are read with a BufferedProtocol: once a frame's size is known, the socket reads straight
into that frame's own buffer, so a multi-megabyte Fetch response costs no copy after the kernel's,
and its records reach the log as memoryview slices of it (protocol/fetch.py's response decoder).
Requests are kio entities, as with the blocking client (client/wire.py); Fetch responses are decoded
by josef's own code, every other response by kio behind the guard.

    conn = await AsyncKafkaConnection.connect(host, port, timeout=10.0, client_id="replica-fetcher-1")
    response = await conn.fetch(fetch_request_entity)     # josef.protocol.fetch.FetchResponse
    other = await conn.request(offset_for_leader_epoch)   # a kio response entity
    conn.close()

Every failure (refused, reset, timed out, a frame that is too large or cannot be decoded) raises
WireError; the connection is unusable after one.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct

from josef.client.wire import MAX_RESPONSE, WireError, decode_response, encode_request, response_body_offset
from josef.protocol.errors import MalformedResponse
from josef.protocol.fetch import FetchResponse, decode_fetch_response

__all__ = ["AsyncKafkaConnection"]

FETCH = 1
_SIZE = struct.Struct(">i")
_SCRATCH = 64 * 1024  # where reads land while no frame is in progress (size prefix, small frames)
_MAX_QUEUED = 4  # frames nobody asked for; one request is in flight at a time


class _FrameReader(asyncio.BufferedProtocol):
    """Splits the byte stream into frames (int32 size, then that many bytes), each its own bytearray."""

    def __init__(self, peer: str, max_frame: int):
        self.peer, self.max_frame = peer, max_frame
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(_SCRATCH)
        self._head = bytearray()  # a size prefix split across reads
        self._frame: bytearray | None = None  # the frame being filled
        self._filled = 0
        self._frames: collections.deque[bytearray] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._error: Exception | None = None

    # --- asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int):
        if self._frame is not None:  # never past this frame's end: the next one starts in scratch
            return memoryview(self._frame)[self._filled:]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._frame is not None:
            self._filled += nbytes
            if self._filled == len(self._frame):
                self._complete()
            return
        self._split(memoryview(self._scratch)[:nbytes])

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(WireError(f"{self.peer} closed the connection{reason}"))

    # --- frames

    def _split(self, data: memoryview) -> None:
        """Frames out of bytes read into scratch: the size prefix, then as much of the frame as came."""
        pos, end = 0, len(data)
        while pos < end:
            if self._frame is None:
                take = min(4 - len(self._head), end - pos)
                self._head += data[pos:pos + take]
                pos += take
                if len(self._head) < 4:
                    return
                size = _SIZE.unpack(self._head)[0]
                self._head.clear()
                if not 0 <= size <= self.max_frame:
                    self._abort(WireError(f"{self.peer} sent a frame of {size} bytes"))
                    return
                self._frame, self._filled = bytearray(size), 0
            take = min(len(self._frame) - self._filled, end - pos)
            self._frame[self._filled:self._filled + take] = data[pos:pos + take]
            self._filled += take
            pos += take
            if self._filled == len(self._frame):
                self._complete()
                if self._error is not None:
                    return

    def _complete(self) -> None:
        frame, self._frame = self._frame, None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)
        elif len(self._frames) < _MAX_QUEUED:
            self._frames.append(frame)
        else:
            self._abort(WireError(f"{self.peer} sent {_MAX_QUEUED + 1} frames nobody asked for"))

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)

    def _abort(self, error: Exception) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    async def next_frame(self, timeout: float) -> bytearray:
        if self._frames:
            return self._frames.popleft()
        if self._error is not None:
            raise self._error
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self._timed_out, waiter, timeout)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self, waiter: asyncio.Future, timeout: float) -> None:
        if not waiter.done():
            self._abort(WireError(f"no answer from {self.peer} within {timeout:g} s"))


class AsyncKafkaConnection:
    """One connection; requests are sent one at a time (the caller awaits each answer)."""

    def __init__(self, transport: asyncio.Transport, reader: _FrameReader, timeout: float, client_id: str):
        self._transport, self._reader = transport, reader
        self.peer, self.timeout, self.client_id = reader.peer, timeout, client_id
        self._correlation_id = 0
        self._busy = False
        self._closed = False

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0,
                      client_id: str = "josef") -> "AsyncKafkaConnection":
        loop = asyncio.get_running_loop()
        peer = f"{host}:{port}"
        try:
            transport, reader = await asyncio.wait_for(
                loop.create_connection(lambda: _FrameReader(peer, MAX_RESPONSE), host, port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise WireError(f"could not connect to {peer}: {getattr(e, 'strerror', None) or e or 'timed out'}") \
                from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, reader, timeout, client_id)

    def close(self) -> None:
        self._closed = True
        self._transport.abort()  # nothing we sent needs to be delivered

    async def _round_trip(self, entity, timeout: float | None) -> tuple[bytearray, int]:
        """Send `entity`; its response frame (no size prefix) and the correlation id sent."""
        if self._busy:
            raise RuntimeError("one request at a time on an AsyncKafkaConnection")
        if self._reader._error is not None:
            raise self._reader._error
        if self._closed:
            raise WireError(f"the connection to {self.peer} is closed")
        self._correlation_id = correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
        self._busy = True
        try:
            self._transport.write(encode_request(entity, correlation_id, self.client_id))
            frame = await self._reader.next_frame(self.timeout if timeout is None else timeout)
        except BaseException:  # failed, timed out or cancelled: the answer would come out of turn
            self.close()
            raise
        finally:
            self._busy = False
        return frame, correlation_id

    async def request(self, entity, timeout: float | None = None):
        """Send a kio request entity; its kio response entity."""
        cls = type(entity)
        frame, correlation_id = await self._round_trip(entity, timeout)
        try:
            return decode_response(frame, int(cls.__api_key__), int(cls.__version__), correlation_id, self.peer)
        except WireError:
            self.close()
            raise

    async def fetch(self, entity, timeout: float | None = None) -> FetchResponse:
        """Send a kio Fetch request entity (v4..v12); the response decoded by josef, records as slices."""
        cls = type(entity)
        version = int(cls.__version__)
        if int(cls.__api_key__) != FETCH:
            raise ValueError(f"{cls.__name__} is not a Fetch request")
        frame, correlation_id = await self._round_trip(entity, timeout)
        try:
            pos = response_body_offset(frame, correlation_id, version >= 12, self.peer)
            return decode_fetch_response(frame, pos, version)
        except WireError:
            self.close()
            raise
        except MalformedResponse as e:
            self.close()
            raise WireError(f"{self.peer}: {e}") from None
