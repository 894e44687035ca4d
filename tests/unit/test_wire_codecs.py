"""Hot-path wire codecs against the reference encoders: kio 0.6.5 and kafka-python 3.x.

Requests are written by kio / kafka-python and decoded by josef; responses are encoded by josef and
compared byte for byte with kio / kafka-python, then read back with kio's reader. Tagged fields that
kio cannot write are spliced in by hand. Hypothesis checks that mangled frames raise only
MalformedRequest.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import sys
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # kafka-python loads its bundled JSON with deprecated importlib calls
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.api_header import RequestHeader as KpRequestHeader
    from kafka.protocol.api_header import ResponseHeader as KpResponseHeader
    from kafka.protocol.consumer import FetchRequest as KpFetchRequest
    from kafka.protocol.consumer import FetchResponse as KpFetchResponse
    from kafka.protocol.producer import ProduceRequest as KpProduceRequest
    from kafka.protocol.producer import ProduceResponse as KpProduceResponse
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.schema.request_header.v2.header import RequestHeader as KioRequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader as KioResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as KioResponseHeaderV1
from kio.serial import entity_reader, entity_writer
from kio.serial import writers as kio_writers
from kio.static.constants import EntityType

from josef.protocol import primitives as p
from josef.protocol.errors import MalformedRequest
from josef.protocol.fetch import (
    FetchPartition, FetchPartitionResponse, decode_fetch_request, encode_fetch_response,
    fetch_response_size,
)
from josef.protocol.header import (
    parse_request_header, request_header_version, response_header, response_header_flexible,
)
from josef.protocol.produce import PartitionResponse, decode_produce_request, encode_produce_response

PRODUCE_VERSIONS = range(3, 12)
FETCH_VERSIONS = range(4, 13)
MS = datetime.timedelta(milliseconds=1)


# --------------------------------------------------------------------------- kio helpers

def make(cls, **values):
    """A kio entity from a superset of field values: fields this version lacks are dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def nested(cls, name: str):
    return getattr(sys.modules[cls.__module__], name)


def kio_encode(entity) -> bytes:
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def kio_decode(cls, data: bytes):
    value, size = entity_reader(cls)(bytes(data), 0)
    assert size == len(data)
    return value


def kio_write(writer, value) -> bytes:
    out = io.BytesIO()
    writer(out, value)
    return out.getvalue()


def splice_tail(data: bytes, old_tail: bytes, new_tail: bytes) -> bytes:
    assert data.endswith(old_tail)
    return data[: len(data) - len(old_tail)] + new_tail


# Tagged-field sections kio cannot write: unknown tags, multi-byte tag numbers and sizes.
TAGS_A = b"\x02" + b"\x00\x03abc" + b"\xc8\x01\x00"  # tag 0 (3 bytes), tag 200 (empty)
TAGS_B = b"\x01\x05\x81\x01" + b"x" * 129  # tag 5 with a 129-byte value (2-byte size varint)


# --------------------------------------------------------------------------- primitives

@given(st.integers(0, 2**32 - 1))
def test_uvarint_matches_kio_and_round_trips(value):
    encoded = p.encode_uvarint(value)
    assert encoded == kio_write(kio_writers.write_unsigned_varint, value)
    assert p.read_uvarint(encoded + b"\xff", 0) == (value, len(encoded))


@given(st.integers(0, 2**64 - 1))
def test_uvarint64_round_trips(value):
    encoded = p.encode_uvarint(value)
    assert p.read_uvarint64(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("data", [
    b"", b"\x80", b"\xff\xff\xff\xff",  # truncated
    b"\xff\xff\xff\xff\x7f",  # 2**35 - 1: five bytes but beyond uint32
    b"\x80\x80\x80\x80\x80\x00",  # six bytes
])
def test_bad_uvarint32(data):
    with pytest.raises(MalformedRequest):
        p.read_uvarint(data, 0)


def test_bad_uvarint64():
    with pytest.raises(MalformedRequest):
        p.read_uvarint64(b"\x80\x80", 0)  # truncated
    with pytest.raises(MalformedRequest):
        p.read_uvarint64(b"\x80" * 10 + b"\x00", 0)
    with pytest.raises(MalformedRequest):
        p.read_uvarint64(b"\xff" * 9 + b"\x7f", 0)  # 2**70 - 1


@pytest.mark.parametrize("value", [None, "", "topic", "ünïcødé", "x" * 300])
def test_strings_match_kio(value):
    legacy = kio_write(kio_writers.write_nullable_legacy_string, value)
    compact = kio_write(kio_writers.write_nullable_compact_string, value)
    assert p.encode_nullable_string(value) == legacy
    assert p.encode_compact_nullable_string(value) == compact
    assert p.read_nullable_string(legacy, 0) == (value, len(legacy))
    assert p.read_compact_nullable_string(compact, 0) == (value, len(compact))
    if value is None:
        for reader, data in ((p.read_string, legacy), (p.read_compact_string, compact)):
            with pytest.raises(MalformedRequest):
                reader(data, 0)
    else:
        assert p.read_string(legacy, 0) == (value, len(legacy))
        assert p.read_compact_string(compact, 0) == (value, len(compact))
        assert p.encode_string(value) == legacy
        assert p.encode_compact_string(value) == compact


@pytest.mark.parametrize("value", [None, b"", b"\x00\x01", b"r" * 200])
def test_bytes_match_kio_and_are_views(value):
    legacy = kio_write(kio_writers.write_nullable_legacy_bytes, value)
    compact = kio_write(kio_writers.write_nullable_compact_string, value)
    size = None if value is None else len(value)
    assert p.encode_bytes_length(size) + (value or b"") == legacy
    assert p.encode_compact_bytes_length(size) + (value or b"") == compact
    for reader, data in ((p.read_nullable_bytes, legacy), (p.read_compact_nullable_bytes, compact)):
        view = memoryview(data)
        got, end = reader(view, 0)
        assert end == len(data)
        if value is None:
            assert got is None
        else:
            assert isinstance(got, memoryview) and got.obj is data and got == value


@pytest.mark.parametrize("reader, data", [
    (p.read_nullable_string, b"\xff\xfe"),  # length -2
    (p.read_nullable_string, b"\x00\x05abc"),  # length beyond the buffer
    (p.read_string, b"\x00\x02\xff\xfe"),  # bad UTF-8 in a topic name
    (p.read_compact_nullable_string, b"\x05abc"),
    (p.read_nullable_bytes, b"\xff\xff\xff\xfe"),
    (p.read_nullable_bytes, b"\x7f\xff\xff\xff" + b"x" * 10),
    (p.read_compact_nullable_bytes, b"\xff\xff\xff\xff\x0f"),
    (p.read_bytes, b"\xff\xff\xff\xff"),
    (p.read_compact_bytes, b"\x00"),
    (p.read_array_count, b"\x00\x00\x00\x05abcd"),  # 5 elements cannot fit in 4 bytes
    (p.read_array_count, b"\xff\xff\xff\xff"),  # null where required
    (p.read_nullable_array_count, b"\xff\xff\xff\xfe"),
    (p.read_compact_array_count, b"\xff\xff\xff\xff\x0f"),  # the kio SIGABRT probe
    (p.read_compact_array_count, b"\x00"),
    (p.read_int32, b"\x00\x00\x00"),
    (p.read_int64, b"\x00" * 7),
    (p.read_int16, b"\x00"),
    (p.read_int8, b""),
])
def test_malformed_primitives(reader, data):
    with pytest.raises(MalformedRequest):
        reader(data, 0)


def test_array_counts():
    assert p.read_nullable_array_count(b"\xff\xff\xff\xff", 0) == (-1, 4)
    assert p.read_array_count(b"\x00\x00\x00\x02ab", 0) == (2, 4)
    with pytest.raises(MalformedRequest):
        p.read_array_count(b"\x00\x00\x00\x02abc", 0, min_size=2)
    assert p.read_compact_nullable_array_count(b"\x00", 0) == (-1, 1)
    assert p.read_compact_array_count(b"\x03ab", 0) == (2, 1)
    for count in (None, 0, 5, 300):
        assert p.encode_compact_nullable_array_count(count) == kio_write(
            kio_writers.write_compact_array_length, count)
        if count is not None:
            assert p.encode_array_count(count) == kio_write(kio_writers.write_legacy_array_length, count)


def test_skip_tagged_fields():
    for section in (b"\x00", TAGS_A, TAGS_B):
        assert p.skip_tagged_fields(section + b"tail", 0) == len(section)
    for bad in (b"", b"\x01", b"\x01\x00", b"\x01\x00\x05abc", b"\x05\x00\x00", b"\x01\x00\xff\xff\xff\xff\x0f"):
        with pytest.raises(MalformedRequest):
            p.skip_tagged_fields(bad, 0)


# --------------------------------------------------------------------------- headers

def all_request_schemas():
    for key, name in api_key_map.items():
        for version, kinds in schema_name_map[name].items():
            if EntityType.request in kinds:
                yield key, version, load_request_schema(key, version)


def test_request_header_version_matches_kio_everywhere():
    count = 0
    for key, version, cls in all_request_schemas():
        expected = cls.__header_schema__.__version__
        if expected == 0:  # ControlledShutdown v0 special case: not needed
            continue
        assert request_header_version(key, version) == expected, (key, version)
        count += 1
    assert count > 250  # every request class kio has


def test_request_header_version_unknown():
    assert request_header_version(18, 0) == 1
    assert request_header_version(18, 3) == 2
    assert request_header_version(9999, 0) == 1  # unknown key
    assert request_header_version(0, 1) == 1  # Produce v0-2: gone from kio, never flexible
    assert request_header_version(18, 99) == 2  # newer than kio: flexibleVersions are open-ended ("3+")
    assert request_header_version(-1, 0) == 1


@pytest.mark.parametrize("client_id", [None, "", "producer-1", "ünï", "c" * 300])
@pytest.mark.parametrize("key, version", [(0, 3), (0, 9), (1, 4), (1, 12), (3, 1), (3, 12), (18, 0), (18, 3)])
def test_parse_request_header_from_kio_and_kafka_python(key, version, client_id):
    header_cls = load_request_schema(key, version).__header_schema__
    header = header_cls(request_api_key=key, request_api_version=version,
                        correlation_id=123456, client_id=client_id)
    body = b"BODY"
    data = kio_encode(header) + body
    got = parse_request_header(data)
    assert got == (key, version, 123456, client_id, len(data) - len(body))
    kp = KpRequestHeader(request_api_key=key, request_api_version=version,
                         correlation_id=123456, client_id=client_id)
    assert bytes(kp.encode(flexible=header_cls is KioRequestHeaderV2)) + body == data
    assert parse_request_header(memoryview(data)) == got


def test_parse_request_header_skips_tags():
    plain = kio_encode(KioRequestHeaderV2(request_api_key=1, request_api_version=12,
                                          correlation_id=-5, client_id="c"))
    for tags in (TAGS_A, TAGS_B):
        data = splice_tail(plain, b"\x00", tags) + b"body"
        assert parse_request_header(data) == (1, 12, -5, "c", len(data) - 4)


def test_parse_request_header_bad_utf8_client_id_is_replaced():
    data = struct.pack(">hhih", 3, 1, 7, 2) + b"\xff\xfe"
    assert parse_request_header(data).client_id == "\ufffd\ufffd"


@pytest.mark.parametrize("data", [
    b"", b"\x00\x03\x00\x01\x00\x00\x00\x07\x00",  # truncated fixed part
    struct.pack(">hhih", 3, 1, 7, 5) + b"abc",  # client_id beyond the frame
    struct.pack(">hhih", 3, 1, 7, -2),  # bad length
    struct.pack(">hhih", 3, 12, 7, -1),  # flexible, tagged fields missing
    struct.pack(">hhih", 3, 12, 7, -1) + b"\x01\x00\x09",  # tag size beyond the frame
])
def test_parse_request_header_malformed(data):
    with pytest.raises(MalformedRequest):
        parse_request_header(data)


@pytest.mark.parametrize("correlation_id", [0, 1, -1, 2**31 - 1, -(2**31)])
def test_response_header(correlation_id):
    assert response_header(correlation_id, False) == kio_encode(KioResponseHeaderV0(correlation_id=correlation_id))
    assert response_header(correlation_id, True) == kio_encode(KioResponseHeaderV1(correlation_id=correlation_id))
    kp = KpResponseHeader(correlation_id=correlation_id)
    assert response_header(correlation_id, False) == bytes(kp.encode(flexible=False))
    assert response_header(correlation_id, True) == bytes(kp.encode(flexible=True))


def test_response_header_flexible():
    assert response_header_flexible(18, 3) is False  # ApiVersions: always header v0
    assert response_header_flexible(0, 9) is True
    assert response_header_flexible(0, 8) is False
    assert response_header_flexible(1, 12) is True
    for key, version, cls in all_request_schemas():
        if key != 18:
            assert response_header_flexible(key, version) == load_response_schema(key, version).__flexible__


# --------------------------------------------------------------------------- Produce request

PRODUCE_SAMPLES = [
    (None, 1, 1500, [("orders", [(0, b"rec0" * 10), (5, None), (7, b"")]), ("ünïcode", [(2, b"x" * 300)])]),
    ("my-txn", -1, 30000, []),
    ("", 0, 0, [("empty", [])]),
]


def kio_produce_request(version, transactional_id, acks, timeout_ms, topics):
    cls = load_request_schema(0, version)
    topic_cls, partition_cls = nested(cls, "TopicProduceData"), nested(cls, "PartitionProduceData")
    return cls(transactional_id=transactional_id, acks=acks, timeout=timeout_ms * MS, topic_data=tuple(
        topic_cls(name=name, partition_data=tuple(partition_cls(index=i, records=r) for i, r in parts))
        for name, parts in topics))


def kp_produce_request(version, transactional_id, acks, timeout_ms, topics):
    topic_cls = KpProduceRequest.TopicProduceData
    partition_cls = topic_cls.PartitionProduceData
    request = KpProduceRequest(transactional_id=transactional_id, acks=acks, timeout_ms=timeout_ms, topic_data=[
        topic_cls(name=name, partition_data=[partition_cls(index=i, records=r) for i, r in parts])
        for name, parts in topics])
    return bytes(request.encode(version=version))


def plain_produce(request):
    """Decoded request with records as bytes, for comparison."""
    return (request.transactional_id, request.acks, request.timeout_ms,
            [(name, [(i, None if r is None else bytes(r)) for i, r in parts]) for name, parts in request.topics])


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@pytest.mark.parametrize("sample", PRODUCE_SAMPLES)
def test_decode_produce_request(version, sample):
    data = kio_encode(kio_produce_request(version, *sample))
    assert kp_produce_request(version, *sample) == data
    assert plain_produce(decode_produce_request(data, 0, version)) == sample
    framed = b"HEADER" + data
    assert plain_produce(decode_produce_request(framed, 6, version)) == sample


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
def test_decode_produce_request_rejects_trailing_bytes(version):
    data = kio_encode(kio_produce_request(version, *PRODUCE_SAMPLES[0]))
    with pytest.raises(MalformedRequest):
        decode_produce_request(data + b"\x00", 0, version)


@pytest.mark.parametrize("version", [v for v in PRODUCE_VERSIONS if v >= 9])
def test_decode_produce_request_skips_tagged_fields(version):
    sample = ("t", 1, 100, [("topic", [(4, b"records!")])])
    data = kio_encode(kio_produce_request(version, *sample))
    # The body ends with the partition, topic and request tagged-field sections.
    tagged = splice_tail(data, b"\x00\x00\x00", TAGS_A + TAGS_B + TAGS_A)
    assert plain_produce(decode_produce_request(tagged, 0, version)) == sample


def test_produce_records_are_views_of_the_buffer():
    for version in (3, 9):
        data = kio_encode(kio_produce_request(version, *PRODUCE_SAMPLES[0]))
        request = decode_produce_request(data, 0, version)
        records = request.topics[0][1][0][1]
        assert isinstance(records, memoryview) and records.obj is data
        # Writing through a bytearray proves the bytes are shared, not copied.
        mutable = bytearray(data)
        records = decode_produce_request(mutable, 0, version).topics[0][1][0][1]
        start = bytes(mutable).index(b"rec0")
        mutable[start] = ord("X")
        assert bytes(records[:4]) == b"Xec0"


def test_produce_version_out_of_range():
    for version in (2, 12):
        with pytest.raises(ValueError):
            decode_produce_request(b"", 0, version)
        with pytest.raises(ValueError):
            encode_produce_response(version, [])


# --------------------------------------------------------------------------- Produce response

PRODUCE_RESPONSES = [
    ([("orders", [PartitionResponse(0, 0, 100), PartitionResponse(5, 6, -1, 1700000000123, 42)]),
      ("ünïcode", [PartitionResponse(2, 87, -1, -1, 0, [(0, "bad"), (3, None)], "records were bad")])], 250),
    ([], 0),
    ([("empty", [])], 5),
]


def kio_produce_response(version, topics, throttle_time_ms):
    cls = load_response_schema(0, version)
    topic_cls, partition_cls = nested(cls, "TopicProduceResponse"), nested(cls, "PartitionProduceResponse")
    batch_cls = nested(cls, "BatchIndexAndErrorMessage") if version >= 8 else None

    def partition(r: PartitionResponse):
        append_time = None if r.log_append_time_ms == -1 else datetime.datetime.fromtimestamp(
            r.log_append_time_ms / 1000, datetime.UTC)
        errors = tuple(batch_cls(batch_index=i, batch_index_error_message=m) for i, m in r.record_errors) \
            if batch_cls else ()
        return make(partition_cls, index=r.index, error_code=ErrorCode(r.error_code), base_offset=r.base_offset,
                    log_append_time=append_time, log_start_offset=r.log_start_offset,
                    record_errors=errors, error_message=r.error_message)

    return cls(throttle_time=throttle_time_ms * MS, responses=tuple(
        topic_cls(name=name, partition_responses=tuple(partition(r) for r in parts)) for name, parts in topics))


def kp_produce_response(version, topics, throttle_time_ms):
    topic_cls = KpProduceResponse.TopicProduceResponse
    partition_cls = topic_cls.PartitionProduceResponse
    batch_cls = partition_cls.BatchIndexAndErrorMessage
    response = KpProduceResponse(throttle_time_ms=throttle_time_ms, responses=[
        topic_cls(name=name, partition_responses=[
            partition_cls(index=r.index, error_code=r.error_code, base_offset=r.base_offset,
                          log_append_time_ms=r.log_append_time_ms, log_start_offset=r.log_start_offset,
                          record_errors=[batch_cls(batch_index=i, batch_index_error_message=m)
                                         for i, m in r.record_errors],
                          error_message=r.error_message)
            for r in parts])
        for name, parts in topics])
    return bytes(response.encode(version=version))


def visible_produce_response(version, topics):
    """What a version can carry: fields it lacks read back as their defaults."""
    def partition(r):
        return PartitionResponse(r.index, r.error_code, r.base_offset, r.log_append_time_ms,
                                 r.log_start_offset if version >= 5 else -1,
                                 list(r.record_errors) if version >= 8 else [],
                                 r.error_message if version >= 8 else None)
    return [(name, [partition(r) for r in parts]) for name, parts in topics]


def read_back_produce_response(version, data):
    response = kio_decode(load_response_schema(0, version), data)

    def partition(r):
        append_time = -1 if r.log_append_time is None else round(r.log_append_time.timestamp() * 1000)
        return PartitionResponse(r.index, r.error_code.value, r.base_offset, append_time,
                                 getattr(r, "log_start_offset", -1),
                                 [(e.batch_index, e.batch_index_error_message) for e in getattr(r, "record_errors", ())],
                                 getattr(r, "error_message", None))
    topics = [(t.name, [partition(r) for r in t.partition_responses]) for t in response.responses]
    return topics, round(response.throttle_time.total_seconds() * 1000)


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@pytest.mark.parametrize("sample", PRODUCE_RESPONSES)
def test_encode_produce_response(version, sample):
    topics, throttle_time_ms = sample
    ours = encode_produce_response(version, topics, throttle_time_ms)
    assert isinstance(ours, bytes)
    assert ours == kio_encode(kio_produce_response(version, topics, throttle_time_ms))
    assert ours == kp_produce_response(version, topics, throttle_time_ms)
    assert read_back_produce_response(version, ours) == (visible_produce_response(version, topics), throttle_time_ms)


# --------------------------------------------------------------------------- Fetch request

FETCH_SAMPLES = [
    dict(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=52428800, isolation_level=1,
         session_id=77, session_epoch=3,
         topics=[("t1", [FetchPartition(0, 5, 100, 4, 10, 1048576), FetchPartition(3, 6, 2**40, 2, 0, 1)]),
                 ("ünï", [])],
         forgotten=[("old", [1, 2, 3]), ("gone", [])], rack_id="rack-a"),
    dict(replica_id=2, max_wait_ms=0, min_bytes=0, max_bytes=0x7FFFFFFF, isolation_level=0,
         session_id=0, session_epoch=-1, topics=[], forgotten=[], rack_id=""),
]


def kio_fetch_request(version, s, cluster_id=None):
    cls = load_request_schema(1, version)
    topic_cls, partition_cls = nested(cls, "FetchTopic"), nested(cls, "FetchPartition")
    forgotten_cls = nested(cls, "ForgottenTopic") if version >= 7 else None
    topics = tuple(topic_cls(topic=name, partitions=tuple(make(partition_cls, **fp._asdict()) for fp in parts))
                   for name, parts in s["topics"])
    forgotten = tuple(forgotten_cls(topic=n, partitions=tuple(ps)) for n, ps in s["forgotten"]) \
        if forgotten_cls else ()
    values = {k: v for k, v in s.items() if k not in ("topics", "forgotten", "max_wait_ms")}
    return make(cls, **values, max_wait=s["max_wait_ms"] * MS, topics=topics,
                forgotten_topics_data=forgotten, cluster_id=cluster_id)


def kp_fetch_request(version, s):
    topic_cls = KpFetchRequest.FetchTopic
    partition_cls = topic_cls.FetchPartition
    forgotten_cls = KpFetchRequest.ForgottenTopic
    values = {k: v for k, v in s.items() if k not in ("topics", "forgotten")}
    request = KpFetchRequest(**values, topics=[
        topic_cls(topic=name, partitions=[partition_cls(**fp._asdict()) for fp in parts])
        for name, parts in s["topics"]],
        forgotten_topics_data=[forgotten_cls(topic=n, partitions=ps) for n, ps in s["forgotten"]])
    return bytes(request.encode(version=version))


def visible_fetch_request(version, s):
    """The sample as a version carries it: absent fields take Kafka's defaults."""
    def partition(fp):
        return fp._replace(current_leader_epoch=fp.current_leader_epoch if version >= 9 else -1,
                           last_fetched_epoch=fp.last_fetched_epoch if version >= 12 else -1,
                           log_start_offset=fp.log_start_offset if version >= 5 else -1)
    return (s["replica_id"], s["max_wait_ms"], s["min_bytes"], s["max_bytes"], s["isolation_level"],
            s["session_id"] if version >= 7 else 0, s["session_epoch"] if version >= 7 else -1,
            [(name, [partition(fp) for fp in parts]) for name, parts in s["topics"]],
            s["forgotten"] if version >= 7 else [], s["rack_id"] if version >= 11 else "")


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@pytest.mark.parametrize("sample", FETCH_SAMPLES)
def test_decode_fetch_request(version, sample):
    data = kio_encode(kio_fetch_request(version, sample))
    assert kp_fetch_request(version, sample) == data
    got = decode_fetch_request(data, 0, version)
    assert tuple(got) == visible_fetch_request(version, sample)
    assert all(type(fp) is FetchPartition for _, parts in got.topics for fp in parts)
    assert tuple(decode_fetch_request(b"xyz" + data, 3, version)) == tuple(got)


def test_decode_fetch_request_skips_tagged_fields():
    sample = dict(FETCH_SAMPLES[1], topics=[("t", [FetchPartition(1, 2, 3, 4, 5, 6)])])
    expected = visible_fetch_request(12, sample)
    # cluster_id is a known tag kio can write; we skip it like any other.
    with_cluster = kio_encode(kio_fetch_request(12, sample, cluster_id="cluster-xyz"))
    assert tuple(decode_fetch_request(with_cluster, 0, 12)) == expected
    # Tail: partition tags, topic tags, empty forgotten array, empty rack_id, request tags.
    data = kio_encode(kio_fetch_request(12, sample))
    top_tags = b"\x03" + b"\x00\x04\x03abc" + b"\x01\x09" + b"\x00" * 8 + b"\x01" + b"\x09\x00"
    tagged = splice_tail(data, b"\x00\x00\x01\x01\x00", TAGS_A + TAGS_B + b"\x01\x01" + top_tags)
    assert tuple(decode_fetch_request(tagged, 0, 12)) == expected


@pytest.mark.parametrize("version", FETCH_VERSIONS)
def test_decode_fetch_request_rejects_trailing_bytes(version):
    data = kio_encode(kio_fetch_request(version, FETCH_SAMPLES[0]))
    with pytest.raises(MalformedRequest):
        decode_fetch_request(data + b"\x00", 0, version)


def test_fetch_version_out_of_range():
    for version in (3, 13):
        with pytest.raises(ValueError):
            decode_fetch_request(b"", 0, version)
        with pytest.raises(ValueError):
            encode_fetch_response(version, [])


# --------------------------------------------------------------------------- Fetch response

FETCH_RESPONSES = [
    dict(throttle_time_ms=10, error_code=0, session_id=99, topics=[
        ("t1", [FetchPartitionResponse(0, 0, 1000, 990, 5, None, -1, [b"a" * 100, b"b" * 50]),
                FetchPartitionResponse(1, 1, -1, -1, -1, [], 3, []),
                FetchPartitionResponse(2, 0, 50, 40, 0, [(1234, 10), (5678, 20)], 2, [memoryview(b"z" * 200)]),
                FetchPartitionResponse(3, 6, 5, records=None)]),
        ("ünï", [])]),
    dict(throttle_time_ms=0, error_code=70, session_id=0, topics=[]),
]


def kio_fetch_response(version, s):
    cls = load_response_schema(1, version)
    topic_cls, partition_cls = nested(cls, "FetchableTopicResponse"), nested(cls, "PartitionData")
    aborted_cls = nested(cls, "AbortedTransaction")

    def partition(r):
        aborted = None if r.aborted_transactions is None else tuple(
            aborted_cls(producer_id=pid, first_offset=first) for pid, first in r.aborted_transactions)
        records = None if r.records is None else b"".join(r.records)
        return make(partition_cls, partition_index=r.partition, error_code=ErrorCode(r.error_code),
                    high_watermark=r.high_watermark, last_stable_offset=r.last_stable_offset,
                    log_start_offset=r.log_start_offset, aborted_transactions=aborted,
                    preferred_read_replica=r.preferred_read_replica, records=records)

    return make(cls, throttle_time=s["throttle_time_ms"] * MS, error_code=ErrorCode(s["error_code"]),
                session_id=s["session_id"], responses=tuple(
                    topic_cls(topic=name, partitions=tuple(partition(r) for r in parts))
                    for name, parts in s["topics"]))


def kp_fetch_response(version, s):
    topic_cls = KpFetchResponse.FetchableTopicResponse
    partition_cls = topic_cls.PartitionData
    aborted_cls = partition_cls.AbortedTransaction

    def partition(r):
        aborted = None if r.aborted_transactions is None else [
            aborted_cls(producer_id=pid, first_offset=first) for pid, first in r.aborted_transactions]
        return partition_cls(partition_index=r.partition, error_code=r.error_code, high_watermark=r.high_watermark,
                             last_stable_offset=r.last_stable_offset, log_start_offset=r.log_start_offset,
                             aborted_transactions=aborted, preferred_read_replica=r.preferred_read_replica,
                             records=None if r.records is None else b"".join(r.records))

    response = KpFetchResponse(throttle_time_ms=s["throttle_time_ms"], error_code=s["error_code"],
                               session_id=s["session_id"], responses=[
                                   topic_cls(topic=name, partitions=[partition(r) for r in parts])
                                   for name, parts in s["topics"]])
    return bytes(response.encode(version=version))


def read_back_fetch_response(version, data):
    response = kio_decode(load_response_schema(1, version), data)

    def partition(r):
        aborted = None if r.aborted_transactions is None else [
            (a.producer_id, a.first_offset) for a in r.aborted_transactions]
        return (r.partition_index, r.error_code.value, r.high_watermark, r.last_stable_offset,
                getattr(r, "log_start_offset", -1), aborted, getattr(r, "preferred_read_replica", -1),
                None if r.records is None else bytes(r.records))
    return (round(response.throttle_time.total_seconds() * 1000),
            getattr(response, "error_code", ErrorCode(0)).value, getattr(response, "session_id", 0),
            [(t.topic, [partition(r) for r in t.partitions]) for t in response.responses])


def visible_fetch_response(version, s):
    def partition(r):
        aborted = None if r.aborted_transactions is None else [tuple(a) for a in r.aborted_transactions]
        return (r.partition, r.error_code, r.high_watermark, r.last_stable_offset,
                r.log_start_offset if version >= 5 else -1, aborted,
                r.preferred_read_replica if version >= 11 else -1,
                None if r.records is None else b"".join(r.records))
    return (s["throttle_time_ms"], s["error_code"] if version >= 7 else 0, s["session_id"] if version >= 7 else 0,
            [(name, [partition(r) for r in parts]) for name, parts in s["topics"]])


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@pytest.mark.parametrize("sample", FETCH_RESPONSES)
def test_encode_fetch_response(version, sample):
    chunks = encode_fetch_response(version, sample["topics"], throttle_time_ms=sample["throttle_time_ms"],
                                   error_code=sample["error_code"], session_id=sample["session_id"])
    data = b"".join(chunks)
    assert fetch_response_size(chunks) == len(data)
    assert data == kio_encode(kio_fetch_response(version, sample))
    assert data == kp_fetch_response(version, sample)
    assert read_back_fetch_response(version, data) == visible_fetch_response(version, sample)


def test_fetch_response_passes_record_chunks_through():
    chunk_a, chunk_b = b"a" * 1000, memoryview(bytearray(b"b" * 2000))
    topics = [("t", [FetchPartitionResponse(0, 0, 10, records=[chunk_a, chunk_b])])]
    for version in (4, 12):
        chunks = encode_fetch_response(version, topics)
        assert any(c is chunk_a for c in chunks) and any(c is chunk_b for c in chunks)
        assert len(chunks) <= 4  # fields before, the two record chunks, tags after


# --------------------------------------------------------------------------- fuzz

def produce_seed(version):
    return kio_encode(kio_produce_request(version, *PRODUCE_SAMPLES[0]))


def fetch_seed(version):
    return kio_encode(kio_fetch_request(version, FETCH_SAMPLES[0]))


SEEDS = [(decode_produce_request, v, produce_seed(v)) for v in (3, 8, 9, 11)] + \
        [(decode_fetch_request, v, fetch_seed(v)) for v in (4, 7, 11, 12)]
SEED_IDS = [f"{'produce' if d is decode_produce_request else 'fetch'}-v{v}" for d, v, _ in SEEDS]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_malformed(decode, data, version):
    """A mangled frame either decodes or raises MalformedRequest; nothing else is allowed."""
    try:
        request = decode(data, 0, version)
    except MalformedRequest:
        return None
    if decode is decode_produce_request:
        for _, parts in request.topics:
            for _, records in parts:
                assert records is None or records.obj is data
    return request


@pytest.mark.parametrize("decode, version, seed", SEEDS, ids=SEED_IDS)
def test_every_truncation_is_malformed(decode, version, seed):
    for size in range(len(seed)):
        with pytest.raises(MalformedRequest):
            decode(seed[:size], 0, version)


@pytest.mark.parametrize("decode, version, seed", SEEDS, ids=SEED_IDS)
@FUZZ
@given(data=st.data())
def test_mutated_requests(decode, version, seed, data):
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(buf) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            buf[position] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
        elif action == "insert":
            buf[position:position] = data.draw(st.binary(min_size=1, max_size=5))
        elif len(buf) > 1:
            del buf[position]
    decode_or_malformed(decode, bytes(buf), version)


@pytest.mark.parametrize("decode, version, seed", SEEDS, ids=SEED_IDS)
@FUZZ
@given(junk=st.binary(max_size=64))
def test_random_bytes(decode, version, seed, junk):
    decode_or_malformed(decode, junk, version)
    decode_or_malformed(decode, seed[: len(seed) // 2] + junk, version)


@given(junk=st.binary(max_size=40))
def test_random_headers(junk):
    try:
        header = parse_request_header(junk)
    except MalformedRequest:
        return
    assert 0 <= header.body_offset <= len(junk)


def test_huge_counts_are_rejected_fast():
    # The kio SIGABRT probe: a 28-byte Produce v9 body claiming 2**32-2 topics.
    body = b"\x00" + struct.pack(">hi", 1, 100) + b"\xff\xff\xff\xff\x0f" + b"\x00" * 18
    with pytest.raises(MalformedRequest):
        decode_produce_request(body, 0, 9)
    body = struct.pack(">hhi", -1, 1, 100) + struct.pack(">i", 2**31 - 1) + b"\x00" * 16
    with pytest.raises(MalformedRequest):
        decode_produce_request(body, 0, 3)
