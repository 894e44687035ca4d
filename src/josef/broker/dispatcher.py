"""From a request frame to its encoded answer: header, version check, handler, encoding."""
from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from josef.broker.futures import then
from josef.broker.handlers import Handler, load_all
from josef.protocol.entities import to_entity
from josef.protocol.errors import MalformedRequest
from josef.protocol.header import parse_request_header
from josef.protocol.kio_codec import decode_request, encode_response, response_class

log = logging.getLogger("josef.dispatch")

API_VERSIONS_KEY = 18


class RequestContext(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    connection: object  # josef.broker.server.Connection


def framed(payload: bytes) -> list:
    return [len(payload).to_bytes(4, "big"), payload]


class Dispatcher:
    def __init__(self, broker):
        self.broker = broker
        self.handlers: dict[int, Handler] = dict(load_all())

    def dispatch(self, frame: bytearray, connection):
        """The answer: a list of chunks, a future of one, or None when no answer is owed.

        MalformedRequest (and any bug) propagates: the connection is closed.
        """
        header = parse_request_header(frame)
        api_key, version = header.api_key, header.api_version
        ctx = RequestContext(api_key, version, header.correlation_id, header.client_id, connection)
        handler = self.handlers.get(api_key)
        if handler is None or not handler.min_version <= version <= handler.max_version:
            if api_key == API_VERSIONS_KEY:
                return self.handlers[API_VERSIONS_KEY].fn(self.broker, ctx, frame, header.body_offset)
            raise MalformedRequest(f"unsupported API key {api_key} version {version}")
        if handler.raw:
            return handler.fn(self.broker, ctx, frame, header.body_offset)
        request = decode_request(api_key, version, bytes(frame), header.body_offset)
        result = handler.fn(self.broker, ctx, request)
        if isinstance(result, asyncio.Future):
            return then(result, lambda response: self.encode(ctx, response))
        return self.encode(ctx, result)

    @staticmethod
    def encode(ctx: RequestContext, result) -> list:
        if isinstance(result, list):  # already encoded chunks
            return result
        entity = to_entity(response_class(ctx.api_key, ctx.api_version), result)
        return framed(encode_response(entity, ctx.correlation_id))
