"""The seed's replication steps: increase_replication.json on `myorders`, stop broker 2,
restart it, and the leaders, replicas and ISRs the seed's JSON documents show."""
from __future__ import annotations

import json
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import BIN, wait_for

INCREASE_REPLICATION = {"version": 1, "partitions": [
    {"topic": "myorders", "partition": 0, "replicas": [1, 2]},
    {"topic": "myorders", "partition": 1, "replicas": [1, 2]},
    {"topic": "myorders", "partition": 2, "replicas": [2]},
]}


def layout(cluster, broker_id: int) -> dict[int, tuple[int, list[int], list[int]]]:
    md = cluster.metadata(broker_id, "myorders").topics["myorders"]
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in md.partitions.values()}


def script(name: str, *args: str) -> str:
    done = subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_all(bootstrap: str, expected: int) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition("myorders", p, 0) for p in range(3)])
    values = []
    try:
        wait_for(lambda: (m := consumer.poll(0.2)) is None or m.error() or values.append(m.value().decode())
                 or len(values) >= expected, 30, interval=0, what=f"{expected} records")
    finally:
        consumer.close()
    return values


def test_seed_increase_replication_then_stop_and_restart_broker_2(cluster_factory, tmp_path):
    cluster = cluster_factory(3, {"auto.leader.rebalance.enable": "false"})
    bootstrap = cluster.brokers[1].bootstrap
    script("kafka-topics.sh", "--create", "--bootstrap-server", bootstrap, "--replication-factor", "1",
           "--partitions", "3", "--topic", "myorders")
    assert layout(cluster, 1) == {0: (1, [1], [1]), 1: (2, [2], [2]), 2: (3, [3], [3])}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(300):
        producer.produce("myorders", f"order-{i}".encode(), f"customer-{i % 11}".encode())
    assert producer.flush(20) == 0

    plan = tmp_path / "increase_replication.json"
    plan.write_text(json.dumps(INCREASE_REPLICATION))
    out = script("kafka-reassign-partitions.sh", "--bootstrap-server", bootstrap,
                 "--reassignment-json-file", str(plan), "--execute")
    assert "Current partition replica assignment" in out
    wait_for(lambda: "still in progress" not in script(
        "kafka-reassign-partitions.sh", "--bootstrap-server", bootstrap, "--reassignment-json-file", str(plan),
        "--verify"), 60, interval=0.2, what="reassignment complete")
    # the seed's second JSON: broker 2 joined 0 and 1 and took over 2; partition 1 keeps leader 2
    # (a broker sees the assignment and the partition states through separate watches: poll)
    wait_for(lambda: layout(cluster, 1) == {0: (1, [1, 2], [1, 2]), 1: (2, [1, 2], [1, 2]), 2: (2, [2], [2])},
             10, interval=0.1, what="the seed's second layout")
    assert not (cluster.brokers[3].data_dir / "myorders-2").exists()  # moved away from broker 3
    assert sorted(read_all(bootstrap, 300)) == sorted(f"order-{i}" for i in range(300))

    cluster.brokers[2].stop()
    # the seed's third JSON: broker 2 out of sync, partition 2 offline with its ISR kept
    wait_for(lambda: layout(cluster, 1) == {0: (1, [1, 2], [1]), 1: (1, [1, 2], [1]), 2: (-1, [2], [2])},
             30, interval=0.1, what="broker 2's partitions failed over")

    cluster.brokers[2].start()
    # the seed's fourth JSON: broker 2 back in sync, leader of partition 2 again
    wait_for(lambda: layout(cluster, 1) == {0: (1, [1, 2], [1, 2]), 1: (1, [1, 2], [1, 2]), 2: (2, [2], [2])},
             30, interval=0.1, what="broker 2 back in the ISR")
    assert sorted(read_all(bootstrap, 300)) == sorted(f"order-{i}" for i in range(300))
