"""Idempotent produce on the wire: duplicates, gaps and fenced epochs, across a restart."""
from __future__ import annotations

import socket
import struct

from josef.records.records import build_batch
from tests.integration.test_clients import consume_all, create_topic, topic_name


class RawClient:
    """One connection sending hand-built Produce v7 requests and reading the answers."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "broker closed the connection"
            out += chunk
        return out

    def produce(self, topic: str, batch: bytes, acks: int = -1) -> tuple[int, int]:
        """(error_code, base_offset) of the single partition 0."""
        self.correlation_id += 1
        name = topic.encode()
        body = struct.pack(">hhi", -1, acks, 10000)
        body += struct.pack(">ih", 1, len(name)) + name
        body += struct.pack(">iii", 1, 0, len(batch)) + batch
        header = struct.pack(">hhih", 0, 7, self.correlation_id, 3) + b"raw"
        self.sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        answer = self._recv_exact(size)
        assert struct.unpack_from(">i", answer)[0] == self.correlation_id
        pos = 4 + 4 + 2 + len(name) + 4  # correlation id, topic count, name, partition count
        index, error, base_offset = struct.unpack_from(">ihq", answer, pos)
        assert index == 0
        return error, base_offset


def batch(seq: int, count: int = 3, pid: int = 4242, epoch: int = 0) -> bytes:
    return build_batch([(None, b"s%d" % (seq + i)) for i in range(count)],
                       producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_duplicates_gaps_and_fencing_survive_restart(broker):
    topic = topic_name("idem")
    create_topic(broker.bootstrap, topic)
    c = RawClient(broker.port)
    assert c.produce(topic, batch(0)) == (0, 0)
    assert c.produce(topic, batch(3)) == (0, 3)
    assert c.produce(topic, batch(0)) == (0, 0)  # a retry of the first batch: its original offset
    assert c.produce(topic, batch(3)) == (0, 3)
    assert c.produce(topic, batch(9))[0] == 45  # gap: OUT_OF_ORDER_SEQUENCE_NUMBER
    assert c.produce(topic, batch(0, epoch=1)) == (0, 6)  # a new epoch starts again at 0
    assert c.produce(topic, batch(6, epoch=0))[0] == 47  # the old epoch is fenced: INVALID_PRODUCER_EPOCH
    c.close()

    assert broker.stop() == 0
    broker.start()
    c = RawClient(broker.port)
    assert c.produce(topic, batch(0, epoch=1)) == (0, 6)  # still known as a duplicate
    assert c.produce(topic, batch(3, epoch=1)) == (0, 9)
    c.close()

    broker.kill()  # and after a crash, rebuilt from the log
    broker.start()
    c = RawClient(broker.port)
    assert c.produce(topic, batch(3, epoch=1)) == (0, 9)
    c.close()
    got = consume_all(broker.bootstrap, topic, 1, 12)
    assert [m.value() for m in got] == [b"s%d" % i for i in (0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5)]
