"""Consumer groups with real clients: membership, assignment, committed offsets, restarts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.conftest import wait_for
from tests.integration.test_clients import create_topic, produce, topic_name


def group_consumer(bootstrap: str, group: str, **conf) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 500, **conf})


def poll_once(consumers, got: dict) -> None:
    """One poll of each consumer; records go to got[consumer index]."""
    for i, c in enumerate(consumers):
        msg = c.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise KafkaException(msg.error())
            continue
        got.setdefault(i, []).append(msg)


def poll_values(consumers, want: int, timeout: float = 30.0, got: dict | None = None) -> dict:
    """Poll all consumers round-robin until `want` records arrived; {consumer index: [msg]}."""
    got = {i: [] for i in range(len(consumers))} if got is None else got

    def step():
        poll_once(consumers, got)
        return sum(map(len, got.values())) >= want

    wait_for(step, timeout, interval=0, what=f"{want} records")
    return got


def test_two_members_split_six_partitions_without_overlap(broker):
    topic = topic_name("split")
    create_topic(broker.bootstrap, topic, partitions=6)
    records = [(b"k%d" % i, b"v%d" % i) for i in range(600)]
    produce(broker.bootstrap, topic, records)
    group = topic_name("g")
    a, b = group_consumer(broker.bootstrap, group), group_consumer(broker.bootstrap, group)
    try:
        a.subscribe([topic])
        b.subscribe([topic])

        early: dict = {}  # records polled while the group forms: a lone member may read them

        def balanced():
            poll_once([a, b], early)
            return len(a.assignment()) == 3 and len(b.assignment()) == 3

        wait_for(balanced, 30, interval=0, what="both members with three partitions")
        parts_a = {tp.partition for tp in a.assignment()}
        parts_b = {tp.partition for tp in b.assignment()}
        assert parts_a.isdisjoint(parts_b) and parts_a | parts_b == set(range(6))
        # without commits a partition handed over during the join is read again from its start,
        # so early reads may repeat; after balancing, nothing is missing and nothing repeats
        wanted = {v for _, v in records}
        seen = {m.value() for msgs in early.values() for m in msgs}
        got: dict = {0: [], 1: []}

        def complete():
            poll_once([a, b], got)
            return seen | {m.value() for msgs in got.values() for m in msgs} == wanted

        wait_for(complete, 30, interval=0, what="all 600 records")
        after = [m.value() for msgs in got.values() for m in msgs]
        assert len(after) == len(set(after))
        assert all(m.partition() in parts_a for m in got[0]) and all(m.partition() in parts_b for m in got[1])
    finally:
        a.close()
        b.close()


def test_commit_then_resume_after_consumer_and_broker_restart(broker):
    topic = topic_name("resume")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce(broker.bootstrap, topic, [(b"k%d" % i, b"first-%d" % i) for i in range(100)])
    group = topic_name("g")
    c = group_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    got = poll_values([c], 100)[0]
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    assert sum(tp.offset for tp in committed) == 100
    c.close()

    assert broker.stop() == 0
    broker.start()
    produce(broker.bootstrap, topic, [(b"k%d" % i, b"second-%d" % i) for i in range(50)])
    c = group_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    try:
        later = poll_values([c], 50)[0]
        assert sorted(m.value() for m in later) == sorted(b"second-%d" % i for i in range(50))
        assert c.poll(1.0) is None  # nothing else: no re-read below the committed offsets
    finally:
        c.close()
    assert len(got) == 100


def test_commit_metadata_and_simple_commits_without_membership(broker):
    topic = topic_name("simple")
    create_topic(broker.bootstrap, topic)
    group = topic_name("g")
    c = group_consumer(broker.bootstrap, group)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 42, metadata="checkpoint-7")], asynchronous=False)
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert (tp.offset, tp.metadata) == (42, "checkpoint-7")
        try:
            c.commit(offsets=[TopicPartition("no-such-topic-x", 0, 1)], asynchronous=False)
            raise AssertionError("a commit for an unknown partition must fail")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()


def test_leave_group_rebalances_quickly(broker):
    topic = topic_name("leave")
    create_topic(broker.bootstrap, topic, partitions=4)
    group = topic_name("g")
    a = group_consumer(broker.bootstrap, group, **{"session.timeout.ms": 30000})
    b = group_consumer(broker.bootstrap, group, **{"session.timeout.ms": 30000})
    a.subscribe([topic])
    b.subscribe([topic])
    wait_for(lambda: [c.poll(0.1) for c in (a, b)] and len(a.assignment()) == 2 and len(b.assignment()) == 2,
             30, interval=0, what="two members")
    started = time.monotonic()
    b.close()  # LeaveGroup: the survivor takes everything long before the 30 s session timeout
    wait_for(lambda: a.poll(0.1) is None and len(a.assignment()) == 4, 15, interval=0, what="takeover")
    assert time.monotonic() - started < 10
    a.close()


MEMBER = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500, "enable.auto.commit": False})
    c.subscribe([sys.argv[3]])
    while True:
        c.poll(0.2)
        if c.assignment():
            print("assigned", flush=True)
""")


def test_sigkilled_member_is_evicted_after_its_session_timeout(broker):
    topic = topic_name("kill")
    create_topic(broker.bootstrap, topic, partitions=2)
    group = topic_name("g")
    victim = subprocess.Popen([sys.executable, "-c", MEMBER, broker.bootstrap, group, topic],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    survivor = group_consumer(broker.bootstrap, group)
    try:
        assert victim.stdout.readline().strip() == b"assigned"
        survivor.subscribe([topic])
        wait_for(lambda: survivor.poll(0.1) is None and len(survivor.assignment()) == 1, 30, interval=0,
                 what="one partition each")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(5)
        wait_for(lambda: survivor.poll(0.1) is None and len(survivor.assignment()) == 2, 25, interval=0,
                 what="the dead member's partition moving to the survivor")
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
        survivor.close()


def test_list_describe_and_delete_groups(broker):
    topic = topic_name("admin")
    create_topic(broker.bootstrap, topic)
    group = topic_name("g")
    c = group_consumer(broker.bootstrap, group, **{"client.id": "describer"})
    c.subscribe([topic])
    wait_for(lambda: c.poll(0.1) is None and len(c.assignment()) == 1, 30, interval=0, what="assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(10)
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert described.state.name == "STABLE"
    assert [m.client_id for m in described.members] == ["describer"]
    assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0}
    refused = admin.delete_consumer_groups([group])[group]
    try:
        refused.result(10)
        raise AssertionError("deleting a group with members must fail")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.close()
    admin.delete_consumer_groups([group])[group].result(10)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(10).valid}


def test_mixed_group_confluent_and_kafka_python_share_partitions(broker):
    from kafka import KafkaConsumer
    topic = topic_name("mixed")
    create_topic(broker.bootstrap, topic, partitions=4)
    produce(broker.bootstrap, topic, [(b"k%d" % i, b"m%d" % i) for i in range(200)])
    group = topic_name("g")
    rdk = group_consumer(broker.bootstrap, group, **{"partition.assignment.strategy": "roundrobin"})
    rdk.subscribe([topic])
    kp = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                       partition_assignment_strategy=[__import__("kafka").coordinator.assignors.roundrobin.RoundRobinPartitionAssignor])
    seen_rdk, seen_kp = [], []
    try:
        def step():
            msg = rdk.poll(0.05)
            if msg is not None and not msg.error():
                seen_rdk.append(msg)
            for records in kp.poll(timeout_ms=50).values():
                seen_kp.extend(records)
            distinct = {m.value() for m in seen_rdk} | {r.value for r in seen_kp}
            return len(rdk.assignment()) == 2 and len(kp.assignment()) == 2 and len(distinct) == 200
        wait_for(step, 45, interval=0, what="a balanced mixed group reading everything")
        parts_rdk = {tp.partition for tp in rdk.assignment()}
        parts_kp = {tp.partition for tp in kp.assignment()}
        assert parts_rdk.isdisjoint(parts_kp) and parts_rdk | parts_kp == {0, 1, 2, 3}
        values = sorted([m.value() for m in seen_rdk] + [r.value for r in seen_kp])
        # a rebalance while reading may hand a partition over; without commits the new owner
        # re-reads it from the start, so every record is there, some possibly twice
        assert set(values) == {b"m%d" % i for i in range(200)}
    finally:
        kp.close()
        rdk.close()


def test_aiokafka_group_consumer_commits_and_resumes(broker):
    import asyncio
    from aiokafka import AIOKafkaConsumer
    topic = topic_name("aio")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce(broker.bootstrap, topic, [(None, b"a%d" % i) for i in range(40)])
    group = topic_name("g")

    async def read(n: int) -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            got = []
            while len(got) < n:
                batches = await consumer.getmany(timeout_ms=500)
                got.extend(m.value for msgs in batches.values() for m in msgs)
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    first = asyncio.run(asyncio.wait_for(read(40), 45))
    assert sorted(first) == sorted(b"a%d" % i for i in range(40))
    produce(broker.bootstrap, topic, [(None, b"b%d" % i) for i in range(10)])
    second = asyncio.run(asyncio.wait_for(read(10), 45))
    assert sorted(second) == sorted(b"b%d" % i for i in range(10))


def test_bad_group_requests_get_kafkas_error_codes(broker):
    from josef.client.wire import KafkaConnection, request_class
    from josef.protocol.entities import to_entity
    topic = topic_name("bad")
    create_topic(broker.bootstrap, topic)

    def call(api_key: int, version: int, body: dict):
        with KafkaConnection("127.0.0.1", broker.port) as conn:
            return conn.request(to_entity(request_class(api_key, version), body))

    join = {"group_id": "", "session_timeout": 10000, "rebalance_timeout": 10000, "member_id": "",
            "group_instance_id": None, "protocol_type": "consumer", "reason": None,
            "protocols": [{"name": "range", "metadata": b"\x00\x00\x00\x00\x00\x00"}]}
    assert call(11, 9, join).error_code == 24  # INVALID_GROUP_ID
    assert call(11, 9, {**join, "group_id": "g-bad", "session_timeout": 10}).error_code == 26  # INVALID_SESSION_TIMEOUT
    first = call(11, 9, {**join, "group_id": "g-bad"})
    assert first.error_code == 79 and first.member_id  # MEMBER_ID_REQUIRED hands out an id
    assert call(12, 4, {"group_id": "g-bad", "generation_id": 1, "member_id": "never-issued",
                        "group_instance_id": None}).error_code == 25  # UNKNOWN_MEMBER_ID
    joined = call(11, 9, {**join, "group_id": "g-bad", "member_id": first.member_id})
    assert joined.error_code == 0 and joined.leader == first.member_id
    wrong_generation = call(14, 5, {"group_id": "g-bad", "generation_id": joined.generation_id + 5,
                                    "member_id": first.member_id, "group_instance_id": None,
                                    "protocol_type": "consumer", "protocol_name": "range", "assignments": []})
    assert wrong_generation.error_code == 22  # ILLEGAL_GENERATION
    early = {"group_id": "g-bad", "generation_id_or_member_epoch": joined.generation_id,
             "member_id": first.member_id, "group_instance_id": None, "retention_time": -1,
             "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                        "committed_leader_epoch": -1, "committed_metadata": ""}]}]}
    assert call(8, 8, early).topics[0].partitions[0].error_code == 27  # REBALANCE_IN_PROGRESS before the sync
    synced = call(14, 5, {"group_id": "g-bad", "generation_id": joined.generation_id,
                          "member_id": first.member_id, "group_instance_id": None,
                          "protocol_type": "consumer", "protocol_name": "range",
                          "assignments": [{"member_id": first.member_id, "assignment": b"plan"}]})
    assert (synced.error_code, synced.assignment) == (0, b"plan")
    commit = {"group_id": "g-bad", "generation_id_or_member_epoch": joined.generation_id,
              "member_id": first.member_id, "group_instance_id": None, "retention_time": -1,
              "topics": [{"name": topic, "partitions": [
                  {"partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
                   "committed_metadata": "x" * 5000},
                  {"partition_index": 9, "committed_offset": 1, "committed_leader_epoch": -1,
                   "committed_metadata": ""}]}]}
    errors = [p.error_code for p in call(8, 8, commit).topics[0].partitions]
    assert errors == [12, 3]  # OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION
    stale = {**commit, "generation_id_or_member_epoch": joined.generation_id - 1,
             "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                        "committed_leader_epoch": -1, "committed_metadata": ""}]}]}
    assert call(8, 8, stale).topics[0].partitions[0].error_code == 22
    deleted = call(42, 2, {"groups_names": ["no-such-group"]})
    assert deleted.results[0].error_code == 69  # GROUP_ID_NOT_FOUND
    assert broker.proc.poll() is None


def test_static_member_keeps_its_partitions_across_a_restart(broker):
    topic = topic_name("static")
    create_topic(broker.bootstrap, topic, partitions=4)
    group = topic_name("g")
    conf = {"session.timeout.ms": 10000}
    a = group_consumer(broker.bootstrap, group, **{**conf, "group.instance.id": "member-a"})
    b = group_consumer(broker.bootstrap, group, **{**conf, "group.instance.id": "member-b"})
    for c in (a, b):
        c.subscribe([topic])
    wait_for(lambda: [c.poll(0.1) for c in (a, b)] and len(a.assignment()) == 2 and len(b.assignment()) == 2,
             30, interval=0, what="two static members")
    before = {tp.partition for tp in b.assignment()}
    b.close()  # a static member's close does not leave the group (KIP-345)
    b = group_consumer(broker.bootstrap, group, **{**conf, "group.instance.id": "member-b"})
    b.subscribe([topic])
    try:
        wait_for(lambda: [c.poll(0.1) for c in (a, b)] and len(b.assignment()) == 2, 20, interval=0,
                 what="the static member back")
        assert {tp.partition for tp in b.assignment()} == before
        assert len(a.assignment()) == 2
    finally:
        a.close()
        b.close()


def test_cooperative_sticky_members_rebalance_incrementally(broker):
    topic = topic_name("coop")
    create_topic(broker.bootstrap, topic, partitions=6)
    group = topic_name("g")
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = group_consumer(broker.bootstrap, group, **conf)
    a.subscribe([topic])
    wait_for(lambda: a.poll(0.1) is None and len(a.assignment()) == 6, 30, interval=0, what="a alone")
    b = group_consumer(broker.bootstrap, group, **conf)
    b.subscribe([topic])
    try:
        wait_for(lambda: [c.poll(0.1) for c in (a, b)] and len(a.assignment()) == 3 and len(b.assignment()) == 3,
                 30, interval=0, what="an incremental hand-over of three partitions")
        parts_a = {tp.partition for tp in a.assignment()}
        parts_b = {tp.partition for tp in b.assignment()}
        assert parts_a.isdisjoint(parts_b) and parts_a | parts_b == set(range(6))
    finally:
        a.close()
        b.close()


def test_console_consumer_group_resumes_where_it_committed(broker):
    """The walkthrough's "already have been here": a second run of the same group goes on."""
    topic = topic_name("console")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(None, v) for v in (b"a", b"b", b"c", b"d")])
    tool = [os.path.join(os.path.dirname(sys.executable), "kafka-console-consumer.sh"),
            "--bootstrap-server", broker.bootstrap, "--topic", topic, "--group", "console-app",
            "--max-messages", "2"]
    first = subprocess.run(tool + ["--from-beginning"], capture_output=True, timeout=60)
    second = subprocess.run(tool, capture_output=True, timeout=60)
    assert (first.returncode, first.stdout) == (0, b"a\nb\n")
    assert (second.returncode, second.stdout) == (0, b"c\nd\n")
