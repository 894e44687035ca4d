"""Broker and topic configuration: Kafka's names, defaults, precedence and validation."""
from __future__ import annotations

import pytest

from josef.config import (BrokerConfig, ConfigError, effective_topic_configs, env_overrides, parse_topic_configs,
                          read_properties, validate_topic_name)


def test_defaults_are_kafkas():
    c = BrokerConfig({})
    assert c.broker_id == 1
    assert c["num.partitions"] == 1
    assert c["auto.create.topics.enable"] is True
    assert c["socket.request.max.bytes"] == 104857600
    assert c.retention_ms() == 168 * 3_600_000


def test_retention_precedence_ms_over_minutes_over_hours():
    assert BrokerConfig({"log.retention.hours": "1"}).retention_ms() == 3_600_000
    assert BrokerConfig({"log.retention.hours": "1", "log.retention.minutes": "2"}).retention_ms() == 120_000
    assert BrokerConfig({"log.retention.minutes": "2", "log.retention.ms": "5"}).retention_ms() == 5


def test_topic_configs_default_from_broker_synonyms():
    broker = BrokerConfig({"log.segment.bytes": "2048", "log.retention.minutes": "3", "min.insync.replicas": "2"})
    values = effective_topic_configs(broker, {"retention.ms": "-1"})
    assert values["segment.bytes"] == 2048
    assert values["retention.ms"] == -1
    assert values["min.insync.replicas"] == 2
    assert values["cleanup.policy"] == "delete"


@pytest.mark.parametrize("configs, fragment", [
    ({"retention.ms": "soon"}, "Not a number"),
    ({"segment.bytes": "1"}, "at least 14"),
    ({"cleanup.policy": "shred"}, "must be one of"),
    ({"no.such.config": "1"}, "Unknown topic config"),
    ({"preallocate": "maybe"}, "true or false"),
    ({"max.message.bytes": str(2**40)}, "Not a number of type INT"),
])
def test_invalid_topic_configs_are_refused_with_a_message(configs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_topic_configs(configs)


def test_bad_broker_config_value_is_refused():
    with pytest.raises(ConfigError, match="num.partitions"):
        BrokerConfig({"num.partitions": "many"})


def test_confluent_environment_mapping():
    env = {"KAFKA_BROKER_ID": "2", "KAFKA_ZOOKEEPER_CONNECT": "zk:2181", "KAFKA_REST_LISTENERS": "x",
           "KAFKA_ADVERTISED_LISTENERS": "HOST://localhost:9092", "KAFKA_LOG_RETENTION_MS": "10",
           "PATH": "/bin"}
    assert env_overrides(env) == {"broker.id": "2", "zookeeper.connect": "zk:2181",
                                  "advertised.listeners": "HOST://localhost:9092", "log.retention.ms": "10"}


def test_properties_file(tmp_path):
    f = tmp_path / "server.properties"
    f.write_text("# comment\nbroker.id=3\n! also a comment\nlog.dirs = /tmp/x\nnum.partitions: 4\n")
    assert read_properties(f) == {"broker.id": "3", "log.dirs": "/tmp/x", "num.partitions": "4"}


@pytest.mark.parametrize("name, ok", [
    ("orders", True), ("a.b_c-D9", True), ("", False), (".", False), ("..", False),
    ("has space", False), ("x" * 249, True), ("x" * 250, False), ("ünïcode", False),
])
def test_topic_names(name, ok):
    assert (validate_topic_name(name) is None) == ok
