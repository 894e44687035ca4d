"""kafka-configs.sh and kafka-delete-records.sh (`josef configs`, `josef delete-records`) against a real broker.

Topics are created and filled with confluent-kafka; the tools run as subprocesses with a timeout
and their output is parsed; every effect is read back independently: configs with
AdminClient.describe_configs, low watermarks with Consumer.get_watermark_offsets (ListOffsets),
records by consuming from the beginning. Nothing waits by sleeping.
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
CALL_TIMEOUT = 60
CLOSED = "127.0.0.1:1"  # nothing listens here: argument errors must be found before connecting


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tool(tool_name: str, servers: str | None, *argv: str, ok: bool = True,
         script: str | None = None) -> subprocess.CompletedProcess:
    """Run `josef <tool_name>` (or a kafka-*.sh script); never a traceback, whatever the outcome."""
    cmd = [str(BIN / script)] if script else [str(BIN / "josef"), tool_name]
    if servers is not None:
        cmd += ["--bootstrap-server", servers]
    cmd += list(argv)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, f"{cmd} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.stderr == "", result.stderr
    return result


def configs(broker, *argv: str, ok: bool = True, script: str | None = None) -> subprocess.CompletedProcess:
    return tool("configs", broker.bootstrap, *argv, ok=ok, script=script)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def parse_describe(stdout: str) -> dict[str, dict[str, tuple[str, str, list[str]]]]:
    """{header: {key: (value, sensitive, [SOURCE:name=value, ...])}} from Kafka's --describe layout."""
    sections: dict[str, dict] = {}
    current = None
    for line in stdout.splitlines():
        if not line.startswith("  "):
            assert line.endswith(" are:"), line
            current = sections.setdefault(line, {})
            continue
        key_value, rest = line[2:].split(" sensitive=", 1)
        sensitive, synonyms = rest.split(" synonyms=", 1)
        assert synonyms.startswith("{") and synonyms.endswith("}"), line
        key, value = key_value.split("=", 1)
        current[key] = (value, sensitive, [s for s in synonyms[1:-1].split(", ") if s])
    return sections


# -- set-up and read-back with confluent-kafka ------------------------------------------------------

def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, topic: str, partitions: int = 1, config: dict | None = None) -> None:
    a = admin(broker)
    a.create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic].result(30)
    wait_for(lambda: topic in a.list_topics(timeout=5).topics, 10, what=f"topic {topic}")


def described(broker, rtype, rname: str) -> dict:
    res = ConfigResource(rtype, rname)
    client = admin(broker)  # kept alive until the answer is in
    return client.describe_configs([res], request_timeout=30)[res].result(30)


def produce(broker, topic: str, counts: dict[int, int]) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for partition, count in counts.items():
        for i in range(count):
            p.produce(topic, value=b"p%d-%d" % (partition, i), partition=partition)
    assert p.flush(30) == 0


def watermarks(broker, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": name("wm"), "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def first_offset_from_beginning(broker, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": name("from-start"),
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        msg = wait_for(lambda: _record(c), 20, interval=0, what="a record from the beginning")
        return msg.offset()
    finally:
        c.close()


def _record(c: Consumer):
    msg = c.poll(0.2)
    if msg is None:
        return None
    assert msg.error() is None, msg.error()
    return msg


# -- topics -------------------------------------------------------------------------------------------

def test_topic_describe_alter_and_delete(broker):
    topic = name("cfg")
    create_topic(broker, topic, config={"retention.ms": "3600000"})

    out = configs(broker, "--describe", "--entity-type", "topics", "--entity-name", topic)
    header = f"Dynamic configs for topic {topic} are:"
    dynamic = parse_describe(out.stdout)[header]
    assert list(dynamic) == ["retention.ms"]
    value, sensitive, synonyms = dynamic["retention.ms"]
    assert (value, sensitive) == ("3600000", "false")
    assert synonyms[0] == "DYNAMIC_TOPIC_CONFIG:retention.ms=3600000"
    assert synonyms[-1] == "DEFAULT_CONFIG:log.retention.hours=168"

    # several configs at once, a list value in Kafka's [a,b] syntax, the --topic shorthand
    out = configs(broker, "--alter", "--topic", topic,
                  "--add-config", "max.message.bytes=2000,cleanup.policy=[delete,compact],retention.ms=60000")
    assert out.stdout == f"Completed updating config for topic {topic}.\n"
    entries = described(broker, ResourceType.TOPIC, topic)
    assert entries["max.message.bytes"].value == "2000"
    assert entries["cleanup.policy"].value == "delete,compact"
    assert entries["retention.ms"].value == "60000"
    assert entries["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    out = configs(broker, "--describe", "--topic", topic)
    dynamic = parse_describe(out.stdout)[header]
    assert sorted(dynamic) == ["cleanup.policy", "max.message.bytes", "retention.ms"]
    assert dynamic["cleanup.policy"][0] == "delete,compact"
    assert dynamic["cleanup.policy"][2] == ["DYNAMIC_TOPIC_CONFIG:cleanup.policy=delete,compact",
                                            "DEFAULT_CONFIG:log.cleanup.policy=delete"]

    out = configs(broker, "--alter", "--topic", topic, "--delete-config", "cleanup.policy,max.message.bytes")
    assert out.stdout == f"Completed updating config for topic {topic}.\n"
    entries = described(broker, ResourceType.TOPIC, topic)
    assert entries["cleanup.policy"].value == "delete"
    assert entries["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["retention.ms"].value == "60000"

    # --all: every config, defaults included, sorted by name
    out = configs(broker, "--describe", "--topic", topic, "--all", script="kafka-configs.sh")
    every = parse_describe(out.stdout)[f"All configs for topic {topic} are:"]
    assert list(every) == sorted(every)
    assert {"retention.ms", "segment.bytes", "cleanup.policy", "min.insync.replicas"} <= set(every)
    assert every["segment.bytes"] == ("1073741824", "false", ["DEFAULT_CONFIG:log.segment.bytes=1073741824"])
    assert every["retention.ms"][0] == "60000"


def test_add_config_file_and_describe_every_topic(broker, tmp_path):
    first, second = name("file-a"), name("file-b")
    create_topic(broker, first)
    create_topic(broker, second, config={"segment.ms": "100000"})
    props = tmp_path / "topic.properties"
    props.write_text("# overrides\nretention.bytes=1048576\nmin.cleanable.dirty.ratio = 0.25\n")
    out = configs(broker, "--alter", "--entity-type", "topics", "--entity-name", first,
                  "--add-config-file", str(props))
    assert out.stdout == f"Completed updating config for topic {first}.\n"
    entries = described(broker, ResourceType.TOPIC, first)
    assert (entries["retention.bytes"].value, entries["min.cleanable.dirty.ratio"].value) == ("1048576", "0.25")

    # no entity name: every topic, internal ones too
    sections = parse_describe(configs(broker, "--describe", "--entity-type", "topics").stdout)
    assert set(sections[f"Dynamic configs for topic {first} are:"]) == {"retention.bytes", "min.cleanable.dirty.ratio"}
    assert sections[f"Dynamic configs for topic {second} are:"]["segment.ms"][0] == "100000"
    assert "Dynamic configs for topic __consumer_offsets are:" in sections


# -- brokers ----------------------------------------------------------------------------------------------

def test_broker_and_cluster_default_configs(broker):
    topic = name("brk")
    create_topic(broker, topic)

    out = configs(broker, "--alter", "--entity-type", "brokers", "--entity-default",
                  "--add-config", "log.retention.ms=120000")
    assert out.stdout == "Completed updating default config for brokers in the cluster.\n"
    entry = described(broker, ResourceType.TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("120000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)

    out = configs(broker, "--describe", "--entity-type", "brokers", "--entity-default")
    default = parse_describe(out.stdout)["Default configs for brokers in the cluster are:"]
    assert default == {"log.retention.ms": ("120000", "false", ["DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=120000"])}

    out = configs(broker, "--alter", "--broker", "1", "--add-config", "log.retention.ms=60000")
    assert out.stdout == "Completed updating config for broker 1.\n"
    assert described(broker, ResourceType.BROKER, "1")["log.retention.ms"].value == "60000"
    entry = described(broker, ResourceType.TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("60000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)

    # both levels show as synonyms (librdkafka would keep only one of the two same-named ones)
    out = configs(broker, "--describe", "--entity-type", "brokers", "--entity-name", "1")
    dynamic = parse_describe(out.stdout)["Dynamic configs for broker 1 are:"]
    assert list(dynamic) == ["log.retention.ms"]
    assert dynamic["log.retention.ms"][0] == "60000"
    assert dynamic["log.retention.ms"][2][:2] == ["DYNAMIC_BROKER_CONFIG:log.retention.ms=60000",
                                                  "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=120000"]

    # every broker, then the default entity
    out = configs(broker, "--describe", "--entity-type", "brokers")
    assert list(parse_describe(out.stdout)) == ["Dynamic configs for broker 1 are:",
                                                "Default configs for brokers in the cluster are:"]

    # --all shows static configs too
    out = configs(broker, "--describe", "--broker", "1", "--all")
    every = parse_describe(out.stdout)["All configs for broker 1 are:"]
    assert every["broker.id"][0] == "1"
    assert every["log.retention.ms"][0] == "60000"
    assert len(every) > 10

    out = configs(broker, "--alter", "--broker", "1", "--delete-config", "log.retention.ms")
    assert out.stdout == "Completed updating config for broker 1.\n"
    out = configs(broker, "--alter", "--broker-defaults", "--delete-config", "log.retention.ms")
    assert out.stdout == "Completed updating default config for brokers in the cluster.\n"
    entry = described(broker, ResourceType.TOPIC, topic)["retention.ms"]
    assert entry.source == ConfigSource.DEFAULT_CONFIG.value
    out = configs(broker, "--describe", "--entity-type", "brokers", "--entity-default")
    assert out.stdout == "Default configs for brokers in the cluster are:\n"


# -- errors from the broker --------------------------------------------------------------------------------

def test_invalid_values_unknown_topics_and_missing_configs(broker):
    topic = name("bad")
    create_topic(broker, topic, config={"retention.ms": "3600000"})

    out = configs(broker, "--alter", "--topic", topic, "--add-config", "retention.ms=later", ok=False)
    line = one_line_error(out)
    assert line.startswith("Error while executing config command: "
                           "org.apache.kafka.common.errors.InvalidConfigurationException: ")
    assert "later" in line and "retention.ms" in line
    assert out.stdout == ""
    assert described(broker, ResourceType.TOPIC, topic)["retention.ms"].value == "3600000"

    out = configs(broker, "--alter", "--topic", topic, "--add-config", "cleanup.policy=sometimes", ok=False)
    assert "InvalidConfigurationException" in one_line_error(out) and "sometimes" in one_line_error(out)

    out = configs(broker, "--alter", "--entity-type", "brokers", "--entity-default",
                  "--add-config", "log.retention.ms=soon", ok=False)
    assert "InvalidConfigurationException" in one_line_error(out) and "soon" in one_line_error(out)

    out = configs(broker, "--alter", "--topic", topic, "--delete-config", "retention.ms,segment.bytes,flush.ms",
                  ok=False)
    assert one_line_error(out) == "Invalid config(s): segment.bytes,flush.ms"
    assert described(broker, ResourceType.TOPIC, topic)["retention.ms"].value == "3600000"

    missing = name("missing")
    for argv in (("--describe", "--topic", missing), ("--alter", "--topic", missing, "--add-config", "retention.ms=1")):
        out = configs(broker, *argv, ok=False)
        line = one_line_error(out)
        assert line.startswith("Error while executing config command: "
                               "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "), line
        assert missing in line or "does not host" in line

    out = configs(broker, "--describe", "--broker", "7", ok=False)
    assert "Broker 7" in one_line_error(out)


# -- delete-records ---------------------------------------------------------------------------------------

def offsets_file(tmp_path, entries: list[tuple[str, int, int]]) -> str:
    path = tmp_path / f"offsets-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"partitions": [{"topic": t, "partition": p, "offset": o} for t, p, o in entries],
                                "version": 1}))
    return str(path)


def delete_lines(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    assert lines[:2] == ["Executing records delete operation", "Records delete operation completed:"], stdout
    result = {}
    for line in lines[2:]:
        partition, outcome = line.split("\t")
        assert partition.startswith("partition: "), line
        result[partition[len("partition: "):]] = outcome
    return result


def test_delete_records(broker, tmp_path):
    topic = name("del")
    create_topic(broker, topic, partitions=2)
    produce(broker, topic, {0: 20, 1: 6})

    out = tool("delete-records", broker.bootstrap, "--offset-json-file",
               offsets_file(tmp_path, [(topic, 0, 5), (topic, 1, -1)]))
    assert delete_lines(out.stdout) == {f"{topic}-0": "low_watermark: 5", f"{topic}-1": "low_watermark: 6"}
    assert watermarks(broker, topic, 0) == (5, 20)
    assert watermarks(broker, topic, 1) == (6, 6)
    assert first_offset_from_beginning(broker, topic, 0) == 5

    # beyond the high watermark: Kafka's OFFSET_OUT_OF_RANGE on that partition's line, nothing moves;
    # an unknown partition and topic get theirs; the good one still goes through
    missing = name("missing")
    out = tool("delete-records", broker.bootstrap, "--offset-json-file",
               offsets_file(tmp_path, [(topic, 0, 21), (topic, 0 + 7, 1), (missing, 0, 1), (topic, 1, 6)]),
               script="kafka-delete-records.sh")
    assert delete_lines(out.stdout) == {
        f"{topic}-0": "error: org.apache.kafka.common.errors.OffsetOutOfRangeException: The requested offset is "
                      "not within the range of offsets maintained by the server.",
        f"{topic}-7": "error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server does "
                      "not host this topic-partition.",
        f"{missing}-0": "error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server does "
                        "not host this topic-partition.",
        f"{topic}-1": "low_watermark: 6",
    }
    assert watermarks(broker, topic, 0) == (5, 20)

    # -1 is the high watermark
    out = tool("delete-records", broker.bootstrap, "--offset-json-file", offsets_file(tmp_path, [(topic, 0, -1)]))
    assert delete_lines(out.stdout) == {f"{topic}-0": "low_watermark: 20"}
    assert watermarks(broker, topic, 0) == (20, 20)


BAD_OFFSET_FILES = [
    ("not json", "The input string is not a valid JSON"),
    ('{"version": 1}', "Missing partitions field"),
    ('{"version": 2, "partitions": []}', "Not supported version field value 2"),
    ('{"partitions": [{"topic": "t", "partition": 0}]}', "No such field exists: `offset`"),
    ('{"partitions": [{"topic": "t", "partition": "zero", "offset": 1}]}', 'Expected `Int` value, received "zero"'),
    ('{"partitions": [{"topic": "t", "partition": 0, "offset": 1}, {"topic": "t", "partition": 0, "offset": 2}]}',
     "Offset json file contains duplicate topic partitions: t-0"),
]


@pytest.mark.parametrize("text,message", BAD_OFFSET_FILES, ids=[m for _, m in BAD_OFFSET_FILES])
def test_delete_records_bad_files(tmp_path, text, message):
    path = tmp_path / "offsets.json"
    path.write_text(text)
    out = tool("delete-records", CLOSED, "--offset-json-file", str(path), ok=False)
    assert one_line_error(out) == message
    assert out.stdout == ""


def test_delete_records_bad_flags(tmp_path):
    out = tool("delete-records", CLOSED, ok=False)
    assert one_line_error(out) == 'Missing required argument "[offset-json-file]"'
    out = tool("delete-records", None, "--offset-json-file", str(tmp_path / "x.json"), ok=False)
    assert one_line_error(out) == 'Missing required argument "[bootstrap-server]"'
    out = tool("delete-records", CLOSED, "--offset-json-file", str(tmp_path / "absent.json"), ok=False)
    assert one_line_error(out).startswith("cannot read offset json file ")
    path = tmp_path / "ok.json"
    path.write_text('{"partitions": [{"topic": "t", "partition": 0, "offset": 1}], "version": 1}')
    out = tool("delete-records", CLOSED, "--offset-json-file", str(path), ok=False)
    assert one_line_error(out).startswith("could not connect to 127.0.0.1:1")


# -- bad flags -------------------------------------------------------------------------------------------

BAD_FLAGS = [
    ((), "Command must include exactly one action: --describe, --alter"),
    (("--describe", "--alter", "--topic", "t"), "Command must include exactly one action: --describe, --alter"),
    (("--describe",), "At least one entity type must be specified"),
    (("--describe", "--entity-type", "widgets"),
     "Invalid entity type widgets, the entity type must be one of topics, clients, users, brokers, ips, "
     "broker-loggers, client-metrics, groups with a --bootstrap-server or --bootstrap-controller argument"),
    (("--describe", "--entity-type", "topics", "--entity-type", "topics"), "Duplicate entity type(s) specified: topics"),
    (("--describe", "--entity-type", "topics", "--entity-type", "brokers"),
     "Only 'users' and 'clients' entity types may be specified together"),
    (("--describe", "--entity-name", "x", "--topic", "t"),
     "--entity-{type,name,default} should not be used in conjunction with specific entity flags"),
    (("--describe", "--topic", "t", "--add-config", "a=b"), 'Option "[describe]" can\'t be used with option "[add-config]"'),
    (("--describe", "--topic", "t", "--delete-config", "a"),
     'Option "[describe]" can\'t be used with option "[delete-config]"'),
    (("--describe", "--entity-type", "topics", "--entity-default"),
     "--entity-default must not be specified with --describe of topics"),
    (("--describe", "--broker", "one"), "The entity name for brokers must be a valid integer broker id, but it is: one"),
    (("--alter", "--entity-type", "topics", "--add-config", "a=b"),
     "An entity name must be specified with --alter of topics"),
    (("--alter", "--entity-type", "brokers", "--add-config", "a=b"),
     "An entity-name or default entity must be specified with --alter of users, clients, brokers or ips"),
    (("--alter", "--topic", "t"),
     "At least one of --add-config, --add-config-file, or --delete-config must be specified with --alter"),
    (("--alter", "--topic", "t", "--add-config", "a=b", "--add-config-file", "f"),
     "Only one of --add-config or --add-config-file must be specified"),
    (("--alter", "--topic", "t", "--add-config", "retention.ms"),
     'requirement failed: Invalid entity config: all configs to be added must be in the format "key=val".'),
    (("--alter", "--topic", "t", "--add-config", "a=b=c"),
     'requirement failed: Invalid entity config: all configs to be added must be in the format "key=val".'),
    (("--alter", "--topic", "t", "--add-config", "a b=1"), "Invalid character found for config key: a b"),
    (("--describe", "--topic", "a/b"),
     "Topic name \"a/b\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"),
    (("--describe", "--entity-type", "users"), "Entity type users is not supported by josef; supported: topics, brokers"),
    (("--describe", "--topic", "t", "--no-such-flag"),
     "kafka-configs.sh: unrecognized arguments: --no-such-flag (see --help)"),
]


@pytest.mark.parametrize("argv,message", BAD_FLAGS, ids=[" ".join(a) or "no-action" for a, _ in BAD_FLAGS])
def test_configs_bad_flags_one_line(argv, message):
    out = tool("configs", CLOSED, *argv, ok=False)
    assert one_line_error(out) == message
    assert out.stdout == ""


def test_configs_connection_flags():
    out = tool("configs", None, "--describe", "--topic", "t", ok=False)
    assert one_line_error(out) == ("One of the required --bootstrap-server, --bootstrap-controller, or --zookeeper "
                                   "arguments must be specified")
    out = tool("configs", CLOSED, "--describe", "--topic", "t", "--zookeeper", "localhost:2181", ok=False)
    assert one_line_error(out) == "Only one of --bootstrap-server, --bootstrap-controller, and --zookeeper can be specified"
    out = tool("configs", None, "--describe", "--broker", "1", "--zookeeper", "localhost:2181", ok=False)
    assert "--zookeeper is not supported" in one_line_error(out)
    out = tool("configs", CLOSED, "--describe", "--topic", "t", ok=False)
    assert one_line_error(out).startswith("could not connect to 127.0.0.1:1")
