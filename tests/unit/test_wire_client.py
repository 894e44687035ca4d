"""The client side's framing and kio response decoding (client/wire.py), without sockets.

Responses reach kio only through the guard, as requests do on the broker: a hostile count in a
leader's OffsetForLeaderEpoch answer (or any broker's answer to a CLI tool) must be a WireError,
not a process abort, and unknown tagged fields must be skipped, not fatal.
"""
from __future__ import annotations

import io
import struct

import pytest
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_writer
from kio.static.constants import EntityType

from josef.client.wire import WireError, decode_response, encode_request, response_body_offset
from josef.protocol.header import parse_request_header
from josef.protocol.kio_codec import request_class, response_class
from tests.unit.test_kio_guard import HUGE, in_child, sample, uv


def write(entity) -> bytes:
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def response_frame(api_key: int, version: int, body: bytes, correlation_id: int = 7) -> bytes:
    """Header (v1 when the response is flexible, v0 always for ApiVersions) + body, no size prefix."""
    flexible = api_key != 18 and response_class(api_key, version).__header_schema__.__flexible__
    return struct.pack(">i", correlation_id) + (b"\x00" if flexible else b"") + body


def all_response_versions() -> list[tuple[int, int]]:
    keys = {name: key for key, name in api_key_map.items()}
    return [(keys[name], version) for name, versions in schema_name_map.items() if name in keys
            for version, entities in versions.items() if EntityType.response in entities]


def test_every_response_class_kio_knows_decodes_through_the_guard():
    """The guard's plan must agree with kio on every response, as it does on every request."""
    for api_key, version in all_response_versions():
        for full in (True, False):
            response = sample(response_class(api_key, version), full=full)
            data = response_frame(api_key, version, write(response))
            assert decode_response(data, api_key, version, 7, "peer") == response, (api_key, version)
            assert decode_response(bytearray(data), api_key, version, 7, "peer") == response


def test_encode_request_frames_header_and_body():
    entity = sample(request_class(23, 4), full=True)
    data = encode_request(entity, 41, "client-x")
    assert struct.unpack_from(">i", data)[0] == len(data) - 4
    header = parse_request_header(data[4:])
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (23, 4, 41, "client-x")
    assert data[4 + header.body_offset:] == write(entity)


def test_correlation_and_header_checks():
    body = write(sample(response_class(3, 12), full=False))
    with pytest.raises(WireError, match="correlation id 8 does not match 7"):
        decode_response(response_frame(3, 12, body, correlation_id=8), 3, 12, 7, "peer")
    with pytest.raises(WireError):
        response_body_offset(b"\x00\x00", 7, False, "peer")
    with pytest.raises(WireError):
        response_body_offset(b"\x00\x00\x00\x07" + HUGE, 7, True, "peer")  # a tag count beyond the frame


def _hostile_outcomes(frames: list[tuple[str, int, int, bytes]]) -> dict[str, str]:
    outcomes = {}
    for name, api_key, version, data in frames:
        try:
            decode_response(data, api_key, version, 7, "peer")
            outcomes[name] = "ok"
        except WireError:
            outcomes[name] = "wire error"
        except Exception as e:  # noqa: BLE001 -- what the test forbids
            outcomes[name] = f"{type(e).__name__}: {e}"
    return outcomes


def test_hostile_counts_in_responses_are_wire_errors_not_aborts():
    frames = [
        # OffsetForLeaderEpoch v4 response: throttle_time_ms, then the topics array
        ("OffsetForLeaderEpoch v4 topics", 23, 4, response_frame(23, 4, struct.pack(">i", 0) + HUGE)),
        ("OffsetForLeaderEpoch v4 partitions", 23, 4,
         response_frame(23, 4, struct.pack(">i", 0) + uv(2) + uv(2) + b"t" + HUGE)),
        # Metadata v12 response: throttle_time_ms, then the brokers array
        ("Metadata v12 brokers", 3, 12, response_frame(3, 12, struct.pack(">i", 0) + HUGE + b"\x00" * 8)),
        ("Metadata v1 brokers int32", 3, 1, response_frame(3, 1, struct.pack(">i", 2**31 - 1) + b"\x00" * 8)),
    ]
    assert in_child(_hostile_outcomes, frames) == {name: "wire error" for name, *_ in frames}


def test_unknown_tags_in_a_response_are_skipped():
    response = sample(response_class(23, 4), full=True)
    body = write(response)
    assert body.endswith(b"\x00")  # the top-level tag section is empty
    tagged = body[:-1] + uv(2) + uv(9) + uv(3) + b"abc" + uv(300) + uv(0)
    assert decode_response(response_frame(23, 4, tagged), 23, 4, 7, "peer") == response
