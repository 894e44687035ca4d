"""__consumer_offsets record formats (Kafka's OffsetCommit*/GroupMetadata* schemas) and replay."""
from __future__ import annotations

import logging
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from josef.coordinator.offsets_format import (
    GroupKey, OffsetKey, OffsetValue, decode_group_value, decode_key, decode_offset_value,
    encode_group_key, encode_group_value, encode_offset_key, encode_offset_value, java_string_hashcode,
    partition_for_group,
)
from josef.coordinator.replay import OffsetsState, replay

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# JOSEF_FUZZ_EXAMPLES=5000 for a long fuzzing run
FUZZ = settings(max_examples=int(os.environ.get("JOSEF_FUZZ_EXAMPLES", 300)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# -- hand-built encodings, straight from the JSON schemas ----------------------------------------

def i16(n): return struct.pack(">h", n)
def i32(n): return struct.pack(">i", n)
def i64(n): return struct.pack(">q", n)
def s16(s): return i16(len(s.encode())) + s.encode()          # STRING (non-flexible)
def b32(b): return i32(len(b)) + b                             # BYTES (non-flexible)
def cs(s): return bytes([len(s.encode()) + 1]) + s.encode()  # COMPACT_STRING, short strings only
def cb(b): return bytes([len(b) + 1]) + b                      # COMPACT_BYTES, short only

NULL16 = b"\xff\xff"


def test_offset_key_vector():
    # OffsetCommitKey v1: group string, topic string, partition int32
    assert encode_offset_key("g", "t", 0) == bytes.fromhex("0001" "0001" "67" "0001" "74" "00000000")
    expected = i16(1) + s16("my-group") + s16("orders") + i32(7)
    assert encode_offset_key("my-group", "orders", 7) == expected
    assert decode_key(expected) == OffsetKey("my-group", "orders", 7)
    assert decode_key(i16(0) + expected[2:]) == OffsetKey("my-group", "orders", 7)  # v0, same fields


def test_group_key_vector():
    assert encode_group_key("my-group") == bytes.fromhex("0002" "0008") + b"my-group"
    assert decode_key(encode_group_key("my-group")) == GroupKey("my-group")


def test_offset_value_v3_vector():
    # v3: offset int64, leaderEpoch int32, metadata string, commitTimestamp int64
    v = OffsetValue(offset=42, leader_epoch=5, metadata="meta", commit_timestamp=1_700_000_000_000)
    expected = i16(3) + i64(42) + i32(5) + s16("meta") + i64(1_700_000_000_000)
    assert encode_offset_value(v) == expected
    assert decode_offset_value(expected) == v
    assert encode_offset_value(OffsetValue(0, -1, "", 0)) == bytes.fromhex(
        "0003" "0000000000000000" "ffffffff" "0000" "0000000000000000")


def test_offset_value_v1_vector_when_expire_timestamp_set():
    # v1: offset int64, metadata string, commitTimestamp int64, expireTimestamp int64 (no epoch)
    v = OffsetValue(offset=42, leader_epoch=5, metadata="m", commit_timestamp=1000, expire_timestamp=2000)
    expected = i16(1) + i64(42) + s16("m") + i64(1000) + i64(2000)
    assert encode_offset_value(v) == expected
    assert decode_offset_value(expected) == v._replace(leader_epoch=-1)  # v1 has no leader epoch


def test_offset_value_v0_v2_v4_vectors():
    assert decode_offset_value(i16(0) + i64(9) + s16("x") + i64(77)) == OffsetValue(9, -1, "x", 77, -1)
    assert decode_offset_value(i16(2) + i64(9) + s16("x") + i64(77)) == OffsetValue(9, -1, "x", 77, -1)
    v4 = i16(4) + i64(9) + i32(3) + cs("x") + i64(77) + b"\x00"
    assert decode_offset_value(v4) == OffsetValue(9, 3, "x", 77, -1)
    assert encode_offset_value(OffsetValue(9, 3, "x", 77), version=4) == v4
    # unknown tagged fields are skipped: 2 fields, tag 7 (3 bytes), tag 300 (0 bytes)
    tagged = v4[:-1] + b"\x02" + b"\x07\x03abc" + b"\xac\x02\x00"
    assert decode_offset_value(tagged) == OffsetValue(9, 3, "x", 77, -1)


MEMBERS = [
    {"member_id": "consumer-1-aaa", "group_instance_id": None, "client_id": "consumer-1",
     "client_host": "/127.0.0.1", "rebalance_timeout": 300000, "session_timeout": 45000,
     "subscription": b"\x00\x01sub1", "assignment": b"\x00\x01asg1"},
    {"member_id": "consumer-2-bbb", "group_instance_id": "static-2", "client_id": "consumer-2",
     "client_host": "/10.0.0.2", "rebalance_timeout": 60000, "session_timeout": 10000,
     "subscription": b"", "assignment": b"\xff"},
]
GROUP = {"protocol_type": "consumer", "generation": 3, "protocol": "range", "leader": "consumer-1-aaa",
         "current_state_timestamp": 1_700_000_000_123, "members": MEMBERS}


def _member_v3(m):
    return (s16(m["member_id"])
            + (s16(m["group_instance_id"]) if m["group_instance_id"] is not None else NULL16)
            + s16(m["client_id"]) + s16(m["client_host"])
            + i32(m["rebalance_timeout"]) + i32(m["session_timeout"])
            + b32(m["subscription"]) + b32(m["assignment"]))


def test_group_value_v3_vector_two_members():
    expected = (i16(3) + s16("consumer") + i32(3) + s16("range") + s16("consumer-1-aaa")
                + i64(1_700_000_000_123) + i32(2) + _member_v3(MEMBERS[0]) + _member_v3(MEMBERS[1]))
    assert encode_group_value(GROUP) == expected
    assert decode_group_value(expected) == GROUP


def test_group_value_empty_group_vector():
    # an Empty group after its members left: null protocol and leader, no members
    g = {"protocol_type": "consumer", "generation": 4, "protocol": None, "leader": None,
         "current_state_timestamp": 5, "members": []}
    expected = i16(3) + s16("consumer") + i32(4) + NULL16 + NULL16 + i64(5) + i32(0)
    assert encode_group_value(g) == expected
    assert decode_group_value(expected) == g


def test_group_value_old_and_flexible_versions_by_hand():
    m = MEMBERS[1]
    v0 = (i16(0) + s16("consumer") + i32(1) + s16("range") + s16("L") + i32(1)
          + s16(m["member_id"]) + s16(m["client_id"]) + s16(m["client_host"]) + i32(m["session_timeout"])
          + b32(m["subscription"]) + b32(m["assignment"]))
    got = decode_group_value(v0)
    assert got["current_state_timestamp"] == -1
    assert got["members"][0]["group_instance_id"] is None
    assert got["members"][0]["rebalance_timeout"] == m["session_timeout"]  # as Kafka's loader
    v4 = (i16(4) + cs("consumer") + i32(1) + cs("range") + b"\x00" + i64(9) + b"\x02"
          + cs(m["member_id"]) + cs(m["group_instance_id"]) + cs(m["client_id"]) + cs(m["client_host"])
          + i32(m["rebalance_timeout"]) + i32(m["session_timeout"]) + cb(m["subscription"])
          + cb(m["assignment"]) + b"\x01\x05\x01z" + b"\x00")
    assert decode_group_value(v4) == {"protocol_type": "consumer", "generation": 1, "protocol": "range",
                                      "leader": None, "current_state_timestamp": 9, "members": [m]}


def test_encoders_reject_bad_input():
    with pytest.raises(ValueError):
        encode_offset_key("g" * 40000, "t", 0)
    with pytest.raises(ValueError):
        encode_offset_key("g", "t", 2**31)
    with pytest.raises(ValueError):
        encode_group_value({**GROUP, "members": [{**MEMBERS[0], "assignment": None}]})
    with pytest.raises(ValueError):
        encode_group_value({"protocol_type": "consumer"})
    assert encode_offset_value(OffsetValue(1, -1, None, 2)) == encode_offset_value(OffsetValue(1, -1, "", 2))


# -- round trips, every version ------------------------------------------------------------------

texts = st.text(max_size=20)
int32s = st.integers(-2**31, 2**31 - 1)
int64s = st.integers(-2**63, 2**63 - 1)
offset_values = st.builds(OffsetValue, int64s, int32s, texts, int64s, int64s)
members = st.fixed_dictionaries({
    "member_id": texts, "group_instance_id": st.none() | texts, "client_id": texts, "client_host": texts,
    "rebalance_timeout": int32s, "session_timeout": int32s,
    "subscription": st.binary(max_size=40), "assignment": st.binary(max_size=40)})
group_values = st.fixed_dictionaries({
    "protocol_type": texts, "generation": int32s, "protocol": st.none() | texts, "leader": st.none() | texts,
    "current_state_timestamp": int64s, "members": st.lists(members, max_size=4)})


@FAST
@given(texts, texts, int32s, st.sampled_from([0, 1]))
def test_offset_key_round_trip(group, topic, partition, version):
    data = encode_offset_key(group, topic, partition, version)
    assert data[:2] == i16(version)
    assert decode_key(data) == OffsetKey(group, topic, partition)


@FAST
@given(texts)
def test_group_key_round_trip(group):
    assert decode_key(encode_group_key(group)) == GroupKey(group)


@FAST
@given(offset_values, st.sampled_from([None, 0, 1, 2, 3, 4]))
def test_offset_value_round_trip(v, version):
    data = encode_offset_value(v, version)
    written = struct.unpack(">h", data[:2])[0]
    if version is None:
        assert written == (3 if v.expire_timestamp == -1 else 1)
    expected = v
    if written < 3:
        expected = expected._replace(leader_epoch=-1)
    if written != 1:
        expected = expected._replace(expire_timestamp=-1)
    assert decode_offset_value(data) == expected


@FAST
@given(group_values, st.sampled_from([0, 1, 2, 3, 4]))
def test_group_value_round_trip(g, version):
    data = encode_group_value(g, version)
    assert data[:2] == i16(version)
    expected = {**g, "members": [dict(m) for m in g["members"]]}
    if version < 2:
        expected["current_state_timestamp"] = -1
    for m in expected["members"]:
        if version < 3:
            m["group_instance_id"] = None
        if version < 1:
            m["rebalance_timeout"] = m["session_timeout"]
    assert decode_group_value(data) == expected


def test_long_strings_use_multibyte_varints_in_flexible_versions():
    g = {**GROUP, "protocol_type": "p" * 200, "members": [{**MEMBERS[0], "subscription": b"s" * 300}]}
    assert decode_group_value(encode_group_value(g, 4)) == g
    v = OffsetValue(1, 2, "m" * 1000, 3)
    assert decode_offset_value(encode_offset_value(v, 4)) == v


def test_group_key_versions_ignored():
    # 3..8 KIP-848 consumer groups, 9..15 share groups, anything else unknown: skipped like Kafka
    for version in (3, 4, 5, 6, 7, 8, 9, 15, 16, 100, -1):
        assert decode_key(i16(version) + s16("some-group")) is None
    assert decode_key(i16(3)) is None


def test_unknown_value_versions_rejected():
    for version in (-1, 5, 300):
        with pytest.raises(ValueError):
            decode_offset_value(i16(version) + i64(0) + i32(0) + s16("") + i64(0))
        with pytest.raises(ValueError):
            decode_group_value(i16(version) + s16("consumer") + i32(0) + NULL16 + NULL16 + i64(0) + i32(0))


def test_null_in_non_nullable_fields_rejected():
    with pytest.raises(ValueError, match="null"):
        decode_key(i16(1) + NULL16 + s16("t") + i32(0))
    with pytest.raises(ValueError, match="null"):
        decode_offset_value(i16(3) + i64(0) + i32(0) + NULL16 + i64(0))
    with pytest.raises(ValueError, match="null"):
        decode_group_value(i16(3) + NULL16 + i32(0) + NULL16 + NULL16 + i64(0) + i32(0))
    with pytest.raises(ValueError, match="null"):
        decode_group_value(i16(3) + s16("c") + i32(0) + NULL16 + NULL16 + i64(0) + i32(-1))


def test_hostile_counts_and_lengths_rejected_without_allocation():
    with pytest.raises(ValueError):
        decode_group_value(i16(3) + s16("c") + i32(0) + NULL16 + NULL16 + i64(0) + i32(2**31 - 1))
    with pytest.raises(ValueError):
        decode_group_value(i16(4) + cs("c") + i32(0) + b"\x00\x00" + i64(0) + b"\xff\xff\xff\xff\x07")
    with pytest.raises(ValueError):  # varint longer than 5 bytes
        decode_offset_value(i16(4) + i64(0) + i32(0) + b"\x81\x80\x80\x80\x80\x00")
    with pytest.raises(ValueError):
        decode_key(i16(1) + i16(0x7fff))


# -- partition_for_group -------------------------------------------------------------------------

def java_hash_by_hand(s: str) -> int:
    """s[0]*31^(n-1) + s[1]*31^(n-2) + ... + s[n-1] over UTF-16 code units, wrapped to int32."""
    units = []
    for ch in s:
        cp = ord(ch)
        if cp > 0xFFFF:  # surrogate pair
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
        else:
            units.append(cp)
    n = len(units)
    total = sum(u * 31 ** (n - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


# (group, Java hashCode, partition of 50) -- hash codes checked against a JVM's String.hashCode()
JAVA_VECTORS = [
    ("", 0, 0),
    ("a", 97, 47),
    ("ab", 97 * 31 + 98, 5),
    ("Aa", 2112, 12),
    ("BB", 2112, 12),
    ("hello", 99162322, 22),
    ("my-group", -1906497762, 12),          # negative: Utils.abs, not & 0x7fffffff (which gives 36)
    ("polygenelubricants", -2**31, 0),      # Integer.MIN_VALUE: Utils.abs gives 0
    ("console-consumer-40000", 161163475, 25),
    ("test-group", 627841412, 12),
    ("gr\u00fcppe-\U0001F600", -1039948164, 14),  # non-BMP: a surrogate pair, two code units
    ("\u65e5\u672c\u8a9e\u30b0\u30eb\u30fc\u30d7", -305235731, 31),
    ("\U0001F600", 0xD83D * 31 + 0xDE00, 49),
]


@pytest.mark.parametrize("group,hashcode,partition", JAVA_VECTORS)
def test_partition_for_group_java_vectors(group, hashcode, partition):
    assert java_hash_by_hand(group) == hashcode
    assert java_string_hashcode(group) == hashcode
    assert partition_for_group(group, 50) == partition  # offsets.topic.num.partitions default
    assert partition_for_group(group) == partition


@FAST
@given(st.text(max_size=30), st.integers(1, 200))
def test_partition_for_group_matches_hand_formula(group, n):
    h = java_hash_by_hand(group)
    assert partition_for_group(group, n) == (0 if h == -2**31 else abs(h)) % n


def test_partition_for_group_rejects_no_partitions():
    with pytest.raises(ValueError):
        partition_for_group("g", 0)


# -- replay --------------------------------------------------------------------------------------

def ok(group, topic, partition):
    return encode_offset_key(group, topic, partition)


def ov(offset, **kw):
    return encode_offset_value(OffsetValue(offset, kw.get("epoch", -1), kw.get("meta", ""), kw.get("ts", 0)))


def test_replay_later_commit_wins_and_tombstones_delete():
    state = replay([
        (ok("g", "t", 0), ov(1)),
        (ok("g", "t", 1), ov(10)),
        (ok("g", "t", 0), ov(2, epoch=4, meta="m", ts=99)),
        (ok("g", "t", 1), None),
        (ok("h", "t", 0), ov(5)),
    ])
    assert isinstance(state, OffsetsState)
    assert state.offsets == {("g", "t", 0): OffsetValue(2, 4, "m", 99), ("h", "t", 0): OffsetValue(5, -1, "", 0)}
    assert state.groups == {}


def test_replay_commit_after_tombstone_restores():
    state = replay([(ok("g", "t", 0), ov(1)), (ok("g", "t", 0), None), (ok("g", "t", 0), ov(3))])
    assert state.offsets == {("g", "t", 0): OffsetValue(3, -1, "", 0)}


def test_replay_group_tombstone_deletes_group_keeps_offsets():
    state = replay([
        (encode_group_key("g"), encode_group_value(GROUP)),
        (ok("g", "t", 0), ov(7)),
        (encode_group_key("other"), encode_group_value({**GROUP, "generation": 1})),
        (encode_group_key("g"), encode_group_value({**GROUP, "generation": 4})),
        (encode_group_key("g"), None),
    ])
    assert set(state.groups) == {"other"}
    assert state.groups["other"]["generation"] == 1
    # like Kafka: offsets live independently of group metadata (deleted only by their own tombstones)
    assert state.offsets == {("g", "t", 0): OffsetValue(7, -1, "", 0)}


def test_replay_later_group_metadata_wins():
    state = replay([
        (encode_group_key("g"), encode_group_value(GROUP)),
        (encode_group_key("g"), encode_group_value({**GROUP, "generation": 9, "members": MEMBERS[:1]})),
    ])
    assert state.groups["g"]["generation"] == 9
    assert state.groups["g"]["members"] == MEMBERS[:1]


def test_replay_reads_every_version():
    state = replay([
        (i16(0) + s16("g") + s16("t") + i32(0), i16(0) + i64(1) + s16("") + i64(2)),
        (ok("g", "t", 1), encode_offset_value(OffsetValue(3, -1, "", 4, 5))),
        (ok("g", "t", 2), encode_offset_value(OffsetValue(6, 7, "", 8), version=4)),
        (encode_group_key("g"), encode_group_value(GROUP, version=4)),
    ])
    assert state.offsets == {("g", "t", 0): OffsetValue(1, -1, "", 2, -1),
                             ("g", "t", 1): OffsetValue(3, -1, "", 4, 5),
                             ("g", "t", 2): OffsetValue(6, 7, "", 8, -1)}
    assert state.groups == {"g": GROUP}


def test_replay_skips_unknown_and_corrupt_records(caplog):
    with caplog.at_level(logging.WARNING, logger="josef.coordinator.replay"):
        state = replay([
            (ok("g", "t", 0), ov(1)),
            (i16(3) + s16("new-style-group"), b"\x00\x00whatever"),  # KIP-848 record: skipped silently
            (b"\x00", ov(2)),                                     # corrupt key
            (None, ov(2)),                                        # no key
            (ok("g", "t", 0), b"\x00\x03\x00"),                   # corrupt value: keeps previous
            (encode_group_key("g"), b"\x00\x09garbage"),          # unknown value version
            (ok("g", "t", 1), ov(4)),
        ])
    assert state.offsets == {("g", "t", 0): OffsetValue(1, -1, "", 0), ("g", "t", 1): OffsetValue(4, -1, "", 0)}
    assert state.groups == {}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4


@FAST
@given(st.lists(st.tuples(st.sampled_from(["g", "h"]), st.integers(0, 2),
                          st.none() | st.integers(0, 1000)), max_size=30))
def test_replay_matches_a_dict_model(ops):
    model = {}
    records = []
    for group, partition, offset in ops:
        records.append((ok(group, "t", partition), None if offset is None else ov(offset)))
        if offset is None:
            model.pop((group, "t", partition), None)
        else:
            model[(group, "t", partition)] = OffsetValue(offset, -1, "", 0)
    assert replay(records).offsets == model


# -- fuzz: decoders raise only ValueError --------------------------------------------------------

def _only_value_error(fn, data):
    try:
        fn(data)
    except ValueError:
        pass


DECODERS = [decode_key, decode_offset_value, decode_group_value]


@FUZZ
@given(st.binary(max_size=80))
def test_fuzz_random_bytes(data):
    for fn in DECODERS:
        _only_value_error(fn, data)


@FUZZ
@given(st.integers(-2, 6), st.binary(max_size=120))
def test_fuzz_valid_version_random_body(version, body):
    data = i16(version) + body
    for fn in DECODERS:
        _only_value_error(fn, data)


@FUZZ
@given(st.one_of(
    st.builds(lambda v, ver: encode_offset_value(v, ver), offset_values, st.sampled_from([0, 1, 2, 3, 4])),
    st.builds(lambda g, ver: encode_group_value(g, ver), group_values, st.sampled_from([0, 1, 2, 3, 4])),
    st.builds(encode_offset_key, texts, texts, int32s),
    st.builds(encode_group_key, texts),
), st.data())
def test_fuzz_mutated_valid_records(data, draw):
    pos = draw.draw(st.integers(0, len(data) - 1))
    mutated = bytearray(data)
    mutated[pos] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    for candidate in (bytes(mutated), data[:cut], bytes(mutated[:cut])):
        for fn in DECODERS:
            _only_value_error(fn, candidate)
    records = [(data, bytes(mutated)), (bytes(mutated), data[:cut]), (data[:cut], None)]
    replay(records)  # never raises


def test_truncations_of_valid_values_raise_value_error():
    for version in range(5):
        data = encode_group_value(GROUP, version)
        for cut in range(len(data)):
            with pytest.raises(ValueError):
                decode_group_value(data[:cut])
        data = encode_offset_value(OffsetValue(1, 2, "meta", 3, 4), version)
        for cut in range(len(data)):
            with pytest.raises(ValueError):
                decode_offset_value(data[:cut])
    data = encode_offset_key("g", "t", 1)
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            decode_key(data[:cut])


def test_decoders_accept_memoryview_and_reject_non_bytes():
    data = encode_offset_value(OffsetValue(1, 2, "m", 3))
    assert decode_offset_value(memoryview(data)) == OffsetValue(1, 2, "m", 3)
    assert decode_key(bytearray(encode_group_key("g"))) == GroupKey("g")
    for bad in (None, 12, "abc"):
        with pytest.raises(ValueError):
            decode_key(bad)
