"""The REST Proxy's v3 broker configs, cluster-wide defaults and reassignments against a
ZooKeeper cluster of josef brokers, cross-checked with an independent client."""
from __future__ import annotations

import json

import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from tests.cluster.test_throttle import reassign
from tests.conftest import wait_for
from tests.integration.test_rest_proxy import RestProxyProcess

RATE = 100_000  # bytes per second: the move below takes several seconds
SIZE = 800_000


def broker_config(cluster, broker_id: int, name: str):
    admin = cluster.admin()
    res = ConfigResource(ResourceType.BROKER, str(broker_id))
    return admin.describe_configs([res])[res].result(15)[name]


def test_rest_v3_broker_configs_and_reassignments_in_a_cluster(cluster_factory, tmp_path):
    cluster = cluster_factory(2)
    proxy = RestProxyProcess(cluster.bootstrap, tmp_path / "rest-proxy.log").start()
    try:
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
            base = f"/v3/clusters/{cid}"

            # a broker's own config is asked of (and set on) that broker
            r = http.put(f"{base}/brokers/2/configs/log.retention.bytes", json={"value": "123456789"})
            assert r.status_code == 204, r.text
            assert broker_config(cluster, 2, "log.retention.bytes").value == "123456789"
            two = http.get(f"{base}/brokers/2/configs/log.retention.bytes").json()
            assert (two["broker_id"], two["value"], two["source"]) == (2, "123456789", "DYNAMIC_BROKER_CONFIG")
            one = http.get(f"{base}/brokers/1/configs/log.retention.bytes").json()
            assert (one["broker_id"], one["value"], one["source"]) == (1, "-1", "DEFAULT_CONFIG")
            every = http.get(f"{base}/brokers/-/configs").json()["data"]
            assert {(c["broker_id"], c["value"]) for c in every if c["name"] == "log.retention.bytes"} == {
                (1, "-1"), (2, "123456789")}

            # a cluster-wide default reaches every broker; a broker's own value still wins
            r = http.post(f"{base}/broker-configs:alter", json={"data": [
                {"name": "log.retention.bytes", "value": "987654321"}]})
            assert r.status_code == 204, r.text
            assert [(c["name"], c["value"]) for c in http.get(f"{base}/broker-configs").json()["data"]] == [
                ("log.retention.bytes", "987654321")]

            def seen():
                return (http.get(f"{base}/brokers/1/configs/log.retention.bytes").json()["source"]
                        == "DYNAMIC_DEFAULT_BROKER_CONFIG")
            wait_for(seen, 15, interval=0.2, what="broker 1 sees the cluster default")
            one = http.get(f"{base}/brokers/1/configs/log.retention.bytes").json()
            assert one["value"] == "987654321"
            two = http.get(f"{base}/brokers/2/configs/log.retention.bytes").json()
            # every synonym, most specific first (librdkafka would keep one per name)
            assert two["value"] == "123456789" and two["synonyms"][:2] == [
                {"name": "log.retention.bytes", "value": "123456789", "source": "DYNAMIC_BROKER_CONFIG"},
                {"name": "log.retention.bytes", "value": "987654321", "source": "DYNAMIC_DEFAULT_BROKER_CONFIG"}]
            assert http.delete(f"{base}/broker-configs/log.retention.bytes").status_code == 204
            assert http.delete(f"{base}/brokers/2/configs/log.retention.bytes").status_code == 204
            assert http.get(f"{base}/broker-configs").json()["data"] == []

            # a throttled move is listed while it runs, then disappears
            admin = cluster.admin()
            admin.create_topics([NewTopic("slow", 1, 1)], operation_timeout=10)["slow"].result(15)  # on broker 1
            producer = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 20})
            for i in range(SIZE // 10_000):
                producer.produce("slow", bytes([i % 256]) * 10_000)
            assert producer.flush(20) == 0
            assert http.get(f"{base}/topics/-/partitions/-/reassignment").json()["data"] == []
            plan = tmp_path / "move.json"
            plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "slow", "partition": 0,
                                                                      "replicas": [2]}]}))
            reassign(cluster.brokers[1].bootstrap, plan, "--execute", "--throttle", str(RATE))
            listing = http.get(f"{base}/topics/-/partitions/-/reassignment").json()
            assert listing["kind"] == "KafkaReassignmentList", listing
            assert len(listing["data"]) == 1, listing
            move = listing["data"][0]
            assert {k: move[k] for k in ("kind", "cluster_id", "topic_name", "partition_id", "adding_replicas",
                                         "removing_replicas")} == {
                "kind": "KafkaReassignment", "cluster_id": cid, "topic_name": "slow", "partition_id": 0,
                "adding_replicas": [2], "removing_replicas": [1]}
            assert move["metadata"]["self"].endswith(f"{base}/topics/slow/partitions/0/reassignments")
            assert move["metadata"]["resource_name"] == f"crn:///kafka={cid}/topic=slow/partition=0/reassignments"
            assert move["replicas"]["related"].endswith(f"{base}/topics/slow/partitions/0/replicas")
            assert http.get(f"{base}/topics/slow/partitions/-/reassignment").json()["data"] == [move]
            assert http.get(f"{base}/topics/other/partitions/-/reassignment").json()["data"] == []
            one = http.get(f"{base}/topics/slow/partitions/0/reassignment").json()
            assert one["metadata"] == {"self": move["metadata"]["self"][:-1],
                                       "resource_name": move["metadata"]["resource_name"][:-1]}
            assert (one["adding_replicas"], one["removing_replicas"]) == ([2], [1])

            wait_for(lambda: http.get(f"{base}/topics/-/partitions/-/reassignment").json()["data"] == [],
                     60, interval=0.3, what="the move to finish")
            assert http.get(f"{base}/topics/slow/partitions/0/reassignment").status_code == 404
            replicas = http.get(f"{base}/topics/slow/partitions/0/replicas").json()["data"]
            assert [r["broker_id"] for r in replicas] == [2]
    finally:
        proxy.kill()
