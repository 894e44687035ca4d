"""Kafka's ``__consumer_offsets`` record formats, sans-IO.

Every record of ``__consumer_offsets`` has a key and a value (``None`` = tombstone). Both start with a
big-endian int16 *version*, followed by the fields of a message schema at that version (Kafka's
``MessageUtil.toVersionPrefixedBytes``). The key version doubles as the record type:

====  =============================  =============================================
key   key schema                     value schema (own version prefix)
====  =============================  =============================================
0, 1  OffsetCommitKey                OffsetCommitValue v0..v4
2     GroupMetadataKey               GroupMetadataValue v0..v4
3..8  ConsumerGroup* (KIP-848)       ignored by josef (``decode_key`` returns None)
9..15 ShareGroup* (KIP-932)          ignored by josef
====  =============================  =============================================

Schemas (Kafka ``group-coordinator/src/main/resources/common/message``)::

    OffsetCommitKey     v0-1: group string, topic string, partition int32
    GroupMetadataKey    v2:   group string
    OffsetCommitValue   v0: offset int64, metadata string, commitTimestamp int64
                        v1: v0 + expireTimestamp int64 (last field)
                        v2: as v0
                        v3: offset, leaderEpoch int32, metadata, commitTimestamp
                        v4: v3, flexible (compact strings, tagged fields)
    GroupMetadataValue  protocolType string, generation int32, protocol string?, leader string?,
                        currentStateTimestamp int64 (v2+), members [MemberMetadata]
      MemberMetadata    memberId string, groupInstanceId string? (v3+), clientId string,
                        clientHost string, rebalanceTimeout int32 (v1+), sessionTimeout int32,
                        subscription bytes, assignment bytes
                        v4 flexible

Non-flexible versions use int16-length strings (-1 = null), int32-length bytes and int32 array
counts; flexible versions use uvarint(length + 1) for all three and end every struct with a tagged
field section (unknown tags are skipped, as Kafka does).

Versions written, as Kafka 3.x/4.x writes them (``MetadataVersion.offsetCommitValueVersion`` and
``groupMetadataValueVersion``, "highest non-flexible version until a tagged field is introduced"):
offset key v1, offset value v3 (v1 when an explicit expire timestamp is set), group key v2, group
value v3.

Readers follow Kafka's generated readers: every length and count is bounds-checked, a null in a
non-nullable field is an error, strings longer than 0x7fff are an error, and bytes after the last
field are ignored (Kafka does not check for them). Every problem raises :class:`ValueError`.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "OffsetKey", "OffsetValue", "GroupKey",
    "OFFSET_KEY_VERSION", "GROUP_KEY_VERSION", "OFFSET_VALUE_VERSION", "OFFSET_VALUE_VERSION_WITH_EXPIRE",
    "GROUP_VALUE_VERSION", "DEFAULT_NUM_PARTITIONS",
    "encode_offset_key", "encode_offset_value", "encode_group_key", "encode_group_value",
    "decode_key", "decode_offset_value", "decode_group_value",
    "java_string_hashcode", "partition_for_group",
]

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
OFFSET_VALUE_VERSION_WITH_EXPIRE = 1
GROUP_VALUE_VERSION = 3
OFFSET_VALUE_FLEXIBLE = 4
GROUP_VALUE_FLEXIBLE = 4
MAX_VALUE_VERSION = 4
# Kafka's offsets.topic.num.partitions default.
DEFAULT_NUM_PARTITIONS = 50

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_MAX_STRING = 0x7FFF
_MAX_UVARINT = 0xFFFFFFFF


class OffsetKey(NamedTuple):
    group: str
    topic: str
    partition: int


class OffsetValue(NamedTuple):
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = -1


class GroupKey(NamedTuple):
    group: str


# -- writing -------------------------------------------------------------------------------------

def _pack(st: struct.Struct, value: int, what: str) -> bytes:
    try:
        return st.pack(value)
    except struct.error as exc:
        raise ValueError(f"{what}={value!r} does not fit the field: {exc}") from None


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: str | None, flexible: bool, nullable: bool, what: str) -> bytes:
    if value is None:
        if not nullable:
            raise ValueError(f"{what} must not be null")
        return b"\x00" if flexible else b"\xff\xff"
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    data = value.encode("utf-8")
    if len(data) > _MAX_STRING:
        raise ValueError(f"{what} is longer than {_MAX_STRING} bytes")
    return (_uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def _bytes(value: bytes | bytearray | memoryview | None, flexible: bool, what: str) -> bytes:
    if value is None:
        raise ValueError(f"{what} must not be null")
    data = bytes(value)
    return (_uvarint(len(data) + 1) if flexible else _pack(_I32, len(data), what)) + data


def _array_count(count: int, flexible: bool) -> bytes:
    return _uvarint(count + 1) if flexible else _pack(_I32, count, "array count")


def _check_version(version: int, valid: range, what: str) -> None:
    if version not in valid:
        raise ValueError(f"unsupported {what} version {version}")


def encode_offset_key(group: str, topic: str, partition: int, version: int = OFFSET_KEY_VERSION) -> bytes:
    """OffsetCommitKey, key version 1 (v0 has the same fields; only for tests and old data)."""
    _check_version(version, range(0, 2), "OffsetCommitKey")
    return b"".join((
        _I16.pack(version),
        _string(group, False, False, "group"),
        _string(topic, False, False, "topic"),
        _pack(_I32, partition, "partition"),
    ))


def encode_group_key(group: str) -> bytes:
    """GroupMetadataKey, key version 2."""
    return _I16.pack(GROUP_KEY_VERSION) + _string(group, False, False, "group")


def encode_offset_value(v: OffsetValue, version: int | None = None) -> bytes:
    """OffsetCommitValue in the version Kafka writes: 3, or 1 when ``expire_timestamp`` is set.

    ``version`` forces another version (0..4); fields the version lacks are dropped, as Kafka's
    writer drops ignorable fields. A ``None`` metadata is written as "" (Kafka's NO_METADATA).
    """
    if version is None:
        version = OFFSET_VALUE_VERSION if v.expire_timestamp == -1 else OFFSET_VALUE_VERSION_WITH_EXPIRE
    _check_version(version, range(0, MAX_VALUE_VERSION + 1), "OffsetCommitValue")
    flexible = version >= OFFSET_VALUE_FLEXIBLE
    metadata = "" if v.metadata is None else v.metadata
    parts = [_I16.pack(version), _pack(_I64, v.offset, "offset")]
    if version >= 3:
        parts.append(_pack(_I32, v.leader_epoch, "leader_epoch"))
    parts.append(_string(metadata, flexible, False, "metadata"))
    parts.append(_pack(_I64, v.commit_timestamp, "commit_timestamp"))
    if version == 1:
        parts.append(_pack(_I64, v.expire_timestamp, "expire_timestamp"))
    if flexible:
        parts.append(b"\x00")  # no tagged fields
    return b"".join(parts)


def _encode_member(m: dict, version: int, flexible: bool) -> bytes:
    try:
        parts = [_string(m["member_id"], flexible, False, "member_id")]
        if version >= 3:
            parts.append(_string(m.get("group_instance_id"), flexible, True, "group_instance_id"))
        parts.append(_string(m["client_id"], flexible, False, "client_id"))
        parts.append(_string(m["client_host"], flexible, False, "client_host"))
        if version >= 1:
            parts.append(_pack(_I32, m["rebalance_timeout"], "rebalance_timeout"))
        parts.append(_pack(_I32, m["session_timeout"], "session_timeout"))
        parts.append(_bytes(m["subscription"], flexible, "subscription"))
        parts.append(_bytes(m["assignment"], flexible, "assignment"))
    except KeyError as exc:
        raise ValueError(f"group member lacks {exc.args[0]!r}") from None
    if flexible:
        parts.append(b"\x00")
    return b"".join(parts)


def encode_group_value(value: dict, version: int = GROUP_VALUE_VERSION) -> bytes:
    """GroupMetadataValue, version 3 as Kafka writes it (``version`` forces 0..4, for tests).

    A ``None`` protocol_type is written as "" (Kafka: ``protocolType().orElse("")``). Every member
    needs bytes ``subscription`` and ``assignment`` (Kafka refuses to write a member without them).
    """
    _check_version(version, range(0, MAX_VALUE_VERSION + 1), "GroupMetadataValue")
    flexible = version >= GROUP_VALUE_FLEXIBLE
    try:
        protocol_type = value["protocol_type"]
        members = value["members"]
        parts = [
            _I16.pack(version),
            _string("" if protocol_type is None else protocol_type, flexible, False, "protocol_type"),
            _pack(_I32, value["generation"], "generation"),
            _string(value.get("protocol"), flexible, True, "protocol"),
            _string(value.get("leader"), flexible, True, "leader"),
        ]
        if version >= 2:
            parts.append(_pack(_I64, value.get("current_state_timestamp", -1), "current_state_timestamp"))
    except KeyError as exc:
        raise ValueError(f"group value lacks {exc.args[0]!r}") from None
    parts.append(_array_count(len(members), flexible))
    parts.extend(_encode_member(m, version, flexible) for m in members)
    if flexible:
        parts.append(b"\x00")
    return b"".join(parts)


# -- reading -------------------------------------------------------------------------------------

class _Reader:
    """Bounds-checked cursor over one record key or value; every failure is a ValueError."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, data, what: str) -> None:
        if data is None:
            raise ValueError(f"{what}: no data")
        try:
            self.buf = memoryview(data).cast("B")
        except TypeError as exc:
            raise ValueError(f"{what}: not a bytes-like object: {exc}") from None
        self.pos = 0
        self.what = what

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise ValueError(f"{self.what}: truncated at byte {self.pos} (need {n}, "
                             f"have {len(self.buf) - self.pos})")
        chunk = self.buf[self.pos:end]
        self.pos = end
        return chunk

    def _fixed(self, st: struct.Struct) -> int:
        return st.unpack(self._take(st.size))[0]

    def i16(self) -> int:
        return self._fixed(_I16)

    def i32(self) -> int:
        return self._fixed(_I32)

    def i64(self) -> int:
        return self._fixed(_I64)

    def uvarint(self) -> int:
        # Kafka's readUnsignedVarint: at most 5 bytes (32 bits).
        value = 0
        for shift in range(0, 35, 7):
            if self.pos >= len(self.buf):
                raise ValueError(f"{self.what}: truncated varint at byte {self.pos}")
            b = self.buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value > _MAX_UVARINT:
                    raise ValueError(f"{self.what}: varint out of range")
                return value
        raise ValueError(f"{self.what}: varint longer than 5 bytes")

    def _length(self, flexible: bool, legacy: struct.Struct) -> int:
        return self.uvarint() - 1 if flexible else self._fixed(legacy)

    def string(self, flexible: bool, nullable: bool, field: str) -> str | None:
        n = self._length(flexible, _I16)
        if n < 0:
            if nullable:
                return None
            raise ValueError(f"{self.what}: non-nullable field {field} was serialized as null")
        if n > _MAX_STRING:
            raise ValueError(f"{self.what}: string field {field} had invalid length {n}")
        # Java's new String(bytes, UTF_8) replaces malformed input rather than failing.
        return str(self._take(n), "utf-8", "replace")

    def bytes_(self, flexible: bool, field: str) -> bytes:
        n = self._length(flexible, _I32)
        if n < 0:
            raise ValueError(f"{self.what}: non-nullable field {field} was serialized as null")
        return bytes(self._take(n))

    def array_count(self, flexible: bool, field: str, min_item_size: int) -> int:
        n = self._length(flexible, _I32)
        if n < 0:
            raise ValueError(f"{self.what}: non-nullable field {field} was serialized as null")
        if n * min_item_size > len(self.buf) - self.pos:
            raise ValueError(f"{self.what}: {field} claims {n} items but only "
                             f"{len(self.buf) - self.pos} bytes remain")
        return n

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag; none is defined for these schemas, so every tag is unknown
            self._take(self.uvarint())


def decode_key(data: bytes) -> OffsetKey | GroupKey | None:
    """Decode a record key. Returns None for key versions josef does not load (3.., negative).

    Key versions 3..15 are KIP-848/KIP-932 consumer- and share-group records; like Kafka's classic
    loader (``UnknownKey``) josef skips them and any other unknown version.
    """
    r = _Reader(data, "__consumer_offsets key")
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string(False, False, "group"), r.string(False, False, "topic"), r.i32())
    if version == GROUP_KEY_VERSION:
        return GroupKey(r.string(False, False, "group"))
    return None


def decode_offset_value(data: bytes) -> OffsetValue:
    """Decode an OffsetCommitValue of any version 0..4 (missing fields take their defaults, -1)."""
    r = _Reader(data, "OffsetCommitValue")
    version = r.i16()
    if not 0 <= version <= MAX_VALUE_VERSION:
        raise ValueError(f"OffsetCommitValue: unknown version {version}")
    flexible = version >= OFFSET_VALUE_FLEXIBLE
    offset = r.i64()
    leader_epoch = r.i32() if version >= 3 else -1
    metadata = r.string(flexible, False, "metadata")
    commit_timestamp = r.i64()
    expire_timestamp = r.i64() if version == 1 else -1
    if flexible:
        r.skip_tagged_fields()
    return OffsetValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def _member_min_size(version: int, flexible: bool) -> int:
    if flexible:  # 5 compact fields of >= 1 byte, timeouts, tagged section
        return 5 + (1 if version >= 3 else 0) + 8 + 1
    return 3 * 2 + (2 if version >= 3 else 0) + (4 if version >= 1 else 0) + 4 + 2 * 4


def decode_group_value(data: bytes) -> dict:
    """Decode a GroupMetadataValue of any version 0..4 into josef's group dict.

    As Kafka's loader does: a v0 member's rebalance timeout is its session timeout; a missing
    ``current_state_timestamp`` (v0, v1) is -1; a missing ``group_instance_id`` (v0..v2) is None.
    """
    r = _Reader(data, "GroupMetadataValue")
    version = r.i16()
    if not 0 <= version <= MAX_VALUE_VERSION:
        raise ValueError(f"GroupMetadataValue: unknown version {version}")
    flexible = version >= GROUP_VALUE_FLEXIBLE
    protocol_type = r.string(flexible, False, "protocolType")
    generation = r.i32()
    protocol = r.string(flexible, True, "protocol")
    leader = r.string(flexible, True, "leader")
    current_state_timestamp = r.i64() if version >= 2 else -1
    count = r.array_count(flexible, "members", _member_min_size(version, flexible))
    members = []
    for _ in range(count):
        member_id = r.string(flexible, False, "memberId")
        group_instance_id = r.string(flexible, True, "groupInstanceId") if version >= 3 else None
        client_id = r.string(flexible, False, "clientId")
        client_host = r.string(flexible, False, "clientHost")
        rebalance_timeout = r.i32() if version >= 1 else None
        session_timeout = r.i32()
        if rebalance_timeout is None:
            rebalance_timeout = session_timeout
        subscription = r.bytes_(flexible, "subscription")
        assignment = r.bytes_(flexible, "assignment")
        if flexible:
            r.skip_tagged_fields()
        members.append({
            "member_id": member_id,
            "group_instance_id": group_instance_id,
            "client_id": client_id,
            "client_host": client_host,
            "rebalance_timeout": rebalance_timeout,
            "session_timeout": session_timeout,
            "subscription": subscription,
            "assignment": assignment,
        })
    if flexible:
        r.skip_tagged_fields()
    return {
        "protocol_type": protocol_type,
        "generation": generation,
        "protocol": protocol,
        "leader": leader,
        "current_state_timestamp": current_state_timestamp,
        "members": members,
    }


# -- partitioning --------------------------------------------------------------------------------

def java_string_hashcode(s: str) -> int:
    """Java's ``String.hashCode()``: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units, as int32."""
    data = s.encode("utf-16-be", "surrogatepass")
    h = 0
    for (unit,) in struct.iter_unpack(">H", data):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_group(group_id: str, num_partitions: int = DEFAULT_NUM_PARTITIONS) -> int:
    """The ``__consumer_offsets`` partition of a group: ``Utils.abs(groupId.hashCode()) % n``.

    Kafka's ``Utils.abs(n)`` is ``n == Integer.MIN_VALUE ? 0 : Math.abs(n)`` (not ``n & 0x7fffffff``,
    which is ``Utils.toPositive`` and gives other partitions for negative hashes).
    """
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    h = java_string_hashcode(group_id)
    return (0 if h == -0x80000000 else abs(h)) % num_partitions
