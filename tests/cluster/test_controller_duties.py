"""What the controller does beyond fail-over: the legacy reassignment znode, automatic
preferred-leader balance, and group coordinators moving with their offsets partition."""
from __future__ import annotations

import json
import subprocess
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kazoo.client import KazooClient

from tests.conftest import BIN, wait_for


def create(cluster, topic: str, partitions: int, rf: int) -> None:
    admin = cluster.admin()
    admin.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=10)[topic].result(15)


def replicas(cluster, topic: str, via: int) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    md = cluster.metadata(via, topic).topics[topic]
    return {p.id: (p.leader, tuple(p.replicas), tuple(sorted(p.isrs))) for p in md.partitions.values()}


def test_legacy_reassign_partitions_znode_moves_data(cluster_factory):
    cluster = cluster_factory(3)
    topic = f"legacy-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 2, 1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(200):
        producer.produce(topic, f"r{i}".encode(), partition=i % 2)
    assert producer.flush(15) == 0
    zk = KazooClient(hosts=cluster.zk_connect)
    zk.start(timeout=10)
    try:  # what an old kafka-reassign-partitions.sh --zookeeper wrote
        zk.create("/admin/reassign_partitions", json.dumps(
            {"version": 1, "partitions": [{"topic": topic, "partition": 1, "replicas": [3]}]}).encode())
        wait_for(lambda: zk.exists("/admin/reassign_partitions") is None, 30, interval=0.1,
                 what="the controller to finish and remove the znode")
    finally:
        zk.stop()
    assert replicas(cluster, topic, 1)[1] == (3, (3,), (3,))
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "legacy-check"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10)
    finally:
        consumer.close()
    assert (low, high) == (0, 100)
    assert not (cluster.brokers[2].data_dir / f"{topic}-1").exists()


def test_preferred_leaders_come_back_automatically(cluster_factory):
    cluster = cluster_factory(3, {"leader.imbalance.check.interval.seconds": "2",
                                  "replica.lag.time.max.ms": "2000"})
    topic = f"balance-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 3, 2)
    wait_for(lambda: all(len(isr) == 2 for _, _, isr in replicas(cluster, topic, 1).values()), 20,
             what="full ISRs")
    cluster.brokers[2].stop()
    wait_for(lambda: replicas(cluster, topic, 1)[1][0] == 3, 20, interval=0.1, what="partition 1 fails over to 3")
    cluster.brokers[2].start()
    # broker 2 catches up, rejoins the ISR, and the balance check hands partition 1 back to it
    wait_for(lambda: replicas(cluster, topic, 1)[1] == (2, (2, 3), (2, 3)), 30, interval=0.1,
             what="preferred leader 2 restored")


def test_group_offsets_survive_losing_the_coordinator(cluster_factory):
    cluster = cluster_factory(3, {"replica.lag.time.max.ms": "2000"})
    topic = f"committed-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 2, 3)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 42), TopicPartition(topic, 1, 7)], asynchronous=False)
    consumer.close()
    admin = cluster.admin()
    coordinator = admin.describe_consumer_groups([group])[group].result(10).coordinator.id
    wait_for(lambda: all(len(p.isrs) == 3 for p in cluster.metadata(coordinator, "__consumer_offsets")
                         .topics["__consumer_offsets"].partitions.values()), 20, what="offsets topic fully in sync")
    cluster.brokers[coordinator].kill()
    survivor = next(i for i in (1, 2, 3) if i != coordinator)
    survivors = ",".join(b.bootstrap for i, b in cluster.brokers.items() if i != coordinator)

    def committed():
        c = Consumer({"bootstrap.servers": survivors, "group.id": group})
        try:
            return [tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=5)]
        except Exception:
            return None
        finally:
            c.close()
    assert wait_for(lambda: committed() == [42, 7], 30, interval=0.2, what="offsets from the new coordinator")
    admin = cluster.admin(survivor)
    new = admin.describe_consumer_groups([group])[group].result(10).coordinator.id
    assert new != coordinator


def test_unclean_election_on_demand_brings_an_offline_partition_back(cluster_factory):
    cluster = cluster_factory(3, {"replica.lag.time.max.ms": "2000"})
    topic = f"unclean-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 1, 2)  # replicas [1, 2]
    wait_for(lambda: replicas(cluster, topic, 3)[0] == (1, (1, 2), (1, 2)), 20, what="full ISR")
    cluster.brokers[2].kill()
    wait_for(lambda: replicas(cluster, topic, 3)[0][2] == (1,), 20, interval=0.1, what="2 out of the ISR")
    cluster.brokers[1].kill()
    wait_for(lambda: replicas(cluster, topic, 3)[0][0] == -1, 20, interval=0.1, what="partition offline")
    cluster.brokers[2].start()
    wait_for(lambda: 2 in cluster.metadata(3).brokers, 20, what="broker 2 registered")
    assert replicas(cluster, topic, 3)[0][0] == -1  # 2 is out of sync: no clean election
    done = subprocess.run([str(BIN / "kafka-leader-election.sh"), "--bootstrap-server", cluster.brokers[3].bootstrap,
                           "--election-type", "UNCLEAN", "--topic", topic, "--partition", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Successfully completed leader election (UNCLEAN) for partitions {topic}-0" in done.stdout
    assert replicas(cluster, topic, 3)[0] == (2, (1, 2), (2,))
