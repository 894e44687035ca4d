"""Incremental fetch sessions (KIP-227) against a real `josef serve`: a client that uses them
(kafka-python; librdkafka and aiokafka always fetch sessionless), and hostile session requests."""
from __future__ import annotations

import io
import logging
import struct
import time

from josef.client.wire import KafkaConnection, _writer, build
from josef.protocol.entities import to_entity
from josef.protocol.errors import Error
from josef.protocol.kio_codec import request_class
from tests.conftest import wait_for
from tests.integration.test_clients import consume_all, create_topic, produce, topic_name

INCREMENTAL = "Node %s sent an incremental fetch response for session"
FULL_OPENED = "Node %s sent a full fetch response that created a new incremental fetch session"


class SessionLog(logging.Handler):
    """kafka-python's FetchSessionHandler reports each answer it accepts or rejects at DEBUG/INFO."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.opened: list[int] = []  # session ids the broker gave
        self.incremental: list[tuple[int, int, int]] = []  # (session id, partitions in the answer, implied)
        self.problems: list[str] = []

    def emit(self, record):
        msg = str(record.msg)
        if msg.startswith(FULL_OPENED):
            self.opened.append(record.args[1])
        elif msg.startswith(INCREMENTAL):
            self.incremental.append(tuple(record.args[1:4]))
        elif record.levelno >= logging.INFO and ("unable to process" in msg or "invalid" in msg):
            self.problems.append(record.getMessage())


def test_kafka_python_consumes_many_partitions_through_one_session(broker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    topic, other = topic_name("fs"), topic_name("fs-other")
    partitions = 24
    create_topic(broker.bootstrap, topic, partitions)
    create_topic(broker.bootstrap, other, 4)
    sent: dict[tuple[str, int], list[bytes]] = {}

    def send(t, part, n, tag):
        values = [b"%s-%d-%s-%d" % (t.encode(), part, tag.encode(), i) for i in range(n)]
        produce(broker.bootstrap, t, [(None, v, part) for v in values])
        sent.setdefault((t, part), []).extend(values)

    for p in range(partitions):
        send(topic, p, 5, "first")
    handler = SessionLog()
    fetch_log = logging.getLogger("kafka.consumer.fetcher")
    fetch_log.addHandler(handler)
    old_level = fetch_log.level
    fetch_log.setLevel(logging.DEBUG)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    got: dict[tuple[str, int], list[bytes]] = {}
    try:
        def drain(expected_total):
            for tp, msgs in consumer.poll(100).items():
                got.setdefault((tp.topic, tp.partition), []).extend(m.value for m in msgs)
            return sum(map(len, got.values())) >= expected_total

        def total():
            return sum(map(len, sent.values()))

        consumer.assign([KTP(topic, p) for p in range(partitions)])
        wait_for(lambda: drain(total()), 30, interval=0, what="the first records")
        # new data in a few partitions at a time: each answer should carry those, not all 24
        for wave in range(6):
            for p in range(wave % 3, partitions, 5):
                send(topic, p, 2, f"wave{wave}")
            wait_for(lambda: drain(total()), 30, interval=0, what=f"wave {wave}")
        # the session changes: partitions of another topic join, half of the first one leave
        consumer.assign([KTP(topic, p) for p in range(0, partitions, 2)] + [KTP(other, p) for p in range(4)])
        for p in range(4):
            send(other, p, 3, "joined")
        for p in range(0, partitions, 2):
            send(topic, p, 1, "kept")
        wait_for(lambda: drain(total()), 30, interval=0, what="records after the assignment changed")
        for p in range(1, partitions, 2):
            send(topic, p, 1, "unassigned")  # nobody asks for these any more
        send(other, 0, 1, "last")
        expected = total() - partitions // 2
        wait_for(lambda: drain(expected), 30, interval=0, what="the last record")
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # anything still coming would be a duplicate
            drain(expected + 1)
    finally:
        consumer.close()
        fetch_log.removeHandler(handler)
        fetch_log.setLevel(old_level)

    for key, values in sent.items():
        if key[0] == topic and key[1] % 2 == 1:
            values = [v for v in values if b"-unassigned-" not in v]
        assert got.get(key, []) == values, key  # every record once, in order
    assert not handler.problems, handler.problems
    assert len(handler.opened) == 1, handler.opened  # one session, kept throughout
    session_id = handler.opened[0]
    assert session_id > 0
    assert len(handler.incremental) >= 10
    assert {s for s, _, _ in handler.incremental} == {session_id}
    # the broker left partitions out that had nothing new ("implied" ones)
    assert sum(1 for _, _, implied in handler.incremental if implied > 0) >= 5
    assert max(n for _, n, _ in handler.incremental) < partitions


# --- raw session requests -------------------------------------------------------------------------

class RawConnection(KafkaConnection):
    """KafkaConnection plus pipelining: send several requests, then read their answers."""

    def send(self, entity) -> int:
        cls = type(entity)
        self._correlation_id += 1
        out = io.BytesIO()
        _writer(cls.__header_schema__)(out, build(cls.__header_schema__, request_api_key=1, request_api_version=12,
                                                   correlation_id=self._correlation_id, client_id="hostile"))
        _writer(cls)(out, entity)
        body = out.getvalue()
        self._sock.sendall(struct.pack(">i", len(body)) + body)
        return self._correlation_id

    def receive(self, correlation_id: int):
        return self._decode(self._read_frame(), 1, 12, correlation_id)


def fetch(session_id=0, epoch=-1, topics=(), forgotten=(), replica_id=-1, max_wait=0, offset=0):
    """A Fetch v12 request; topics and forgotten as [(name, [partition, ...])]."""
    return to_entity(request_class(1, 12), {
        "cluster_id": None, "replica_id": replica_id, "max_wait": max_wait, "min_bytes": 1,
        "max_bytes": 1 << 20, "isolation_level": 0, "session_id": session_id, "session_epoch": epoch,
        "topics": [{"topic": t, "partitions": [
            {"partition": p, "current_leader_epoch": -1, "fetch_offset": offset, "last_fetched_epoch": -1,
             "log_start_offset": -1, "partition_max_bytes": 1 << 20} for p in ps]} for t, ps in topics],
        "forgotten_topics_data": [{"topic": t, "partitions": list(ps)} for t, ps in forgotten],
        "rack_id": ""})


def answered(response) -> dict:
    """{(topic, partition): (error, high watermark, record bytes)}"""
    return {(t.topic, p.partition_index): (int(p.error_code), int(p.high_watermark), len(p.records or b""))
            for t in response.responses for p in t.partitions}


def test_hostile_session_requests_get_kafkas_error_codes(broker_factory):
    broker = broker_factory("--override", "max.incremental.fetch.session.cache.slots=3")
    topic = topic_name("hostile")
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [(None, b"r%d" % i, i % 3) for i in range(9)])
    with RawConnection("127.0.0.1", broker.port, timeout=10) as conn:
        r = conn.request(fetch(12345, 1))  # an id nobody was given
        assert (int(r.error_code), int(r.session_id), r.responses) == (Error.FETCH_SESSION_ID_NOT_FOUND, 0, ())
        r = conn.request(fetch(0, 3))  # an incremental epoch without a session
        assert int(r.error_code) == Error.FETCH_SESSION_ID_NOT_FOUND
        r = conn.request(fetch(-5, -2, [(topic, [0])]))
        assert int(r.error_code) == Error.FETCH_SESSION_ID_NOT_FOUND

        r = conn.request(fetch(0, 0, [(topic, [0, 1, 2])]))  # a full fetch opens a session
        sid = int(r.session_id)
        assert int(r.error_code) == 0 and sid > 0
        assert answered(r) == {(topic, p): (0, 3, answered(r)[(topic, p)][2]) for p in range(3)}
        assert all(size > 0 for _, _, size in answered(r).values())
        for epoch in (2, 0x7FFFFFFF, -3):  # ahead, far ahead, nonsense
            r = conn.request(fetch(sid, epoch))
            assert (int(r.error_code), int(r.session_id), r.responses) == (Error.INVALID_FETCH_SESSION_EPOCH, 0, ())
        r = conn.request(fetch(sid, 1, replica_id=2))  # someone else's session
        assert int(r.error_code) == Error.FETCH_SESSION_ID_NOT_FOUND
        # errors left the session alone: epoch 1 works; the session still reads from offset 0,
        # so the records come again (nothing told the broker they arrived)
        r = conn.request(fetch(sid, 1))
        assert (int(r.error_code), int(r.session_id)) == (0, sid)
        assert set(answered(r)) == {(topic, p) for p in range(3)}
        r = conn.request(fetch(sid, 1))  # a replayed epoch
        assert int(r.error_code) == Error.INVALID_FETCH_SESSION_EPOCH
        # the fetcher moves to the end; partitions it never had and topics that do not exist are
        # forgotten without complaint, as in Kafka
        r = conn.request(fetch(sid, 2, [(topic, [0, 1, 2])], offset=3,
                               forgotten=[(topic, [7, -1, 0x7FFFFFFF]), ("no-such-topic", [0])]))
        assert (int(r.error_code), int(r.session_id)) == (0, sid)
        assert answered(r) == {}  # at the end, high watermark known: nothing to say
        # a partition that does not exist joins: its error comes back in every answer
        r = conn.request(fetch(sid, 3, [(topic, [5]), ("no-such-topic", [0])]))
        assert answered(r) == {(topic, 5): (Error.UNKNOWN_TOPIC_OR_PARTITION, -1, 0),
                               ("no-such-topic", 0): (Error.UNKNOWN_TOPIC_OR_PARTITION, -1, 0)}
        r = conn.request(fetch(sid, 4))
        assert set(answered(r)) == {(topic, 5), ("no-such-topic", 0)}
        r = conn.request(fetch(sid, 5, forgotten=[(topic, [5]), ("no-such-topic", [0])]))
        assert answered(r) == {}
        # new data reaches the session's parked fetch, and only that partition is answered
        cid = conn.send(fetch(sid, 6, max_wait=5000))
        produce(broker.bootstrap, topic, [(None, b"late", 1)])
        r = conn.receive(cid)
        assert answered(r) == {(topic, 1): (0, 4, answered(r)[(topic, 1)][2])} and answered(r)[(topic, 1)][2] > 0
        # two fetches of one session pipelined: the first, parked, is overtaken and says so
        first = conn.send(fetch(sid, 7, [(topic, [1])], offset=4, max_wait=300))
        second = conn.send(fetch(sid, 8, max_wait=300))
        assert int(conn.receive(first).error_code) == Error.INVALID_FETCH_SESSION_EPOCH
        r = conn.receive(second)
        assert (int(r.error_code), answered(r)) == (0, {})
        # forgetting every partition closes the session: a sessionless answer, then the id is unknown
        r = conn.request(fetch(sid, 9, forgotten=[(topic, [0, 1, 2])]))
        assert (int(r.error_code), int(r.session_id), answered(r)) == (0, 0, {})
        assert int(conn.request(fetch(sid, 10)).error_code) == Error.FETCH_SESSION_ID_NOT_FOUND
        # a session of more partitions than the broker has is not opened (answered sessionless)
        many = [(topic, list(range(3)) + list(range(100, 2000)))]
        r = conn.request(fetch(0, 0, many))
        assert int(r.session_id) == 0 and len(answered(r)) == 1903
        # slots: three sessions fit; a fourth consumer is answered sessionless, with its data
        opened = [int(conn.request(fetch(0, 0, [(topic, [p])])).session_id) for p in range(3)]
        assert all(opened) and len(set(opened)) == 3
        r = conn.request(fetch(0, 0, [(topic, [0, 1])]))
        assert int(r.session_id) == 0 and all(size > 0 for _, _, size in answered(r).values())
        r = conn.request(fetch(opened[0], -1, [(topic, [0])]))  # epoch -1 closes a session
        assert (int(r.error_code), int(r.session_id)) == (0, 0)
        assert int(conn.request(fetch(opened[0], 1)).error_code) == Error.FETCH_SESSION_ID_NOT_FOUND
        assert int(conn.request(fetch(0, 0, [(topic, [2])])).session_id) > 0  # the freed slot
    # the broker lives on and serves as before
    assert broker.proc.poll() is None
    assert [m.value() for m in consume_all(broker.bootstrap, topic, 3, 10)
            if m.partition() == 1] == [b"r1", b"r4", b"r7", b"late"]
    assert "Traceback" not in broker.log()


def test_sessions_do_not_survive_a_restart(broker):
    topic = topic_name("restart")
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [(None, b"before", 0)])
    with RawConnection("127.0.0.1", broker.port, timeout=10) as conn:
        sid = int(conn.request(fetch(0, 0, [(topic, [0, 1])])).session_id)
        assert sid > 0 and int(conn.request(fetch(sid, 1)).error_code) == 0
    broker.restart()
    with RawConnection("127.0.0.1", broker.port, timeout=10) as conn:
        r = conn.request(fetch(sid, 2))
        assert (int(r.error_code), int(r.session_id)) == (Error.FETCH_SESSION_ID_NOT_FOUND, 0)
        r = conn.request(fetch(0, 0, [(topic, [0, 1])]))  # what a client does next
        assert int(r.session_id) > 0 and answered(r)[(topic, 0)][:2] == (0, 1)
