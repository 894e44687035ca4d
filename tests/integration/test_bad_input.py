"""Hostile bytes on the wire: the connection may close, the broker must live on intact."""
from __future__ import annotations

import random
import socket
import struct

from tests.integration.test_clients import consume_all, create_topic, produce, topic_name


def send_frames(port: int, frames: list[bytes]) -> bytes:
    """Send raw frames on one connection; whatever comes back before close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        try:
            for f in frames:
                s.sendall(f)
        except OSError:
            return b""
        s.settimeout(0.3)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, OSError):
            pass
        return out


def frame(api_key: int, version: int, body: bytes, correlation_id: int = 7, flexible: bool = False) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"fuzz"
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def valid_produce_frame(topic: str) -> bytes:
    from josef.records.records import build_batch
    batch = build_batch([(None, b"fuzzed")])
    name = topic.encode()
    body = struct.pack(">hhi", -1, 1, 5000)  # transactional_id null, acks 1, timeout
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", 1) + struct.pack(">ii", 0, len(batch)) + batch
    return frame(0, 7, body)


def fetch_frame(topic: str, session_id: int, epoch: int) -> bytes:
    """A valid Fetch v11 for partitions 0 and 1 of `topic`, forgetting its partition 5 (KIP-227 fields)."""
    name = topic.encode()
    body = struct.pack(">iiiibii", -1, 0, 1, 1 << 20, 0, session_id, epoch)
    body += struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", 2)
    body += struct.pack(">iiqqi", 0, -1, 0, -1, 1 << 20) + struct.pack(">iiqqi", 1, -1, 0, -1, 1 << 20)
    body += struct.pack(">ih", 1, len(name)) + name + struct.pack(">ii", 1, 5)
    return frame(1, 11, body + struct.pack(">h", 0))


def test_kio_killer_frames_do_not_crash(broker):
    # the 21-byte Metadata v12 frame whose array count makes kio allocate 34 GB and abort
    killer = frame(3, 12, b"\xff\xff\xff\xff\x0f", flexible=True)
    huge_legacy = frame(3, 1, b"\x7f\xff\xff\xff")
    huge_string = frame(19, 5, struct.pack(">i", 1) + b"\x7f\xff")
    for f in (killer, huge_legacy, huge_string):
        send_frames(broker.port, [f])
    topic = topic_name("alive")
    assert produce(broker.bootstrap, topic, [(None, b"still here")])[0][1] == 0


def test_bad_frame_sizes_close_only_that_connection(broker):
    assert send_frames(broker.port, [struct.pack(">i", -5) + b"junk"]) == b""
    assert send_frames(broker.port, [struct.pack(">i", 0)]) == b""
    assert send_frames(broker.port, [struct.pack(">i", 200 * 1024 * 1024)]) == b""  # > socket.request.max.bytes
    assert send_frames(broker.port, [frame(9999, 0, b"")]) == b""  # unknown API key
    produce(broker.bootstrap, topic_name(), [(None, b"ok")])


def test_unsupported_api_versions_version_gets_v0_answer(broker):
    answer = send_frames(broker.port, [frame(18, 99, b"", correlation_id=42, flexible=True)])
    size, correlation_id, error = struct.unpack_from(">iih", answer)
    assert correlation_id == 42 and error == 35  # UNSUPPORTED_VERSION
    (count,) = struct.unpack_from(">i", answer, 10)
    keys = {struct.unpack_from(">hhh", answer, 14 + 6 * i)[0] for i in range(count)}
    assert {0, 1, 2, 3, 18, 19, 20} <= keys


def test_corrupt_batch_gets_corrupt_message_and_is_not_stored(broker):
    topic = topic_name("crc")
    create_topic(broker.bootstrap, topic)
    good = valid_produce_frame(topic)
    bad = bytearray(good)
    bad[-3] ^= 0xFF  # inside the record, covered by the CRC
    answer = send_frames(broker.port, [bytes(bad)])
    # v7 response: size, correlation id, topics[1]: name, partitions[1]: index, error_code
    name_len = struct.unpack_from(">h", answer, 12)[0]
    index, error = struct.unpack_from(">ih", answer, 14 + name_len + 4)
    assert (index, error) == (0, 2)  # CORRUPT_MESSAGE
    answer = send_frames(broker.port, [good])
    index, error, base_offset = struct.unpack_from(">ihq", answer, 14 + name_len + 4)
    assert (error, base_offset) == (0, 0)  # the corrupt batch took no offset


def test_random_and_truncated_frames_then_normal_use(broker):
    rng = random.Random(1234)
    topic = topic_name("fuzz")
    seeds = [
        valid_produce_frame(topic),
        frame(3, 12, b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05fuzz\x00\x01\x00\x00", flexible=True),
        frame(3, 1, struct.pack(">i", 1) + struct.pack(">h", 4) + b"fuzz"),
        frame(18, 3, b"\x05josef\x04"+b"1.0\x00", flexible=True),
        frame(1, 11, struct.pack(">iiiiibii", -1, 500, 1, 1 << 20, 0, 0, -1, 1) + struct.pack(">h", 4) + b"fuzz"
              + struct.pack(">i", 1) + struct.pack(">iiqqi", 0, -1, 0, -1, 1 << 20) + struct.pack(">i", 0) + b"\x00\x00"),
        fetch_frame(topic, 0, 0),  # opens a fetch session
        fetch_frame(topic, 0, -1),
        fetch_frame(topic, 1234, 1),
    ]
    # a real session, so that mutated epochs, ids and forgotten partitions meet one
    opened = send_frames(broker.port, [fetch_frame(topic, 0, 0)])
    session_id = struct.unpack_from(">i", opened, 14)[0]  # size, correlation id, throttle, error, session id
    assert session_id > 0
    seeds += [fetch_frame(topic, session_id, epoch) for epoch in (1, 2, 3)]
    for _ in range(300):
        f = bytearray(rng.choice(seeds))
        mode = rng.random()
        if mode < 0.4:  # flip bytes after the size prefix
            for _ in range(rng.randint(1, 6)):
                f[rng.randrange(4, len(f))] = rng.randrange(256)
        elif mode < 0.7:  # truncate the payload but keep the size prefix honest
            cut = rng.randrange(10, len(f))
            f = bytearray(struct.pack(">i", cut - 4)) + f[4:cut]
        else:  # random payload
            body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 80)))
            f = bytearray(struct.pack(">i", len(body) + 8) + struct.pack(">hhi", rng.choice([0, 1, 2, 3, 18, 19, 20, 22, 23, 37, 43, 44, 45, 46, 60]), rng.randint(0, 13), 1) + body)
        send_frames(broker.port, [bytes(f)])
    assert broker.proc.poll() is None, broker.log()
    records = [(None, b"after-fuzz-%d" % i) for i in range(20)]
    delivered = produce(broker.bootstrap, topic, records)
    end = delivered[-1][1] + 1
    # everything the fuzzed topic holds reads back (librdkafka checks every CRC), ending with ours
    got = consume_all(broker.bootstrap, topic, 1, end)
    assert [m.offset() for m in got] == list(range(end))
    assert [m.value() for m in got][-20:] == [v for _, v in records]
    assert "Traceback" not in broker.log()  # every bad frame was refused on purpose, none hit a bug


def test_produce_v0_to_v2_are_refused_per_partition(broker):
    from josef.records.records import build_batch
    batch = build_batch([(None, b"old")])
    for version in (0, 1, 2):
        body = struct.pack(">hi", 1, 5000) + struct.pack(">ih", 1, 4) + b"old1"
        body += struct.pack(">iii", 1, 3, len(batch)) + batch
        answer = send_frames(broker.port, [frame(0, version, body, correlation_id=99)])
        size, correlation_id, topics, name_len = struct.unpack_from(">iiih", answer)
        assert (correlation_id, topics, answer[14:14 + name_len]) == (99, 1, b"old1")
        count, index, error = struct.unpack_from(">iih", answer, 14 + name_len)
        assert (count, index, error) == (1, 3, 35)  # UNSUPPORTED_VERSION
        expected = 4 + 4 + 4 + 2 + 4 + 4 + 4 + 2 + 8 + (8 if version >= 2 else 0) + (4 if version >= 1 else 0)
        assert len(answer) == expected


def test_hostile_reassignment_and_election_requests_get_error_codes(broker):
    from josef.client.wire import KafkaConnection, request_class
    from josef.protocol.entities import to_entity

    topic = topic_name("hostile")
    create_topic(broker.bootstrap, topic)
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        moves = conn.request(to_entity(request_class(45, 0), {"timeout": 1000, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "replicas": [1, 1]},
                                           {"partition_index": -5, "replicas": [1]},
                                           {"partition_index": 1 << 30, "replicas": None}]},
            {"name": "no-such-topic", "partitions": [{"partition_index": 0, "replicas": [2**31 - 1]}]},
            {"name": topic, "partitions": [{"partition_index": 0, "replicas": []}]}]}))
        codes = sorted(p.error_code for t in moves.responses for p in t.partitions)
        assert codes == sorted([3, 3, 3, 39])  # UNKNOWN_TOPIC_OR_PARTITION x3, INVALID_REPLICA_ASSIGNMENT
        listed = conn.request(to_entity(request_class(46, 0), {"timeout": 1000, "topics": [
            {"name": topic, "partition_indexes": [-1, 0, 1 << 30]}]}))
        assert listed.error_code == 0 and listed.topics == ()
        elected = conn.request(to_entity(request_class(43, 2), {"election_type": 7, "timeout": 1000,
                                                                "topic_partitions": [{"topic": topic,
                                                                                      "partitions": [0, -1]}]}))
        codes = {p.partition_id: p.error_code for r in elected.replica_election_results for p in r.partition_result}
        assert codes == {0: 42, -1: 3}  # INVALID_REQUEST for an unknown election type
    assert broker.proc.poll() is None, broker.log()
