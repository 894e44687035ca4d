"""Control-plane APIs over the wire with kio-encoded requests: every advertised version answers."""
from __future__ import annotations

import pytest

from josef.client.wire import KafkaConnection, request_class
from josef.protocol.entities import to_entity
from tests.integration.test_clients import create_topic, produce, topic_name


def test_api_versions_advertises_exactly_the_supported_ranges(broker):
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        versions = conn.api_versions()
    assert versions[0] == (0, 11)  # Produce: 0-2 advertised for librdkafka, refused
    assert versions[1] == (4, 12)
    assert versions[2] == (1, 8)
    assert versions[3] == (0, 12)
    assert versions[18] == (0, 4)
    assert versions[19] == (2, 7)
    assert versions[20] == (1, 6)
    assert versions[22] == (0, 4)
    assert versions[23] == (2, 4)
    assert versions[37] == (0, 3)
    assert versions[60] == (0, 1)


@pytest.mark.parametrize("version", range(0, 13))
def test_metadata_every_version(broker, version):
    topic = topic_name("md")
    create_topic(broker.bootstrap, topic, partitions=2)
    cls = request_class(3, version)
    request = to_entity(cls, {"topics": [{"name": topic, "topic_id": None}], "allow_auto_topic_creation": False,
                              "include_cluster_authorized_operations": False,
                              "include_topic_authorized_operations": False})
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        answer = conn.request(request)
    assert [b.node_id for b in answer.brokers] == [1]
    [t] = answer.topics
    assert t.name == topic and t.error_code == 0
    assert sorted(p.partition_index for p in t.partitions) == [0, 1]
    assert all(p.leader_id == 1 and tuple(p.isr_nodes) == (1,) for p in t.partitions)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_offset_for_leader_epoch(broker, version):
    topic = topic_name("ofle")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(None, b"a"), (None, b"b"), (None, b"c")])
    request = to_entity(request_class(23, version), {
        "replica_id": -1,
        "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0},
            {"partition": 7, "current_leader_epoch": -1, "leader_epoch": 0}]}]})
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        answer = conn.request(request)
    known, unknown = answer.topics[0].partitions
    assert (known.error_code, known.leader_epoch, known.end_offset) == (0, 0, 3)
    assert unknown.error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("version", [1, 4, 7, 8])
def test_list_offsets_earliest_latest_max_timestamp(broker, version):
    topic = topic_name("lo")
    create_topic(broker.bootstrap, topic)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for ts in (5000, 9000, 7000):
        p.produce(topic, b"v", timestamp=ts)
        p.flush(10)
    wanted = [(-2, 0), (-1, 3), (6000, 1)] + ([(-3, 1)] if version >= 7 else [])
    request = to_entity(request_class(2, version), {
        "replica_id": -1, "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [
            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": ts} for ts, _ in wanted]}]})
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        answer = conn.request(request)
    partitions = answer.topics[0].partitions
    # a partition asked twice in one request gets INVALID_REQUEST after the first
    assert partitions[0].error_code == 0 and partitions[0].offset == 0
    assert all(p.error_code == 42 for p in partitions[1:])
    for ts, offset in wanted:
        one = to_entity(request_class(2, version), {
            "replica_id": -1, "isolation_level": 0,
            "topics": [{"name": topic, "partitions": [
                {"partition_index": 0, "current_leader_epoch": -1, "timestamp": ts}]}]})
        with KafkaConnection("127.0.0.1", broker.port) as conn:
            [p] = conn.request(one).topics[0].partitions
        assert (p.error_code, p.offset) == (0, offset), ts


def test_describe_cluster_and_init_producer_id(broker):
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        cluster = conn.request(to_entity(request_class(60, 1), {"include_cluster_authorized_operations": False,
                                                                 "endpoint_type": 1}))
        assert cluster.error_code == 0 and [b.broker_id for b in cluster.brokers] == [1]
        assert cluster.controller_id == 1 and len(cluster.cluster_id) == 22
        ids = {conn.request(to_entity(request_class(22, 4), {
            "transactional_id": None, "transaction_timeout": 60000, "producer_id": -1,
            "producer_epoch": -1})).producer_id for _ in range(3)}
        assert len(ids) == 3 and min(ids) >= 0
        refused = conn.request(to_entity(request_class(22, 4), {
            "transactional_id": "tx-1", "transaction_timeout": 60000, "producer_id": -1, "producer_epoch": -1}))
        assert refused.error_code == 53  # transactions are not supported yet


def test_producer_ids_stay_unique_across_restart(broker):
    def one_id():
        with KafkaConnection("127.0.0.1", broker.port) as conn:
            return conn.request(to_entity(request_class(22, 0), {
                "transactional_id": None, "transaction_timeout": 60000})).producer_id
    before = {one_id() for _ in range(3)}
    broker.kill()
    broker.start()
    assert one_id() not in before and one_id() > max(before)

