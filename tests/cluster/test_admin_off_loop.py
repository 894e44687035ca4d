"""Admin writes to ZooKeeper never hold up the event loop.

With ZooKeeper frozen (SIGSTOP) a broker cannot finish a CreateTopics; meanwhile acks=1
produces and fetches on a partition it leads must keep being answered at their usual pace,
and the CreateTopics must get Kafka's answer once ZooKeeper is back. The test runs its own
ZooKeeper so that freezing it leaves the session's shared one alone, with sessions long
enough that neither kazoo nor ZooKeeper gives up on them during the stall: what is measured
is the broker's loop, not a session expiry.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from josef.client.wire import KafkaConnection
from josef.cluster.zookeeper_server import ZooKeeperServer
from josef.protocol.entities import to_entity
from josef.protocol.kio_codec import request_class
from tests.cluster.conftest import CLUSTER_DEFAULTS, ClusterBroker
from tests.conftest import free_port, wait_for

STALL_S = 4.0
PROMPT_S = 1.0  # the slowest produce or fetch answer allowed while ZooKeeper is frozen
SESSION_TIMEOUT_MS = 30000  # kazoo pings every ~10 s and drops a silent server only after ~20 s
TOPIC, CREATED = "steady", "created-during-stall"


@pytest.fixture
def frozen_zookeeper(tmp_path):
    """A ZooKeeper of this test's own: (server, process). tickTime 2 s allows 30 s sessions."""
    server = ZooKeeperServer(tmp_path / "zookeeper", free_port(), tick_time_ms=2000)
    with open(tmp_path / "zookeeper.log", "wb") as log:
        proc = server.start(log)
    try:
        server.wait_serving(30, proc)
        yield server, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Sampler(threading.Thread):
    """Repeats `probe` until stopped, recording (sent, answered, outcome) for each call."""

    def __init__(self, name: str, probe):
        super().__init__(name=name, daemon=True)
        self.probe = probe
        self.samples: list[tuple[float, float, object]] = []
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                sent = time.monotonic()
                outcome = self.probe()
                self.samples.append((sent, time.monotonic(), outcome))
        except BaseException as e:  # reported by the test, not lost in the thread
            self.failure = e

    def between(self, start: float, end: float) -> list[tuple[float, float, object]]:
        """Samples whose request was sent in [start, end)."""
        return [s for s in list(self.samples) if start <= s[0] < end]


def produce_probe(bootstrap: str):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0,
                         "enable.idempotence": False, "message.timeout.ms": 30000})
    delivered: list = []
    counter = iter(range(1 << 30))

    def probe():
        delivered.clear()
        producer.produce(TOPIC, b"v%d" % next(counter), partition=0,
                         on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
        producer.flush(30)
        return delivered[0] if delivered else ("not delivered", -1)
    return probe


def fetch_probe(port: int):
    conn = KafkaConnection("127.0.0.1", port, timeout=30)
    seen = [0]

    def probe():
        """A consumer's sessionless Fetch from just below the last high watermark seen."""
        response = conn.request(to_entity(request_class(1, 12), {
            "cluster_id": None, "replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": TOPIC, "partitions": [{
                "partition": 0, "current_leader_epoch": -1, "fetch_offset": max(seen[0] - 1, 0),
                "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1 << 16}]}],
            "forgotten_topics_data": [], "rack_id": ""}))
        p = response.responses[0].partitions[0]
        seen[0] = max(seen[0], int(p.high_watermark))
        return int(p.error_code), int(p.high_watermark), len(p.records or b"")
    return probe


def test_produce_and_fetch_stay_prompt_while_a_create_topics_waits_for_frozen_zookeeper(
        frozen_zookeeper, tmp_path):
    server, zk_proc = frozen_zookeeper
    broker = ClusterBroker(1, f"{server.connect}/josef-stall", tmp_path / "broker-1", {
        **CLUSTER_DEFAULTS, "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
        "offsets.topic.replication.factor": "1", "default.replication.factor": "1"})
    broker.start()
    samplers: list[Sampler] = []
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1, 1)], operation_timeout=20)[TOPIC].result(30)
        wait_for(lambda: admin.list_topics(TOPIC, timeout=5).topics[TOPIC].partitions[0].leader == 1,
                 20, what=f"{TOPIC} led by broker 1")
        samplers = [Sampler("produce", produce_probe(broker.bootstrap)), Sampler("fetch", fetch_probe(broker.port))]
        for s in samplers:
            s.start()
        wait_for(lambda: all(len(s.samples) >= 20 or s.failure for s in samplers), 20, what="warm-up samples")
        produced, fetched = samplers

        os.kill(zk_proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            creating = admin.create_topics([NewTopic(CREATED, 2, 1)], operation_timeout=30, request_timeout=40)
            time.sleep(STALL_S)  # the fault's duration, not a synchronisation
        finally:
            os.kill(zk_proc.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        creating[CREATED].result(40)  # Kafka's answer: created, once ZooKeeper answers again
        created_at = time.monotonic()
        wait_for(lambda: all(len(s.between(thawed_at, float("inf"))) >= 5 or s.failure for s in samplers), 20,
                 what="samples after ZooKeeper is back")
        for s in samplers:
            s.stop_event.set()
        for s in samplers:
            s.join(35)
            assert s.failure is None, f"{s.name} probe failed: {s.failure!r}"

        assert created_at > thawed_at, "CreateTopics answered while ZooKeeper was frozen"
        topic = admin.list_topics(CREATED, timeout=10).topics[CREATED]
        assert topic.error is None and sorted(topic.partitions) == [0, 1]

        # every answer given while ZooKeeper was frozen came at the usual pace...
        overlapping = [x for s in samplers for x in s.samples if x[0] < thawed_at and x[1] > frozen_at]
        slowest = max(done - sent for sent, done, _ in overlapping)
        assert slowest < PROMPT_S, f"an answer took {slowest:.2f}s while ZooKeeper was frozen for {STALL_S}s"
        # ...and there were many of them
        produces, fetches = produced.between(frozen_at, thawed_at), fetched.between(frozen_at, thawed_at)
        assert len(produces) >= 20 and len(fetches) >= 20, (len(produces), len(fetches))
        assert all(err is None for _, _, (err, _) in produces), [o for _, _, o in produces if o[0] is not None][:3]
        offsets = [offset for _, _, (_, offset) in produces]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # each acknowledged, in order
        assert all(error == 0 and size > 0 for _, _, (error, _, size) in fetches)
        # the fetches saw those produces arrive: the high watermark moved on during the stall
        assert fetches[-1][2][1] - fetches[0][2][1] >= len(produces) // 2
    finally:
        for s in samplers:
            s.stop_event.set()
        broker.kill()
