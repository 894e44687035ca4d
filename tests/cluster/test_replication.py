"""Replication: acks=all waits for the ISR, min.insync.replicas, ISR shrink and rejoin,
leader fail-over without losing acknowledged records, controlled shutdown."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaProducer
from kafka.errors import NotEnoughReplicasError

from tests.conftest import wait_for

FAST_ISR = {"replica.lag.time.max.ms": "2000"}


def create(cluster, topic: str, partitions: int, rf: int, **configs: str) -> None:
    admin = cluster.admin()
    admin.create_topics([NewTopic(topic, partitions, rf, config=configs)], operation_timeout=10)[topic].result(15)


def isr(cluster, topic: str, partition: int, via: int) -> list[int]:
    return sorted(cluster.metadata(via, topic).topics[topic].partitions[partition].isrs)


def produce(bootstrap: str, topic: str, values: list[str], **extra) -> dict[str, object]:
    """Send `values` with acks=all and idempotence; the delivery error per value (None = acknowledged)."""
    outcome: dict[str, object] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, **extra})
    for v in values:
        producer.produce(topic, v.encode(), on_delivery=lambda err, msg, v=v: outcome.__setitem__(v, err))
        producer.poll(0)
    producer.flush(60)
    return outcome


def read_back(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 30) -> list[tuple]:
    """Every record of the topic as (partition, offset, value), reading from the start."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records, at_end = [], set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (len(records) < expected or len(at_end) < partitions):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            records.append((msg.partition(), msg.offset(), msg.value().decode()))
    finally:
        consumer.close()
    return records


def test_acks_all_follows_the_isr_and_min_insync_replicas(cluster_factory):
    cluster = cluster_factory(3, FAST_ISR)
    topic = f"durable-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 1, 3, **{"min.insync.replicas": "2"})
    leader = cluster.leaders(topic)[0]
    followers = [i for i in (1, 2, 3) if i != leader]
    assert set(produce(cluster.bootstrap, topic, [f"a{i}" for i in range(200)]).values()) == {None}

    cluster.brokers[followers[0]].kill()
    wait_for(lambda: isr(cluster, topic, 0, leader) == sorted([leader, followers[1]]), 20, interval=0.1,
             what="the dead follower leaves the ISR")
    assert set(produce(cluster.bootstrap, topic, [f"b{i}" for i in range(200)]).values()) == {None}

    cluster.brokers[followers[1]].kill()
    wait_for(lambda: isr(cluster, topic, 0, leader) == [leader], 20, interval=0.1, what="ISR down to the leader")
    refused = produce(cluster.bootstrap, topic, ["c0"], **{"message.timeout.ms": 3000})
    assert refused["c0"] is not None  # librdkafka retries NOT_ENOUGH_REPLICAS until it gives up
    one_try = KafkaProducer(bootstrap_servers=cluster.brokers[leader].bootstrap, acks="all", retries=0)
    try:
        with pytest.raises(NotEnoughReplicasError):
            one_try.send(topic, b"c1").get(timeout=10)
    finally:
        one_try.close()

    for f in followers:
        cluster.brokers[f].start()
    wait_for(lambda: isr(cluster, topic, 0, leader) == [1, 2, 3], 30, interval=0.1,
             what="both followers caught up and back in the ISR")
    assert set(produce(cluster.bootstrap, topic, [f"d{i}" for i in range(100)]).values()) == {None}
    values = [v for _, _, v in read_back(cluster.bootstrap, topic, 1, 500)]
    assert values == [f"a{i}" for i in range(200)] + [f"b{i}" for i in range(200)] + [f"d{i}" for i in range(100)]


def _produce_while(bootstrap: str, topic: str, stop: threading.Event, outcome: dict) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60000})
    i = 0
    while not stop.is_set():
        v = f"v{i}"
        producer.produce(topic, v.encode(), key=str(i % 13).encode(),
                         on_delivery=lambda err, msg, v=v: outcome.__setitem__(v, err))
        producer.poll(0)
        i += 1
        if i % 50 == 0:
            time.sleep(0.005)  # a steady stream, not a flood
    producer.flush(60)


def _acknowledged_are_all_there_once(cluster, topic: str, partitions: int, outcome: dict) -> int:
    acked = {v for v, err in outcome.items() if err is None}
    records = read_back(cluster.bootstrap, topic, partitions, len(acked), timeout=40)
    values = [v for _, _, v in records]
    assert len(values) == len(set(values)), "a value was written twice"
    assert acked <= set(values), f"lost {len(acked - set(values))} acknowledged value(s)"
    offsets = [(p, o) for p, o, _ in records]
    assert len(offsets) == len(set(offsets))
    return len(acked)


def test_leader_killed_while_producing_loses_nothing_acknowledged(cluster_factory):
    cluster = cluster_factory(3, FAST_ISR)
    topic = f"failover-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 3, 3, **{"min.insync.replicas": "2"})
    outcome: dict = {}
    stop = threading.Event()
    writer = threading.Thread(target=_produce_while, args=(cluster.bootstrap, topic, stop, outcome))
    writer.start()
    try:
        wait_for(lambda: sum(1 for e in list(outcome.values()) if e is None) > 500, 30, what="traffic flowing")
        victim = cluster.leaders(topic)[0]
        cluster.brokers[victim].kill()
        survivor = next(i for i in (1, 2, 3) if i != victim)
        wait_for(lambda: all(l not in (victim, -1) for l in cluster.leaders(topic, survivor).values()), 30,
                 interval=0.1, what="new leaders for the killed broker's partitions")
        before = sum(1 for e in list(outcome.values()) if e is None)
        wait_for(lambda: sum(1 for e in list(outcome.values()) if e is None) > before + 500, 30,
                 what="writes acknowledged after fail-over")
    finally:
        stop.set()
        writer.join(90)
    assert _acknowledged_are_all_there_once(cluster, topic, 3, outcome) > 1000


def test_sigterm_hands_leadership_over_first(cluster_factory):
    cluster = cluster_factory(3, FAST_ISR)
    topic = f"handover-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 3, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: all(isr(cluster, topic, p, 1) == [1, 2, 3] for p in range(3)), 20, what="full ISRs")
    outcome: dict = {}
    stop = threading.Event()
    writer = threading.Thread(target=_produce_while, args=(cluster.bootstrap, topic, stop, outcome))
    writer.start()
    try:
        wait_for(lambda: sum(1 for e in list(outcome.values()) if e is None) > 300, 30, what="traffic flowing")
        victim = cluster.leaders(topic)[1]
        started = time.monotonic()
        assert cluster.brokers[victim].stop() == 0
        assert time.monotonic() - started < 15
        survivor = next(i for i in (1, 2, 3) if i != victim)
        assert all(l not in (victim, -1) for l in cluster.leaders(topic, survivor).values())
        # the stopped broker leaves every ISR at once (well before the controller's 10 s safety pass)
        wait_for(lambda: all(victim not in isr(cluster, topic, p, survivor) for p in range(3)), 5, interval=0.1,
                 what="the stopped broker out of every ISR")
        before = sum(1 for e in list(outcome.values()) if e is None)
        wait_for(lambda: sum(1 for e in list(outcome.values()) if e is None) > before + 300, 30,
                 what="writes acknowledged after the hand-over")
    finally:
        stop.set()
        writer.join(90)
    assert all(err is None for err in outcome.values()), "a write failed during a controlled shutdown"
    _acknowledged_are_all_there_once(cluster, topic, 3, outcome)
