"""The REST Proxy's outermost ASGI layer, in front of FastAPI.

Three jobs:
- Jersey matches `/topics/` like `/topics`; Starlette would redirect, so a trailing slash is
  dropped before routing.
- A NUL character in the path names nothing that can exist (no Kafka topic, and no group or
  config librdkafka could take, whose C strings end there): 404 before any handler hands it to
  librdkafka, which would misread it.
- v2 produce (`POST /topics/{t}`, `POST /topics/{t}/partitions/{p}`) goes straight to its
  handler. FastAPI's middleware, routing and dependency layers cost about as much event-loop
  time per request as the produce handler itself (bench/RESULTS.md). The handler is the one
  FastAPI's routes for these paths call too, so both ways give the same answers; FastAPI
  keeps the routes for the OpenAPI document and for other methods (405).
"""
from __future__ import annotations

import re

from starlette.requests import Request

# Starlette's `{name}` path parameters match one non-empty path segment
_PRODUCE_PATH = re.compile(r"/topics/([^/]+)(?:/partitions/([^/]+))?")


class FrontDoor:
    def __init__(self, app, produce):
        """`produce(request, topic, partition_text or None)` answers a v2 produce request
        with a Response, errors included."""
        self.app = app
        self.produce = produce

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
                scope = dict(scope, path=path)
            if "\x00" in path:
                await _not_found(path, send)
                return
            if scope["method"] == "POST" and not scope.get("root_path"):
                match = _PRODUCE_PATH.fullmatch(path)
                if match is not None:
                    response = await self.produce(Request(scope, receive), *match.groups())
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _not_found(path: str, send) -> None:
    media_type = b"application/json" if path.startswith("/v3") else b"application/vnd.kafka.v2+json"
    body = b'{"error_code":404,"message":"HTTP 404 Not Found"}'
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
