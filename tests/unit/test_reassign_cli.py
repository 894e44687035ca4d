"""kafka-reassign-partitions.sh and kafka-leader-election.sh without sockets.

The JSON formats, argument checks, Kafka's replica assignment (made deterministic), the output
text and the request flow of each action, the latter against an in-memory stand-in for the
cluster (the Admin class is replaced; the wire client is never used).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from josef.cli import leader_election as le
from josef.cli import reassign_partitions as rp
from josef.cli.common import ToolError
from josef.cli.reassign_partitions import (
    ClusterMetadata, KafkaFailure, PartitionInfo, PartitionState, Reassignment,
)

# -- the reassignment JSON ---------------------------------------------------------------------------


def test_parse_reassignment_json_seed_format():
    data = rp.parse_reassignment_json(
        '{"version":1,"partitions":[{"topic":"myorders","partition":0,"replicas":[1,2]},'
        '{"topic":"myorders","partition":2,"replicas":[3],"log_dirs":["any"]}]}')
    assert data.partitions == [(("myorders", 0), [1, 2]), (("myorders", 2), [3])]
    assert data.log_dirs == {}
    assert data.targets() == {("myorders", 0): [1, 2], ("myorders", 2): [3]}


def test_parse_reassignment_json_version_defaults_to_1_and_log_dirs_are_kept():
    data = rp.parse_reassignment_json(
        '{"partitions":[{"topic":"t","partition":1,"replicas":[1,2],"log_dirs":["/data/a","any"]}]}')
    assert data.partitions == [(("t", 1), [1, 2])]
    assert data.log_dirs == {("t", 1, 1): "/data/a"}
    with pytest.raises(ToolError, match="josef does not move replicas between log directories"):
        rp.refuse_log_dirs(data)


def test_parse_reassignment_json_without_partitions_is_empty():
    assert rp.parse_reassignment_json('{"version":1}').partitions == []


@pytest.mark.parametrize("text, message", [
    ('{"version":1,"partitions":[', "Error: The input string is not a valid JSON: "),
    ("", "Error: The input string is not a valid JSON: "),
    ("[1,2]", "Error: Expected JSON object, received [1,2]"),
    ('{"version":2,"partitions":[]}', "Error: Not supported version field value 2"),
    ('{"version":"1","partitions":[]}', 'Error: Expected `Int` value, received "1"'),
    ('{"partitions":{"topic":"t"}}', 'Error: Expected JSON array, received {"topic":"t"}'),
    ('{"partitions":[{"partition":0,"replicas":[1]}]}', "Error: No such field exists: `topic`"),
    ('{"partitions":[{"topic":"t","replicas":[1]}]}', "Error: No such field exists: `partition`"),
    ('{"partitions":[{"topic":"t","partition":0}]}', "Error: No such field exists: `replicas`"),
    ('{"partitions":[{"topic":"t","partition":"0","replicas":[1]}]}', 'Error: Expected `Int` value, received "0"'),
    ('{"partitions":[{"topic":"t","partition":true,"replicas":[1]}]}', "Error: Expected `Int` value, received true"),
    ('{"partitions":[{"topic":"t","partition":0.5,"replicas":[1]}]}', "Error: Expected `Int` value, received 0.5"),
    ('{"partitions":[{"topic":7,"partition":0,"replicas":[1]}]}', "Error: Expected `String` value, received 7"),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":1}]}', "Error: Expected JSON array, received 1"),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":[1,"2"]}]}', 'Error: Expected `Int` value, received "2"'),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any"]}]}',
     "Error: Size of replicas list [1, 2] is different from size of log dirs list [any] for partition t-0"),
])
def test_parse_reassignment_json_errors(text, message):
    with pytest.raises(ToolError) as e:
        rp.parse_reassignment_json(text)
    assert str(e.value).startswith(message), str(e.value)
    assert e.value.status == 1


@pytest.mark.parametrize("text, message", [
    ('{"version":1,"partitions":[]}', "Error: Partition reassignment list cannot be empty"),
    ('{"version":1}', "Error: Partition reassignment list cannot be empty"),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":[]}]}', "Error: Partition replica list cannot be empty"),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":[1]},{"topic":"t","partition":0,"replicas":[2]}]}',
     "Error: Partition reassignment contains duplicate topic partitions: t-0"),
    ('{"partitions":[{"topic":"t","partition":0,"replicas":[1,2,1]},{"topic":"u","partition":3,"replicas":[4,4]}]}',
     "Error: Partition replica lists may not contain duplicate entries: t-0 contains multiple entries for 1. "
     "u-3 contains multiple entries for 4"),
])
def test_parse_execute_json_checks(text, message):
    with pytest.raises(ToolError) as e:
        rp.parse_execute_json(text)
    assert str(e.value) == message


def test_parse_topics_json_and_broker_list():
    assert rp.parse_topics_json('{"topics":[{"topic":"foo"},{"topic":"foo1"}],"version":1}') == ["foo", "foo1"]
    assert rp.parse_topics_json('{"topics":[{"topic":"foo"}]}') == ["foo"]
    assert rp.parse_topics_json("{}") == []
    assert rp.parse_generate_args('{"topics":[{"topic":"a"}]}', "3,1,2") == ([3, 1, 2], ["a"])
    with pytest.raises(ToolError, match=r"^Error: Broker list contains duplicate entries: \[1, 2\]$"):
        rp.parse_generate_args('{"topics":[]}', "1,2,1,2,3")
    with pytest.raises(ToolError, match=r"^Error: List of topics to reassign contains duplicate entries: \[a\]$"):
        rp.parse_generate_args('{"topics":[{"topic":"a"},{"topic":"a"}]}', "1")
    with pytest.raises(ToolError, match=r'^Error: For input string: "x"'):
        rp.parse_broker_list("1,x")
    with pytest.raises(ToolError, match="The input string is not a valid JSON"):
        rp.parse_topics_json("{topics}")
    with pytest.raises(ToolError, match="No such field exists: `topic`"):
        rp.parse_topics_json('{"topics":[{"name":"a"}]}')


# -- Kafka's replica assignment, start index 0 and shift 0 -----------------------------------------------

def test_rack_unaware_assignment_matches_hand_computed_kafka_assignments():
    assert rp.assign_replicas_rack_unaware(3, 1, [1, 2, 3]) == {0: [1], 1: [2], 2: [3]}
    assert rp.assign_replicas_rack_unaware(3, 2, [1, 2, 3]) == {0: [1, 2], 1: [2, 3], 2: [3, 1]}
    assert rp.assign_replicas_rack_unaware(3, 3, [1, 2, 3]) == {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2]}
    # past the first round the followers shift by one (partition 3 is not a copy of partition 0)
    assert rp.assign_replicas_rack_unaware(6, 2, [1, 2, 3]) == {
        0: [1, 2], 1: [2, 3], 2: [3, 1], 3: [1, 3], 4: [2, 1], 5: [3, 2]}
    assert rp.assign_replicas_rack_unaware(3, 1, [1, 2]) == {0: [1], 1: [2], 2: [1]}
    assert rp.assign_replicas_rack_unaware(2, 1, [5]) == {0: [5], 1: [5]}


def test_rack_unaware_assignment_reproduces_the_table_in_kafkas_adminutils():
    # AdminUtils' javadoc: 5 brokers, 10 partitions, 3 replicas; rows are 1st, 2nd, 3rd replica per broker
    table = [["p0 p1 p2 p3 p4", "p5 p6 p7 p8 p9"],
             ["p4 p0 p1 p2 p3", "p8 p9 p5 p6 p7"],
             ["p3 p4 p0 p1 p2", "p7 p8 p9 p5 p6"]]
    expected: dict[int, list[int]] = {p: [None] * 3 for p in range(10)}
    for position, rows in enumerate(table):
        for row in rows:
            for broker, cell in enumerate(row.split()):
                expected[int(cell[1:])][position] = broker
    assert rp.assign_replicas_rack_unaware(10, 3, [0, 1, 2, 3, 4]) == expected


def test_rack_aware_assignment_reproduces_the_example_in_kafkas_adminutils():
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert rp.rack_alternated_brokers(racks) == [0, 3, 1, 5, 4, 2]
    assert rp.assign_replicas_rack_aware(7, 3, racks) == {
        0: [0, 3, 1], 1: [3, 1, 5], 2: [1, 5, 4], 3: [5, 4, 2], 4: [4, 2, 0], 5: [2, 0, 3], 6: [0, 4, 2]}


def test_assign_replicas_checks_and_rack_choice():
    assert rp.assign_replicas({3: None, 1: None, 2: None}, 3, 2) == {0: [1, 2], 1: [2, 3], 2: [3, 1]}
    assert rp.assign_replicas({1: "a", 2: "b"}, 2, 2) == {0: [1, 2], 1: [2, 1]}
    with pytest.raises(ToolError, match=r"^Error: Replication factor: 3 larger than available brokers: 2\.$"):
        rp.assign_replicas({1: None, 2: None}, 3, 3)
    with pytest.raises(ToolError, match=r"^Error: Replication factor: 1 larger than available brokers: 0\.$"):
        rp.assign_replicas({}, 3, 1)
    with pytest.raises(ToolError, match="Not all brokers have rack information"):
        rp.broker_racks({1: "a", 2: None}, [1, 2], rack_aware=True)
    assert rp.broker_racks({1: "a", 2: None}, [1, 2], rack_aware=False) == {1: None, 2: None}
    # brokers the cluster does not know are left out, as Kafka's getBrokerMetadata does
    assert rp.broker_racks({1: None, 2: None, 3: None}, [1, 2, 9], rack_aware=True) == {1: None, 2: None}


def test_calculate_assignment_keeps_partition_count_and_replication_factor_per_topic():
    current = {("myorders", 0): [1], ("myorders", 1): [2], ("myorders", 2): [3],
               ("other", 0): [3, 1], ("other", 1): [1, 2]}
    proposed = rp.calculate_assignment(current, {1: None, 2: None})
    assert proposed == {("myorders", 0): [1], ("myorders", 1): [2], ("myorders", 2): [1],
                        ("other", 0): [1, 2], ("other", 1): [2, 1]}


# -- output --------------------------------------------------------------------------------------------

def test_format_reassignment_json_is_kafkas_compact_sorted_form():
    text = rp.format_reassignment_json({("b", 0): [2], ("a", 10): [1, 2], ("a", 2): [3]})
    assert text == ('{"version":1,"partitions":['
                    '{"topic":"a","partition":2,"replicas":[3],"log_dirs":["any"]},'
                    '{"topic":"a","partition":10,"replicas":[1,2],"log_dirs":["any","any"]},'
                    '{"topic":"b","partition":0,"replicas":[2],"log_dirs":["any"]}]}')
    # what it prints is itself a valid reassignment file
    assert rp.parse_execute_json(text).targets() == {("b", 0): [2], ("a", 10): [1, 2], ("a", 2): [3]}


def test_current_assignment_and_generate_text():
    text = rp.current_assignment_text({("myorders", 2): [1]}, {("myorders", 2): [3]})
    assert text == ("Current partition replica assignment\n\n"
                    '{"version":1,"partitions":[{"topic":"myorders","partition":2,"replicas":[3],"log_dirs":["any"]}]}'
                    "\n\nSave this to use as the --reassignment-json-file option during rollback")
    text = rp.generate_text({("t", 0): [3]}, {("t", 0): [1]})
    assert text == ("Current partition replica assignment\n"
                    '{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[3],"log_dirs":["any"]}]}\n\n'
                    "Proposed partition reassignment configuration\n"
                    '{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1],"log_dirs":["any"]}]}')


def test_status_text():
    states = {("myorders", 2): PartitionState([1], [1], True),
              ("myorders", 0): PartitionState([1, 3], [1], False),
              ("myorders", 1): PartitionState([2, 3], [1], True)}
    assert rp.status_text(states) == (
        "Status of partition reassignment:\n"
        "Reassignment of partition myorders-0 is still in progress.\n"
        "There is no active reassignment of partition myorders-1, but replica set is 2,3 rather than 1.\n"
        "Reassignment of partition myorders-2 is completed.")


def test_list_text():
    assert rp.list_text({}) == "No partition reassignments found."
    assert rp.list_text({("t", 1): Reassignment([1, 3], [1], [3]), ("t", 0): Reassignment([2], [], [])}) == (
        "Current partition reassignments:\n"
        "t-0: replicas: 2.\n"
        "t-1: replicas: 1,3. adding: 1. removing: 3.")


def test_kafka_failure_text():
    e = KafkaFailure(39, None)
    assert e.message == "Replica assignment is invalid."
    assert str(e) == "org.apache.kafka.common.errors.InvalidReplicaAssignmentException: Replica assignment is invalid."
    assert str(KafkaFailure(3, "Topic x not found.")) == \
        "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: Topic x not found."
    assert str(KafkaFailure(999)) == "org.apache.kafka.common.errors.UnknownServerException: Unexpected error code: 999."


# -- throttles ----------------------------------------------------------------------------------------------

def test_throttle_replica_lists_and_brokers():
    ongoing = {("other", 0): Reassignment([4, 5, 6], [4], [6])}
    proposed = {("myorders", 2): [1], ("myorders", 0): [1, 2]}
    current = {("myorders", 2): [3], ("myorders", 0): [1]}
    moves = rp.proposed_move_map(ongoing, proposed, current)
    assert rp.leader_throttles(moves) == {"myorders": "0:1,2:3", "other": "0:5,0:6"}
    assert rp.follower_throttles(moves) == {"myorders": "0:2,2:1", "other": "0:4"}
    assert rp.reassigning_brokers(moves) == [1, 2, 3, 4, 5, 6]
    # a partition already moving keeps the sources of the ongoing move
    moves = rp.proposed_move_map({("t", 0): Reassignment([2, 1], [2], [1])}, {("t", 0): [3]}, {("t", 0): [2, 1]})
    assert (moves["t"][0].sources, moves["t"][0].destinations) == ({1}, {3})


# -- arguments ------------------------------------------------------------------------------------------------

B = ["--bootstrap-server", "127.0.0.1:1"]


@pytest.mark.parametrize("argv, message", [
    (B + ["--reassignment-json-file", "f"],
     "Command must include exactly one action: --generate, --execute, --verify, --cancel, --list"),
    (B + ["--execute", "--verify", "--reassignment-json-file", "f"],
     "Command must include exactly one action: --generate, --execute, --verify, --cancel, --list"),
    (["--list"], "Please specify either --bootstrap-server or --bootstrap-controller"),
    (B + ["--list", "--bootstrap-controller", "h:1"],
     "Please don't specify both --bootstrap-server and --bootstrap-controller"),
    (["--list", "--bootstrap-controller", "h:1"], "--bootstrap-controller is not supported by josef"),
    (B + ["--execute"], 'Missing required argument "[reassignment-json-file]"'),
    (B + ["--verify"], 'Missing required argument "[reassignment-json-file]"'),
    (B + ["--cancel"], 'Missing required argument "[reassignment-json-file]"'),
    (B + ["--generate", "--broker-list", "1"], 'Missing required argument "[topics-to-move-json-file]"'),
    (B + ["--generate", "--topics-to-move-json-file", "f"], 'Missing required argument "[broker-list]"'),
    (B + ["--verify", "--reassignment-json-file", "f", "--throttle", "1000"],
     'Option "[throttle]" can\'t be used with action "[verify]"'),
    (B + ["--list", "--reassignment-json-file", "f"],
     'Option "[reassignment-json-file]" can\'t be used with action "[list]"'),
    (B + ["--execute", "--reassignment-json-file", "f", "--preserve-throttles"],
     'Option "[preserve-throttles]" can\'t be used with action "[execute]"'),
    (B + ["--generate", "--topics-to-move-json-file", "f", "--broker-list", "1", "--additional"],
     'Option "[additional]" can\'t be used with action "[generate]"'),
    (B + ["--execute", "--reassignment-json-file", "f", "--replica-alter-log-dirs-throttle", "1000"],
     "--replica-alter-log-dirs-throttle is not supported by josef"),
    (["--bootstrap-server", "nohostport", "--list"], "Please provide valid host:port"),
])
def test_argument_errors(argv, message, capsys):
    assert rp.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message), captured.err
    assert len(captured.err.splitlines()) == 1


def test_permitted_options_are_accepted():
    parse = rp.parser().parse
    assert rp.check_args(parse(B + ["--execute", "--reassignment-json-file", "f", "--throttle", "5",
                                    "--additional", "--timeout", "100"])) == "execute"
    assert rp.check_args(parse(B + ["--verify", "--reassignment-json-file", "f", "--preserve-throttles"])) == "verify"
    assert rp.check_args(parse(B + ["--cancel", "--reassignment-json-file", "f", "--preserve-throttles"])) == "cancel"
    assert rp.check_args(parse(B + ["--generate", "--topics-to-move-json-file", "f", "--broker-list", "1",
                                    "--disable-rack-aware"])) == "generate"
    assert rp.check_args(parse(B + ["--list"])) == "list"


def test_file_errors_come_before_connecting(tmp_path, capsys):
    # 127.0.0.1:1 refuses connections: each failure below must be found without one
    assert rp.main(B + ["--execute", "--reassignment-json-file", str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: could not read ") and "No such file or directory" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"version":1,"partitions":[{"topic":"myorders",')
    assert rp.main(B + ["--verify", "--reassignment-json-file", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("Error: The input string is not a valid JSON")
    topics = tmp_path / "topics.json"
    topics.write_text('{"topics":[{"topic":"a"}]}')
    assert rp.main(B + ["--generate", "--topics-to-move-json-file", str(topics), "--broker-list", "1,1"]) == 1
    assert capsys.readouterr().err == "Error: Broker list contains duplicate entries: [1]\n"


# -- the actions against an in-memory cluster ----------------------------------------------------------------

class FakeAdmin:
    """Stands in for rp.Admin: three brokers, topic myorders with partitions on brokers 1, 2, 3."""

    def __init__(self):
        self.brokers = {1: ("h", 9092, None), 2: ("h", 9093, None), 3: ("h", 9094, None)}
        self.replicas = {("myorders", 0): [1], ("myorders", 1): [2], ("myorders", 2): [3]}
        self.ongoing: dict = {}
        self.altered: list = []
        self.configs: list = []
        self.alter_errors: dict = {}

    def __call__(self, servers, command_config=None, client_id=None):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def metadata(self, refresh=False):
        topics: dict = {}
        for (t, p), replicas in self.replicas.items():
            topics.setdefault(t, {})[p] = PartitionInfo(replicas[0], list(replicas), list(replicas))
        return ClusterMetadata(dict(self.brokers), 1, topics)

    def list_reassignments(self, partitions=None):
        return {tp: r for tp, r in self.ongoing.items() if partitions is None or tp in partitions}

    def alter_reassignments(self, targets):
        self.altered.append(dict(targets))
        return {tp: self.alter_errors[tp] for tp in targets if tp in self.alter_errors}

    def incremental_alter_configs(self, resources):
        self.configs.extend(resources)


@pytest.fixture
def cluster(monkeypatch):
    fake = FakeAdmin()
    monkeypatch.setattr(rp, "Admin", fake)
    return fake


def write(tmp_path, name, value) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


MOVE_P2 = {"version": 1, "partitions": [{"topic": "myorders", "partition": 2, "replicas": [1]}]}


def test_execute_prints_rollback_json_and_starts(cluster, tmp_path, capsys):
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out == (
        "Current partition replica assignment\n\n"
        '{"version":1,"partitions":[{"topic":"myorders","partition":2,"replicas":[3],"log_dirs":["any"]}]}\n\n'
        "Save this to use as the --reassignment-json-file option during rollback\n"
        "Successfully started partition reassignment for myorders-2\n")
    assert cluster.altered == [{("myorders", 2): [1]}]
    assert cluster.configs == []


def test_execute_with_throttle_sets_topic_and_broker_configs(cluster, tmp_path, capsys):
    path = write(tmp_path, "r.json", {"version": 1, "partitions": [
        {"topic": "myorders", "partition": 2, "replicas": [1]},
        {"topic": "myorders", "partition": 0, "replicas": [1, 2]}]})
    assert rp.main(B + ["--execute", "--reassignment-json-file", path, "--throttle", "50000000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == [
        "Warning: You must run --verify periodically, until the reassignment completes, to ensure the throttle "
        "is removed.",
        "The inter-broker throttle limit was set to 50000000 B/s",
        "Successfully started partition reassignments for myorders-0,myorders-2"]
    assert cluster.configs == [
        (rp.RESOURCE_TOPIC, "myorders", [("leader.replication.throttled.replicas", rp.OP_SET, "0:1,2:3"),
                                         ("follower.replication.throttled.replicas", rp.OP_SET, "0:2,2:1")]),
        (rp.RESOURCE_BROKER, "1", [("leader.replication.throttled.rate", rp.OP_SET, "50000000"),
                                   ("follower.replication.throttled.rate", rp.OP_SET, "50000000")]),
        (rp.RESOURCE_BROKER, "2", [("leader.replication.throttled.rate", rp.OP_SET, "50000000"),
                                   ("follower.replication.throttled.rate", rp.OP_SET, "50000000")]),
        (rp.RESOURCE_BROKER, "3", [("leader.replication.throttled.rate", rp.OP_SET, "50000000"),
                                   ("follower.replication.throttled.rate", rp.OP_SET, "50000000")])]


def test_execute_refusals(cluster, tmp_path, capsys):
    path = write(tmp_path, "r.json", {"partitions": [{"topic": "myorders", "partition": 2, "replicas": [1, 7]}]})
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 1
    assert capsys.readouterr().err == "Error: Unknown broker id 7\n"

    path = write(tmp_path, "r.json", {"partitions": [{"topic": "nosuch", "partition": 0, "replicas": [1]}]})
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 1
    assert capsys.readouterr().err == \
        "Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: Topic nosuch not found.\n"

    path = write(tmp_path, "r.json", {"partitions": [{"topic": "myorders", "partition": 5, "replicas": [1]}]})
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 1
    assert capsys.readouterr().err == \
        "Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: Unable to find partition: myorders-5\n"

    cluster.ongoing = {("myorders", 1): Reassignment([3, 2], [3], [2])}
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 1
    assert capsys.readouterr().err.startswith("Cannot execute because there is an existing partition assignment.")
    assert cluster.altered == []
    assert rp.main(B + ["--execute", "--reassignment-json-file", path, "--additional"]) == 0
    assert cluster.altered == [{("myorders", 2): [1]}]


def test_execute_reports_partition_errors(cluster, tmp_path, capsys):
    cluster.alter_errors = {("myorders", 2): KafkaFailure(39, "Replica 1 is not alive")}
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--execute", "--reassignment-json-file", path]) == 1
    out = capsys.readouterr()
    assert out.out.startswith("Current partition replica assignment")
    assert "Successfully" not in out.out
    assert out.err == "Error reassigning partition(s):\nmyorders-2: Replica 1 is not alive\n"


def test_verify_in_progress_keeps_throttles(cluster, tmp_path, capsys):
    cluster.ongoing = {("myorders", 2): Reassignment([1, 3], [1], [3])}
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--verify", "--reassignment-json-file", path]) == 0
    assert capsys.readouterr().out == ("Status of partition reassignment:\n"
                                       "Reassignment of partition myorders-2 is still in progress.\n\n")
    assert cluster.configs == []


def test_verify_completed_clears_throttles(cluster, tmp_path, capsys):
    cluster.replicas[("myorders", 2)] = [1]
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--verify", "--reassignment-json-file", path]) == 0
    assert capsys.readouterr().out == ("Status of partition reassignment:\n"
                                       "Reassignment of partition myorders-2 is completed.\n\n"
                                       "Clearing broker-level throttles on brokers 1,2,3\n"
                                       "Clearing topic-level throttles on topic myorders\n")
    deletes = [("leader.replication.throttled.rate", rp.OP_DELETE, None),
               ("follower.replication.throttled.rate", rp.OP_DELETE, None)]
    assert cluster.configs == [
        (rp.RESOURCE_BROKER, "1", deletes), (rp.RESOURCE_BROKER, "2", deletes), (rp.RESOURCE_BROKER, "3", deletes),
        (rp.RESOURCE_TOPIC, "myorders", [("leader.replication.throttled.replicas", rp.OP_DELETE, None),
                                         ("follower.replication.throttled.replicas", rp.OP_DELETE, None)])]
    cluster.configs.clear()
    assert rp.main(B + ["--verify", "--reassignment-json-file", path, "--preserve-throttles"]) == 0
    assert cluster.configs == []


def test_verify_replica_set_differs(cluster, tmp_path, capsys):
    path = write(tmp_path, "r.json", MOVE_P2)
    assert rp.main(B + ["--verify", "--reassignment-json-file", path, "--preserve-throttles"]) == 0
    assert capsys.readouterr().out == (
        "Status of partition reassignment:\n"
        "There is no active reassignment of partition myorders-2, but replica set is 3 rather than 1.\n\n")


def test_cancel(cluster, tmp_path, capsys):
    cluster.ongoing = {("myorders", 2): Reassignment([1, 3], [1], [3]), ("myorders", 0): Reassignment([1], [], [])}
    path = write(tmp_path, "r.json", {"partitions": [{"topic": "myorders", "partition": 2, "replicas": [1]},
                                                     {"topic": "myorders", "partition": 0, "replicas": [1]}]})
    assert rp.main(B + ["--cancel", "--reassignment-json-file", path, "--preserve-throttles"]) == 0
    assert capsys.readouterr().out == ("Successfully cancelled partition reassignment for: myorders-2\n"
                                       "None of the specified partition moves are active.\n")
    assert cluster.altered == [{("myorders", 2): None}]
    cluster.ongoing = {}
    assert rp.main(B + ["--cancel", "--reassignment-json-file", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("None of the specified partition reassignments are active.\n"
                          "None of the specified partition moves are active.\n"
                          "Clearing broker-level throttles on brokers 1,2,3\n")


def test_list(cluster, capsys):
    assert rp.main(B + ["--list"]) == 0
    assert capsys.readouterr().out == "No partition reassignments found.\n"
    cluster.ongoing = {("myorders", 2): Reassignment([1, 3], [1], [3])}
    assert rp.main(B + ["--list"]) == 0
    assert capsys.readouterr().out == ("Current partition reassignments:\n"
                                       "myorders-2: replicas: 1,3. adding: 1. removing: 3.\n")


def test_generate(cluster, tmp_path, capsys):
    path = write(tmp_path, "t.json", {"topics": [{"topic": "myorders"}], "version": 1})
    assert rp.main(B + ["--generate", "--topics-to-move-json-file", path, "--broker-list", "2,1"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "Current partition replica assignment\n"
        '{"version":1,"partitions":[{"topic":"myorders","partition":0,"replicas":[1],"log_dirs":["any"]},'
        '{"topic":"myorders","partition":1,"replicas":[2],"log_dirs":["any"]},'
        '{"topic":"myorders","partition":2,"replicas":[3],"log_dirs":["any"]}]}\n\n'
        "Proposed partition reassignment configuration\n"
        '{"version":1,"partitions":[{"topic":"myorders","partition":0,"replicas":[1],"log_dirs":["any"]},'
        '{"topic":"myorders","partition":1,"replicas":[2],"log_dirs":["any"]},'
        '{"topic":"myorders","partition":2,"replicas":[1],"log_dirs":["any"]}]}\n')
    assert cluster.altered == [] and cluster.configs == []
    path = write(tmp_path, "t.json", {"topics": [{"topic": "nosuch"}]})
    assert rp.main(B + ["--generate", "--topics-to-move-json-file", path, "--broker-list", "1"]) == 1
    assert capsys.readouterr().err == \
        "Error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: Topic nosuch not found.\n"


# -- the wire side of Admin, with scripted answers ---------------------------------------------------------

class ScriptedAdmin(rp.Admin):
    """rp.Admin whose request() answers from a script instead of a socket."""

    def __init__(self, answers):
        self.bootstrap = ("boot", 1)
        self.answers = list(answers)
        self.sent: list = []
        self._conns = {}
        self._metadata = None

    def request(self, api_key, body, address=None):
        self.sent.append((api_key, address or self.bootstrap, body))
        return self.answers.pop(0)

    def version(self, api_key, address=None):
        return 2


def ns(**kw):
    return SimpleNamespace(**kw)


def _metadata_answer(controller):
    return ns(brokers=[ns(node_id=1, host="h1", port=1, rack=None), ns(node_id=2, host="h2", port=2, rack=None)],
              controller_id=controller, topics=[])


def test_not_controller_is_retried_at_the_controller():
    ok = ns(error_code=0, error_message=None, topics=[ns(name="t", partitions=[
        ns(partition_index=0, replicas=[1, 2], adding_replicas=[1], removing_replicas=[2])])])
    admin = ScriptedAdmin([ns(error_code=41, error_message=None, topics=[]), _metadata_answer(2), ok])
    assert admin.list_reassignments() == {("t", 0): Reassignment([1, 2], [1], [2])}
    assert [(k, a) for k, a, _ in admin.sent] == [(46, ("boot", 1)), (3, ("boot", 1)), (46, ("h2", 2))]
    assert admin.sent[0][2] == {"timeout": 30000, "topics": None}


def test_alter_reassignments_errors():
    answer = ns(error_code=0, error_message=None, responses=[ns(name="t", partitions=[
        ns(partition_index=0, error_code=0, error_message=None),
        ns(partition_index=1, error_code=39, error_message="bad")])])
    admin = ScriptedAdmin([answer])
    errors = admin.alter_reassignments({("t", 0): [1], ("t", 1): [2], ("t", 2): None})
    assert sorted(errors) == [("t", 1), ("t", 2)]
    assert errors[("t", 1)].message == "bad"
    assert admin.sent[0][2]["topics"] == [{"name": "t", "partitions": [
        {"partition_index": 0, "replicas": [1]}, {"partition_index": 1, "replicas": [2]},
        {"partition_index": 2, "replicas": None}]}]
    admin = ScriptedAdmin([ns(error_code=31, error_message=None, responses=[])])
    errors = admin.alter_reassignments({("t", 0): [1]})
    assert errors[("t", 0)].code == 31


def test_incremental_alter_configs_sends_broker_resources_to_their_broker():
    ok = ns(responses=[ns(error_code=0, error_message=None)])
    admin = ScriptedAdmin([_metadata_answer(1), ok, ok])
    admin.incremental_alter_configs([(rp.RESOURCE_BROKER, "2", [("a", rp.OP_DELETE, None)]),
                                     (rp.RESOURCE_TOPIC, "t", [("b", rp.OP_SET, "1")])])
    assert [(k, a) for k, a, _ in admin.sent] == [(3, ("boot", 1)), (44, ("h2", 2)), (44, ("boot", 1))]
    admin = ScriptedAdmin([ns(responses=[ns(error_code=40, error_message="Unknown topic config name: x")])])
    with pytest.raises(KafkaFailure) as e:
        admin.incremental_alter_configs([(rp.RESOURCE_TOPIC, "t", [("x", rp.OP_SET, "1")])])
    assert str(e.value) == ("org.apache.kafka.common.errors.InvalidConfigurationException: "
                            "Unknown topic config name: x")


def test_elect_leaders_request_and_results():
    answer = ns(error_code=0, replica_election_results=[ns(topic="t", partition_result=[
        ns(partition_id=0, error_code=0, error_message=None),
        ns(partition_id=1, error_code=84, error_message=None)])])
    admin = ScriptedAdmin([answer])
    results = admin.elect_leaders(0, {("t", 1), ("t", 0)})
    assert results[("t", 0)] is None and results[("t", 1)].code == 84
    assert admin.sent[0][2] == {"election_type": 0, "timeout": 30000,
                                "topic_partitions": [{"topic": "t", "partitions": [0, 1]}]}
    admin = ScriptedAdmin([ns(error_code=0, replica_election_results=[])])
    assert admin.elect_leaders(1, None) == {}
    assert admin.sent[0][2]["topic_partitions"] is None


# -- leader election ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--all-topic-partitions"], "Missing required option(s): bootstrap-server, election-type"),
    (B + ["--all-topic-partitions"], "Missing required option(s): election-type"),
    (B + ["--election-type", "preferred"],
     "One and only one of the following options is required: topic, all-topic-partitions, path-to-json-file"),
    (B + ["--election-type", "preferred", "--topic", "t", "--partition", "0", "--all-topic-partitions"],
     "One and only one of the following options is required: topic, all-topic-partitions, path-to-json-file"),
    (B + ["--election-type", "preferred", "--topic", "t"], "Missing required option(s): partition"),
    (B + ["--election-type", "preferred", "--all-topic-partitions", "--partition", "0"],
     "Option partition is only allowed if topic is used"),
    (B + ["--election-type", "random", "--all-topic-partitions"],
     "Value [random] for option [election-type] is not one of [PREFERRED, UNCLEAN]"),
])
def test_leader_election_argument_errors(argv, message, capsys):
    assert le.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err == message + "\n"


def test_leader_election_type_is_case_insensitive():
    args = le.parser().parse(B + ["--election-type", "unclean", "--topic", "t", "--partition", "3"])
    assert le.check_args(args) == "UNCLEAN"


def test_parse_election_json():
    assert le.parse_election_json('{"partitions":[{"topic":"foo","partition":1},{"topic":"foobar","partition":2}]}') \
        == {("foo", 1), ("foobar", 2)}
    with pytest.raises(ToolError, match='^Replica election data is missing "partitions" field$'):
        le.parse_election_json('{"version":1}')
    with pytest.raises(ToolError, match=r"^Replica election data contains duplicate partitions: \[a-0\]$"):
        le.parse_election_json('{"partitions":[{"topic":"a","partition":0},{"topic":"a","partition":0}]}')
    with pytest.raises(ToolError, match="not a valid JSON"):
        le.parse_election_json('{"partitions":')
    with pytest.raises(ToolError, match="No such field exists: `partition`"):
        le.parse_election_json('{"partitions":[{"topic":"a"}]}')


def test_leader_election_report(capsys):
    results = {("t", 2): None, ("t", 0): None, ("t", 1): KafkaFailure(84), ("u", 0): KafkaFailure(84)}
    assert le.report("PREFERRED", results) == 0
    assert capsys.readouterr().out == ("Successfully completed leader election (PREFERRED) for partitions t-0, t-2\n"
                                       "Valid replica already elected for partitions t-1, u-0\n")
    assert le.report("PREFERRED", {}) == 0
    assert capsys.readouterr().out == ""
    results = {("t", 0): KafkaFailure(80), ("t", 1): KafkaFailure(3, "no t-1"), ("t", 2): None}
    with pytest.raises(ToolError, match=r"^2 replica\(s\) could not be elected$"):
        le.report("UNCLEAN", results)
    assert capsys.readouterr().out == (
        "Successfully completed leader election (UNCLEAN) for partitions t-2\n"
        "Error completing leader election (UNCLEAN) for partition: t-0: "
        "org.apache.kafka.common.errors.PreferredLeaderNotAvailableException: The preferred leader was not available.\n"
        "Error completing leader election (UNCLEAN) for partition: t-1: "
        "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: no t-1\n")


class FakeElection:
    def __init__(self, results=None, failure=None):
        self.results, self.failure, self.calls = results or {}, failure, []

    def __call__(self, servers, command_config=None, client_id=None):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def elect_leaders(self, election_type, partitions):
        self.calls.append((election_type, partitions))
        if self.failure:
            raise self.failure
        return self.results


def test_leader_election_main(monkeypatch, tmp_path, capsys):
    fake = FakeElection({("myorders", 1): None})
    monkeypatch.setattr(le, "Admin", fake)
    assert le.main(B + ["--election-type", "PREFERRED", "--topic", "myorders", "--partition", "1"]) == 0
    assert capsys.readouterr().out == "Successfully completed leader election (PREFERRED) for partitions myorders-1\n"
    path = write(tmp_path, "e.json", {"partitions": [{"topic": "myorders", "partition": 1}]})
    assert le.main(B + ["--election-type", "unclean", "--path-to-json-file", path]) == 0
    assert le.main(B + ["--election-type", "preferred", "--all-topic-partitions"]) == 0
    assert fake.calls == [(0, {("myorders", 1)}), (1, {("myorders", 1)}), (0, None)]
    capsys.readouterr()

    monkeypatch.setattr(le, "Admin", FakeElection({("myorders", 1): KafkaFailure(83)}))
    assert le.main(B + ["--election-type", "unclean", "--topic", "myorders", "--partition", "1"]) == 1
    out = capsys.readouterr()
    assert out.out.startswith("Error completing leader election (UNCLEAN) for partition: myorders-1: "
                              "org.apache.kafka.common.errors.EligibleLeadersNotAvailableException")
    assert out.err == "1 replica(s) could not be elected\n"

    monkeypatch.setattr(le, "Admin", FakeElection(failure=KafkaFailure(31)))
    assert le.main(B + ["--election-type", "preferred", "--all-topic-partitions"]) == 1
    out = capsys.readouterr()
    assert out.out == "Not authorized to perform leader election\n"
    monkeypatch.setattr(le, "Admin", FakeElection(failure=KafkaFailure(35, "The broker does not support ELECT_LEADERS")))
    assert le.main(B + ["--election-type", "preferred", "--all-topic-partitions"]) == 1
    assert capsys.readouterr().err == ("Error: org.apache.kafka.common.errors.UnsupportedVersionException: "
                                       "The broker does not support ELECT_LEADERS\n")


def test_request_bodies_encode_in_every_version_kio_speaks():
    """The dicts Admin builds become valid kio requests (and bytes) in each version the wire client may pick."""
    import io

    from kio.serial import entity_writer

    from josef.client.wire import client_versions, request_class
    from josef.protocol.entities import to_entity

    ok = ns(error_code=0, error_message=None, topics=[], responses=[], replica_election_results=[])
    admin = ScriptedAdmin([ok] * 5 + [_metadata_answer(1)] + [ok] * 2)
    admin.list_reassignments()
    admin.list_reassignments({("t", 0), ("t", 3), ("u", 1)})
    admin.alter_reassignments({("t", 0): [1, 2], ("u", 1): None})
    admin.elect_leaders(0, {("t", 0)})
    admin.elect_leaders(1, None)
    admin.incremental_alter_configs([(rp.RESOURCE_BROKER, "1", [("leader.replication.throttled.rate", rp.OP_SET, "9")]),
                                     (rp.RESOURCE_TOPIC, "t", [("leader.replication.throttled.replicas",
                                                                rp.OP_DELETE, None)])])
    bodies = [(k, b) for k, _, b in admin.sent]
    assert not admin.answers
    bodies.append((3, {"topics": None, "allow_auto_topic_creation": False,
                       "include_cluster_authorized_operations": False, "include_topic_authorized_operations": False}))
    assert {k for k, _ in bodies} == {3, 43, 44, 45, 46}
    for api_key, body in bodies:
        for version in client_versions(api_key):
            if api_key == 3 and version == 0:
                body = {**body, "topics": []}
            if api_key == 43 and version == 0 and body.get("election_type"):
                continue  # refused before sending: v0 knows only preferred elections
            entity = to_entity(request_class(api_key, version), body)
            out = io.BytesIO()
            entity_writer(type(entity))(out, entity)
            assert out.getvalue()


def test_kafka_script_names_are_declared():
    import tomllib
    from pathlib import Path

    from josef.cli import main as cli_main
    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kafka-reassign-partitions.sh"] == "josef.cli.main:kafka_reassign_partitions"
    assert scripts["kafka-leader-election.sh"] == "josef.cli.main:kafka_leader_election"
    assert callable(cli_main.kafka_reassign_partitions) and callable(cli_main.kafka_leader_election)
    assert cli_main.TOOLS["reassign-partitions"][0] == "josef.cli.reassign_partitions"
    assert cli_main.TOOLS["leader-election"][0] == "josef.cli.leader_election"
