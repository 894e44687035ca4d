"""Followers replicate through incremental fetch sessions (KIP-227): idle partitions stay in the
ISR without being named, and a killed leader or a leadership change sends the followers back to
a full fetch without losing or doubling a record."""
from __future__ import annotations

import re
import subprocess
import time
import uuid

from confluent_kafka import Producer

from tests.cluster.nemesis import replica_log
from tests.cluster.test_replication import create
from tests.conftest import BIN, wait_for

PARTITIONS = 24
SETTINGS = {"replica.lag.time.max.ms": "2000"}  # an idle partition dropping out would show within 3 s
OPENED = re.compile(r"fetch session (\d+) with broker (\d+) opened for (\d+) partitions")


def produce_to(bootstrap: str, topic: str, wanted: dict[int, list[str]]) -> None:
    """acks=all to explicit partitions; every record must be acknowledged."""
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 2,
                         "message.timeout.ms": 30000})
    for partition, values in wanted.items():
        for v in values:
            producer.produce(topic, v.encode(), partition=partition,
                             on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(40) == 0
    assert not errors, errors


def isrs(cluster, topic: str, via: int) -> dict[int, list[int]]:
    md = cluster.metadata(via, topic)
    return {p.id: sorted(p.isrs) for p in md.topics[topic].partitions.values()}


def full_isrs(cluster, topic: str, via: int, brokers=(1, 2, 3)) -> bool:
    view = isrs(cluster, topic, via)
    return len(view) == PARTITIONS and all(r == sorted(brokers) for r in view.values())


def stays_full_while_idle(cluster, topic: str, seconds: float) -> None:
    """No write for `seconds` (longer than replica.lag.time.max.ms): every ISR must stay whole."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = isrs(cluster, topic, 1)
        assert all(r == [1, 2, 3] for r in view.values()), f"an idle follower left an ISR: {view}"
        time.sleep(0.25)


def opened_sessions(cluster) -> dict[int, list[tuple[int, int]]]:
    """follower -> [(leader, partitions)] of every fetch session it opened, from its log."""
    return {i: [(int(m[2]), int(m[3])) for m in OPENED.finditer(b.log())] for i, b in cluster.brokers.items()}


def test_followers_replicate_through_sessions_across_a_restart_and_leader_changes(cluster_factory):
    cluster = cluster_factory(3, SETTINGS)
    topic = f"sessions-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, PARTITIONS, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: full_isrs(cluster, topic, 1), 30, interval=0.1, what="full ISRs")
    expected: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}

    def wave(tag: str, partitions) -> None:
        batch = {p: [f"{tag}-{p}-{i}" for i in range(3)] for p in partitions}
        produce_to(cluster.bootstrap, topic, batch)
        for p, values in batch.items():
            expected[p] += values

    # a few partitions at a time: each follower round trip names only what moved
    for n in range(4):
        wave(f"steady{n}", range(n, PARTITIONS, 4))
    stays_full_while_idle(cluster, topic, 3.5)
    sessions = opened_sessions(cluster)
    for follower in (1, 2, 3):
        leaders = {leader for leader, _ in sessions[follower]}
        assert leaders == {1, 2, 3} - {follower}, sessions  # one session with each other broker
    assert all("fetching in full" not in b.log() for b in cluster.brokers.values())

    # the leader of some partitions dies: its followers lose their sessions with it; it comes back
    # empty-handed (sessions live in memory) and its own followers' sessions are unknown to it
    cluster.brokers[1].kill()
    wait_for(lambda: all(1 not in r for r in isrs(cluster, topic, 2).values()), 30, interval=0.1,
             what="broker 1 out of every ISR")
    wave("without1", range(0, PARTITIONS, 3))
    cluster.brokers[1].start()
    wait_for(lambda: full_isrs(cluster, topic, 2), 30, interval=0.1, what="broker 1 back in every ISR")
    wave("back", range(1, PARTITIONS, 3))

    # preferred leaders come back to broker 1 while every session is live
    done = subprocess.run([str(BIN / "kafka-leader-election.sh"), "--bootstrap-server", cluster.brokers[2].bootstrap,
                           "--election-type", "PREFERRED", "--all-topic-partitions"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: 1 in set(cluster.leaders(topic, 2).values()), 30, interval=0.1, what="broker 1 leading again")
    wait_for(lambda: full_isrs(cluster, topic, 2), 30, interval=0.1, what="full ISRs after the election")
    wave("elected", range(PARTITIONS))
    stays_full_while_idle(cluster, topic, 3.5)

    # every replica holds exactly what was acknowledged, in order
    def agree(p: int) -> bool:
        return all([v for _, _, v in replica_log(b.data_dir, topic, p)] == expected[p]
                   for b in cluster.brokers.values())
    for p in range(PARTITIONS):
        wait_for(lambda: agree(p), 30, interval=0.2, what=f"the replicas of partition {p} agree")
    # broker 1's followers opened new sessions after its restart; nobody churns sessions
    after = opened_sessions(cluster)
    assert {leader for leader, _ in after[1]} == {2, 3}
    assert all(len(opened) <= 8 for opened in after.values()), after
    for b in cluster.brokers.values():
        assert "Traceback" not in b.log(), b.log()[-3000:]
