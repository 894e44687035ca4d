"""kafka-consumer-groups.sh (`josef consumer-groups`) against a real broker and real group members.

Groups are formed and offsets committed with confluent-kafka; the tool runs as a subprocess with a
timeout and its tables are parsed. Committed offsets are read back with Consumer.committed (an
OffsetFetch that does not join the group). Nothing waits by sleeping: every wait is a condition
with a deadline.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import wait_for

BIN = Path(sys.executable).parent
CALL_TIMEOUT = 60
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: nothing committed


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cg(broker, *argv: str, ok: bool = True, script: str | None = None) -> subprocess.CompletedProcess:
    """Run the tool against `broker`; never a traceback, whatever the outcome."""
    cmd = [str(BIN / script)] if script else [str(BIN / "josef"), "consumer-groups"]
    if broker is not None:
        cmd += ["--bootstrap-server", broker if isinstance(broker, str) else broker.bootstrap]
    cmd += list(argv)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, f"{cmd} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def table(stdout: str, first: str = "GROUP") -> list[dict[str, str]]:
    """Rows of a Kafka tool table (header starting with `first`), split on whitespace; the last
    column keeps its spaces (STATUS, ASSIGNMENT)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.split()[0] == first)
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        cells = [c.strip() for c in line.split(None, len(header) - 1)]
        if cells and cells[0] == first:
            header = line.split()  # the next group's table
            continue
        assert len(cells) == len(header), (header, line)
        rows.append(dict(zip(header, cells)))
    return rows


def by_partition(rows: list[dict[str, str]], key: str) -> dict[int, str]:
    return {int(r["PARTITION"]): r[key] for r in rows}


# -- cluster set-up with confluent-kafka ---------------------------------------------------------

def create_topic(broker, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    wait_for(lambda: topic in admin.list_topics(timeout=5).topics, 10, what=f"topic {topic}")


def produce(broker, topic: str, counts: dict[int, int], timestamps: list[int] | None = None) -> None:
    """`counts[p]` records into partition p; optional explicit timestamps (ms) for partition 0's records."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for partition, count in counts.items():
        for i in range(count):
            extra = {"timestamp": timestamps[i]} if timestamps and partition == 0 else {}
            p.produce(topic, value=b"v%d" % i, partition=partition, **extra)
    assert p.flush(30) == 0


def member(broker, group: str, topics: list[str], client_id: str = "cg-test-client") -> Consumer:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": client_id,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe(topics)
    return c


def wait_assigned(c: Consumer, count: int, timeout: float = 30.0) -> None:
    def assigned():
        c.poll(0.1)
        return len(c.assignment()) == count
    wait_for(assigned, timeout, interval=0, what=f"{count} partitions assigned")


def commit(broker, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit as a simple (non-member) consumer of `group`."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def committed(broker, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = c.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in found}
    finally:
        c.close()


def wait_state(broker, group: str, state: str, timeout: float = 30.0) -> None:
    def current():
        out = cg(broker, "--list", "--state", ok=False)
        return any(r["GROUP"] == group and r["STATE"] == state for r in table(out.stdout)) if out.stdout else False
    wait_for(current, timeout, interval=0.1, what=f"group {group} in state {state}")


@pytest.fixture
def cluster(broker_factory):
    return broker_factory("--override", "group.initial.rebalance.delay.ms=0")


# -- list and describe ----------------------------------------------------------------------------

def test_list_and_describe_a_live_group(cluster):
    topic, group = name("orders"), name("billing")
    create_topic(cluster, topic, 3)
    produce(cluster, topic, {0: 10, 1: 10, 2: 7})
    c = member(cluster, group, [topic])
    try:
        wait_assigned(c, 3)
        c.commit(offsets=[TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 4)], asynchronous=False)
        member_id = c.memberid()

        listed = cg(cluster, "--list").stdout.split()
        assert group in listed
        states = {r["GROUP"]: r["STATE"] for r in table(cg(cluster, "--list", "--state").stdout)}
        assert states[group] == "Stable"
        filtered = table(cg(cluster, "--list", "--state", "empty,STABLE").stdout)
        assert group in {r["GROUP"] for r in filtered}
        assert group not in cg(cluster, "--list", "--state", "Empty").stdout

        out = cg(cluster, "--describe", "--group", group)
        assert out.stderr == ""
        rows = table(out.stdout)
        assert list(rows[0]) == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                 "CONSUMER-ID", "HOST", "CLIENT-ID"]
        assert sorted(int(r["PARTITION"]) for r in rows) == [0, 1, 2]
        assert {(r["GROUP"], r["TOPIC"]) for r in rows} == {(group, topic)}
        assert by_partition(rows, "CURRENT-OFFSET") == {0: "10", 1: "4", 2: "-"}
        assert by_partition(rows, "LOG-END-OFFSET") == {0: "10", 1: "10", 2: "7"}
        assert by_partition(rows, "LAG") == {0: "0", 1: "6", 2: "-"}
        assert {r["CONSUMER-ID"] for r in rows} == {member_id}
        assert {r["CLIENT-ID"] for r in rows} == {"cg-test-client"}
        assert {r["HOST"] for r in rows} == {"/127.0.0.1"}
        # --offsets is the same view, spelled out
        assert table(cg(cluster, "--describe", "--group", group, "--offsets").stdout) == rows

        members = table(cg(cluster, "--describe", "--group", group, "--members").stdout)
        assert members == [{"GROUP": group, "CONSUMER-ID": member_id, "HOST": "/127.0.0.1",
                            "CLIENT-ID": "cg-test-client", "#PARTITIONS": "3"}]
        verbose = table(cg(cluster, "--describe", "--group", group, "--members", "--verbose").stdout)
        assert verbose[0]["ASSIGNMENT"] == f"{topic}(0,1,2)"

        state = cg(cluster, "--describe", "--group", group, "--state").stdout
        header, row = [line for line in state.splitlines() if line.strip()]
        assert header.split() == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"]
        assert row.split()[0] == group and row.split()[-3:] == ["range", "Stable", "1"]
        assert f"127.0.0.1:{cluster.port}  (1)" in row

        # the same through the Kafka-named script
        scripted = cg(cluster, "--describe", "--group", group, script="kafka-consumer-groups.sh")
        assert table(scripted.stdout) == rows
    finally:
        c.close()

    # after the member leaves: Empty, committed partitions only, no consumer columns
    wait_state(cluster, group, "Empty")
    out = cg(cluster, "--describe", "--group", group)
    assert out.stderr.strip() == f"Consumer group '{group}' has no active members."
    rows = table(out.stdout)
    assert by_partition(rows, "CURRENT-OFFSET") == {0: "10", 1: "4"}
    assert by_partition(rows, "LAG") == {0: "0", 1: "6"}
    assert {(r["CONSUMER-ID"], r["HOST"], r["CLIENT-ID"]) for r in rows} == {("-", "-", "-")}


def test_describe_several_groups_and_all_groups(cluster):
    topic = name("t")
    create_topic(cluster, topic, 2)
    produce(cluster, topic, {0: 5, 1: 5})
    g1, g2 = name("ga"), name("gb")
    commit(cluster, g1, {(topic, 0): 1})
    commit(cluster, g2, {(topic, 1): 3})
    out = cg(cluster, "--describe", "--group", g2, "--group", g1)
    rows = table(out.stdout)
    assert [(r["GROUP"], r["PARTITION"], r["CURRENT-OFFSET"], r["LAG"]) for r in rows] == \
        sorted([(g1, "0", "1", "4"), (g2, "1", "3", "2")])
    everything = table(cg(cluster, "--describe", "--all-groups").stdout)
    assert {(r["GROUP"], r["PARTITION"]) for r in everything} >= {(g1, "0"), (g2, "1")}


# -- reset offsets ---------------------------------------------------------------------------------

def test_reset_is_refused_while_active_and_dry_run_changes_nothing(cluster):
    topic, group = name("t"), name("g")
    create_topic(cluster, topic, 2)
    produce(cluster, topic, {0: 8, 1: 8})
    parts = [(topic, 0), (topic, 1)]
    c = member(cluster, group, [topic])
    try:
        wait_assigned(c, 2)
        c.commit(offsets=[TopicPartition(topic, 0, 6), TopicPartition(topic, 1, 5)], asynchronous=False)
        refused = cg(cluster, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute",
                     ok=False)
        assert one_line_error(refused) == (f"Error: Assignments can only be reset if the group '{group}' is "
                                           "inactive, but the current state is Stable.")
        assert "NEW-OFFSET" not in refused.stdout
    finally:
        c.close()
    assert committed(cluster, group, parts) == {(topic, 0): 6, (topic, 1): 5}
    wait_state(cluster, group, "Empty")

    # the default is a dry run, with Kafka's warning; --dry-run says it explicitly
    for extra in ((), ("--dry-run",)):
        out = cg(cluster, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", *extra)
        rows = table(out.stdout)
        assert list(rows[0]) == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
        assert [(r["GROUP"], r["TOPIC"], r["PARTITION"], r["NEW-OFFSET"]) for r in rows] == \
            [(group, topic, "0", "0"), (group, topic, "1", "0")]
        assert ("--execute option is missing" in out.stderr) == (not extra)
        assert committed(cluster, group, parts) == {(topic, 0): 6, (topic, 1): 5}

    out = cg(cluster, "--reset-offsets", "--group", group, "--topic", f"{topic}:1", "--to-earliest", "--execute")
    assert [(r["PARTITION"], r["NEW-OFFSET"]) for r in table(out.stdout)] == [("1", "0")]
    assert committed(cluster, group, parts) == {(topic, 0): 6, (topic, 1): 0}

    out = cg(cluster, "--reset-offsets", "--group", group, "--all-topics", "--to-latest", "--execute")
    assert by_partition(table(out.stdout), "NEW-OFFSET") == {0: "8", 1: "8"}
    assert committed(cluster, group, parts) == {(topic, 0): 8, (topic, 1): 8}

    # a group nobody has used yet can be given offsets (Kafka allows it for Dead groups)
    fresh = name("fresh")
    cg(cluster, "--reset-offsets", "--group", fresh, "--topic", topic, "--to-offset", "3", "--execute")
    assert committed(cluster, fresh, parts) == {(topic, 0): 3, (topic, 1): 3}
    assert fresh in cg(cluster, "--list").stdout.split()


def test_reset_targets(cluster):
    topic, group = name("t"), name("g")
    create_topic(cluster, topic, 2)
    base = int(datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)
    produce(cluster, topic, {0: 10, 1: 4}, timestamps=[base + i * 1000 for i in range(10)])
    commit(cluster, group, {(topic, 0): 5})

    def plan(*argv: str, expect_stderr: str | None = None) -> dict[int, int]:
        out = cg(cluster, "--reset-offsets", "--group", group, "--dry-run", *argv)
        if expect_stderr is not None:
            assert expect_stderr in out.stderr, out.stderr
        return {p: int(v) for p, v in by_partition(table(out.stdout), "NEW-OFFSET").items()}

    p0 = f"{topic}:0"
    assert plan("--topic", p0, "--to-offset", "7") == {0: 7}
    assert plan("--topic", p0, "--to-offset", "70", expect_stderr="New offset (70) is higher than latest offset "
                f"for topic partition {topic}-0. Value will be set to 10") == {0: 10}
    assert plan("--topic", p0, "--to-offset", "0") == {0: 0}
    assert plan("--topic", p0, "--shift-by", "0") == {0: 5}
    assert plan("--topic", p0, "--shift-by", "-2") == {0: 3}
    assert plan("--topic", p0, "--shift-by", "3") == {0: 8}
    assert plan("--topic", p0, "--shift-by", "-50") == {0: 0}
    assert plan("--all-topics", "--shift-by", "1") == {0: 6}
    assert plan("--topic", topic, "--to-current") == {0: 5, 1: 4}  # no commit on 1: its log end
    assert plan("--topic", topic, "--to-earliest") == {0: 0, 1: 0}
    assert plan("--topic", topic, "--to-latest") == {0: 10, 1: 4}

    # --to-datetime: the first record at or after the time (UTC without a zone, or with an offset)
    at = datetime.fromtimestamp((base + 4500) / 1000, tz=timezone.utc)
    assert plan("--topic", p0, "--to-datetime", at.strftime("%Y-%m-%dT%H:%M:%S.") + "500") == {0: 5}
    local = at.astimezone(timezone(timedelta(hours=2)))
    assert plan("--topic", p0, "--to-datetime", local.strftime("%Y-%m-%dT%H:%M:%S.500+02:00")) == {0: 5}
    assert plan("--topic", p0, "--to-datetime", "2024-03-01T12:00:03.000") == {0: 3}
    assert plan("--topic", p0, "--to-datetime", "2000-01-01T00:00:00.000") == {0: 0}
    assert plan("--topic", p0, "--to-datetime", "2999-01-01T00:00:00.000",
                expect_stderr=f"Partition 0 from topic {topic} is empty. Falling back to latest known offset") \
        == {0: 10}

    # --export then --from-file round-trips a plan; --execute applies it
    exported = cg(cluster, "--reset-offsets", "--group", group, "--topic", topic, "--to-offset", "2", "--export",
                  "--dry-run").stdout
    assert exported.split() == [f"{topic},0,2", f"{topic},1,2"]
    assert committed(cluster, group, [(topic, 0)]) == {(topic, 0): 5}
    plan_file = Path(cluster.data_dir).parent / "plan.csv"
    plan_file.write_text(exported)
    cg(cluster, "--reset-offsets", "--group", group, "--from-file", str(plan_file), "--execute")
    assert committed(cluster, group, [(topic, 0), (topic, 1)]) == {(topic, 0): 2, (topic, 1): 2}


def test_reset_by_duration(cluster):
    topic, group = name("t"), name("g")
    create_topic(cluster, topic, 1)
    now = int(time.time() * 1000)
    hour = 3600 * 1000
    produce(cluster, topic, {0: 10}, timestamps=[now - (10 - i) * hour for i in range(10)])
    out = cg(cluster, "--reset-offsets", "--group", group, "--topic", topic, "--by-duration", "PT5H30M", "--execute")
    assert by_partition(table(out.stdout), "NEW-OFFSET") == {0: "5"}
    assert committed(cluster, group, [(topic, 0)]) == {(topic, 0): 5}
    out = cg(cluster, "--reset-offsets", "--group", group, "--topic", topic, "--by-duration", "P1DT2H", "--dry-run")
    assert by_partition(table(out.stdout), "NEW-OFFSET") == {0: "0"}


# -- delete groups and offsets ---------------------------------------------------------------------

def test_delete_offsets(cluster):
    t1, t2, group = name("a"), name("b"), name("g")
    create_topic(cluster, t1, 2)
    create_topic(cluster, t2, 1)
    produce(cluster, t1, {0: 3, 1: 3})
    produce(cluster, t2, {0: 3})
    commit(cluster, group, {(t1, 0): 1, (t1, 1): 2, (t2, 0): 3})

    out = cg(cluster, "--delete-offsets", "--group", group, "--topic", t1)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[0] == f"Request succeed for deleting offsets with topic {t1} group {group}"
    rows = table(out.stdout, first="TOPIC")
    assert [(r["TOPIC"], r["PARTITION"], r["STATUS"]) for r in rows] == [(t1, "0", "Successful"),
                                                                         (t1, "1", "Successful")]
    assert committed(cluster, group, [(t1, 0), (t1, 1), (t2, 0)]) == \
        {(t1, 0): NO_OFFSET, (t1, 1): NO_OFFSET, (t2, 0): 3}

    # a partition list, and a topic that does not exist
    commit(cluster, group, {(t1, 0): 1, (t1, 1): 2})
    out = cg(cluster, "--delete-offsets", "--group", group, "--topic", f"{t1}:1", "--topic", "no-such-topic",
             ok=False)
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[0] == f"Request succeed for deleting offsets with topic {t1}:1, no-such-topic group {group}"
    assert lines[1].split() == ["TOPIC", "PARTITION", "STATUS"]
    assert sorted([c.strip() for c in line.split(None, 2)] for line in lines[2:]) == sorted([
        [t1, "1", "Successful"],
        ["no-such-topic", "Not", "Provided    Error: :This server does not host this topic-partition."]])
    assert committed(cluster, group, [(t1, 0), (t1, 1)]) == {(t1, 0): 1, (t1, 1): NO_OFFSET}

    # a subscribed topic cannot lose its offsets while the group is active
    c = member(cluster, group, [t2])
    try:
        wait_assigned(c, 1)
        out = cg(cluster, "--delete-offsets", "--group", group, "--topic", t2, ok=False)
        assert one_line_error(out) == "Error: Encounter some partition level error, see the follow-up details:"
        rows = table(out.stdout, first="TOPIC")
        assert [(r["TOPIC"], r["PARTITION"], r["STATUS"]) for r in rows] == [
            (t2, "0", "Error: :Deleting offsets of a topic is forbidden while the consumer group is actively "
                      "subscribed to it.")]
    finally:
        c.close()
    assert committed(cluster, group, [(t2, 0)]) == {(t2, 0): 3}

    unknown = cg(cluster, "--delete-offsets", "--group", name("nobody"), "--topic", t1, ok=False)
    assert one_line_error(unknown).endswith("' does not exist.")


def test_delete_groups(cluster):
    topic = name("t")
    create_topic(cluster, topic, 1)
    produce(cluster, topic, {0: 3})
    g1, g2, active = name("g1"), name("g2"), name("active")
    commit(cluster, g1, {(topic, 0): 1})
    commit(cluster, g2, {(topic, 0): 2})
    c = member(cluster, active, [topic])
    try:
        wait_assigned(c, 1)
        out = cg(cluster, "--delete", "--group", active, ok=False)
        assert out.returncode != 0
        assert out.stderr.splitlines() == ["Error: Deletion of some consumer groups failed:",
                                           f"* Group '{active}' could not be deleted due to: The group is not empty."]
        assert active in cg(cluster, "--list").stdout.split()
    finally:
        c.close()

    out = cg(cluster, "--delete", "--group", g1, "--group", g2)
    assert out.stdout.strip() == f"Deletion of requested consumer groups ('{g1}', '{g2}') was successful."
    listed = cg(cluster, "--list").stdout.split()
    assert g1 not in listed and g2 not in listed
    assert committed(cluster, g1, [(topic, 0)]) == {(topic, 0): NO_OFFSET}
    gone = cg(cluster, "--describe", "--group", g1, ok=False)
    assert one_line_error(gone) == f"Error: Consumer group '{g1}' does not exist."

    missing = name("missing")
    out = cg(cluster, "--delete", "--group", missing, ok=False)
    assert out.stderr.splitlines() == ["Error: Deletion of some consumer groups failed:",
                                       f"* Group '{missing}' could not be deleted due to: The group id does not exist."]


# -- errors ----------------------------------------------------------------------------------------

def test_unknown_group_errors(cluster):
    ghost = name("ghost")
    for view in ((), ("--members",), ("--state",), ("--offsets",)):
        out = cg(cluster, "--describe", "--group", ghost, *view, ok=False)
        assert one_line_error(out) == f"Error: Consumer group '{ghost}' does not exist."
        assert out.stdout.strip() == ""
    topic = name("t")
    create_topic(cluster, topic, 1)
    out = cg(cluster, "--reset-offsets", "--group", ghost, "--topic", topic, "--shift-by", "1", "--dry-run",
             ok=False)
    assert one_line_error(out) == f"Cannot shift offset for partition {topic}-0 since there is no current committed offset"
    out = cg(cluster, "--reset-offsets", "--group", ghost, "--topic", "no-such-topic", "--to-earliest", "--dry-run",
             ok=False)
    assert one_line_error(out).startswith("Error: Executing consumer group command failed due to")


BAD_FLAGS = [
    ((), "Command must include exactly one action: --list, --describe, --delete, --reset-offsets, --delete-offsets"),
    (("--list", "--delete", "--group", "g"),
     'Option "[group]" can\'t be used with option "[list]"'),
    (("--list", "--describe", "--group", "g"),
     'Option "[group]" can\'t be used with option "[list]"'),
    (("--describe",), "Option [describe] takes one of these options: [group], [all-groups]"),
    (("--describe", "--group", "g", "--all-groups"), 'Option "[group]" can\'t be used with option "[all-groups]"'),
    (("--describe", "--group", "g", "--members", "--state"),
     "Option [describe] takes at most one of these options: [members], [offsets], [state]"),
    (("--describe", "--group", "g", "--topic", "t"), 'Option "[topic]" can\'t be used with option "[describe]"'),
    (("--list", "--members"), "Option(s) [members] are unavailable given other options on the command line"),
    (("--list", "--state", "bogus"),
     "Invalid state list 'bogus'. Valid states are: PreparingRebalance, CompletingRebalance, Stable, Dead, Empty, "
     "Assigning, Reconciling"),
    (("--delete", "--group", "g", "--topic", "t"),
     "The consumer does not support topic-specific offset deletion from a consumer group."),
    (("--delete-offsets", "--group", "g"), "Option [delete-offsets] takes the following options: [group], [topic]"),
    (("--reset-offsets", "--group", "g", "--all-topics"),
     "Option '[reset-offsets]' requires one of the following scenarios: [[to-offset], [to-datetime], [by-duration], "
     "[to-earliest], [to-latest], [shift-by], [from-file], [to-current]]"),
    (("--reset-offsets", "--group", "g", "--to-earliest"),
     "One of the reset scopes should be defined: --all-topics, --topic."),
    (("--reset-offsets", "--group", "g", "--all-topics", "--to-earliest", "--to-latest"),
     'Option "[to-earliest]" can\'t be used with option "[to-latest]"'),
    (("--reset-offsets", "--group", "g", "--all-topics", "--to-earliest", "--dry-run", "--execute"),
     "Option [reset-offsets] only accepts one of [execute] and [dry-run]"),
    (("--reset-offsets", "--all-topics", "--to-earliest"),
     "Option [reset-offsets] takes one of these options: [group], [all-groups]"),
    (("--reset-offsets", "--group", "g", "--all-topics", "--to-datetime", "2024-01-01"),
     "Error: Executing consumer group command failed due to Error parsing timestamp. It does not contain a 'T' "
     "according to ISO8601 format"),
    (("--reset-offsets", "--group", "g", "--all-topics", "--to-datetime", "2024-13-01T00:00:00.000"),
     'Error: Executing consumer group command failed due to Unparseable date: "2024-13-01T00:00:00.000"'),
    (("--reset-offsets", "--group", "g", "--all-topics", "--by-duration", "5h"),
     "Error: Executing consumer group command failed due to Text cannot be parsed to a Duration"),
    (("--reset-offsets", "--group", "g", "--topic", "t:x", "--to-earliest", "--dry-run"),
     "Invalid partition 'x' specified in topic arg 't:x''"),
]


@pytest.mark.parametrize("argv,message", BAD_FLAGS, ids=[" ".join(a) or "no-action" for a, _ in BAD_FLAGS])
def test_bad_flags_one_line(argv, message):
    # argument errors are found before any connection: the port is closed on purpose
    out = cg("127.0.0.1:1", *argv, ok=False)
    assert one_line_error(out) == message
    assert out.stdout == ""


def test_malformed_values_and_unreachable_broker():
    out = cg("127.0.0.1:1", "--reset-offsets", "--group", "g", "--all-topics", "--to-offset", "abc", ok=False)
    assert "--to-offset" in one_line_error(out)
    out = cg(None, "--list", ok=False)
    assert one_line_error(out) == 'Missing required argument "[bootstrap-server]"'
    out = cg("127.0.0.1:1", "--list", ok=False)
    assert one_line_error(out).startswith("could not connect to 127.0.0.1:1")


def test_members_view_shows_group_instance_id(cluster):
    topic, group = name("t"), name("static")
    create_topic(cluster, topic, 2)
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "group.instance.id": "instance-a",
                  "client.id": "static-client", "session.timeout.ms": 6000})
    c.subscribe([topic])
    try:
        wait_assigned(c, 2)
        out = cg(cluster, "--describe", "--group", group, "--members", "--verbose")
        rows = table(out.stdout)
        assert rows == [{"GROUP": group, "CONSUMER-ID": c.memberid(), "GROUP-INSTANCE-ID": "instance-a",
                         "HOST": "/127.0.0.1", "CLIENT-ID": "static-client", "#PARTITIONS": "2",
                         "ASSIGNMENT": f"{topic}(0,1)"}]
    finally:
        c.close()
