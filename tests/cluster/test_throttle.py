"""`--throttle` caps replication traffic: a moved replica copies no faster than the rate."""
from __future__ import annotations

import json
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.conftest import BIN, wait_for

RATE = 400_000  # bytes per second
SIZE = 2_000_000


def reassign(bootstrap: str, plan, *args: str) -> str:
    done = subprocess.run([str(BIN / "kafka-reassign-partitions.sh"), "--bootstrap-server", bootstrap,
                           "--reassignment-json-file", str(plan), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_throttled_reassignment_copies_at_the_given_rate(cluster_factory, tmp_path):
    cluster = cluster_factory(2)
    admin = cluster.admin()
    admin.create_topics([NewTopic("slow", 1, 1)], operation_timeout=10)["slow"].result(15)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 20})
    for i in range(SIZE // 10_000):
        producer.produce("slow", bytes([i % 256]) * 10_000)
    assert producer.flush(20) == 0
    plan = tmp_path / "move.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "slow", "partition": 0, "replicas": [2]}]}))
    started = time.monotonic()
    reassign(cluster.brokers[1].bootstrap, plan, "--execute", "--throttle", str(RATE))
    wait_for(lambda: "still in progress" not in reassign(cluster.brokers[1].bootstrap, plan, "--verify"),
             60, interval=0.2, what="throttled reassignment complete")
    elapsed = time.monotonic() - started
    # ~2 MB at 400 kB/s: at least 4 s (a one-second burst allowance aside)
    assert elapsed >= SIZE / RATE - 1.5, f"copied {SIZE} bytes in {elapsed:.1f}s despite a {RATE} B/s throttle"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "throttle-check"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition("slow", 0), timeout=10) == (0, SIZE // 10_000)
    finally:
        consumer.close()
    md = cluster.metadata(1, "slow").topics["slow"].partitions[0]
    assert (md.leader, list(md.replicas)) == (2, [2])
