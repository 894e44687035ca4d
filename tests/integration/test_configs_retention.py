"""Topic and broker configs over the wire, retention, DeleteRecords, compacted-topic keys."""
from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from josef.client.wire import KafkaConnection, request_class
from josef.protocol.entities import to_entity
from tests.conftest import wait_for
from tests.integration.test_clients import _delivery_error, consume_all, create_topic, produce, topic_name


def describe(admin, rtype, name) -> dict:
    res = ConfigResource(rtype, name)
    return admin.describe_configs([res])[res].result(10)


def test_topic_configs_describe_alter_and_survive_restart(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = topic_name("cfg")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000"})
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([res])[res].result(10)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete,compact"
    # takes effect without a restart
    err = _delivery_error(broker.bootstrap, topic, b"z" * 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "later", incremental_operation=AlterConfigOpType.SET)])
    try:
        admin.incremental_alter_configs([bad])[bad].result(10)
        raise AssertionError("an invalid value must be refused")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_CONFIG
    assert broker.stop() == 0
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, ResourceType.TOPIC, topic)["max.message.bytes"].value == "2000"


def test_dynamic_broker_config_is_the_topics_default(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = topic_name("dyn")
    create_topic(broker.bootstrap, topic)
    # the cluster-wide default entity (librdkafka refuses an empty broker name, so over the wire)
    set_default = to_entity(request_class(44, 1), {"validate_only": False, "resources": [
        {"resource_type": 4, "resource_name": "", "configs": [
            {"name": "log.retention.ms", "config_operation": 0, "value": "120000"}]}]})
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        assert conn.request(set_default).responses[0].error_code == 0
    entry = describe(admin, ResourceType.TOPIC, topic)["retention.ms"]
    assert entry.value == "120000"
    assert entry.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    # this broker's own setting wins over the default
    res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    entry = describe(admin, ResourceType.TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("60000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    broker_entry = describe(admin, ResourceType.BROKER, "1")["log.retention.ms"]
    assert broker_entry.value == "60000"
    static = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("broker.id", "7", incremental_operation=AlterConfigOpType.SET)])
    try:
        admin.incremental_alter_configs([static])[static].result(10)
        raise AssertionError("a static broker config cannot change at run time")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_REQUEST


def test_delete_records_moves_the_low_watermark(broker):
    topic = topic_name("delrec")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(None, b"r%d" % i) for i in range(20)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deleted = admin.delete_records([TopicPartition(topic, 0, 12)])
    assert [f.result(10).low_watermark for f in deleted.values()] == [12]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (12, 20)
    finally:
        c.close()
    got = consume_all(broker.bootstrap, topic, 1, 8)
    assert [m.value() for m in got] == [b"r%d" % i for i in range(12, 20)]
    broker.kill()  # the new start survives a crash
    broker.start()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (12, 20)
    finally:
        c.close()


def test_retention_bytes_deletes_old_segments_and_keeps_the_newest(broker_factory):
    b = broker_factory("--override", "log.retention.check.interval.ms=200")
    topic = topic_name("ret")
    create_topic(b.bootstrap, topic, config={"segment.bytes": "2000", "retention.bytes": "4000"})
    produce(b.bootstrap, topic, [(None, b"%04d" % i + b"x" * 200) for i in range(100)], **{"linger.ms": 0, "batch.num.messages": 1})
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        wait_for(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[0] > 50, 15,
                 what="retention to advance the low watermark")
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
    finally:
        c.close()
    assert high == 100
    got = consume_all(b.bootstrap, topic, 1, high - low)
    assert got[0].offset() == low and got[-1].value().startswith(b"0099")


def test_compacted_topic_refuses_records_without_key(broker):
    topic = topic_name("cmp")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    err = _delivery_error(broker.bootstrap, topic, b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD
    assert produce(broker.bootstrap, topic, [(b"k", b"keyed")])[0][1] == 0


def test_compaction_keeps_the_last_value_of_every_key(broker_factory):
    b = broker_factory("--override", "log.cleaner.backoff.ms=100")
    topic = topic_name("compact")
    create_topic(b.bootstrap, topic, config={"cleanup.policy": "compact", "segment.bytes": "1024",
                                             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})
    rounds = 20
    records = [(b"key-%d" % k, b"round-%d-of-key-%d" % (r, k)) for r in range(rounds) for k in range(10)]
    records.append((b"key-0", None))  # a tombstone for key-0
    produce(b.bootstrap, topic, records, **{"linger.ms": 0, "batch.num.messages": 5})
    total = len(records)
    wait_for(lambda: len(_read_everything(b.bootstrap, topic)) < total // 2, 30, interval=0.2,
             what="the cleaner to remove superseded records")
    got = _read_everything(b.bootstrap, topic)
    latest = {}
    for m in got:
        latest[m.key()] = m.value()
    for k in range(1, 10):  # every key's last value survives
        assert latest[b"key-%d" % k] == b"round-%d-of-key-%d" % (rounds - 1, k)
    offsets = [m.offset() for m in got]
    assert offsets == sorted(offsets) and offsets[-1] == total - 1  # offsets are kept, the newest is there


def _read_everything(bootstrap: str, topic: str) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    try:
        def at_end():
            msg = c.poll(0.2)
            if msg is None:
                return False
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return True
                raise KafkaException(msg.error())
            got.append(msg)
            return False
        wait_for(at_end, 10, interval=0, what="the end of the partition")
    finally:
        c.close()
    return got


def test_create_time_outside_the_allowed_window_is_refused(broker):
    topic = topic_name("ts-window")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.before.max.ms": "3600000",
                                                  "message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)

    def send(timestamp: int):
        errors = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0, "message.timeout.ms": 10000})
        p.produce(topic, value=b"x", timestamp=timestamp, on_delivery=lambda err, msg: errors.append(err))
        assert p.flush(15) == 0
        return errors[0]
    assert send(now - 2 * 3600_000).code() == KafkaError.INVALID_TIMESTAMP  # two hours old
    assert send(now + 600_000).code() == KafkaError.INVALID_TIMESTAMP  # ten minutes ahead
    assert send(now - 60_000) is None
    assert [m.value() for m in consume_all(broker.bootstrap, topic, 1, 1)] == [b"x"]


def test_kafka_python_admin_config_round_trip(broker):
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType, KafkaAdminClient

    topic = topic_name("kp-configs")
    create_topic(broker.bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        assert admin.alter_configs([KpResource(ConfigResourceType.TOPIC, topic, configs={
            "retention.ms": "7200000"})]) == {"topic": {topic: "OK"}}
        modified = admin.describe_configs([KpResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert modified["retention.ms"]["value"] == "7200000"
        assert modified["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        everything = admin.describe_configs([KpResource(ConfigResourceType.BROKER, "1")],
                                            config_filter="all")["broker"]["1"]
        assert everything["num.partitions"]["value"] == "1"
    finally:
        admin.close()


def test_sigkill_while_the_cleaner_works_loses_no_latest_value(broker_factory):
    """Kill the broker (and its cleaner process) while cleaned segments are being written or
    swapped in, several times: every restart finds the old or the new segments, never a mix."""
    b = broker_factory("--override", "log.cleaner.backoff.ms=50")
    topic = topic_name("cmp-kill")
    create_topic(b.bootstrap, topic, config={"cleanup.policy": "compact", "segment.bytes": "16384",
                                             "min.cleanable.dirty.ratio": "0.01"})
    keys, rounds = 50, 60
    records = [(b"key-%d" % k, b"round-%d-of-key-%d" % (r, k)) for r in range(rounds) for k in range(keys)]
    produce(b.bootstrap, topic, records, **{"linger.ms": 0, "batch.num.messages": 20})
    partition_dir = b.data_dir / f"{topic}-0"
    kills_mid_clean = 0
    for _ in range(3):
        def cleaning():  # the cleaner's work in progress shows as .cleaned / .swap files
            return any(p.suffix in (".cleaned", ".swap") for p in partition_dir.iterdir())
        try:
            wait_for(cleaning, 5, interval=0.001, what="a cleaning in progress")
            kills_mid_clean += 1
        except AssertionError:
            pass  # the cleaner was between rounds: a kill now still must be harmless
        b.kill()
        b.start()
        produce(b.bootstrap, topic, [(b"key-%d" % k, b"round-%d-of-key-%d" % (rounds, k)) for k in range(keys)])
        rounds += 1
    got = _read_everything(b.bootstrap, topic)
    latest = {m.key(): m.value() for m in got}
    assert latest == {b"key-%d" % k: b"round-%d-of-key-%d" % (rounds - 1, k) for k in range(keys)}
    offsets = [m.offset() for m in got]
    assert offsets == sorted(set(offsets))
    assert kills_mid_clean >= 1, "never caught the cleaner at work"
