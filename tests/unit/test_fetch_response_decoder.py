"""The replica fetcher's Fetch response decoder (protocol/fetch.py) against kio and josef's encoder.

Random responses are written by kio 0.6.5 (every field, v12's tagged fields included) and by josef's
own encoder, then decoded by ``decode_fetch_response`` and compared field by field (and with kio's
reader). A hand-written v12 writer, checked byte for byte against kio, adds what neither can write:
unknown tagged fields at every level, tags inside the tagged structs, multi-byte tag numbers and
sizes. Truncated, mutated and lying frames must raise MalformedResponse, quickly and without
allocating more than the frame's size.
"""
from __future__ import annotations

import datetime
import io
import struct
import sys
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from josef.protocol.errors import MalformedResponse
from josef.protocol.fetch import (
    FetchedPartition, FetchPartitionResponse, FetchResponse, decode_fetch_response, encode_fetch_response,
)
from josef.protocol.primitives import encode_uvarint

VERSIONS = range(4, 13)
MS = datetime.timedelta(milliseconds=1)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT16 = st.integers(-2**15, 2**15 - 1)
INT32 = st.integers(-2**31, 2**31 - 1)
INT64 = st.integers(-2**63, 2**63 - 1)
KIO_ERRORS = st.sampled_from([int(e.value) for e in ErrorCode])
NAMES = st.text(max_size=12)
RECORDS = st.none() | st.binary(max_size=300)
ABORTED = st.none() | st.lists(st.tuples(INT64, INT64), max_size=3)
TAG_DEFAULT = (-1, -1)
# v12 partition tags as FetchedPartition holds them; (-1, -1) is the default, which kio never writes.
DIVERGING = st.none() | st.tuples(INT32, INT64)  # (epoch, end_offset)
LEADER = st.none() | st.tuples(INT32, INT32)  # (leader_id, leader_epoch)
SNAPSHOT = st.none() | st.tuples(INT64, INT32)  # (end_offset, epoch)


# --------------------------------------------------------------------------- samples

@st.composite
def partitions(draw, version: int, errors=INT16, tags: bool = True) -> FetchedPartition:
    """A partition as the decoder should return it for `version` (absent fields at their defaults)."""
    records = draw(RECORDS)
    with_tags = tags and version >= 12
    return FetchedPartition(
        partition=draw(INT32), error_code=draw(errors), high_watermark=draw(INT64),
        last_stable_offset=draw(INT64), log_start_offset=draw(INT64) if version >= 5 else -1,
        aborted_transactions=draw(ABORTED), preferred_read_replica=draw(INT32) if version >= 11 else -1,
        records=records,
        diverging_epoch=draw(DIVERGING) if with_tags else None,
        current_leader=draw(LEADER) if with_tags else None,
        snapshot_id=draw(SNAPSHOT) if with_tags else None)


@st.composite
def responses(draw, version: int, errors=INT16, tags: bool = True) -> FetchResponse:
    topics = draw(st.lists(st.tuples(NAMES, st.lists(partitions(version, errors, tags), max_size=4)), max_size=3))
    return FetchResponse(
        throttle_time_ms=draw(st.integers(0, 2**31 - 1)),
        error_code=draw(errors) if version >= 7 else 0,
        session_id=draw(INT32) if version >= 7 else 0,
        topics=topics)


def plain(response: FetchResponse) -> tuple:
    """A decoded (or expected) response as plain values: records as bytes, aborted as tuples."""
    def partition(p: FetchedPartition) -> tuple:
        aborted = None if p.aborted_transactions is None else [tuple(a) for a in p.aborted_transactions]
        records = None if p.records is None else bytes(p.records)
        return (p.partition, p.error_code, p.high_watermark, p.last_stable_offset, p.log_start_offset, aborted,
                p.preferred_read_replica, records, p.diverging_epoch, p.current_leader, p.snapshot_id)
    return (response.throttle_time_ms, response.error_code, response.session_id,
            [(name, [partition(p) for p in parts]) for name, parts in response.topics])


def without_default_tags(response: FetchResponse) -> FetchResponse:
    """kio leaves out a tagged struct equal to its default, so it decodes as absent (None)."""
    def clear(value):
        return None if value == TAG_DEFAULT else value
    return response._replace(topics=[
        (name, [p._replace(diverging_epoch=clear(p.diverging_epoch), current_leader=clear(p.current_leader),
                           snapshot_id=clear(p.snapshot_id)) for p in parts])
        for name, parts in response.topics])


# --------------------------------------------------------------------------- kio

def kio_entity(version: int, r: FetchResponse):
    cls = load_response_schema(1, version)
    module = sys.modules[cls.__module__]
    names = lambda c: {f for f in c.__dataclass_fields__}  # noqa: E731

    def make(c, **values):
        fields = names(c)
        return c(**{k: v for k, v in values.items() if k in fields})

    def partition(p: FetchedPartition):
        aborted = None if p.aborted_transactions is None else tuple(
            module.AbortedTransaction(producer_id=pid, first_offset=first) for pid, first in p.aborted_transactions)
        tags = {}
        if p.diverging_epoch is not None:
            tags["diverging_epoch"] = module.EpochEndOffset(epoch=p.diverging_epoch[0],
                                                            end_offset=p.diverging_epoch[1])
        if p.current_leader is not None:
            tags["current_leader"] = module.LeaderIdAndEpoch(leader_id=p.current_leader[0],
                                                             leader_epoch=p.current_leader[1])
        if p.snapshot_id is not None:
            tags["snapshot_id"] = module.SnapshotId(end_offset=p.snapshot_id[0], epoch=p.snapshot_id[1])
        return make(module.PartitionData, partition_index=p.partition, error_code=ErrorCode(p.error_code),
                    high_watermark=p.high_watermark, last_stable_offset=p.last_stable_offset,
                    log_start_offset=p.log_start_offset, aborted_transactions=aborted,
                    preferred_read_replica=p.preferred_read_replica, records=p.records, **tags)

    return make(cls, throttle_time=r.throttle_time_ms * MS, error_code=ErrorCode(r.error_code),
                session_id=r.session_id, responses=tuple(
                    module.FetchableTopicResponse(topic=name, partitions=tuple(partition(p) for p in parts))
                    for name, parts in r.topics))


def kio_encode(entity) -> bytes:
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def kio_read_back(version: int, data: bytes) -> tuple:
    """kio's reading of `data`, in the shape of `plain`."""
    response, size = entity_reader(load_response_schema(1, version))(data, 0)
    assert size == len(data)

    def tag(value, *fields):
        if value is None:
            return None
        got = tuple(getattr(value, f) for f in fields)
        return None if got == TAG_DEFAULT else got

    def partition(p) -> tuple:
        aborted = None if p.aborted_transactions is None else [
            (a.producer_id, a.first_offset) for a in p.aborted_transactions]
        return (p.partition_index, p.error_code.value, p.high_watermark, p.last_stable_offset,
                getattr(p, "log_start_offset", -1), aborted, getattr(p, "preferred_read_replica", -1),
                None if p.records is None else bytes(p.records),
                tag(getattr(p, "diverging_epoch", None), "epoch", "end_offset"),
                tag(getattr(p, "current_leader", None), "leader_id", "leader_epoch"),
                tag(getattr(p, "snapshot_id", None), "end_offset", "epoch"))
    return (round(response.throttle_time.total_seconds() * 1000),
            getattr(response, "error_code", ErrorCode(0)).value, getattr(response, "session_id", 0),
            [(t.topic, [partition(p) for p in t.partitions]) for t in response.responses])


# --------------------------------------------------------------------------- josef's encoder

def josef_encode(version: int, r: FetchResponse) -> bytes:
    topics = [(name, [FetchPartitionResponse(
        p.partition, p.error_code, p.high_watermark, p.last_stable_offset, p.log_start_offset,
        p.aborted_transactions, p.preferred_read_replica, None if p.records is None else [p.records])
        for p in parts]) for name, parts in r.topics]
    return b"".join(encode_fetch_response(version, topics, throttle_time_ms=r.throttle_time_ms,
                                          error_code=r.error_code, session_id=r.session_id))


# --------------------------------------------------------------------------- a v12 writer with extra tags

def tag_section(fields: list[tuple[int, bytes]]) -> bytes:
    out = [encode_uvarint(len(fields))]
    for tag, value in fields:
        out += [encode_uvarint(tag), encode_uvarint(len(value)), value]
    return b"".join(out)


def compact(raw: bytes | None) -> bytes:
    return b"\x00" if raw is None else encode_uvarint(len(raw) + 1) + raw


def write_v12(r: FetchResponse, extra=lambda where: []) -> bytes:
    """Fetch v12 response bytes; `extra(where)` gives unknown tags to add to each tagged-field section
    (where: "top", "topic", "partition", "aborted", "tag0".."tag2": inside a partition's tagged struct)."""
    out = [struct.pack(">ihi", r.throttle_time_ms, r.error_code, r.session_id), encode_uvarint(len(r.topics) + 1)]
    for name, parts in r.topics:
        out += [compact(name.encode()), encode_uvarint(len(parts) + 1)]
        for p in parts:
            out.append(struct.pack(">ihqqq", p.partition, p.error_code, p.high_watermark, p.last_stable_offset,
                                   p.log_start_offset))
            if p.aborted_transactions is None:
                out.append(b"\x00")
            else:
                out.append(encode_uvarint(len(p.aborted_transactions) + 1))
                for producer_id, first_offset in p.aborted_transactions:
                    out += [struct.pack(">qq", producer_id, first_offset), tag_section(extra("aborted"))]
            out += [struct.pack(">i", p.preferred_read_replica), compact(p.records)]
            known = []
            for tag, layout, value in ((0, ">iq", p.diverging_epoch), (1, ">ii", p.current_leader),
                                       (2, ">qi", p.snapshot_id)):
                if value is not None:
                    known.append((tag, struct.pack(layout, *value) + tag_section(extra(f"tag{tag}"))))
            out.append(tag_section(known + [(t, v) for t, v in extra("partition") if t > 2]))
        out.append(tag_section(extra("topic")))
    out.append(tag_section(extra("top")))
    return b"".join(out)


UNKNOWN_TAGS = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=140)), max_size=2)


# --------------------------------------------------------------------------- properties

@pytest.mark.parametrize("version", VERSIONS)
@PROPS
@given(data=st.data())
def test_decodes_what_kio_writes(version, data):
    response = data.draw(responses(version, errors=KIO_ERRORS))
    encoded = kio_encode(kio_entity(version, response))
    got = decode_fetch_response(encoded, 0, version)
    assert plain(got) == plain(without_default_tags(response))
    assert plain(got) == kio_read_back(version, encoded)


@pytest.mark.parametrize("version", VERSIONS)
@PROPS
@given(data=st.data())
def test_decodes_what_josef_writes(version, data):
    response = data.draw(responses(version, tags=False))
    encoded = josef_encode(version, response)
    prefix = b"\x00\x00\x00\x07\x00"  # a response header before the body: decoding starts at an offset
    frame = bytearray(prefix + encoded)
    got = decode_fetch_response(frame, len(prefix), version)
    assert plain(got) == plain(response)
    for _, parts in got.topics:
        for p in parts:  # zero-copy: slices of the frame itself
            assert type(p) is FetchedPartition
            assert p.records is None or (type(p.records) is memoryview and p.records.obj is frame)
    if all(e in ErrorCode._value2member_map_ for e in [response.error_code] + [
            p.error_code for _, parts in response.topics for p in parts]):
        assert kio_read_back(version, encoded) == plain(response)


@PROPS
@given(response=responses(12, errors=KIO_ERRORS))
def test_v12_writer_matches_kio(response):
    """The hand-written writer the next tests rely on says what kio says, byte for byte."""
    assert write_v12(response) == kio_encode(kio_entity(12, without_default_tags(response)))


@PROPS
@given(response=responses(12), extras=st.fixed_dictionaries(
    {where: UNKNOWN_TAGS for where in ("top", "topic", "partition", "aborted", "tag0", "tag1", "tag2")}))
def test_unknown_tags_are_skipped(response, extras):
    encoded = write_v12(response, lambda where: extras[where])
    assert plain(decode_fetch_response(encoded, 0, 12)) == plain(response)


@pytest.mark.parametrize("version", [4, 7, 11, 12])
@FUZZ
@given(data=st.data())
def test_every_truncation_is_malformed(version, data):
    response = data.draw(responses(version))
    encoded = write_v12(response) if version == 12 else josef_encode(version, response)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(MalformedResponse):
        decode_fetch_response(encoded[:cut], 0, version)


def test_every_prefix_of_a_sample_is_malformed():
    response = FetchResponse(5, 0, 77, [("topic", [
        FetchedPartition(0, 0, 100, 100, 0, None, -1, b"r" * 40, (3, 50), None, (9, 2)),
        FetchedPartition(1, 6, -1, -1, -1, [(1, 2)], 2, None)])])
    encoded = write_v12(response, lambda where: [(7, b"xyz")])
    assert plain(decode_fetch_response(encoded, 0, 12)) == plain(response)
    for size in range(len(encoded)):
        with pytest.raises(MalformedResponse):
            decode_fetch_response(encoded[:size], 0, 12)


def decodes_or_malformed(data, version: int) -> None:
    """A mangled frame decodes or raises MalformedResponse; nothing else, and records stay in the frame."""
    try:
        response = decode_fetch_response(data, 0, version)
    except MalformedResponse:
        return
    for _, parts in response.topics:
        for p in parts:
            assert p.records is None or p.records.obj is data


@pytest.mark.parametrize("version", [4, 7, 11, 12])
@FUZZ
@given(data=st.data())
def test_mutated_frames(version, data):
    response = data.draw(responses(version))
    encoded = write_v12(response) if version == 12 else josef_encode(version, response)
    buf = bytearray(encoded)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(buf) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            buf[position] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
        elif action == "insert":
            buf[position:position] = data.draw(st.binary(min_size=1, max_size=5))
        elif len(buf) > 1:
            del buf[position]
    decodes_or_malformed(bytes(buf), version)


@pytest.mark.parametrize("version", [4, 7, 11, 12])
@FUZZ
@given(junk=st.binary(max_size=80))
def test_random_bytes(version, junk):
    decodes_or_malformed(junk, version)


# --------------------------------------------------------------------------- lying frames

HEAD = struct.pack(">ihi", 0, 0, 1)
PARTITION = struct.pack(">ihqqq", 0, 0, 10, 10, 0)


def v12_partition(aborted: bytes = b"\x00", records: bytes = b"\x01", tags: bytes = b"\x00") -> bytes:
    return PARTITION + aborted + struct.pack(">i", -1) + records + tags


def v12_frame(partition: bytes, partitions: bytes = b"\x02") -> bytes:
    return HEAD + b"\x02" + compact(b"t") + partitions + partition + b"\x00" + b"\x00"


HUGE = encode_uvarint(2**32 - 1)  # the largest count or length a uvarint32 can say

LIES = {
    "topic count": HEAD + HUGE + b"\x00" * 40,
    "partition count": v12_frame(v12_partition(), partitions=HUGE),
    "aborted count": v12_frame(v12_partition(aborted=HUGE + b"\x00" * 20)),
    "records length": v12_frame(v12_partition(records=HUGE + b"r" * 10)),
    "records length one too many": v12_frame(v12_partition(records=encode_uvarint(12) + b"r" * 10)),
    "tag count": v12_frame(v12_partition(tags=HUGE + b"\x00" * 10)),
    "tag size": v12_frame(v12_partition(tags=b"\x01\x05" + HUGE + b"\x00" * 10)),
    "known tag too short": v12_frame(v12_partition(tags=b"\x01\x00\x05" + b"\x00" * 5)),
    "known tag too long": v12_frame(v12_partition(tags=b"\x01\x01\x0a" + b"\x00" * 8 + b"\x00\x00")),
    "topic name length": HEAD + b"\x02" + HUGE + b"t" * 10,
    "6-byte varint": HEAD + b"\x80\x80\x80\x80\x80\x00" + b"\x00" * 10,
    "null topics": HEAD + b"\x00\x00",
    "null topic name": HEAD + b"\x02\x00\x01\x00\x00",
    "trailing byte": v12_frame(v12_partition()) + b"\x00",
    "legacy topic count": struct.pack(">ihi", 0, 0, 0) + struct.pack(">i", 2**31 - 1) + b"\x00" * 20,
    "legacy records length": struct.pack(">ihii", 0, 0, 0, 1) + struct.pack(">h", 1) + b"t" + struct.pack(
        ">i", 1) + PARTITION + struct.pack(">i", -1) + struct.pack(">i", -1) + struct.pack(">i", 2**31 - 1),
    "legacy negative records length": struct.pack(">ihii", 0, 0, 0, 1) + struct.pack(">h", 1) + b"t" + struct.pack(
        ">i", 1) + PARTITION + struct.pack(">i", -1) + struct.pack(">i", -1) + struct.pack(">i", -2),
    "legacy aborted count": struct.pack(">ihii", 0, 0, 0, 1) + struct.pack(">h", 1) + b"t" + struct.pack(
        ">i", 1) + PARTITION + struct.pack(">i", 2**31 - 1) + b"\x00" * 30,
    # Counts that fit the bytes left at first, until an earlier element turns out to be long.
    "aborted entry tags eat the next entry": HEAD + b"\x02" + compact(b"t") + b"\x02" + PARTITION + b"\x03"
    + b"\x00" * 16 + b"\x01\x00" + encode_uvarint(20) + b"\x00" * 20,
    "legacy records eat the next partition": struct.pack(">ihii", 0, 0, 0, 1) + struct.pack(">h", 1) + b"t"
    + struct.pack(">i", 2) + PARTITION + struct.pack(">iii", -1, -1, 50) + b"r" * 50,
}


def test_the_lying_frames_are_well_formed_otherwise():
    assert decode_fetch_response(v12_frame(v12_partition()), 0, 12).topics[0][1][0].records == b""
    good_tag = v12_frame(v12_partition(tags=b"\x01\x01\x09" + struct.pack(">ii", 4, 5) + b"\x00"))
    assert decode_fetch_response(good_tag, 0, 12).topics[0][1][0].current_leader == (4, 5)


@pytest.mark.parametrize("name", LIES)
def test_lying_frames_are_refused_fast_and_small(name):
    frame = LIES[name]
    version = 11 if name.startswith("legacy") else 12
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(MalformedResponse, match=f"Fetch v{version} response"):
            decode_fetch_response(frame, 0, version)
        took = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 0.05
    assert peak < 64 * 1024


def test_many_partitions_decode_in_linear_time():
    """A legitimately large response: 20,000 empty partitions in one topic."""
    parts = [FetchPartitionResponse(i, 0, i, i, 0, None, -1, []) for i in range(20000)]
    encoded = b"".join(encode_fetch_response(12, [("t", parts)]))
    began = time.perf_counter()
    got = decode_fetch_response(encoded, 0, 12)
    assert time.perf_counter() - began < 1.0
    assert [p.high_watermark for p in got.topics[0][1]] == list(range(20000))


def test_version_out_of_range():
    for version in (3, 13):
        with pytest.raises(ValueError):
            decode_fetch_response(b"", 0, version)
