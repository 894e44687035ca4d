"""A ZooKeeper-coordinated cluster: registration, controller, assignment, listeners, admin,
produce and consume through every broker, broker loss and return."""
from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kazoo.client import KazooClient

from josef.client.wire import KafkaConnection, request_class
from josef.protocol.entities import to_entity
from tests.conftest import wait_for


def create(cluster, topic: str, partitions: int, rf: int, broker_id: int | None = None) -> None:
    admin = cluster.admin(broker_id)  # kept alive until the answer arrives
    admin.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=10)[topic].result(15)


def view(md) -> tuple:
    """What a client learns from one broker's Metadata answer, in comparable form."""
    return (md.cluster_id, md.controller_id, sorted(md.brokers),
            {t: sorted((p.id, p.leader, tuple(p.replicas), tuple(p.isrs)) for p in tm.partitions.values())
             for t, tm in md.topics.items()})


def zk(cluster) -> KazooClient:
    client = KazooClient(hosts=cluster.zk_connect)
    client.start(timeout=10)
    return client


def test_assignment_is_deterministic_and_every_broker_tells_the_same(cluster_factory):
    cluster = cluster_factory(3)
    create(cluster, "myorders", 3, 1, broker_id=2)  # any broker takes admin requests
    assert cluster.leaders("myorders") == {0: 1, 1: 2, 2: 3}  # the seed's layout
    create(cluster, "wide", 3, 3, broker_id=3)
    md = cluster.metadata(1, "wide")
    assert [tuple(md.topics["wide"].partitions[p].replicas) for p in range(3)] == [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
    wait_for(lambda: len({json.dumps(view(cluster.metadata(i)), sort_keys=True) for i in (1, 2, 3)}) == 1,
             10, what="identical metadata from every broker")
    client = zk(cluster)
    try:  # Kafka's znodes, readable with zkCli
        assert sorted(client.get_children("/brokers/ids")) == ["1", "2", "3"]
        reg = json.loads(client.get("/brokers/ids/2")[0])
        assert reg["endpoints"] == [f"HOST://127.0.0.1:{cluster.brokers[2].port}",
                                    f"INTERNAL://127.0.0.1:{cluster.brokers[2].internal_port}"]
        assert reg["listener_security_protocol_map"] == {"HOST": "PLAINTEXT", "INTERNAL": "PLAINTEXT"}
        assignment = json.loads(client.get("/brokers/topics/myorders")[0])
        assert assignment["partitions"] == {"0": [1], "1": [2], "2": [3]}
        state = json.loads(client.get("/brokers/topics/myorders/partitions/1/state")[0])
        assert (state["leader"], state["isr"]) == (2, [2])
        assert json.loads(client.get("/controller")[0])["brokerid"] == md.controller_id
        assert int(client.get("/controller_epoch")[0]) >= 1
        assert json.loads(client.get("/cluster/id")[0])["id"] == md.cluster_id
    finally:
        client.stop()


def test_each_listener_advertises_its_own_addresses(cluster_factory):
    cluster = cluster_factory(2)
    b = cluster.brokers[1]
    with KafkaConnection("127.0.0.1", b.internal_port) as conn:
        md = conn.request(to_entity(request_class(3, 12), {"topics": None, "allow_auto_topic_creation": False,
                                                           "include_topic_authorized_operations": False}))
    assert sorted((x.node_id, x.port) for x in md.brokers) == [(i, cluster.brokers[i].internal_port) for i in (1, 2)]
    host_view = cluster.metadata(1)
    assert sorted((i, x.port) for i, x in host_view.brokers.items()) == [(i, cluster.brokers[i].port) for i in (1, 2)]


def test_produce_and_consume_through_every_broker(cluster_factory):
    cluster = cluster_factory(3)
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    create(cluster, topic, 3, 1)
    sent = {}
    for broker_id, b in cluster.brokers.items():  # each producer knows only one broker
        producer = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        for i in range(50):
            key, value = f"k{i % 7}", f"b{broker_id}-{i}"
            producer.produce(topic, value.encode(), key.encode())
            sent[value] = key
        assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": cluster.brokers[3].bootstrap, "group.id": "g-every",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got[msg.value().decode()] = (msg.key().decode(), msg.partition())
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    assert {v: k for v, (k, _) in got.items()} == sent
    partition_of_key = {}
    for key, partition in got.values():  # key-based partitioning holds across brokers
        assert partition_of_key.setdefault(key, partition) == partition
    assert sum(tp.offset for tp in committed) == len(sent)
    # a request to a broker that does not lead the partition is turned away
    leaders = cluster.leaders(topic)
    other = next(i for i in (1, 2, 3) if i != leaders[0])
    with KafkaConnection("127.0.0.1", cluster.brokers[other].port) as conn:
        answer = conn.request(to_entity(request_class(2, 7), {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                            "timestamp": -1}]}]}))
    assert answer.topics[0].partitions[0].error_code == 6  # NOT_LEADER_OR_FOLLOWER


def test_controller_fails_over_and_partitions_follow_brokers(cluster_factory):
    cluster = cluster_factory(3)
    create(cluster, "myorders", 3, 1)
    old = cluster.metadata(1).controller_id
    started = time.monotonic()
    cluster.brokers[old].kill()
    survivors = [i for i in (1, 2, 3) if i != old]
    new = wait_for(lambda: (c := cluster.metadata(survivors[0]).controller_id) not in (old, -1) and c, 20,
                   interval=0.1, what="a new controller")
    failover = time.monotonic() - started
    assert new in survivors and failover < 15
    # the dead broker's partition is offline with its ISR kept, as the seed shows
    wait_for(lambda: cluster.leaders("myorders", survivors[0])[old - 1] == -1, 20, what="offline partition")
    md = cluster.metadata(survivors[0], "myorders")
    assert list(md.topics["myorders"].partitions[old - 1].isrs) == [old]
    cluster.brokers[old].start()
    wait_for(lambda: cluster.leaders("myorders", survivors[0]) == {0: 1, 1: 2, 2: 3}, 20,
             what="leadership back after restart")


def test_topic_deletion_and_configs_go_through_zookeeper(cluster_factory):
    cluster = cluster_factory(3)
    create(cluster, "doomed", 3, 1)
    log_dirs = [cluster.brokers[i].data_dir / f"doomed-{i - 1}" for i in (1, 2, 3)]
    assert all(d.is_dir() for d in log_dirs)
    resource = ConfigResource("topic", "doomed", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin1, admin2, admin3 = cluster.admin(1), cluster.admin(2), cluster.admin(3)
    admin1.incremental_alter_configs([resource])[resource].result(10)

    def retention_seen_by_broker_3():
        configs = admin3.describe_configs([ConfigResource("topic", "doomed")])
        return next(iter(configs.values())).result(10)["retention.ms"].value == "3600000"
    wait_for(retention_seen_by_broker_3, 10, what="config seen from another broker")
    admin2.delete_topics(["doomed"], operation_timeout=10)["doomed"].result(15)
    for i in (1, 2, 3):
        assert "doomed" not in cluster.metadata(i).topics
    wait_for(lambda: not any(d.exists() for d in log_dirs), 10, what="logs deleted on every broker")
    client = zk(cluster)
    try:
        assert client.exists("/brokers/topics/doomed") is None
        assert client.exists("/config/topics/doomed") is None
        assert client.get_children("/admin/delete_topics") == []
    finally:
        client.stop()
