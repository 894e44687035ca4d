"""Real client libraries against a real `josef serve` process."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from tests.conftest import wait_for


def topic_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=10)
    futures[name].result(10)


def produce(bootstrap: str, topic: str, records, **conf) -> list:
    """Produce (key, value) pairs; returns the delivered messages' (partition, offset)."""
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or (msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for item in records:
        key, value = item[0], item[1]
        extra = {"partition": item[2]} if len(item) > 2 else {}
        p.produce(topic, value=value, key=key, on_delivery=on_delivery, **extra)
    assert p.flush(20) == 0
    assert not errors, errors
    return delivered


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 20.0) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False, "check.crcs": True,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    try:
        def poll():
            msg = c.poll(0.2)
            if msg is not None:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(msg.error())
                else:
                    got.append(msg)
            return len(got) >= expected
        wait_for(poll, timeout, interval=0, what=f"{expected} records")
    finally:
        c.close()
    return got


def test_confluent_kafka_produce_consume_round_trip(broker):
    topic = topic_name()
    create_topic(broker.bootstrap, topic, partitions=3)
    records = [(f"k{i}".encode(), f"value-{i}".encode()) for i in range(300)]
    delivered = produce(broker.bootstrap, topic, records, acks="all", **{"enable.idempotence": True})
    assert len(delivered) == 300
    got = consume_all(broker.bootstrap, topic, 3, 300)
    assert sorted((m.key(), m.value()) for m in got) == sorted(records)
    # offsets are dense per partition, from 0
    by_partition: dict[int, list[int]] = {}
    for m in got:
        by_partition.setdefault(m.partition(), []).append(m.offset())
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))
    # the same key always lands on the same partition
    where = {}
    for m in got:
        assert where.setdefault(m.key(), m.partition()) == m.partition()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_stored_and_served(broker, codec):
    topic = topic_name(codec)
    create_topic(broker.bootstrap, topic)
    records = [(None, (f"{codec}-{i}-" + "x" * 50).encode()) for i in range(200)]
    produce(broker.bootstrap, topic, records, **{"compression.type": codec})
    got = consume_all(broker.bootstrap, topic, 1, 200)
    assert [m.value() for m in got] == [v for _, v in records]
    assert [m.offset() for m in got] == list(range(200))


def test_watermarks_and_offsets_for_times(broker):
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i, ts in enumerate([1_000_000, 2_000_000, 3_000_000]):
        p.produce(topic, value=b"v%d" % i, timestamp=ts)
        p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 3)
        found = c.offsets_for_times([TopicPartition(topic, 0, 1_500_000)], timeout=10)
        assert found[0].offset == 1
        found = c.offsets_for_times([TopicPartition(topic, 0, 9_000_000)], timeout=10)
        assert found[0].offset == -1  # no record that late: the end
    finally:
        c.close()


def test_admin_create_describe_delete_and_errors(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = topic_name()
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
    with pytest.raises(KafkaException) as exists:
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as bad_name:
        admin.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"].result(10)
    assert bad_name.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as bad_rf:
        admin.create_topics([NewTopic(topic + "-rf", 1, 3)])[topic + "-rf"].result(10)
    assert bad_rf.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaException) as bad_config:
        admin.create_topics([NewTopic(topic + "-cfg", 1, 1, config={"retention.ms": "soon"})])[topic + "-cfg"].result(10)
    assert bad_config.value.args[0].code() == KafkaError.INVALID_CONFIG

    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    md = admin.list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2, 3, 4]
    assert all(p.leader == 1 for p in md.topics[topic].partitions.values())
    with pytest.raises(KafkaException) as shrink:
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    assert shrink.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    admin.delete_topics([topic])[topic].result(10)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 10, what="topic deleted")
    with pytest.raises(KafkaException) as gone:
        admin.delete_topics([topic])[topic].result(10)
    assert gone.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_auto_create_on_produce_uses_num_partitions(broker_factory):
    b = broker_factory("--override", "num.partitions=4")
    topic = topic_name("auto")
    produce(b.bootstrap, topic, [(None, b"hello")])
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 4


def test_kafka_python_round_trip(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP
    topic = topic_name("kp")
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    futures = [producer.send(topic, key=b"k%d" % (i % 7), value=b"kp-%d" % i) for i in range(100)]
    metas = [f.get(timeout=10) for f in futures]
    producer.close()
    assert all(m.offset >= 0 for m in metas)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    consumer.assign([KTP(topic, 0), KTP(topic, 1)])
    consumer.seek_to_beginning()
    got = []
    for msg in consumer:
        got.append(msg.value)
        if len(got) == 100:
            break
    consumer.close()
    assert sorted(got) == sorted(b"kp-%d" % i for i in range(100))


def test_aiokafka_round_trip(broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as ATP
    topic = topic_name("aio")
    create_topic(broker.bootstrap, topic)

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait(topic, b"aio-%d" % i, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = ATP(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = []
            while len(got) < 50:
                batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), 10)
                got.extend(m.value for m in batch.get(tp, []))
            return got
        finally:
            await consumer.stop()

    got = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert got == [b"aio-%d" % i for i in range(50)]


def test_restart_keeps_topics_and_records(broker):
    topic = topic_name("restart")
    create_topic(broker.bootstrap, topic, partitions=2)
    records = [(b"k%d" % i, b"v%d" % i) for i in range(100)]
    produce(broker.bootstrap, topic, records)
    assert broker.stop() == 0
    broker.start()
    got = consume_all(broker.bootstrap, topic, 2, 100)
    assert sorted((m.key(), m.value()) for m in got) == sorted(records)
    # and appends continue after the recovered end
    delivered = produce(broker.bootstrap, topic, [(None, b"after", 0)])
    assert delivered[0][1] == sum(1 for m in got if m.partition() == 0)


def test_sigkill_loses_nothing_acknowledged(broker):
    topic = topic_name("kill")
    create_topic(broker.bootstrap, topic)
    records = [(None, b"r%d" % i) for i in range(500)]
    produce(broker.bootstrap, topic, records, acks="all")
    broker.kill()
    broker.start()
    got = consume_all(broker.bootstrap, topic, 1, 500)
    assert [m.value() for m in got] == [v for _, v in records]


def _delivery_error(bootstrap: str, topic: str, value: bytes, **conf):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0, "message.timeout.ms": 10000, **conf})
    p.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(15) == 0
    assert len(errors) == 1
    return errors[0]


def test_acks_all_below_min_insync_replicas_is_refused(broker):
    topic = topic_name("minisr")
    create_topic(broker.bootstrap, topic, config={"min.insync.replicas": "2"})
    err = _delivery_error(broker.bootstrap, topic, b"x", acks="all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS
    assert _delivery_error(broker.bootstrap, topic, b"x", acks=1) is None  # acks=1 does not need the ISR


def test_batch_over_max_message_bytes_is_refused(broker):
    topic = topic_name("big")
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "2000"})
    err = _delivery_error(broker.bootstrap, topic, b"y" * 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert _delivery_error(broker.bootstrap, topic, b"y" * 100) is None


def test_long_poll_fetch_is_woken_by_an_append(broker):
    """With fetch.wait.max.ms at 20 s, only the purgatory's wake-up can deliver within 8 s."""
    topic = topic_name("poll")
    create_topic(broker.bootstrap, topic)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 20000,
                  "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "socket.timeout.ms": 30000})
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        assert c.poll(1.5) is None  # the consumer is now parked in a long poll
        produce(broker.bootstrap, topic, [(None, b"wake up")])
        msg = c.poll(8)
        assert msg is not None and msg.error() is None and msg.value() == b"wake up"
    finally:
        c.close()


def test_fetch_out_of_range_resets_by_policy(broker):
    topic = topic_name("oor")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(None, b"a"), (None, b"b")])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "auto.offset.reset": "error",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 50)])
    try:
        def out_of_range():
            msg = c.poll(0.5)
            return msg is not None and msg.error() is not None and \
                msg.error().code() == KafkaError._AUTO_OFFSET_RESET
        wait_for(out_of_range, 10, interval=0, what="OFFSET_OUT_OF_RANGE surfaced as an offset reset error")
    finally:
        c.close()
