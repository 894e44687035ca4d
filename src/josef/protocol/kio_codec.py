"""Control-plane request decoding and response encoding through kio.

Network bytes reach kio's native reader only after `guard.sanitize` (kio 0.6.5 can
abort the process on a hostile array count); every kio failure becomes
`MalformedRequest`, and an API key/version kio has no schema for becomes
`UnsupportedVersion`, which the broker answers instead of closing the connection.
"""
from __future__ import annotations

import functools
import struct
from typing import Any

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from josef.protocol import guard
from josef.protocol.errors import MalformedRequest

__all__ = [
    "UnsupportedVersion",
    "decode_request",
    "encode_response",
    "request_class",
    "response_class",
]

_CORRELATION_ID = struct.Struct(">i").pack


class UnsupportedVersion(Exception):
    """kio has no schema for this API key and version: answer UNSUPPORTED_VERSION."""

    def __init__(self, api_key: int, api_version: int) -> None:
        super().__init__(f"unsupported API key {api_key} version {api_version}")
        self.api_key = api_key
        self.api_version = api_version


def request_class(api_key: int, api_version: int) -> type:
    """The kio request entity class; raises UnsupportedVersion."""
    try:
        return _load_request_class(api_key, api_version)
    except KioIndexError:
        raise UnsupportedVersion(api_key, api_version) from None


def response_class(api_key: int, api_version: int) -> type:
    """The kio response entity class; raises UnsupportedVersion."""
    try:
        return _load_response_class(api_key, api_version)
    except KioIndexError:
        raise UnsupportedVersion(api_key, api_version) from None


def decode_request(api_key: int, api_version: int, buf: Any, body_offset: int) -> Any:
    """Decode the request body at `buf[body_offset:]`.

    Bytes after the body are ignored, as Kafka's own parser does: librdkafka's AdminClient
    sends Metadata v12 requests with three extra bytes, and Kafka accepts them.

    `buf` is bytes or any buffer (kio refuses writable ones: they get a read-only
    view). Raises UnsupportedVersion or MalformedRequest.
    """
    cls = request_class(api_key, api_version)
    if not isinstance(buf, bytes):
        buf = memoryview(buf).toreadonly()
    buf = guard.sanitize(cls, buf, body_offset)
    entity, _size = _read(cls, buf, body_offset)
    return entity


def encode_response(entity: Any, correlation_id: int) -> bytes:
    """Response header (v0 or v1, per the class) + body, without the size prefix."""
    cls = type(entity)
    parts = [_CORRELATION_ID(correlation_id), _header_tail(cls.__header_schema__)]
    _writer(cls)(_ListSink(parts), entity)
    return b"".join(parts)


# ------------------------------------------------------------------ internals


@functools.cache  # caches successes only, so hostile keys cannot grow it
def _load_request_class(api_key: int, api_version: int) -> type:
    return load_request_schema(api_key, api_version)


@functools.cache
def _load_response_class(api_key: int, api_version: int) -> type:
    return load_response_schema(api_key, api_version)


@functools.cache
def _reader(cls: type) -> Any:
    return entity_reader(cls)


@functools.cache
def _writer(cls: type) -> Any:
    return entity_writer(cls)


@functools.cache
def _header_tail(header_cls: type) -> bytes:
    """ResponseHeader v1 (flexible) ends with an empty tag section; v0 has none."""
    return b"\x00" if header_cls.__flexible__ else b""


def _read(cls: type, buf: Any, offset: int) -> tuple[Any, int]:
    """kio's reader with all of its exception types folded into MalformedRequest."""
    try:
        return _reader(cls)(buf, offset)
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, a BaseException.
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        what = f"{cls.__name__} v{cls.__version__}: {type(exc).__name__}"
        raise MalformedRequest(f"{what}: {exc}") from exc


class _ListSink:
    """The `.write` kio's writers need; appending to a list beats BytesIO."""

    __slots__ = ("write",)

    def __init__(self, parts: list[bytes]) -> None:
        self.write = parts.append
