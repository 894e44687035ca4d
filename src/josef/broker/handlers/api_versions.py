"""ApiVersions: a constant answer per version, encoded once.

A version we do not support still gets an answer, in v0's format with UNSUPPORTED_VERSION
and our key list, so that the client can pick a version it shares with us.
"""
from __future__ import annotations

from functools import lru_cache

from josef.broker.handlers import REGISTRY, api
from josef.protocol.entities import to_entity
from josef.protocol.errors import Error
from josef.protocol.kio_codec import encode_response, response_class

API_KEY = 18
MIN_VERSION, MAX_VERSION = 0, 4
_HEADER_V0 = 4  # ApiVersions answers always carry response header v0: the correlation id only


@lru_cache(maxsize=None)
def _body(version: int, error: int) -> bytes:
    keys = [
        {"api_key": h.api_key, "min_version": h.min_version, "max_version": h.max_version}
        for h in sorted(REGISTRY.values(), key=lambda h: h.api_key)
    ]
    entity = to_entity(response_class(API_KEY, version),
                       {"error_code": error, "api_keys": keys, "throttle_time": 0})
    return encode_response(entity, 0)[_HEADER_V0:]


@api(API_KEY, "ApiVersions", MIN_VERSION, MAX_VERSION, raw=True)
def handle_api_versions(broker, ctx, frame, body_offset):
    if MIN_VERSION <= ctx.api_version <= MAX_VERSION:
        body = _body(ctx.api_version, Error.NONE)
    else:
        body = _body(0, Error.UNSUPPORTED_VERSION)
    payload = ctx.correlation_id.to_bytes(4, "big", signed=True) + body
    return [len(payload).to_bytes(4, "big"), payload]
