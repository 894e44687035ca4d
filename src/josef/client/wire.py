"""A tiny synchronous Kafka client: one socket, one request at a time, entities from kio.

For the few things no client library exposes (ApiVersions of every broker, and later
requests such as ListPartitionReassignments). Usage:

    with KafkaConnection("127.0.0.1", 9092, timeout=5) as conn:
        versions = conn.api_versions()                  # {api_key: (min, max)}
        cls = request_class(3, conn.best_version(3, versions))
        response = conn.request(build(cls, topics=(), allow_auto_topic_creation=False,
                                      include_topic_authorized_operations=False))
"""
from __future__ import annotations

import dataclasses
import functools
import io
import socket
import struct
from typing import Any

from kio.schema.index import api_key_map
from kio.serial import entity_reader, entity_writer

from josef.protocol.errors import MalformedRequest
from josef.protocol.guard import sanitize
from josef.protocol.kio_codec import request_class, response_class
from josef.protocol.primitives import skip_tagged_fields

_SIZE = struct.Struct(">i")
_ERROR_CODE = struct.Struct(">h")
API_VERSIONS = 18
UNSUPPORTED_VERSION = 35
MAX_RESPONSE = 100 * 1024 * 1024  # refuse absurd frames rather than allocate them
CLIENT_ID = "josef-cli"


class WireError(Exception):
    """The connection failed or the peer answered something we cannot use."""


@functools.cache
def _writer(cls: type):
    return entity_writer(cls)


@functools.cache
def _reader(cls: type):
    return entity_reader(cls)


def client_versions(api_key: int) -> range:
    """The versions kio (and so this client) can speak for `api_key`; empty if none."""
    from kio.schema.index import schema_name_map
    name = api_key_map.get(api_key)
    if name is None:
        return range(0)
    versions = sorted(schema_name_map[name])
    return range(versions[0], versions[-1] + 1)


def build(cls: type, **values: Any):
    """An instance of `cls` from `values`, ignoring names this version does not have.

    Lets one call site build a request for whichever version was negotiated.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def encode_request(entity, correlation_id: int, client_id: str | None) -> bytes:
    """The framed request (size prefix, header, body) for a kio request entity."""
    cls = type(entity)
    header_cls = cls.__header_schema__
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    _writer(header_cls)(out, build(header_cls, request_api_key=int(cls.__api_key__),
                                   request_api_version=int(cls.__version__), correlation_id=correlation_id,
                                   client_id=client_id))
    _writer(cls)(out, entity)
    frame = out.getbuffer()
    _SIZE.pack_into(frame, 0, len(frame) - 4)
    del frame
    return out.getvalue()


def response_body_offset(frame, correlation_id: int, flexible: bool, peer: str) -> int:
    """Check a response header (v1 if `flexible`, else v0) against `correlation_id`; where the body starts."""
    if len(frame) < 4 + flexible:
        raise WireError(f"{peer} sent a response of {len(frame)} bytes")
    got = _SIZE.unpack_from(frame, 0)[0]
    if got != correlation_id:
        raise WireError(f"correlation id {got} does not match {correlation_id}")
    if not flexible:
        return 4
    try:
        return skip_tagged_fields(frame, 4)
    except MalformedRequest as e:
        raise WireError(f"{peer} sent a bad response header: {e}") from None


def decode_response(frame, api_key: int, version: int, correlation_id: int, peer: str):
    """The kio response entity in `frame` (no size prefix), checked first by the kio guard."""
    rcls = response_class(api_key, version)
    # ApiVersions answers always carry header v0, whatever the request version (KIP-511).
    flexible = api_key != API_VERSIONS and rcls.__header_schema__.__flexible__
    pos = response_body_offset(frame, correlation_id, flexible, peer)
    if api_key == API_VERSIONS and version > 0 and len(frame) >= pos + 2 \
            and _ERROR_CODE.unpack_from(frame, pos)[0] == UNSUPPORTED_VERSION:
        # A broker that does not know our version replies in v0 so we can retry.
        rcls = response_class(API_VERSIONS, 0)
    try:
        # kio aborts the process on an array count it cannot allocate, and refuses unknown tags.
        safe = sanitize(rcls, frame, pos)
        response, _ = _reader(rcls)(bytes(safe) if type(safe) is not bytes else safe, pos)
    except Exception as e:  # noqa: BLE001 -- MalformedRequest from the guard, several types from kio
        raise WireError(f"cannot decode {rcls.__name__} from {peer}: {e}") from None
    return response


@functools.cache
def _josef_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("josef")
    except PackageNotFoundError:
        return "0"


class KafkaConnection:
    def __init__(self, host: str, port: int, timeout: float = 10.0, client_id: str = CLIENT_ID):
        self.host, self.port, self.timeout, self.client_id = host, port, timeout, client_id
        self._correlation_id = 0
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise WireError(f"could not connect to {host}:{port}: {e.strerror or e}") from None

    def __enter__(self) -> "KafkaConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:  # wakes a thread blocked reading this socket, which close() alone does not
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def request(self, entity, api_version: int | None = None):
        """Send one request entity and return the decoded response entity.

        The entity's class fixes API key and version; `api_version`, when given, must agree
        (a guard for callers that negotiated a version and built the entity separately).
        """
        cls = type(entity)
        api_key, version = int(cls.__api_key__), int(cls.__version__)
        if api_version is not None and api_version != version:
            raise ValueError(f"{cls.__name__} is version {version}, not {api_version}")
        self._correlation_id += 1
        correlation_id = self._correlation_id
        try:
            self._sock.sendall(encode_request(entity, correlation_id, self.client_id))
            frame = self._read_frame()
        except OSError as e:
            raise WireError(f"connection to {self.host}:{self.port} failed: {e.strerror or e}") from None
        return self._decode(frame, api_key, version, correlation_id)

    def _decode(self, frame, api_key: int, version: int, correlation_id: int):
        return decode_response(frame, api_key, version, correlation_id, f"{self.host}:{self.port}")

    def _read_frame(self) -> bytearray:
        size = _SIZE.unpack(self._read_exactly(4))[0]
        if not 0 <= size <= MAX_RESPONSE:
            raise WireError(f"{self.host}:{self.port} sent a frame of {size} bytes")
        return self._read_exactly(size)

    def _read_exactly(self, n: int) -> bytearray:
        """`n` bytes received straight into one buffer (no chunks to join)."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = self._sock.recv_into(view[got:])
            if not count:
                raise WireError(f"{self.host}:{self.port} closed the connection")
            got += count
        return buf

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """{api_key: (min, max)} as the broker advertises them, negotiating the request version."""
        version = max(client_versions(API_VERSIONS))
        for _ in range(2):
            request = build(request_class(API_VERSIONS, version), client_software_name="josef-cli",
                            client_software_version=_josef_version())
            response = self.request(request)
            supported = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in response.api_keys}
            if int(response.error_code) != UNSUPPORTED_VERSION:
                break
            lo, hi = supported.get(API_VERSIONS, (0, 0))
            version = min(hi, version)
        if int(response.error_code) != 0:
            raise WireError(f"ApiVersions failed with error code {int(response.error_code)}")
        return supported

    @staticmethod
    def best_version(api_key: int, broker_versions: dict[int, tuple[int, int]]) -> int:
        """The highest version both sides speak; WireError if there is none."""
        ours = client_versions(api_key)
        lo, hi = broker_versions.get(api_key, (0, -1))
        best = min(hi, ours.stop - 1)
        if best < max(lo, ours.start):
            raise WireError(f"no common version for API key {api_key}")
        return best
