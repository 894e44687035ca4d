"""Listener settings as Kafka and Confluent's images read them."""
from __future__ import annotations

import pytest

from josef.cluster.listeners import Endpoint, resolve, with_bound_ports
from josef.cluster.zk_store import split_connect
from josef.config import ConfigError, env_overrides

SEED_BROKER_1 = {
    "KAFKA_BROKER_ID": "1", "KAFKA_ZOOKEEPER_CONNECT": "zookeeper-1:2181",
    "KAFKA_ADVERTISED_LISTENERS": "HOST://localhost:9092,INTERNAL://broker-1:29092",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:PLAINTEXT,INTERNAL:PLAINTEXT",
    "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
}


def test_the_seed_environment_binds_every_advertised_port():
    listeners = resolve(env_overrides(SEED_BROKER_1))
    assert listeners.bind == (Endpoint("HOST", "0.0.0.0", 9092), Endpoint("INTERNAL", "0.0.0.0", 29092))
    assert listeners.advertised_for("INTERNAL") == Endpoint("INTERNAL", "broker-1", 29092)
    assert listeners.inter_broker == "INTERNAL"


def test_explicit_listeners_and_port_zero():
    listeners = resolve({"listeners": "PLAINTEXT://127.0.0.1:0"})
    assert listeners.advertised == (Endpoint("PLAINTEXT", "127.0.0.1", 0),)
    assert with_bound_ports(listeners, {"PLAINTEXT": 40001}).advertised[0].port == 40001


@pytest.mark.parametrize("props, words", [
    ({"listeners": "HOST://:9092"}, "No security protocol"),
    ({"listeners": "SSL://:9093"}, "PLAINTEXT only"),
    ({"listeners": "PLAINTEXT://:9092,PLAINTEXT://:9093"}, "distinct name"),
    ({"listeners": "PLAINTEXT://:x"}, "bad port"),
    ({"listeners": "PLAINTEXT://:9092", "advertised.listeners": "OTHER://h:1"}, "not in listeners"),
    ({"listeners": "PLAINTEXT://:9092", "inter.broker.listener.name": "INTERNAL"}, "advertised listener"),
])
def test_bad_listener_settings_are_refused_with_a_reason(props, words):
    with pytest.raises(ConfigError, match=words):
        resolve(props)


def test_zookeeper_connect_with_a_chroot():
    assert split_connect("zk1:2181,zk2:2181/kafka/prod") == ("zk1:2181,zk2:2181", "/kafka/prod")
    assert split_connect("zk1:2181") == ("zk1:2181", "")
