"""The guard in front of kio's native reader, and josef's kio request/response codec.

kio 0.6.5 aborts the whole process (SIGABRT) on a hostile array count, so every
hostile or fuzzed frame is decoded in a forked child: an abort then fails one test
instead of killing pytest.
"""
from __future__ import annotations

import dataclasses
import datetime
import faulthandler
import io
import multiprocessing
import os
import random
import signal
import struct
import time
import traceback
import uuid
from types import NoneType, UnionType
from typing import Any, get_args, get_origin

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import classify_field, get_field_tag, get_schema_field_type, is_optional
from kio.static.constants import EntityType

from josef.protocol import guard
from josef.protocol.errors import MalformedRequest
from josef.protocol.kio_codec import (
    UnsupportedVersion,
    decode_request,
    encode_response,
    request_class,
    response_class,
)

# (api key, first version, last version) decoded through kio in josef's control plane.
CONTROL_PLANE = [
    (18, 0, 4),   # ApiVersions
    (3, 0, 12),   # Metadata
    (19, 2, 7),   # CreateTopics
    (20, 1, 6),   # DeleteTopics
    (37, 0, 3),   # CreatePartitions
    (2, 1, 8),    # ListOffsets
    (60, 0, 1),   # DescribeCluster
    (22, 0, 4),   # InitProducerId
    (23, 2, 4),   # OffsetForLeaderEpoch
    (10, 0, 4),   # FindCoordinator
    (11, 0, 9),   # JoinGroup
    (32, 1, 4),   # DescribeConfigs
]
CONTROL_PLANE_VERSIONS = [(k, v) for k, lo, hi in CONTROL_PLANE for v in range(lo, hi + 1)]
HUGE = bytes.fromhex("ffffffff0f")  # unsigned varint 2**32 - 1


# ------------------------------------------------------------ wire helpers


def uv(n: int) -> bytes:
    """Kafka unsigned varint."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def cstr(s: str) -> bytes:
    """Compact string."""
    return uv(len(s) + 1) + s.encode()


def i8(n: int) -> bytes:
    return struct.pack(">b", n)


def i16(n: int) -> bytes:
    return struct.pack(">h", n)


def i32(n: int) -> bytes:
    return struct.pack(">i", n)


def write(entity: Any) -> bytes:
    """kio's own encoding of an entity."""
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def header_for(api_key: int, version: int) -> bytes:
    """The request header kio writes for this API version (v1 or v2)."""
    cls = request_class(api_key, version).__header_schema__
    header = cls(request_api_key=api_key, request_api_version=version, correlation_id=7, client_id="josef-test")
    return write(header)


def frame(api_key: int, version: int, body: bytes) -> tuple[bytes, int]:
    """A request as josef's network layer hands it over: (header + body, body offset)."""
    header = header_for(api_key, version)
    return header + body, len(header)


# -------------------------------------------------- sample entities for any class


def _is_nullable_array(field: dataclasses.Field) -> bool:
    return get_origin(field.type) is UnionType and NoneType in get_args(field.type)


def _primitive(kafka_type: str, seed: int) -> Any:
    values = {
        "int8": 5, "int16": 300 + seed, "int32": 70_000 + seed, "int64": 2**40 + seed,
        "uint8": 200, "uint16": 65_000, "uint32": 2**31 + 5, "uint64": 2**63 + 5,
        "float64": 1.25, "bool": True, "string": f"name-{seed}", "bytes": b"\x00\x01raw",
        "records": b"\x00records", "uuid": uuid.UUID(int=seed + 1),
        "error_code": ErrorCode.none,
        "timedelta_i32": datetime.timedelta(milliseconds=1500 + seed),
        "timedelta_i64": datetime.timedelta(milliseconds=2**33),
        "datetime_i64": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC),
    }
    return values[kafka_type]


def sample(cls: type, full: bool, seed: int = 0) -> Any:
    """An instance of any kio entity: `full` sets every nullable, array and tagged
    field (2 items per array); otherwise they are null, empty or default."""
    fields = dataclasses.fields(cls)
    return cls(**{f.name: _sample_field(f, full, seed + i) for i, f in enumerate(fields)})


def _sample_field(field: dataclasses.Field, full: bool, seed: int) -> Any:
    kind = classify_field(field)
    if get_field_tag(field) is not None and not full:
        return get_tagged_field_default(field)
    if not full and (_is_nullable_array(field) or (not kind.is_array and is_optional(field))):
        return None
    if kind.is_array and not full:
        return ()
    if dataclasses.is_dataclass(kind.type_):
        make = lambda s: sample(kind.type_, full, s)  # noqa: E731
    else:
        make = lambda s: _primitive(get_schema_field_type(field), s)  # noqa: E731
    return tuple(make(seed + k) for k in range(2)) if kind.is_array else make(seed)


# ------------------------------------------------------------ child processes


def _child_main(conn: Any, fn: Any, args: tuple) -> None:
    faulthandler.disable()  # pytest's handler would dump a traceback on the abort
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # report everything, the parent decides
        conn.send(("error", traceback.format_exc()))
    conn.close()


def in_child(fn: Any, *args: Any, timeout: float = 60.0) -> Any:
    """Run fn(*args) in a forked child and return its result.

    An abort in kio's native code kills only the child; it is reported here as
    a failure naming the signal, instead of taking pytest down with it.
    """
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(sender, fn, args))
    child.start()
    sender.close()
    outcome = None
    if receiver.poll(timeout):
        try:
            outcome = receiver.recv()
        except EOFError:
            pass
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"child still running after {timeout} s")
    if child.exitcode != 0:
        name = signal.Signals(-child.exitcode).name if child.exitcode < 0 else child.exitcode
        pytest.fail(f"child died ({name}); kio aborting on a hostile count shows as SIGABRT")
    assert outcome is not None, "child sent nothing"
    status, value = outcome
    if status == "error":
        pytest.fail(f"child raised:\n{value}")
    return value


def _decode_outcome(api_key: int, version: int, buf: bytes, offset: int) -> str:
    """'ok', 'malformed', or the name of any other exception (a failure)."""
    try:
        decode_request(api_key, version, buf, offset)
        return "ok"
    except MalformedRequest:
        return "malformed"
    except Exception as exc:  # what the property forbids
        return f"{type(exc).__name__}: {exc}"


def _decode_all(frames: list[tuple[str, int, int, bytes, int]]) -> dict[str, str]:
    return {name: _decode_outcome(key, ver, buf, off) for name, key, ver, buf, off in frames}


def test_in_child_reports_an_abort_as_a_failure():
    with pytest.raises(pytest.fail.Exception, match="SIGABRT"):
        in_child(os.abort)


def _unguarded_kio(body: bytes) -> str:
    try:
        entity_reader(request_class(3, 12))(body, 0)
    except Exception as exc:
        return type(exc).__name__
    return "decoded"


def test_unguarded_kio_still_aborts_on_the_metadata_probe():
    """Why the guard exists; if this starts failing, kio may have clamped its allocation."""
    try:
        outcome = in_child(_unguarded_kio, HUGE + b"\x01\x00\x00")
    except pytest.fail.Exception as failure:
        assert "SIGABRT" in str(failure)
        return
    pytest.skip(f"this host could reserve 32 GiB: kio raised {outcome} instead of aborting")


# ------------------------------------------------------------------ DoS probes


def _dos_probes() -> list[tuple[str, int, int, bytes]]:
    """(name, api key, version, body): counts and lengths far beyond the frame."""
    topic = cstr("t") + i32(1) + i16(1)  # CreatableTopic: name, partitions, replication
    # JoinGroup v5: group, session and rebalance timeouts, member, instance, protocol type
    join = i16(1) + b"g" + i32(1) + i32(1) + i16(0) + i16(-1) + i16(1) + b"c"
    return [
        ("Metadata v12 topics varint", 3, 12, HUGE + b"\x01\x00\x00"),
        ("Metadata v12 topic name", 3, 12, uv(2) + bytes(16) + HUGE + b"\x00\x01\x00\x00"),
        ("Metadata v1 topics int32", 3, 1, i32(2**31 - 1)),
        ("Metadata v1 topic name int16", 3, 1, i32(1) + i16(32767) + b"ab"),
        ("Metadata v12 6-byte varint", 3, 12, b"\xff\xff\xff\xff\xff\x01\x01\x00\x00"),
        ("CreateTopics v7 topics", 19, 7, HUGE + i32(1000) + b"\x00\x00"),
        ("CreateTopics v7 topic name", 19, 7, uv(2) + HUGE + b"abc" + bytes(12)),
        ("CreateTopics v7 broker ids", 19, 7, uv(2) + topic + uv(2) + i32(0) + HUGE),
        ("CreateTopics v7 configs", 19, 7, uv(2) + topic + uv(1) + HUGE),
        ("CreateTopics v5 config value", 19, 5, uv(2) + topic + uv(1) + uv(2) + cstr("k") + HUGE + b"x"),
        ("CreateTopics v5 tag count", 19, 5, uv(1) + i32(1000) + b"\x00" + HUGE),
        ("CreateTopics v5 tag size", 19, 5, uv(1) + i32(1000) + b"\x00" + uv(1) + uv(99) + HUGE),
        ("DeleteTopics v6 topics", 20, 6, HUGE + i32(1000) + b"\x00"),
        ("DeleteTopics v6 topic name", 20, 6, uv(2) + HUGE + bytes(16)),
        ("DeleteTopics v1 names int32", 20, 1, i32(2**31 - 1) + i32(1000)),
        ("ListOffsets v7 topics", 2, 7, i32(-1) + i8(0) + HUGE),
        ("ListOffsets v7 partitions", 2, 7, i32(-1) + i8(0) + uv(2) + cstr("t") + HUGE),
        ("ListOffsets v1 topics int32", 2, 1, i32(-1) + i32(2**31 - 1)),
        ("InitProducerId v4 transactional id", 22, 4, HUGE + i32(1000) + b"\x00" * 11),
        ("InitProducerId v0 transactional id int16", 22, 0, i16(32000) + i32(1000)),
        ("DescribeCluster v1 tag count", 60, 1, b"\x00\x01" + HUGE),
        ("DescribeCluster v1 tag size", 60, 1, b"\x00\x01" + uv(1) + uv(3) + HUGE + b"x"),
        ("OffsetForLeaderEpoch v4 topics", 23, 4, i32(-1) + HUGE),
        ("OffsetForLeaderEpoch v4 partitions", 23, 4, i32(-1) + uv(2) + cstr("t") + HUGE),
        ("ApiVersions v3 software name", 18, 3, HUGE + b"abc"),
        ("ApiVersions v3 tag count", 18, 3, cstr("c") + cstr("1") + HUGE),
        ("JoinGroup v5 protocols int32", 11, 5, join + i32(2**31 - 1)),
        ("JoinGroup v5 metadata bytes", 11, 5, join + i32(1) + i16(1) + b"p" + i32(2**31 - 1)),
        ("DescribeConfigs v1 resources int32", 32, 1, i32(2**31 - 1) + b"\x00"),
        ("DescribeConfigs v4 config keys", 32, 4, uv(2) + i8(2) + cstr("t") + HUGE),
        ("FindCoordinator v4 keys", 10, 4, i8(0) + HUGE),
    ]


def test_dos_probes_raise_malformed_request_in_a_child():
    frames = [(name, key, ver, *frame(key, ver, body)) for name, key, ver, body in _dos_probes()]
    outcomes = in_child(_decode_all, frames)
    assert outcomes == {name: "malformed" for name, *_ in frames}


def test_dos_probe_message_names_the_field():
    """Run in the parent only after the child test above shows it cannot abort."""
    in_child(_decode_all, [("probe", 3, 12, *frame(3, 12, HUGE + b"\x01\x00\x00"))])
    with pytest.raises(MalformedRequest, match=r"MetadataRequest\.topics: 4294967294 items"):
        guard.sanitize(request_class(3, 12), HUGE + b"\x01\x00\x00", 0)


# ---------------------------------------------------------- unknown tagged fields


def _unknown_tags() -> bytes:
    """A tag section kio knows nothing about: tags 7 and 300 (2-byte varint tag)."""
    return uv(2) + uv(7) + uv(3) + b"abc" + uv(300) + uv(0)


def _create_topics_v5() -> Any:
    cls = request_class(19, 5)
    return sample(cls, full=True)


def test_unknown_top_level_tags_are_removed():
    request = _create_topics_v5()
    clean = write(request)
    assert clean.endswith(b"\x00")
    dirty, offset = frame(19, 5, clean[:-1] + _unknown_tags())
    sanitized = guard.sanitize(type(request), dirty, offset)
    assert sanitized[offset:] == clean and sanitized[:offset] == dirty[:offset]
    assert decode_request(19, 5, dirty, offset) == request


def test_unknown_tags_nested_in_a_topic_are_removed():
    request = _create_topics_v5()
    clean = write(request)
    topic = write(request.topics[1])
    at = clean.index(topic) + len(topic) - 1  # the topic's empty tag section
    dirty = clean[:at] + _unknown_tags() + clean[at + 1:]
    assert decode_request(19, 5, dirty, 0) == request


def test_unknown_tags_everywhere_in_a_metadata_request():
    request = sample(request_class(3, 12), full=True)
    clean = write(request)
    dirty = clean
    for topic in request.topics:  # each topic ends with its empty tag section
        encoded = write(topic)
        dirty = dirty.replace(encoded, encoded[:-1] + _unknown_tags())
    dirty = dirty[:-1] + _unknown_tags()
    assert len(dirty) > len(clean)
    assert decode_request(3, 12, dirty, 0) == request


def test_clean_buffer_is_returned_without_a_copy():
    buf, offset = frame(19, 5, write(_create_topics_v5()))
    assert guard.sanitize(request_class(19, 5), buf, offset) is buf


def test_known_tags_are_kept_and_unknown_ones_inside_them_removed():
    """Fetch v15: tag 0 cluster_id, tag 1 replica_state (a struct) that itself
    carries an unknown tag, so the size of tag 1 must be rewritten."""
    cls = request_class(1, 15)
    plain = sample(cls, full=False)
    state_type = {f.name: f.type for f in dataclasses.fields(cls)}["replica_state"]
    replica_state = sample(state_type, full=True)
    expected = dataclasses.replace(plain, cluster_id="cluster-a", replica_state=replica_state)
    state = write(replica_state)[:-1] + _unknown_tags()
    tags = (uv(3) + uv(0) + uv(10) + cstr("cluster-a")
            + uv(1) + uv(len(state)) + state
            + uv(5) + uv(1) + b"z")
    dirty = write(plain)[:-1] + tags
    assert write(expected) != dirty
    assert decode_request(1, 15, dirty, 0) == expected


@pytest.mark.parametrize(("size", "message"), [(4, "cannot fit"), (12, "does not fill")])
def test_known_tag_whose_value_disagrees_with_its_size_is_malformed(size: int, message: str):
    """kio would read the value by its type and ignore the size: reject both ways."""
    cls = request_class(1, 15)
    value = cstr("cluster-a") + b"xx"  # 10 bytes of string, 2 of padding
    body = write(sample(cls, full=False))[:-1] + uv(1) + uv(0) + uv(size) + value[:size]
    with pytest.raises(MalformedRequest, match=message):
        decode_request(1, 15, body, 0)


# ------------------------------------------------------------- valid requests


@pytest.mark.parametrize("full", [True, False], ids=["full", "nulls"])
@pytest.mark.parametrize(("api_key", "version"), CONTROL_PLANE_VERSIONS, ids=lambda v: str(v))
def test_kio_written_requests_decode_equal(api_key: int, version: int, full: bool):
    request = sample(request_class(api_key, version), full=full)
    buf, offset = frame(api_key, version, write(request))
    assert guard.sanitize(type(request), buf, offset) is buf  # nothing removed
    assert decode_request(api_key, version, buf, offset) == request


def test_every_request_class_kio_knows_round_trips():
    """Wider than josef needs: the guard's plan must agree with kio on all of them."""
    for api_key, version in _all_request_versions():
        for full in (True, False):
            request = sample(request_class(api_key, version), full=full)
            body = write(request)
            assert guard.sanitize(type(request), body, 0) is body
            assert decode_request(api_key, version, body, 0) == request, (api_key, version)


def _all_request_versions() -> list[tuple[int, int]]:
    keys = {name: key for key, name in api_key_map.items()}
    return [
        (keys[name], version)
        for name, versions in schema_name_map.items() if name in keys
        for version, entities in versions.items() if EntityType.request in entities
    ]


def test_memoryview_and_bytearray_buffers_decode():
    request = sample(request_class(3, 12), full=True)
    buf, offset = frame(3, 12, write(request))
    assert decode_request(3, 12, memoryview(buf), offset) == request
    assert decode_request(3, 12, bytearray(buf), offset) == request


def _kafka_python_requests() -> list[tuple[Any, Any]]:
    """(kafka-python request, check on the decoded kio entity) per version kio has."""
    from kafka.protocol.admin import CreateTopicsRequest
    from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest

    topics = [MetadataRequest.MetadataRequestTopic(name=n) for n in ("orders", "payments")]
    config = CreateTopicsRequest.CreatableTopic.CreatableTopicConfig
    creatable = CreateTopicsRequest.CreatableTopic(
        name="orders", num_partitions=3, replication_factor=1, assignments=[],
        configs=[config(name="retention.ms", value="1000")],
    )
    return [
        (MetadataRequest(topics=topics, allow_auto_topic_creation=False),
         lambda r: [t.name for t in r.topics] == ["orders", "payments"]),
        (MetadataRequest(topics=None),
         lambda r: r.topics is None or r.topics == ()),
        (ApiVersionsRequest(client_software_name="kafka-python", client_software_version="3.0.12"),
         lambda r: r.__version__ < 3 or r.client_software_name == "kafka-python"),
        (CreateTopicsRequest(topics=[creatable], timeout_ms=5000, validate_only=True),
         lambda r: r.topics[0].configs[0].value == "1000" and r.validate_only),
    ]


def test_kafka_python_requests_decode():
    decoded = 0
    for request, check in _kafka_python_requests():
        for version in range(request.min_version, request.max_version + 1):
            try:
                request_class(request.API_KEY, version)
            except UnsupportedVersion:
                continue  # e.g. Metadata v13 is past kio's range
            if version == 0 and request.API_KEY == 3 and request.topics is None:
                continue  # Metadata v0 has no null topics
            request.with_header(correlation_id=11, client_id="kafka-python")
            body = request.encode(version=version)
            full = request.encode(version=version, header=True)
            entity = decode_request(request.API_KEY, version, full, len(full) - len(body))
            assert check(entity), (type(request).__name__, version, entity)
            decoded += 1
    assert decoded >= 30


# ------------------------------------------------------------- errors


def test_unknown_api_key_or_version_is_unsupported_not_malformed():
    for api_key, version in [(9999, 0), (3, 99), (0, 0), (-1, 0)]:
        with pytest.raises(UnsupportedVersion) as info:
            decode_request(api_key, version, b"", 0)
        assert (info.value.api_key, info.value.api_version) == (api_key, version)
        assert not isinstance(info.value, MalformedRequest)
    with pytest.raises(UnsupportedVersion):
        response_class(9999, 0)


def test_trailing_bytes_are_ignored_as_kafka_does():
    # librdkafka's AdminClient sends Metadata v12 with three extra bytes; Kafka accepts them.
    entity = sample(request_class(3, 12), full=True)
    assert decode_request(3, 12, write(entity) + b"\x01\x00\x00", 0) == entity


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        (3, 12, b"\x01\x02\x00"),                       # bool 2: kio's ValueError
        (3, 12, uv(2) + bytes(16) + uv(2) + b"\xff" + b"\x00\x01\x00\x00"),  # bad UTF-8
        (3, 1, i32(1)),                                 # truncated
        (3, 1, i32(-2)),                                # negative count
        (18, 3, uv(0) + uv(1) + b"\x00"),               # null non-nullable string
        (3, 4, i32(1) + i16(-1) + b"\x00"),             # null legacy topic name
    ],
)
def test_kio_and_guard_errors_become_malformed_request(api_key: int, version: int, body: bytes):
    # In-process: no count here is large enough for kio to abort even unguarded.
    with pytest.raises(MalformedRequest):
        decode_request(api_key, version, body, 0)


# ---------------------------------------------------------------- fuzz

FUZZ_SEEDS = [(3, 1), (3, 12), (19, 5), (19, 7), (20, 6), (2, 7), (22, 4), (60, 1),
              (23, 4), (18, 3), (11, 9), (32, 4), (11, 5), (10, 4)]
# Splices that turn counts and lengths hostile: huge varint, huge int32, 6-byte varint...
INTERESTING = [HUGE, b"\x7f\xff\xff\xff", b"\x80\x80\x80\x80\x80\x01",
               b"\x00", b"\xff", b"\x01", b"\x80"]


def _seed_bodies() -> list[tuple[int, int, bytes]]:
    return [(k, v, write(sample(request_class(k, v), full=full)))
            for k, v in FUZZ_SEEDS for full in (True, False)]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    """One or a few splices: overwrite, insert, delete, bit flip, or truncate."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        op = rng.randrange(5)
        if op == 0:
            data[at:at + 5] = rng.choice(INTERESTING)
        elif op == 1:
            data[at:at] = rng.choice(INTERESTING)
        elif op == 2:
            del data[at:at + rng.randint(1, 8)]
        elif op == 3 and data:
            data[at % len(data)] ^= 1 << rng.randrange(8)
        else:
            del data[at:]
    return bytes(data)


def _fuzz(examples: int, frames_per_example: int) -> int:
    """Hypothesis picks the seed body, a mutation seed and noise; each example checks
    a batch of frames, so ~20k frames cost seconds. Returns the frames checked."""
    seeds = _seed_bodies()
    checked = [0]

    @settings(max_examples=examples, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(seeds), st.integers(0, 2**64), st.binary(max_size=48))
    def run(seed: tuple[int, int, bytes], rng_seed: int, noise: bytes) -> None:
        api_key, version, body = seed
        rng = random.Random(rng_seed)  # cheaper than drawing every splice through hypothesis
        frames = [_mutate(body, rng) for _ in range(frames_per_example - 1)] + [noise]
        for buf in frames:
            outcome = _decode_outcome(api_key, version, buf, 0)
            assert outcome in ("ok", "malformed"), f"{api_key} v{version} {buf.hex()}: {outcome}"
        checked[0] += len(frames)

    run()
    return checked[0]


def test_fuzzed_frames_only_decode_or_raise_malformed_request():
    started = time.monotonic()
    checked = in_child(_fuzz, 1000, 20, timeout=40)
    assert checked >= 20_000
    assert time.monotonic() - started < 40


# ------------------------------------------------------------- responses


def _kio_response(entity: Any, correlation_id: int) -> bytes:
    header_cls = type(entity).__header_schema__
    return write(header_cls(correlation_id=correlation_id)) + write(entity)


@pytest.mark.parametrize(("api_key", "version"), CONTROL_PLANE_VERSIONS, ids=lambda v: str(v))
def test_encode_response_equals_kio_writer(api_key: int, version: int):
    for full in (True, False):
        response = sample(response_class(api_key, version), full=full)
        assert encode_response(response, 123456) == _kio_response(response, 123456)


@pytest.mark.parametrize("version", range(5))
def test_api_versions_response_uses_header_v0(version: int):
    response = sample(response_class(18, version), full=True)
    assert response_class(18, version).__header_schema__.__version__ == 0
    assert encode_response(response, -5) == i32(-5) + write(response)


def test_flexible_response_header_ends_with_empty_tags():
    response = sample(response_class(3, 12), full=False)
    assert encode_response(response, 1) == i32(1) + b"\x00" + write(response)


def test_lookups_are_cached_and_match_kio():
    assert request_class(3, 12) is load_request_schema(3, 12) is request_class(3, 12)
    assert response_class(3, 12) is load_response_schema(3, 12)
