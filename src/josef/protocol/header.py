"""Request and response headers, hand-parsed so every request pays only a few hundred nanoseconds.

Request header v1: int16 api_key, int16 api_version, int32 correlation_id, nullable int16-length string
client_id. v2 (used by flexible request versions) appends a tagged-field section; client_id stays a
legacy string even there (RequestHeader.json: ``"flexibleVersions": "none"``).

Response header v0 is the int32 correlation id; v1 (flexible response versions) appends an empty
tagged-field section. **ApiVersions responses always use header v0**, whatever the request version: a
client that sent a version we do not support must still be able to read our answer (KIP-511). Callers
must therefore pass ``flexible=False`` for ApiVersions.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from kio.index import KioIndexError, load_request_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.static.constants import EntityType

from josef.protocol.errors import MalformedRequest
from josef.protocol.primitives import read_struct, skip_tagged_fields

__all__ = [
    "RequestHeader", "request_header_version", "parse_request_header",
    "response_header", "response_header_flexible",
]

API_VERSIONS_KEY = 18

# api_key, api_version, correlation_id and the client_id length, read in one go.
_FIXED = struct.Struct(">hhih")
_RESPONSE_V0 = struct.Struct(">i")
_RESPONSE_V1 = struct.Struct(">iB")  # correlation id + empty tagged fields (count 0)

# A NamedTuple's generated __new__ costs three times tuple.__new__; headers are built directly.
_new = tuple.__new__


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # where the request body starts in the buffer given to parse_request_header


# (api_key, api_version) -> header version, only for pairs kio knows, so the dict stays bounded
# (a client choosing random versions cannot grow it).
_header_versions: dict[tuple[int, int], int] = {}
# api_key -> (highest version kio knows, whether that version is flexible)
_key_latest: dict[int, tuple[int, bool]] = {}


def _latest(api_key: int) -> tuple[int, bool] | None:
    """Highest kio version of a key and its flexibility, or None for keys kio does not know."""
    latest = _key_latest.get(api_key)
    if latest is None and api_key in api_key_map:
        versions = [v for v, kinds in schema_name_map[api_key_map[api_key]].items()
                    if EntityType.request in kinds]
        if versions:
            top = max(versions)
            latest = _key_latest[api_key] = (top, load_request_schema(api_key, top).__flexible__)
    return latest


def _lookup_header_version(api_key: int, api_version: int) -> int:
    try:
        flexible = load_request_schema(api_key, api_version).__flexible__
    except KioIndexError:
        # Kafka's flexibleVersions are open-ended ("N+"), so a version newer than kio knows is
        # flexible if the newest known one is; older unknown versions predate flexible headers.
        latest = _latest(api_key)
        return 2 if latest is not None and api_version > latest[0] and latest[1] else 1
    version = 2 if flexible else 1
    _header_versions[(api_key, api_version)] = version
    return version


def request_header_version(api_key: int, api_version: int) -> int:
    """1 for non-flexible request versions, 2 for flexible ones (ApiVersions v3+ included).

    Unknown keys, and versions older than kio's, give 1. A version newer than kio's follows the
    newest one kio knows, as Kafka's open-ended flexibleVersions do, so a client's future
    ApiVersions request still parses and can be answered with UNSUPPORTED_VERSION.
    """
    version = _header_versions.get((api_key, api_version))
    return version if version is not None else _lookup_header_version(api_key, api_version)


def _read_client_id(buf, pos: int, size: int) -> tuple[str | None, int]:
    """client_id after its int16 length; clients send junk here, so bad UTF-8 is replaced, not fatal."""
    if size == -1:
        return None, pos
    end = pos + size
    if size < -1 or end > len(buf):
        raise MalformedRequest(f"bad client_id length {size} at offset {pos - 2}")
    return str(buf[pos:end], "utf-8", "replace"), end


def parse_request_header(buf) -> RequestHeader:
    """Parse the header at the start of ``buf`` (a frame without its 4-byte size prefix)."""
    (api_key, api_version, correlation_id, size), pos = read_struct(_FIXED, buf, 0)
    client_id, pos = _read_client_id(buf, pos, size)
    if request_header_version(api_key, api_version) == 2:
        pos = skip_tagged_fields(buf, pos)
    return _new(RequestHeader, (api_key, api_version, correlation_id, client_id, pos))


def response_header(correlation_id: int, flexible: bool) -> bytes:
    """Response header v1 if ``flexible`` else v0. ApiVersions always needs ``flexible=False``."""
    if flexible:
        return _RESPONSE_V1.pack(correlation_id, 0)
    return _RESPONSE_V0.pack(correlation_id)


def response_header_flexible(api_key: int, api_version: int) -> bool:
    """The ``flexible`` argument for :func:`response_header`: a response is flexible exactly when its
    request is, except ApiVersions, whose response header is always v0."""
    return api_key != API_VERSIONS_KEY and request_header_version(api_key, api_version) == 2
