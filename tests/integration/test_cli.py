"""The Kafka command-line tools, run as installed scripts against a real broker.

Every subprocess call has a timeout; nothing waits by sleeping. With JOSEF_TEST_BROKER=tansu
the same tests run against Tansu (tests that need josef's data directory or APIs Tansu lacks
are skipped there).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from josef.cli.console_producer import LineReader, Partitioner, murmur2, partition_for_key

BIN = Path(sys.executable).parent
TANSU = os.environ.get("JOSEF_TEST_BROKER") == "tansu"
CALL_TIMEOUT = 60


def tool(*argv: str, input: str | None = None, timeout: float = CALL_TIMEOUT, ok: bool = True,
         script: str | None = None) -> subprocess.CompletedProcess:
    """Run `josef <argv>` (or a kafka-*.sh script); never a traceback, whatever the outcome."""
    cmd = [str(BIN / script), *argv] if script else [str(BIN / "josef"), *argv]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, f"{cmd} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(broker, topic: str, partitions: int = 1) -> None:
    out = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(partitions), "--replication-factor", "1")
    assert out.stdout.strip() == f"Created topic {topic}."


def produce(broker, topic: str, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    return tool("console-producer", "--bootstrap-server", broker.bootstrap, "--topic", topic, *extra,
                input="".join(line + "\n" for line in lines))


def consume(broker, topic: str, count: int, *extra: str) -> list[str]:
    out = tool("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
               "--max-messages", str(count), "--timeout-ms", "20000", *extra)
    assert f"Processed a total of {count} messages" in out.stderr, out.stderr
    return out.stdout.splitlines()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- murmur2 and partitioning (no broker) -------------------------------------------------------

# Kafka's own test vectors (UtilsTest.testMurmur2).
MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data,expected", MURMUR2_VECTORS.items())
def test_murmur2_matches_kafka(data, expected):
    assert murmur2(data) == expected


def test_murmur2_matches_kafka_python_on_random_input():
    from kafka.partitioner.default import murmur2 as reference
    for i in range(500):
        data = os.urandom(i % 40)
        assert murmur2(data) & 0xFFFFFFFF == reference(data) & 0xFFFFFFFF


class _FakeMetadata:
    """What Producer.list_topics returns, reduced to what Partitioner reads."""

    def __init__(self, topic: str, leaders: dict[int, int]):
        class P:  # noqa: D401 - plain record
            def __init__(self, pid, leader):
                self.id, self.leader = pid, leader

        class T:
            error = None
            partitions = {pid: P(pid, leader) for pid, leader in leaders.items()}

        self.topics = {topic: T()}


class _FakeProducer:
    def __init__(self, leaders):
        self.leaders = leaders

    def list_topics(self, topic=None, timeout=None):
        return _FakeMetadata(topic, self.leaders)


def test_keyless_records_avoid_partitions_without_leader():
    partitioner = Partitioner(_FakeProducer({0: 1, 1: 2, 2: -1}), "t", "x:1", batch_size=100, max_block_s=1,
                              errors=None)
    chosen = {partitioner.choose(None, 60) for _ in range(200)}
    assert chosen == {0, 1}  # sticky, switching after a batch's worth, never partition 2


def test_keyed_records_use_every_partition():
    partitioner = Partitioner(_FakeProducer({0: 1, 1: 1, 2: -1}), "t", "x:1", batch_size=100, max_block_s=1,
                              errors=None)
    for key in (b"a", b"b", b"c", b"key-17"):
        assert partitioner.choose(key, 1) == partition_for_key(key, 3)


def test_line_reader_keys_headers_and_null_marker():
    reader = LineReader({"parse.key": "true", "key.separator": ":", "parse.headers": "true",
                         "null.marker": "NULL"})
    assert reader.parse("h1:x,h2:NULL\tk:v") == (b"k", b"v", [("h1", b"x"), ("h2", None)])
    assert reader.parse("NULL\tNULL:value") == (None, b"value", [])


# -- the dispatcher -----------------------------------------------------------------------------

def test_josef_help_lists_the_tools():
    out = tool("--help")
    for name_ in ("topics", "console-producer", "console-consumer", "get-offsets", "broker-api-versions",
                  "dump-log"):
        assert name_ in out.stdout


def test_unknown_tool_is_one_line():
    result = tool("no-such-tool", ok=False)
    assert "unknown tool" in one_line_error(result)


def test_dispatcher_imports_nothing_heavy():
    code = ("import sys, josef.cli.main; "
            "bad = [m for m in ('confluent_kafka', 'kio', 'argparse') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=CALL_TIMEOUT)


# -- bad flags and unreachable brokers ------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--list", "--no-such-flag"],
    ["topics", "--list"],
    ["topics", "--bootstrap-server", "127.0.0.1:9"],
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--list", "--create", "--topic", "x"],
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--create"],
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--create", "--topic", "x", "--partitions", "0"],
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--create", "--topic", "x", "--partitions", "two"],
    ["topics", "--bootstrap-server", "127.0.0.1:9", "--alter", "--topic", "x"],
    ["topics", "--bootstrap-server", "not-a-host-port", "--list"],
    ["console-producer", "--bootstrap-server", "127.0.0.1:9"],
    ["console-producer", "--topic", "x"],
    ["console-consumer", "--bootstrap-server", "127.0.0.1:9"],
    ["console-consumer", "--bootstrap-server", "127.0.0.1:9", "--topic", "x", "--offset", "5"],
    ["console-consumer", "--bootstrap-server", "127.0.0.1:9", "--topic", "x", "--partition", "0",
     "--offset", "-5"],
    ["get-offsets", "--bootstrap-server", "127.0.0.1:9", "--time", "yesterday"],
    ["dump-log"],
    ["dump-log", "--files", "/nonexistent/00000000000000000000.log"],
])
def test_bad_flags_give_one_line_and_nonzero_exit(argv):
    result = tool(*argv, ok=False, timeout=20)
    one_line_error(result)


@pytest.mark.parametrize("argv", [
    ["topics", "--list"],
    ["console-producer", "--topic", "t"],
    ["console-consumer", "--topic", "t"],
    ["get-offsets", "--topic", "t"],
    ["broker-api-versions"],
])
def test_unreachable_broker_fails_fast_with_one_line(argv):
    start = time.monotonic()
    result = tool(argv[0], "--bootstrap-server", f"127.0.0.1:{closed_port()}", *argv[1:],
                  input="x\n", ok=False, timeout=30)
    assert time.monotonic() - start < 15
    assert "could not connect to 127.0.0.1:" in one_line_error(result)


def test_kafka_script_names_work_too():
    result = tool("--list", script="kafka-topics.sh", ok=False, timeout=20)
    assert one_line_error(result) == "--bootstrap-server must be specified"


# -- kafka-topics.sh ------------------------------------------------------------------------------

def test_topics_create_list_describe_delete(broker):
    topic = name("orders")
    create(broker, topic, partitions=3)
    listed = tool("topics", "--bootstrap-server", broker.bootstrap, "--list").stdout.splitlines()
    assert topic in listed

    described = tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic)
    first, *partitions = described.stdout.splitlines()
    assert re.fullmatch(rf"Topic: {topic}\tTopicId: [A-Za-z0-9_-]{{22}}\tPartitionCount: 3\t"
                        r"ReplicationFactor: 1\tConfigs: .*", first), first
    assert len(partitions) == 3
    for i, line in enumerate(partitions):
        assert re.fullmatch(rf"\tTopic: {topic}\tPartition: {i}\tLeader: (\d+)\tReplicas: \1\tIsr: \1", line), line

    again = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic, ok=False)
    line = one_line_error(again)
    assert line.startswith("Error while executing topic command : ") and "already exists" in line
    tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic, "--if-not-exists")

    tool("topics", "--bootstrap-server", broker.bootstrap, "--delete", "--topic", topic)
    assert topic not in tool("topics", "--bootstrap-server", broker.bootstrap, "--list").stdout.splitlines()
    gone = tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic, ok=False)
    assert one_line_error(gone) == f"Error while executing topic command : Topic '{topic}' does not exist as expected"
    tool("topics", "--bootstrap-server", broker.bootstrap, "--delete", "--topic", topic, "--if-exists")


def test_topics_regex_and_kafka_script(broker):
    prefix = name("rx")
    for suffix in ("a", "b"):
        create(broker, f"{prefix}-{suffix}")
    out = tool("--bootstrap-server", broker.bootstrap, "--describe", "--topic", f"{prefix}-.*",
               script="kafka-topics.sh")
    headers = [line.split("\t")[0] for line in out.stdout.splitlines() if line.startswith("Topic:")]
    assert headers == [f"Topic: {prefix}-a", f"Topic: {prefix}-b"]
    listed = tool("--bootstrap-server", broker.bootstrap, "--list", "--topic", f"{prefix}-a",
                  script="kafka-topics.sh")
    assert listed.stdout.splitlines() == [f"{prefix}-a"]


def test_topics_create_with_configs_and_assignment(broker):
    topic = name("cfg")
    out = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--config", "retention.ms=60000", "--config", "cleanup.policy=delete")
    assert out.stdout.strip() == f"Created topic {topic}."
    bad = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", name("cfg"),
               "--config", "retention.ms", ok=False)
    assert "Invalid topic config" in one_line_error(bad)
    leader = re.search(r"\tLeader: (\d+)", tool("topics", "--bootstrap-server", broker.bootstrap, "--describe",
                                                 "--topic", topic).stdout).group(1)
    assigned = name("ra")
    tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", assigned,
         "--replica-assignment", f"{leader},{leader}")
    described = tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", assigned).stdout
    if not TANSU:  # Tansu ignores replica assignments
        assert "\tPartitionCount: 2\tReplicationFactor: 1\t" in described
    dupes = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", name("ra"),
                 "--replica-assignment", f"{leader}:{leader}", ok=False)
    assert "may not contain duplicate entries" in one_line_error(dupes)
    both = tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", name("ra"),
                "--replica-assignment", "1,1", "--partitions", "2", ok=False)
    assert "can't be used with option" in one_line_error(both)


@pytest.mark.skipif(TANSU, reason="Tansu has no CreatePartitions")
def test_topics_alter_partitions(broker):
    topic = name("grow")
    create(broker, topic, partitions=2)
    tool("topics", "--bootstrap-server", broker.bootstrap, "--alter", "--topic", topic, "--partitions", "4")
    described = tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic).stdout
    assert "\tPartitionCount: 4\t" in described
    shrink = tool("topics", "--bootstrap-server", broker.bootstrap, "--alter", "--topic", topic,
                  "--partitions", "1", ok=False)
    assert one_line_error(shrink).startswith("Error while executing topic command : ")
    missing = tool("topics", "--bootstrap-server", broker.bootstrap, "--alter", "--topic", name("none"),
                   "--partitions", "3", ok=False)
    assert "does not exist as expected" in one_line_error(missing)


# -- console producer and consumer ----------------------------------------------------------------

def test_round_trip_with_keys_from_beginning(broker):
    topic = name("rt")
    create(broker, topic, partitions=3)
    lines = [f"key{i}\tvalue {i}" for i in range(20)]
    produce(broker, topic, lines, "--property", "parse.key=true")
    got = consume(broker, topic, 20, "--from-beginning", "--property", "print.key=true",
                  "--property", "print.partition=true")
    assert sorted(line.split("\t", 1)[1] for line in got) == sorted(lines)
    for line in got:  # every key sits where Java's partitioner puts it
        partition, key, _ = line.split("\t")
        assert partition == f"Partition:{partition_for_key(key.encode(), 3)}"


def test_keyed_partitions_match_librdkafkas_java_compatible_partitioner(broker):
    from confluent_kafka import Producer
    ours, theirs = name("ours"), name("theirs")
    create(broker, ours, partitions=5)
    create(broker, theirs, partitions=5)
    keys = [f"user-{i}" for i in range(30)]
    produce(broker, ours, [f"{k}\tx" for k in keys], "--property", "parse.key=true")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        producer.produce(theirs, key=k.encode(), value=b"x")
    assert producer.flush(30) == 0

    def placement(topic):
        got = consume(broker, topic, len(keys), "--from-beginning", "--property", "print.key=true",
                      "--property", "print.partition=true", "--property", "print.value=false")
        return dict(line.split("\t")[::-1] for line in got)

    assert placement(ours) == placement(theirs)


def test_consumer_partition_and_offset(broker):
    topic = name("po")
    create(broker, topic)
    produce(broker, topic, [f"m{i}" for i in range(6)], "--sync")
    assert consume(broker, topic, 3, "--partition", "0", "--offset", "2") == ["m2", "m3", "m4"]
    assert consume(broker, topic, 2, "--partition", "0", "--offset", "earliest") == ["m0", "m1"]
    assert consume(broker, topic, 1, "--partition", "0", "--from-beginning",
                   "--property", "print.offset=true") == ["Offset:0\tm0"]


def test_consumer_default_formatter_columns_and_headers(broker):
    topic = name("fmt")
    create(broker, topic)
    produce(broker, topic, ["h1:a,h2:b\tk1\tv1", "\tk2\tv2"], "--property", "parse.key=true",
            "--property", "parse.headers=true", "--property", "ignore.error=true")
    got = consume(broker, topic, 2, "--from-beginning", "--property", "print.timestamp=true",
                  "--property", "print.partition=true", "--property", "print.offset=true",
                  "--property", "print.headers=true", "--property", "print.key=true",
                  "--property", "key.separator= | ")
    assert re.fullmatch(r"CreateTime:\d+ \| Partition:0 \| Offset:0 \| h1:a,h2:b \| k1 \| v1", got[0]), got
    assert re.fullmatch(r"CreateTime:\d+ \| Partition:0 \| Offset:1 \| .* \| k2 \| v2", got[1]), got


def test_consumer_timeout_without_messages(broker):
    topic = name("idle")
    create(broker, topic)
    start = time.monotonic()
    out = tool("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
               "--timeout-ms", "500")
    assert time.monotonic() - start < 15
    assert out.stdout == ""
    assert "Processed a total of 0 messages" in out.stderr
    assert "TimeoutException" in out.stderr


def test_producer_reports_unparseable_line(broker):
    topic = name("bad")
    create(broker, topic)
    result = tool("console-producer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
                  "--property", "parse.key=true", input="k\tv\nno separator here\n", ok=False)
    assert one_line_error(result) == "No key separator found on line number 2: 'no separator here'"
    assert consume(broker, topic, 1, "--from-beginning", "--property", "print.key=true") == ["k\tv"]


def test_producer_old_broker_list_flag_and_compression(broker):
    topic = name("old")
    create(broker, topic)
    tool("console-producer", "--broker-list", broker.bootstrap, "--topic", topic, "--compression-codec",
         "gzip", "--request-required-acks", "1", input="zipped\n")
    assert consume(broker, topic, 1, "--from-beginning") == ["zipped"]


def test_consumer_ctrl_c_exits_quietly(broker):
    topic = name("sigint")
    create(broker, topic)
    proc = subprocess.Popen([str(BIN / "josef"), "console-consumer", "--bootstrap-server", broker.bootstrap,
                             "--topic", topic, "--from-beginning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        produce(broker, topic, ["first"])
        assert proc.stdout.readline() == "first\n"  # the consumer is running and polling
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in err
    assert "Processed a total of 1 messages" in err
    assert proc.returncode == 130


# -- kafka-get-offsets.sh -------------------------------------------------------------------------

def test_get_offsets(broker):
    topic = name("go")
    create(broker, topic, partitions=2)
    # one record per batch (--sync), keys chosen for their partitions
    keys = {p: next(f"k{i}" for i in range(100) if partition_for_key(f"k{i}".encode(), 2) == p) for p in (0, 1)}
    produce(broker, topic, [f"{keys[0]}\ta", f"{keys[0]}\tb", f"{keys[1]}\tc"], "--sync",
            "--property", "parse.key=true")
    latest = tool("get-offsets", "--bootstrap-server", broker.bootstrap, "--topic", topic)
    assert latest.stdout.splitlines() == [f"{topic}:0:2", f"{topic}:1:1"]
    earliest = tool("--bootstrap-server", broker.bootstrap, "--topic", topic, "--time", "-2",
                    script="kafka-get-offsets.sh")
    assert earliest.stdout.splitlines() == [f"{topic}:0:0", f"{topic}:1:0"]
    only_one = tool("get-offsets", "--bootstrap-server", broker.bootstrap, "--topic-partitions", f"{topic}:1")
    assert only_one.stdout.splitlines() == [f"{topic}:1:1"]
    nothing = tool("get-offsets", "--bootstrap-server", broker.bootstrap, "--topic", name("none"), ok=False)
    assert one_line_error(nothing) == "Error occurred: Could not match any topic-partitions with the specified filters"


# -- kafka-broker-api-versions.sh -----------------------------------------------------------------

def test_broker_api_versions(broker):
    out = tool("--bootstrap-server", broker.bootstrap, script="kafka-broker-api-versions.sh").stdout
    lines = out.splitlines()
    assert re.fullmatch(r"127\.0\.0\.1:\d+ \(id: -?\d+ rack: null\) -> \(", lines[0]), lines[0]
    assert lines[-1] == ")"
    assert any(re.fullmatch(r"\tProduce\(0\): \d+ to \d+ \[usable: \d+\],", line) for line in lines)
    assert any(re.fullmatch(r"\tFetch\(1\): \d+ to \d+ \[usable: \d+\],", line) for line in lines)
    assert any(line.startswith("\tApiVersions(18): ") for line in lines)


# -- kafka-dump-log.sh ----------------------------------------------------------------------------

def _write_segment(directory: Path) -> tuple[Path, int]:
    """A two-batch segment with its indexes; returns the .log path and the first batch's size."""
    from josef.records.records import build_batch
    first = build_batch([(b"k1", b"hello"), (None, b"world", [("h", b"x")])], base_timestamp=1000)
    second = build_batch([(b"k3", b"zipped")], base_offset=2, base_timestamp=2000, compression=1,
                         producer_id=7, producer_epoch=0, base_sequence=5)
    log = directory / "00000000000000000000.log"
    log.write_bytes(first + second)
    (directory / "00000000000000000000.index").write_bytes(struct.pack(">ii", 2, len(first)) + bytes(16))
    (directory / "00000000000000000000.timeindex").write_bytes(struct.pack(">qi", 2000, 2))
    return log, len(first)


def test_dump_log_on_built_segment(tmp_path):
    log, first_size = _write_segment(tmp_path)
    files = ",".join(str(log.with_suffix(s)) for s in (".log", ".index", ".timeindex"))
    out = tool("dump-log", "--files", files, "--print-data-log").stdout.splitlines()
    assert out[0] == f"Dumping {log}"
    assert out[1] == "Log starting offset: 0"
    assert re.fullmatch(r"baseOffset: 0 lastOffset: 1 count: 2 baseSequence: -1 lastSequence: -1 producerId: -1 "
                        r"producerEpoch: -1 partitionLeaderEpoch: -1 isTransactional: false isControl: false "
                        r"deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: 1000 size: \d+ magic: 2 "
                        r"compresscodec: none crc: \d+ isvalid: true", out[2]), out[2]
    assert out[3] == ("| offset: 0 CreateTime: 1000 keySize: 2 valueSize: 5 sequence: -1 headerKeys: [] "
                      "key: k1 payload: hello")
    assert out[4] == "| offset: 1 CreateTime: 1000 keySize: -1 valueSize: 5 sequence: -1 headerKeys: [h] payload: world"
    assert "baseSequence: 5 lastSequence: 5 producerId: 7 producerEpoch: 0" in out[5]
    assert "compresscodec: gzip" in out[5]
    assert out[6] == "| offset: 2 CreateTime: 2000 keySize: 2 valueSize: 6 sequence: 5 headerKeys: [] key: k3 payload: zipped"
    assert out[7:] == [f"Dumping {log.with_suffix('.index')}", f"offset: 2 position: {first_size}",
                       f"Dumping {log.with_suffix('.timeindex')}", "timestamp: 2000 offset: 2"]


def test_dump_log_reports_trailing_garbage(tmp_path):
    log, _ = _write_segment(tmp_path)
    with open(log, "ab") as f:
        f.write(b"\x00\x01\x02")
    out = tool("dump-log", "--files", str(log)).stdout.splitlines()
    assert out[-1] == f"Found 3 invalid bytes at the end of {log.name}"


@pytest.mark.skipif(TANSU, reason="reads josef's data directory")
def test_dump_log_on_broker_segment(broker):
    topic = name("dump")
    create(broker, topic)
    produce(broker, topic, ["k1\tv1", "k2\tv2"], "--property", "parse.key=true", "--sync")
    log = broker.data_dir / f"{topic}-0" / "00000000000000000000.log"
    out = tool("dump-log", "--files", str(log), "--print-data-log").stdout
    assert "Log starting offset: 0" in out
    assert re.search(r"^baseOffset: 0 lastOffset: 0 count: 1 .* isvalid: true$", out, re.M), out
    assert re.search(r"^\| offset: 1 CreateTime: \d+ keySize: 2 valueSize: 2 sequence: -1 headerKeys: \[\] "
                     r"key: k2 payload: v2$", out, re.M), out
