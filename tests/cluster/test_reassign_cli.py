"""kafka-reassign-partitions.sh and kafka-leader-election.sh (`josef reassign-partitions`,
`josef leader-election`) against real brokers.

The cluster tests use `cluster_factory` (tests/cluster/conftest.py): ZooKeeper and brokers 1..n as
processes. The seed's scenario: topic myorders with 3 partitions, one replica each on brokers 1, 2, 3;
300 keyed records; partition 2 moved from broker 3 to broker 1 with --execute; --verify polled
until it reports completion; Metadata then shows replicas [1] and leader 1 and every record reads
back. Every effect is read back independently with confluent-kafka (Metadata, DescribeConfigs,
consuming), not through the tool. Nothing waits by sleeping: each wait polls up to a deadline.

The bad-input tests need only a single `josef serve` broker (`broker` from tests/conftest.py):
each mistake ends the tool with status 1 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType

from tests.conftest import wait_for

BIN = Path(sys.executable).parent
CALL_TIMEOUT = 90
REASSIGN_DEADLINE = 90.0  # seconds for a moved replica to catch up and the move to complete
CLOSED = "127.0.0.1:1"    # nothing listens here: argument and file errors must be found before connecting
TOPIC = "myorders"


def tool(name: str, servers: str | None, *argv: str, ok: bool = True,
         script: str | None = None) -> subprocess.CompletedProcess:
    """Run `josef <name>` (or a kafka-*.sh script); never a traceback, whatever the outcome."""
    cmd = [str(BIN / script)] if script else [str(BIN / "josef"), name]
    if servers is not None:
        cmd += ["--bootstrap-server", servers]
    cmd += list(argv)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, f"{cmd} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.stderr == "", result.stderr
    return result


def reassign(servers: str | None, *argv: str, ok: bool = True, script: str | None = None):
    return tool("reassign-partitions", servers, *argv, ok=ok, script=script)


def elect(servers: str | None, *argv: str, ok: bool = True, script: str | None = None):
    return tool("leader-election", servers, *argv, ok=ok, script=script)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def reassignment_file(tmp_path: Path, moves: dict[int, list[int]], topic: str = TOPIC) -> str:
    return write_json(tmp_path / f"reassign-{uuid.uuid4().hex[:6]}.json", {"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": replicas} for p, replicas in moves.items()]})


def assignment_json(moves: dict[int, list[int]], topic: str = TOPIC) -> str:
    """Kafka's compact reassignment JSON, as the tool prints it."""
    return json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": r, "log_dirs": ["any"] * len(r)} for p, r in sorted(moves.items())
    ]}, separators=(",", ":"))


# -- confluent-kafka: set-up and read-back ---------------------------------------------------------------

def admin(servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": servers})


def partitions_of(servers: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """{partition: (leader, replicas, isr)} from Metadata."""
    md = admin(servers).list_topics(topic, timeout=10).topics[topic]
    if md.error is not None:
        return {}
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in md.partitions.values()}


def create_topic(servers: str, topic: str, assignment: list[list[int]]) -> None:
    a = admin(servers)
    # every layout used here is the deterministic default, checked below
    a.create_topics([NewTopic(topic, len(assignment), len(assignment[0]))])[topic].result(30)
    want = {p: (replicas[0], replicas) for p, replicas in enumerate(assignment)}
    wait_for(lambda: {p: (leader, replicas) for p, (leader, replicas, _) in partitions_of(servers, topic).items()}
             == want, 30, interval=0.2, what=f"topic {topic} with leaders {want}")


def produce(servers: str, topic: str, count: int, partitions: int) -> dict[bytes, bytes]:
    p = Producer({"bootstrap.servers": servers, "acks": "all", "linger.ms": 5})
    sent = {}
    for i in range(count):
        key, value = b"order-%04d" % i, b"value-%04d" % i
        p.produce(topic, key=key, value=value, partition=i % partitions)
        sent[key] = value
    assert p.flush(60) == 0
    return sent


def consume_all(servers: str, topic: str, partitions: int, expected: int) -> dict[bytes, bytes]:
    c = Consumer({"bootstrap.servers": servers, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False})
    got: dict[bytes, bytes] = {}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

        def done():
            for msg in c.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                got[msg.key()] = msg.value()
            return len(got) >= expected
        wait_for(done, 60, interval=0, what=f"{expected} records of {topic}")
    finally:
        c.close()
    return got


def dynamic_configs(servers: str, rtype, name: str) -> dict[str, str]:
    res = ConfigResource(rtype, name)
    client = admin(servers)
    entries = client.describe_configs([res], request_timeout=30)[res].result(30)
    wanted = ConfigSource.DYNAMIC_TOPIC_CONFIG if rtype == ResourceType.TOPIC else ConfigSource.DYNAMIC_BROKER_CONFIG
    return {k: e.value for k, e in entries.items() if e.source == wanted.value}


def verify_until_complete(servers: str, path: str, partitions: list[int], topic: str = TOPIC) -> str:
    """Poll --verify until every partition is reported completed; its last output."""
    last = {}

    def completed():
        out = reassign(servers, "--verify", "--reassignment-json-file", path).stdout
        last["out"] = out
        lines = out.splitlines()
        assert lines[0] == "Status of partition reassignment:", out
        # "There is no active reassignment ... but replica set is" may show for a moment while the answering
        # broker's metadata catches up with the controller; only a lasting one fails (at the deadline)
        return all(f"Reassignment of partition {topic}-{p} is completed." in lines for p in partitions)
    try:
        wait_for(completed, REASSIGN_DEADLINE, interval=0.5, what="--verify to report completion")
    except AssertionError:
        raise AssertionError(f"reassignment did not complete; last --verify said:\n{last.get('out')}") from None
    return last["out"]


# -- the seed's scenario on a three-broker cluster -----------------------------------------------------------

@pytest.fixture
def cluster(cluster_factory):
    c = cluster_factory(3)
    c.wait_ready()
    return c


def test_move_partition_between_brokers(cluster, tmp_path):
    servers = cluster.bootstrap
    create_topic(servers, TOPIC, [[1], [2], [3]])
    sent = produce(servers, TOPIC, 300, 3)

    path = reassignment_file(tmp_path, {2: [1]})
    out = reassign(servers, "--execute", "--reassignment-json-file", path).stdout
    assert out == ("Current partition replica assignment\n\n"
                   f"{assignment_json({2: [3]})}\n\n"
                   "Save this to use as the --reassignment-json-file option during rollback\n"
                   f"Successfully started partition reassignment for {TOPIC}-2\n")

    final = verify_until_complete(servers, path, [2])
    assert final == ("Status of partition reassignment:\n"
                     f"Reassignment of partition {TOPIC}-2 is completed.\n\n"
                     "Clearing broker-level throttles on brokers 1,2,3\n"
                     f"Clearing topic-level throttles on topic {TOPIC}\n")

    wait_for(lambda: partitions_of(servers, TOPIC).get(2) == (1, [1], [1]), 30, interval=0.2,
             what="Metadata: partition 2 on broker 1 only (replicas and ISR), led by broker 1")
    parts = partitions_of(servers, TOPIC)
    assert parts[0][:2] == (1, [1]) and parts[1][:2] == (2, [2])

    assert consume_all(servers, TOPIC, 3, 300) == sent

    assert reassign(servers, "--list").stdout == "No partition reassignments found.\n"
    out = reassign(servers, "--cancel", "--reassignment-json-file", path, "--preserve-throttles").stdout
    assert out == ("None of the specified partition reassignments are active.\n"
                   "None of the specified partition moves are active.\n")

    # rolling back with the JSON --execute printed moves the partition home again
    rollback = write_json(tmp_path / "rollback.json", json.loads(assignment_json({2: [3]})))
    out = reassign(servers, "--execute", "--reassignment-json-file", rollback).stdout
    assert out.endswith(f"Successfully started partition reassignment for {TOPIC}-2\n")
    verify_until_complete(servers, rollback, [2])
    wait_for(lambda: partitions_of(servers, TOPIC).get(2, (None, None))[:2] == (3, [3]), 30, interval=0.2,
             what="partition 2 back on broker 3")
    assert consume_all(servers, TOPIC, 3, 300) == sent


def test_generate_proposal(cluster, tmp_path):
    servers = cluster.bootstrap
    create_topic(servers, TOPIC, [[1], [2], [3]])
    topics = write_json(tmp_path / "topics.json", {"topics": [{"topic": TOPIC}], "version": 1})
    out = reassign(servers, "--generate", "--topics-to-move-json-file", topics, "--broker-list", "1,2").stdout
    assert out == ("Current partition replica assignment\n"
                   f"{assignment_json({0: [1], 1: [2], 2: [3]})}\n\n"
                   "Proposed partition reassignment configuration\n"
                   f"{assignment_json({0: [1], 1: [2], 2: [1]})}\n")
    out = reassign(servers, "--generate", "--topics-to-move-json-file", topics, "--broker-list", "3,2,1",
                   "--disable-rack-aware").stdout
    assert out.splitlines()[-1] == assignment_json({0: [1], 1: [2], 2: [3]})
    # --generate changes nothing
    assert {p: r for p, (_, r, _) in partitions_of(servers, TOPIC).items()} == {0: [1], 1: [2], 2: [3]}
    # more replicas than brokers in the list
    two = f"{TOPIC}-rf2"
    create_topic(servers, two, [[1, 2], [2, 3], [3, 1]])
    topics2 = write_json(tmp_path / "topics2.json", {"topics": [{"topic": two}]})
    result = reassign(servers, "--generate", "--topics-to-move-json-file", topics2, "--broker-list", "1", ok=False)
    assert one_line_error(result) == "Error: Replication factor: 2 larger than available brokers: 1."


def test_throttle_is_set_and_cleared_by_verify(cluster, tmp_path):
    servers = cluster.bootstrap
    create_topic(servers, TOPIC, [[1], [2], [3]])
    produce(servers, TOPIC, 30, 3)
    path = reassignment_file(tmp_path, {0: [2]})
    out = reassign(servers, "--execute", "--reassignment-json-file", path, "--throttle", "100000000").stdout
    assert out.splitlines()[-3:] == [
        "Warning: You must run --verify periodically, until the reassignment completes, to ensure the throttle "
        "is removed.",
        "The inter-broker throttle limit was set to 100000000 B/s",
        f"Successfully started partition reassignment for {TOPIC}-0"]
    # the throttles stay until --verify sees the move complete
    topic_configs = dynamic_configs(servers, ResourceType.TOPIC, TOPIC)
    assert topic_configs.get("leader.replication.throttled.replicas") == "0:1"
    assert topic_configs.get("follower.replication.throttled.replicas") == "0:2"
    for broker in ("1", "2"):
        configs = dynamic_configs(cluster.brokers[int(broker)].bootstrap, ResourceType.BROKER, broker)
        assert configs.get("leader.replication.throttled.rate") == "100000000"
        assert configs.get("follower.replication.throttled.rate") == "100000000"
    assert "leader.replication.throttled.rate" not in dynamic_configs(cluster.brokers[3].bootstrap,
                                                                      ResourceType.BROKER, "3")

    out = verify_until_complete(servers, path, [0])
    assert out.endswith("Clearing broker-level throttles on brokers 1,2,3\n"
                        f"Clearing topic-level throttles on topic {TOPIC}\n")
    topic_configs = dynamic_configs(servers, ResourceType.TOPIC, TOPIC)
    assert "leader.replication.throttled.replicas" not in topic_configs
    assert "follower.replication.throttled.replicas" not in topic_configs
    for broker in ("1", "2", "3"):
        configs = dynamic_configs(cluster.brokers[int(broker)].bootstrap, ResourceType.BROKER, broker)
        assert "leader.replication.throttled.rate" not in configs
        assert "follower.replication.throttled.rate" not in configs


def test_execute_refuses_unknown_broker_and_partition(cluster, tmp_path):
    servers = cluster.bootstrap
    create_topic(servers, TOPIC, [[1], [2], [3]])
    result = reassign(servers, "--execute", "--reassignment-json-file", reassignment_file(tmp_path, {2: [7]}),
                      ok=False)
    assert one_line_error(result) == "Error: Unknown broker id 7"
    result = reassign(servers, "--execute", "--reassignment-json-file", reassignment_file(tmp_path, {5: [1]}),
                      ok=False)
    assert one_line_error(result) == ("Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                                      f"Unable to find partition: {TOPIC}-5")
    assert {p: r for p, (_, r, _) in partitions_of(servers, TOPIC).items()} == {0: [1], 1: [2], 2: [3]}


def test_leader_election_when_nothing_is_to_do(cluster, tmp_path):
    servers = cluster.bootstrap
    create_topic(servers, TOPIC, [[1], [2], [3]])
    path = write_json(tmp_path / "elect.json", {"partitions": [{"topic": TOPIC, "partition": p} for p in range(3)]})
    out = elect(servers, "--election-type", "PREFERRED", "--path-to-json-file", path).stdout
    assert out == f"Valid replica already elected for partitions {TOPIC}-0, {TOPIC}-1, {TOPIC}-2\n"
    out = elect(servers, "--election-type", "preferred", "--topic", TOPIC, "--partition", "1").stdout
    assert out == f"Valid replica already elected for partitions {TOPIC}-1\n"
    # over all partitions Kafka's broker leaves out those that need no election; a broker that lists them
    # must list them as already elected
    out = elect(servers, "--election-type", "PREFERRED", "--all-topic-partitions").stdout
    for line in out.splitlines():
        assert line.startswith("Valid replica already elected for partitions "), out
    # an unknown partition fails, with Kafka's line for it and status 1
    result = elect(servers, "--election-type", "PREFERRED", "--topic", TOPIC, "--partition", "9", ok=False)
    assert result.returncode == 1
    assert result.stdout.startswith(f"Error completing leader election (PREFERRED) for partition: {TOPIC}-9: "
                                    "org.apache.kafka.common.errors.UnknownTopicOrPartitionException"), result.stdout
    assert result.stderr == "1 replica(s) could not be elected\n"


def test_preferred_leader_election_after_failover(cluster_factory, tmp_path):
    c = cluster_factory(3, {"auto.leader.rebalance.enable": "false"})
    c.wait_ready()
    servers = c.bootstrap
    topic = "failover"
    create_topic(servers, topic, [[1, 2]])
    c.brokers[1].stop()
    others = ",".join(b.bootstrap for i, b in c.brokers.items() if i != 1)
    wait_for(lambda: partitions_of(others, topic).get(0, (None,))[0] == 2, 60, interval=0.2,
             what="broker 2 to lead after broker 1 stopped")
    c.brokers[1].start()
    wait_for(lambda: sorted(partitions_of(servers, topic).get(0, (None, None, []))[2]) == [1, 2], 60, interval=0.2,
             what="broker 1 back in the ISR")
    assert partitions_of(servers, topic)[0][0] == 2
    out = elect(servers, "--election-type", "PREFERRED", "--topic", topic, "--partition", "0").stdout
    assert out == f"Successfully completed leader election (PREFERRED) for partitions {topic}-0\n"
    wait_for(lambda: partitions_of(servers, topic)[0][0] == 1, 30, interval=0.2, what="broker 1 to lead again")
    out = elect(servers, "--election-type", "PREFERRED", "--topic", topic, "--partition", "0").stdout
    assert out == f"Valid replica already elected for partitions {topic}-0\n"


# -- bad input against a single broker (runs without the cluster fixtures) -------------------------------------

def test_bad_input_single_broker(broker, tmp_path):
    servers = broker.bootstrap
    a = admin(servers)
    a.create_topics([NewTopic(TOPIC, 3, 1)])[TOPIC].result(30)
    wait_for(lambda: len(partitions_of(servers, TOPIC)) == 3, 10, interval=0.1, what="topic")

    result = reassign(servers, "--execute", "--reassignment-json-file", str(tmp_path / "missing.json"), ok=False)
    assert one_line_error(result).startswith("Error: could not read ")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version":1,"partitions":[{"topic":"myorders","partition":2,"replicas":[1')
    result = reassign(servers, "--execute", "--reassignment-json-file", str(bad), ok=False)
    assert one_line_error(result).startswith("Error: The input string is not a valid JSON: ")
    result = reassign(servers, "--execute", "--reassignment-json-file",
                      write_json(tmp_path / "nofield.json", {"partitions": [{"topic": TOPIC, "replicas": [1]}]}),
                      ok=False)
    assert one_line_error(result) == "Error: No such field exists: `partition`"
    result = reassign(servers, "--execute", "--reassignment-json-file",
                      reassignment_file(tmp_path, {0: [1]}, topic="nosuch"), ok=False)
    assert one_line_error(result) == ("Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                                      "Topic nosuch not found.")
    result = reassign(servers, "--execute", "--reassignment-json-file", reassignment_file(tmp_path, {0: [1, 4]}),
                      ok=False)
    assert one_line_error(result) == "Error: Unknown broker id 4"
    result = reassign(servers, "--reassignment-json-file", reassignment_file(tmp_path, {0: [1]}), ok=False)
    assert one_line_error(result) == \
        "Command must include exactly one action: --generate, --execute, --verify, --cancel, --list"
    topics = write_json(tmp_path / "topics.json", {"topics": [{"topic": "nosuch"}], "version": 1})
    result = reassign(servers, "--generate", "--topics-to-move-json-file", topics, "--broker-list", "1", ok=False)
    assert one_line_error(result) == ("Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                                      "Topic nosuch not found.")
    topics = write_json(tmp_path / "topics.json", {"topics": [{"topic": TOPIC}], "version": 1})
    out = reassign(servers, "--generate", "--topics-to-move-json-file", topics, "--broker-list", "1").stdout
    assert out.splitlines()[-1] == assignment_json({0: [1], 1: [1], 2: [1]})

    result = elect(servers, "--election-type", "preferred", "--path-to-json-file", str(bad), ok=False)
    assert one_line_error(result).startswith("Error: The input string is not a valid JSON: ")
    result = elect(servers, "--election-type", "preferred", "--topic", TOPIC, ok=False)
    assert one_line_error(result) == "Missing required option(s): partition"
    # nothing was changed by any of it
    assert {p: r for p, (_, r, _) in partitions_of(servers, TOPIC).items()} == {0: [1], 1: [1], 2: [1]}


def test_unreachable_cluster_is_one_line(tmp_path):
    result = reassign(CLOSED, "--list", ok=False)
    assert one_line_error(result) == f"could not connect to {CLOSED}: Connection refused"
    result = elect(CLOSED, "--election-type", "preferred", "--all-topic-partitions", ok=False)
    assert one_line_error(result) == f"could not connect to {CLOSED}: Connection refused"


@pytest.mark.parametrize("script, name", [("kafka-reassign-partitions.sh", "reassign-partitions"),
                                          ("kafka-leader-election.sh", "leader-election")])
def test_kafka_script_names(script, name):
    if not (BIN / script).exists():
        pytest.skip(f"{script} is not installed yet (pip install -e . creates it)")
    result = tool(name, CLOSED, "--help", script=script)
    assert result.stdout.startswith("usage:")
