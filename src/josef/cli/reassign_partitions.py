"""kafka-reassign-partitions.sh (ReassignPartitionsCommand): move partition replicas between brokers.

Actions, flags, messages, JSON formats and exit codes follow Kafka 3.x's tool with
--bootstrap-server:

    --generate --topics-to-move-json-file F --broker-list 1,2   propose an assignment (changes nothing)
    --execute  --reassignment-json-file F [--throttle B/s] [--additional]
    --verify   --reassignment-json-file F [--preserve-throttles]
    --cancel   --reassignment-json-file F [--preserve-throttles]
    --list

The reassignment file is Kafka's:
    {"version":1,"partitions":[{"topic":"myorders","partition":0,"replicas":[1,2],"log_dirs":["any","any"]}]}
("log_dirs" optional). --generate's proposal is Kafka's AdminUtils.assignReplicasToBrokers made
deterministic: start index 0 and replica shift 0 over the sorted broker list, so the same
input always gives the same proposal (Kafka picks both at random).

Everything travels over josef's wire client (josef.client.wire): Metadata, ListPartitionReassignments
(46), AlterPartitionReassignments (45), IncrementalAlterConfigs (44) for the throttles. Kafka sends
the reassignment requests to the controller; josef brokers accept them anywhere, so they go to the
bootstrap broker, and to the controller named by Metadata when a broker answers NOT_CONTROLLER.
Broker-level throttle configs go to the broker they belong to, as Kafka's admin client does.

Where Kafka prints errors on stdout with a stack trace, this tool prints them on stderr, without
one; the exit status is Kafka's (1 for any failure). Moving replicas between log directories of
one broker (log_dirs other than "any", --replica-alter-log-dirs-throttle) is refused: a josef
broker has one log directory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

from josef.cli.common import ArgParser, ToolError, load_properties, parse_servers, run

ANY_LOG_DIR = "any"
EARLIEST_VERSION = 1

# API keys
METADATA, INCREMENTAL_ALTER_CONFIGS, ELECT_LEADERS = 3, 44, 43
ALTER_PARTITION_REASSIGNMENTS, LIST_PARTITION_REASSIGNMENTS = 45, 46
API_NAMES = {METADATA: "METADATA", INCREMENTAL_ALTER_CONFIGS: "INCREMENTAL_ALTER_CONFIGS",
             ELECT_LEADERS: "ELECT_LEADERS", ALTER_PARTITION_REASSIGNMENTS: "ALTER_PARTITION_REASSIGNMENTS",
             LIST_PARTITION_REASSIGNMENTS: "LIST_PARTITION_REASSIGNMENTS"}
NOT_CONTROLLER = 41
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
OP_SET, OP_DELETE = 0, 1

REQUEST_TIMEOUT_MS = 30000  # the timeout field of the requests (Kafka's default.api.timeout.ms)
SOCKET_TIMEOUT = 45.0       # seconds: longer than what a broker may take to answer within REQUEST_TIMEOUT_MS
CONTROLLER_RETRIES = 5      # NOT_CONTROLLER answers followed before giving up

LEADER_THROTTLED_RATE = "leader.replication.throttled.rate"
FOLLOWER_THROTTLED_RATE = "follower.replication.throttled.rate"
LEADER_THROTTLED_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_THROTTLED_REPLICAS = "follower.replication.throttled.replicas"
# Kafka also deletes replica.alter.log.dirs.io.max.bytes.per.second; josef has no such config
# (one log directory per broker), and a broker refuses a DELETE of a name it does not know.
BROKER_LEVEL_THROTTLES = (LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE)
TOPIC_LEVEL_THROTTLES = (LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS)

CANNOT_EXECUTE_BECAUSE_OF_EXISTING_MESSAGE = (
    "Cannot execute because there is an existing partition assignment.  Use --additional to override this and "
    "create a new partition assignment in addition to the existing one. The --additional flag can also be used "
    "to change the throttle by resubmitting the current reassignment.")
YOU_MUST_RUN_VERIFY_PERIODICALLY_MESSAGE = (
    "Warning: You must run --verify periodically, until the reassignment completes, to ensure the throttle "
    "is removed.")

# -- Kafka errors -----------------------------------------------------------------------------------

_E = "org.apache.kafka.common.errors."
# code -> (Java exception the admin client raises, Kafka's message when the broker sends none)
KAFKA_ERRORS: dict[int, tuple[str, str]] = {
    -1: ("UnknownServerException", "The server experienced an unexpected error when processing the request."),
    3: ("UnknownTopicOrPartitionException", "This server does not host this topic-partition."),
    5: ("LeaderNotAvailableException",
        "There is no leader for this topic-partition as we are in the middle of a leadership election."),
    7: ("TimeoutException", "The request timed out."),
    8: ("BrokerNotAvailableException", "The broker is not available."),
    13: ("NetworkException", "The server disconnected before a response was received."),
    17: ("InvalidTopicException", "The request attempted to perform an operation on an invalid topic."),
    29: ("TopicAuthorizationException", "Topic authorization failed."),
    31: ("ClusterAuthorizationException", "Cluster authorization failed."),
    35: ("UnsupportedVersionException", "The version of API is not supported."),
    37: ("InvalidPartitionsException", "Number of partitions is below 1."),
    38: ("InvalidReplicationFactorException",
         "Replication factor is below 1 or larger than the number of available brokers."),
    39: ("InvalidReplicaAssignmentException", "Replica assignment is invalid."),
    40: ("InvalidConfigurationException", "Configuration is invalid."),
    41: ("NotControllerException", "This is not the correct controller for this cluster."),
    42: ("InvalidRequestException",
         "This most likely occurs because of a request being malformed by the client library or the message "
         "was sent to an incompatible broker. See the broker logs for more details."),
    44: ("PolicyViolationException", "Request parameters do not satisfy the configured policy."),
    56: ("KafkaStorageException", "Disk error when trying to access log file on the disk."),
    60: ("ReassignmentInProgressException", "A partition reassignment is in progress."),
    80: ("PreferredLeaderNotAvailableException", "The preferred leader was not available."),
    83: ("EligibleLeadersNotAvailableException", "Eligible topic partition leaders are not available."),
    84: ("ElectionNotNeededException", "Leader election not needed for topic partition."),
    85: ("NoReassignmentInProgressException", "No partition reassignment is in progress."),
}


class KafkaFailure(Exception):
    """A Kafka error code with the broker's message, shown as the Java client would show it."""

    def __init__(self, code: int, message: str | None = None):
        self.code = int(code)
        cls, default = KAFKA_ERRORS.get(self.code, ("UnknownServerException", f"Unexpected error code: {code}."))
        self.exception = _E + cls
        self.message = message or default
        super().__init__(self.message)

    def __str__(self) -> str:  # Throwable.toString(): "class: message"
        return f"{self.exception}: {self.message}"


def failed(e: KafkaFailure) -> ToolError:
    """What Kafka's main prints for an ExecutionException: 'Error: ' + the cause's toString()."""
    return ToolError(f"Error: {e}")


# -- topic partitions -------------------------------------------------------------------------------

TP = tuple[str, int]


def tp_text(tp: TP) -> str:
    """TopicPartition.toString()."""
    return f"{tp[0]}-{tp[1]}"


def ints_text(values) -> str:
    return ",".join(str(v) for v in values)


def set_text(values) -> str:
    """A Java Set's toString() (sorted, as a HashSet of small ints or our sorted sets iterate)."""
    return "[" + ", ".join(str(v) for v in values) + "]"


# -- reading the JSON files -------------------------------------------------------------------------

def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ToolError(f"Error: could not read {path}: {e.strerror or e}") from None


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def parse_json(text: str):
    try:
        return json.loads(text)
    except ValueError as e:
        detail = f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise ToolError(f"Error: The input string is not a valid JSON: {detail}") from None


def _object(value) -> dict:
    if not isinstance(value, dict):
        raise ToolError(f"Error: Expected JSON object, received {_compact(value)}")
    return value


def _array(value) -> list:
    if not isinstance(value, list):
        raise ToolError(f"Error: Expected JSON array, received {_compact(value)}")
    return value


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31:
        raise ToolError(f"Error: Expected `Int` value, received {_compact(value)}")
    return value


def _str(value) -> str:
    if not isinstance(value, str):
        raise ToolError(f"Error: Expected `String` value, received {_compact(value)}")
    return value


def _field(obj: dict, name: str):
    if name not in obj:
        raise ToolError(f"Error: No such field exists: `{name}`")
    return obj[name]


def _version(obj: dict, default: int) -> int:
    version = _int(obj["version"]) if obj.get("version") is not None else default
    if version != 1:
        raise ToolError(f"Error: Not supported version field value {version}")
    return version


@dataclass
class ReassignmentData:
    """A reassignment file: the partitions in file order (duplicates kept, to be reported) and the
    replicas that name a log directory other than "any" ({(topic, partition, broker): dir})."""
    partitions: list[tuple[TP, list[int]]]
    log_dirs: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def targets(self) -> dict[TP, list[int]]:
        return dict(self.partitions)


def parse_reassignment_json(text: str) -> ReassignmentData:
    """parsePartitionReassignmentData: the --reassignment-json-file format, version 1."""
    js = _object(parse_json(text))
    _version(js, EARLIEST_VERSION)
    data = ReassignmentData([])
    partitions = js.get("partitions")
    for entry in _array(partitions) if partitions is not None else ():
        entry = _object(entry)
        topic = _str(_field(entry, "topic"))
        partition = _int(_field(entry, "partition"))
        replicas = [_int(r) for r in _array(_field(entry, "replicas"))]
        if entry.get("log_dirs") is not None:
            log_dirs = [_str(d) for d in _array(entry["log_dirs"])]
        else:
            log_dirs = [ANY_LOG_DIR] * len(replicas)
        if len(replicas) != len(log_dirs):
            raise ToolError(f"Error: Size of replicas list {set_text(replicas)} is different from size of log dirs "
                            f"list {set_text(log_dirs)} for partition {topic}-{partition}")
        data.partitions.append(((topic, partition), replicas))
        for replica, log_dir in zip(replicas, log_dirs):
            if log_dir != ANY_LOG_DIR:
                data.log_dirs[(topic, partition, replica)] = log_dir
    return data


def _duplicates(items) -> list:
    seen, dups = set(), set()
    for item in items:
        (dups if item in seen else seen).add(item)
    return sorted(dups)


def parse_execute_json(text: str) -> ReassignmentData:
    """parseExecuteAssignmentArgs: the file, plus the checks --execute makes before asking the cluster."""
    data = parse_reassignment_json(text)
    if not data.partitions:
        raise ToolError("Error: Partition reassignment list cannot be empty")
    if any(not replicas for _, replicas in data.partitions):
        raise ToolError("Error: Partition replica list cannot be empty")
    dup_parts = _duplicates(tp for tp, _ in data.partitions)
    if dup_parts:
        raise ToolError("Error: Partition reassignment contains duplicate topic partitions: "
                        + ",".join(map(tp_text, dup_parts)))
    dup_replicas = [(tp, _duplicates(replicas)) for tp, replicas in data.partitions if _duplicates(replicas)]
    if dup_replicas:
        text = ". ".join(f"{tp_text(tp)} contains multiple entries for {ints_text(d)}" for tp, d in dup_replicas)
        raise ToolError(f"Error: Partition replica lists may not contain duplicate entries: {text}")
    return data


def parse_topics_json(text: str) -> list[str]:
    """parseTopicsData: the --topics-to-move-json-file format {"topics":[{"topic":"foo"}],"version":1}."""
    js = _object(parse_json(text))
    _version(js, EARLIEST_VERSION)
    topics = js.get("topics")
    return [_str(_field(_object(t), "topic")) for t in (_array(topics) if topics is not None else ())]


def parse_broker_list(text: str) -> list[int]:
    brokers = []
    for item in text.split(","):
        try:
            brokers.append(int(item.strip()))
        except ValueError:
            raise ToolError(f'Error: For input string: "{item}" (--broker-list takes broker ids like 1,2,3)') from None
    return brokers


def parse_generate_args(topics_json: str, broker_list: str) -> tuple[list[int], list[str]]:
    """parseGenerateAssignmentArgs: brokers and topics, each without duplicates."""
    brokers = parse_broker_list(broker_list)
    dups = _duplicates(brokers)
    if dups:
        raise ToolError(f"Error: Broker list contains duplicate entries: {set_text(dups)}")
    topics = parse_topics_json(topics_json)
    dups = _duplicates(topics)
    if dups:
        raise ToolError(f"Error: List of topics to reassign contains duplicate entries: {set_text(dups)}")
    return brokers, topics


def refuse_log_dirs(data: ReassignmentData) -> None:
    if data.log_dirs:
        (topic, partition, broker), log_dir = sorted(data.log_dirs.items())[0]
        raise ToolError(f"Error: josef does not move replicas between log directories: partition {topic}-{partition} "
                        f'names log dir "{log_dir}" for broker {broker}; use "any" (a josef broker has one log '
                        "directory)")


# -- replica assignment (Kafka's AdminUtils, deterministic) -----------------------------------------

def replica_index(first_replica_index: int, second_replica_shift: int, replica_index: int, n_brokers: int) -> int:
    shift = 1 + (second_replica_shift + replica_index) % (n_brokers - 1)
    return (first_replica_index + shift) % n_brokers


def assign_replicas_rack_unaware(n_partitions: int, replication_factor: int, brokers: list[int],
                                 start_index: int = 0, start_partition: int = 0) -> dict[int, list[int]]:
    """assignReplicasToBrokersRackUnaware with a fixed start index (and first replica shift)."""
    n = len(brokers)
    result: dict[int, list[int]] = {}
    partition = max(0, start_partition)
    shift = start_index
    for _ in range(n_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        replicas = [brokers[first]]
        replicas += [brokers[replica_index(first, shift, j, n)] for j in range(replication_factor - 1)]
        result[partition] = replicas
        partition += 1
    return result


def rack_alternated_brokers(racks: dict[int, str]) -> list[int]:
    """getRackAlternatedBrokerList: one broker of each rack in turn, racks and brokers sorted."""
    by_rack: dict[str, list[int]] = {}
    for broker, rack in racks.items():
        by_rack.setdefault(rack, []).append(broker)
    iterators = {rack: iter(sorted(ids)) for rack, ids in by_rack.items()}
    names = sorted(iterators)
    result: list[int] = []
    i = 0
    while len(result) < len(racks):
        broker = next(iterators[names[i]], None)
        if broker is not None:
            result.append(broker)
        i = (i + 1) % len(names)
    return result


def assign_replicas_rack_aware(n_partitions: int, replication_factor: int, racks: dict[int, str],
                               start_index: int = 0, start_partition: int = 0) -> dict[int, list[int]]:
    """assignReplicasToBrokersRackAware with a fixed start index (and first replica shift)."""
    n_racks = len(set(racks.values()))
    arranged = rack_alternated_brokers(racks)
    n = len(arranged)
    result: dict[int, list[int]] = {}
    partition = max(0, start_partition)
    shift = start_index
    for _ in range(n_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        leader = arranged[first]
        replicas = [leader]
        racks_with, brokers_with = {racks[leader]}, {leader}
        k = 0
        for _ in range(replication_factor - 1):
            while True:
                broker = arranged[replica_index(first, shift * n_racks, k, n)]
                rack = racks[broker]
                k += 1
                if ((rack not in racks_with or len(racks_with) == n_racks)
                        and (broker not in brokers_with or len(brokers_with) == n)):
                    replicas.append(broker)
                    racks_with.add(rack)
                    brokers_with.add(broker)
                    break
        result[partition] = replicas
        partition += 1
    return result


def assign_replicas(brokers: dict[int, str | None], n_partitions: int, replication_factor: int) -> dict[int, list[int]]:
    """assignReplicasToBrokers over {broker id: rack or None}: rack-aware when every broker has a rack."""
    if n_partitions <= 0:
        raise ToolError("Error: Number of partitions must be larger than 0.")
    if replication_factor <= 0:
        raise ToolError("Error: Replication factor must be larger than 0.")
    if replication_factor > len(brokers):
        raise ToolError(f"Error: Replication factor: {replication_factor} larger than available brokers: "
                        f"{len(brokers)}.")
    if all(rack is None for rack in brokers.values()):
        return assign_replicas_rack_unaware(n_partitions, replication_factor, sorted(brokers))
    if any(rack is None for rack in brokers.values()):
        raise ToolError("Error: Not all brokers have rack information for replica rack aware assignment.")
    return assign_replicas_rack_aware(n_partitions, replication_factor, dict(sorted(brokers.items())))


def broker_racks(cluster_racks: dict[int, str | None], wanted: list[int], rack_aware: bool) -> dict[int, str | None]:
    """getBrokerMetadata: the wanted brokers the cluster knows (others are left out, as Kafka does)."""
    found = {b: (rack if rack_aware else None) for b, rack in cluster_racks.items() if b in set(wanted)}
    rackless = sum(rack is None for rack in found.values())
    if rack_aware and rackless not in (0, len(found)):
        raise ToolError("Error: Not all brokers have rack information. Add --disable-rack-aware in command line "
                        "to make replica assignment without rack information.")
    return found


def calculate_assignment(current: dict[TP, list[int]], brokers: dict[int, str | None]) -> dict[TP, list[int]]:
    """calculateAssignment: per topic, a fresh assignment with its partition count and replication factor."""
    by_topic: dict[str, dict[int, list[int]]] = {}
    for (topic, partition), replicas in current.items():
        by_topic.setdefault(topic, {})[partition] = replicas
    proposed: dict[TP, list[int]] = {}
    for topic, parts in sorted(by_topic.items()):
        rf = len(parts[min(parts)])
        for partition, replicas in assign_replicas(brokers, len(parts), rf).items():
            proposed[(topic, partition)] = replicas
    return proposed


# -- output -----------------------------------------------------------------------------------------

def format_reassignment_json(parts: dict[TP, list[int]], log_dirs: dict[tuple[str, int, int], str] | None = None) -> str:
    """formatAsReassignmentJson: compact JSON, partitions sorted by topic then partition."""
    log_dirs = log_dirs or {}
    partitions = [{"topic": t, "partition": p, "replicas": list(parts[(t, p)]),
                   "log_dirs": [log_dirs.get((t, p, r), ANY_LOG_DIR) for r in parts[(t, p)]]}
                  for t, p in sorted(parts)]
    return json.dumps({"version": 1, "partitions": partitions}, separators=(",", ":"))


def current_assignment_text(proposed: dict[TP, list[int]], current: dict[TP, list[int]]) -> str:
    """currentPartitionReplicaAssignmentToString (what --execute prints before it starts)."""
    moving = {tp: replicas for tp, replicas in current.items() if tp in proposed}
    return (f"Current partition replica assignment\n\n{format_reassignment_json(moving)}\n\n"
            "Save this to use as the --reassignment-json-file option during rollback")


def generate_text(current: dict[TP, list[int]], proposed: dict[TP, list[int]]) -> str:
    return (f"Current partition replica assignment\n{format_reassignment_json(current)}\n\n"
            f"Proposed partition reassignment configuration\n{format_reassignment_json(proposed)}")


@dataclass(frozen=True)
class PartitionState:
    """PartitionReassignmentState: the replicas now, the target, and whether no reassignment is active."""
    current: list[int]
    target: list[int]
    done: bool


def status_text(states: dict[TP, PartitionState]) -> str:
    """partitionReassignmentStatesToString (--verify)."""
    lines = ["Status of partition reassignment:"]
    for tp in sorted(states):
        state = states[tp]
        if not state.done:
            lines.append(f"Reassignment of partition {tp_text(tp)} is still in progress.")
        elif state.current == state.target:
            lines.append(f"Reassignment of partition {tp_text(tp)} is completed.")
        else:
            lines.append(f"There is no active reassignment of partition {tp_text(tp)}, but replica set is "
                         f"{ints_text(state.current)} rather than {ints_text(state.target)}.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Reassignment:
    """An ongoing reassignment as ListPartitionReassignments reports it."""
    replicas: list[int]
    adding: list[int]
    removing: list[int]


def list_text(reassignments: dict[TP, Reassignment]) -> str:
    """curReassignmentsToString (--list)."""
    lines = []
    for tp in sorted(reassignments):
        r = reassignments[tp]
        line = f"{tp_text(tp)}: replicas: {ints_text(r.replicas)}."
        if r.adding:
            line += f" adding: {ints_text(r.adding)}."
        if r.removing:
            line += f" removing: {ints_text(r.removing)}."
        lines.append(line)
    return "Current partition reassignments:\n" + "\n".join(lines) if lines else "No partition reassignments found."


def partition_errors_text(header: str, errors: dict[TP, KafkaFailure]) -> str:
    return header + "\n" + "\n".join(f"{tp_text(tp)}: {errors[tp].message}" for tp in sorted(errors))


def plural(n: int) -> str:
    return "" if n == 1 else "s"


# -- throttles ----------------------------------------------------------------------------------------

@dataclass
class PartitionMove:
    sources: set[int]
    destinations: set[int]


MoveMap = dict[str, dict[int, PartitionMove]]


def current_move_map(ongoing: dict[TP, Reassignment]) -> MoveMap:
    """calculateCurrentMoveMap: sources are the replicas not being added, destinations the added ones."""
    moves: MoveMap = {}
    for (topic, partition), r in ongoing.items():
        moves.setdefault(topic, {})[partition] = PartitionMove(set(r.replicas) - set(r.adding), set(r.adding))
    return moves


def proposed_move_map(ongoing: dict[TP, Reassignment], proposed: dict[TP, list[int]],
                      current: dict[TP, list[int]]) -> MoveMap:
    """calculateProposedMoveMap: ongoing moves plus the proposed ones (sources from an ongoing move if any)."""
    moves = current_move_map(ongoing)
    for (topic, partition), replicas in proposed.items():
        part_moves = moves.setdefault(topic, {})
        if partition in part_moves:
            sources = set(part_moves[partition].sources)
        elif (topic, partition) in current:
            sources = set(current[(topic, partition)])
        else:
            raise ToolError(f"Error: Trying to reassign a topic partition {topic}-{partition} with 0 replicas")
        part_moves[partition] = PartitionMove(sources, set(replicas) - sources)
    return moves


def leader_throttles(moves: MoveMap) -> dict[str, str]:
    """calculateLeaderThrottles: 'partition:broker' for every source, per topic, sorted as strings."""
    return {topic: ",".join(sorted({f"{p}:{s}" for p, m in parts.items() for s in m.sources}))
            for topic, parts in moves.items()}


def follower_throttles(moves: MoveMap) -> dict[str, str]:
    """calculateFollowerThrottles: 'partition:broker' for every destination that is not a source."""
    return {topic: ",".join(sorted({f"{p}:{d}" for p, m in parts.items() for d in m.destinations
                                    if d not in m.sources}))
            for topic, parts in moves.items()}


def reassigning_brokers(moves: MoveMap) -> list[int]:
    return sorted({b for parts in moves.values() for m in parts.values() for b in m.sources | m.destinations})


# -- talking to the cluster -------------------------------------------------------------------------

@dataclass(frozen=True)
class PartitionInfo:
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class ClusterMetadata:
    brokers: dict[int, tuple[str, int, str | None]]  # id -> (host, port, rack)
    controller_id: int
    topics: dict[str, dict[int, PartitionInfo]]     # topics the cluster knows; partitions by index

    def replicas(self, tp: TP) -> list[int] | None:
        info = self.topics.get(tp[0], {}).get(tp[1])
        return None if info is None else list(info.replicas)


class Admin:
    """The requests these tools need, over josef's synchronous wire client, one connection per broker."""

    def __init__(self, servers: str, command_config: str | None = None, client_id: str = "reassign-partitions-tool"):
        if command_config is not None:
            props = load_properties(command_config)
            protocol = props.get("security.protocol", "PLAINTEXT").upper()
            if protocol != "PLAINTEXT":
                raise ToolError(f"Error: security.protocol={protocol} is not supported by this tool (PLAINTEXT only)")
        self.servers, self.client_id = servers, client_id
        self._conns: dict[tuple[str, int], tuple] = {}
        reasons = []
        self.bootstrap: tuple[str, int] | None = None
        for address in parse_servers(servers):
            try:
                self._connection(address)
            except KafkaFailure as e:
                reason = e.message
                if reason.startswith("could not connect to ") and ": " in reason[21:]:
                    reason = reason[21:].split(": ", 1)[1]
                reasons.append(reason)
                continue
            self.bootstrap = address
            break
        if self.bootstrap is None:
            raise ToolError(f"could not connect to {servers}: {reasons[-1] if reasons else 'no server given'}")
        self._metadata: ClusterMetadata | None = None

    def close(self) -> None:
        for conn, _ in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connection(self, address: tuple[str, int]):
        from josef.client.wire import KafkaConnection, WireError
        if address not in self._conns:
            try:
                conn = KafkaConnection(address[0], address[1], timeout=SOCKET_TIMEOUT,
                                       client_id=self.client_id)
            except WireError as e:
                raise KafkaFailure(13, str(e)) from None
            try:
                versions = conn.api_versions()
            except WireError as e:
                conn.close()
                raise KafkaFailure(13, str(e)) from None
            self._conns[address] = (conn, versions)
        return self._conns[address]

    def request(self, api_key: int, body: dict, address: tuple[str, int] | None = None):
        """Send `body` (nested dicts with Kafka's field names) in the best common version."""
        from josef.client.wire import KafkaConnection, WireError, request_class
        from josef.protocol.entities import to_entity
        address = address or self.bootstrap
        conn, versions = self._connection(address)
        try:
            version = KafkaConnection.best_version(api_key, versions)
        except WireError:
            raise KafkaFailure(35, f"The broker does not support {API_NAMES.get(api_key, api_key)}") from None
        try:
            return conn.request(to_entity(request_class(api_key, version), body))
        except WireError as e:
            conn.close()
            self._conns.pop(address, None)
            raise KafkaFailure(13, str(e)) from None

    def version(self, api_key: int, address: tuple[str, int] | None = None) -> int:
        from josef.client.wire import KafkaConnection, WireError
        _, versions = self._connection(address or self.bootstrap)
        try:
            return KafkaConnection.best_version(api_key, versions)
        except WireError:
            raise KafkaFailure(35, f"The broker does not support {API_NAMES.get(api_key, api_key)}") from None

    # -- metadata --

    def metadata(self, refresh: bool = False) -> ClusterMetadata:
        if self._metadata is None or refresh:
            v0 = self.version(METADATA) == 0
            response = self.request(METADATA, {"topics": [] if v0 else None, "allow_auto_topic_creation": False,
                                               "include_cluster_authorized_operations": False,
                                               "include_topic_authorized_operations": False})
            brokers = {int(b.node_id): (b.host, int(b.port), getattr(b, "rack", None)) for b in response.brokers}
            topics: dict[str, dict[int, PartitionInfo]] = {}
            for t in response.topics:
                if int(t.error_code) == 3 or t.name is None:  # UNKNOWN_TOPIC_OR_PARTITION
                    continue
                topics[t.name] = {int(p.partition_index): PartitionInfo(int(p.leader_id),
                                                                        [int(r) for r in p.replica_nodes],
                                                                        [int(r) for r in p.isr_nodes])
                                  for p in t.partitions}
            self._metadata = ClusterMetadata(brokers, int(getattr(response, "controller_id", -1)), topics)
        return self._metadata

    def address_of(self, broker: int) -> tuple[str, int]:
        node = self.metadata().brokers.get(broker)
        if node is None:
            raise KafkaFailure(8, f"Broker {broker} is not available.")
        return node[0], node[1]

    def controller_request(self, api_key: int, body: dict):
        """Send to the bootstrap broker; on NOT_CONTROLLER follow Metadata's controller_id."""
        response = self.request(api_key, body)
        for attempt in range(CONTROLLER_RETRIES):
            if int(getattr(response, "error_code", 0)) != NOT_CONTROLLER:
                break
            time.sleep(0.1 * attempt)
            metadata = self.metadata(refresh=True)
            node = metadata.brokers.get(metadata.controller_id)
            if node is None:
                continue
            response = self.request(api_key, body, (node[0], node[1]))
        return response

    # -- reassignments --

    def list_reassignments(self, partitions=None) -> dict[TP, Reassignment]:
        """ListPartitionReassignments: every ongoing reassignment, or those of `partitions`."""
        topics = None
        if partitions is not None:
            grouped: dict[str, list[int]] = {}
            for topic, partition in sorted(partitions):
                grouped.setdefault(topic, []).append(partition)
            topics = [{"name": t, "partition_indexes": ps} for t, ps in grouped.items()]
        response = self.controller_request(LIST_PARTITION_REASSIGNMENTS,
                                           {"timeout": REQUEST_TIMEOUT_MS, "topics": topics})
        if int(response.error_code):
            raise KafkaFailure(int(response.error_code), response.error_message)
        result = {}
        for t in response.topics:
            for p in t.partitions:
                tp = (t.name, int(p.partition_index))
                if partitions is None or tp in partitions:
                    result[tp] = Reassignment([int(r) for r in p.replicas], [int(r) for r in p.adding_replicas],
                                              [int(r) for r in p.removing_replicas])
        return result

    def alter_reassignments(self, targets: dict[TP, list[int] | None]) -> dict[TP, KafkaFailure]:
        """AlterPartitionReassignments: start (replicas) or cancel (None); the partitions that failed."""
        grouped: dict[str, list[dict]] = {}
        for (topic, partition), replicas in sorted(targets.items()):
            grouped.setdefault(topic, []).append({"partition_index": partition, "replicas": replicas})
        response = self.controller_request(ALTER_PARTITION_REASSIGNMENTS, {
            "timeout": REQUEST_TIMEOUT_MS,
            "topics": [{"name": t, "partitions": ps} for t, ps in grouped.items()]})
        if int(response.error_code):
            failure = KafkaFailure(int(response.error_code), response.error_message)
            return {tp: failure for tp in targets}
        errors: dict[TP, KafkaFailure] = {}
        answered = set()
        for t in response.responses:
            for p in t.partitions:
                tp = (t.name, int(p.partition_index))
                answered.add(tp)
                if int(p.error_code):
                    errors[tp] = KafkaFailure(int(p.error_code), p.error_message)
        for tp in targets:
            if tp not in answered:
                errors[tp] = KafkaFailure(-1, "The broker's answer did not mention this partition.")
        return errors

    # -- configs --

    def incremental_alter_configs(self, resources: list[tuple[int, str, list[tuple[str, int, str | None]]]]) -> None:
        """IncrementalAlterConfigs; broker resources go to their broker. Raises the first failure."""
        by_address: dict[tuple[str, int], list[dict]] = {}
        for rtype, name, ops in resources:
            address = self.address_of(int(name)) if rtype == RESOURCE_BROKER else self.bootstrap
            by_address.setdefault(address, []).append({
                "resource_type": rtype, "resource_name": name,
                "configs": [{"name": k, "config_operation": op, "value": v} for k, op, v in ops]})
        for address, body in by_address.items():
            response = self.request(INCREMENTAL_ALTER_CONFIGS, {"resources": body, "validate_only": False}, address)
            for r in response.responses:
                if int(r.error_code):
                    raise KafkaFailure(int(r.error_code), r.error_message)

    # -- leader election --

    def elect_leaders(self, election_type: int, partitions) -> dict[TP, KafkaFailure | None]:
        """ElectLeaders: {partition: None (elected) or its failure}; partitions None means all of them."""
        topic_partitions = None
        if partitions is not None:
            grouped: dict[str, list[int]] = {}
            for topic, partition in sorted(partitions):
                grouped.setdefault(topic, []).append(partition)
            topic_partitions = [{"topic": t, "partitions": ps} for t, ps in grouped.items()]
        if election_type != 0 and self.version(ELECT_LEADERS) == 0:
            raise KafkaFailure(35, "The broker supports only preferred leader election (ElectLeaders v0)")
        response = self.controller_request(ELECT_LEADERS, {
            "election_type": election_type, "topic_partitions": topic_partitions, "timeout": REQUEST_TIMEOUT_MS})
        code = int(getattr(response, "error_code", 0))
        if code:
            raise KafkaFailure(code, None)
        results: dict[TP, KafkaFailure | None] = {}
        for t in response.replica_election_results:
            for p in t.partition_result:
                code = int(p.error_code)
                results[(t.topic, int(p.partition_id))] = KafkaFailure(code, p.error_message) if code else None
        return results


# -- arguments ---------------------------------------------------------------------------------------

ACTIONS = ("generate", "execute", "verify", "cancel", "list")
REQUIRED = {"verify": ("reassignment-json-file",), "generate": ("topics-to-move-json-file", "broker-list"),
            "execute": ("reassignment-json-file",), "cancel": ("reassignment-json-file",), "list": ()}
PERMITTED = {
    "verify": ("bootstrap-server", "command-config", "preserve-throttles"),
    "generate": ("bootstrap-server", "broker-list", "command-config", "disable-rack-aware"),
    "execute": ("additional", "bootstrap-server", "command-config", "throttle", "replica-alter-log-dirs-throttle",
                "timeout"),
    "cancel": ("bootstrap-server", "command-config", "preserve-throttles", "timeout"),
    "list": ("bootstrap-server", "command-config"),
}
OPTIONS = ("bootstrap-server", "command-config", "reassignment-json-file", "topics-to-move-json-file", "broker-list",
           "bootstrap-controller", "disable-rack-aware", "throttle", "replica-alter-log-dirs-throttle", "timeout",
           "additional", "preserve-throttles")


def parser() -> ArgParser:
    p = ArgParser("reassign-partitions", "This tool helps to move topic partitions between replicas.")
    a = p.add_argument
    a("--verify", action="store_true",
      help="Verify if the reassignment completed as specified by the --reassignment-json-file option. If there is "
           "a throttle engaged for the replicas specified, and the rebalance has completed, the throttle will be "
           "removed")
    a("--generate", action="store_true",
      help="Generate a candidate partition reassignment configuration. Note that this only generates a candidate "
           "assignment, it does not execute it.")
    a("--execute", action="store_true",
      help="Kick off the reassignment as specified by the --reassignment-json-file option.")
    a("--cancel", action="store_true", help="Cancel an active reassignment.")
    a("--list", action="store_true", help="List all active partition reassignments.")
    a("--bootstrap-server", metavar="HOST1:PORT1,...", help="the server(s) to use for bootstrapping.")
    a("--bootstrap-controller", metavar="HOST:PORT", help="Not supported by josef (no KRaft controllers).")
    a("--command-config", metavar="FILE", help="Property file containing configs to be passed to Admin Client.")
    a("--reassignment-json-file", metavar="FILE",
      help='The JSON file with the partition reassignment configuration. The format to use is - '
           '{"partitions": [{"topic": "foo", "partition": 1, "replicas": [1,2,3], "log_dirs": ["any","any","any"]}], '
           '"version":1}. Note that "log_dirs" is optional; josef accepts only "any" there.')
    a("--topics-to-move-json-file", metavar="FILE",
      help="Generate a reassignment configuration to move the partitions of the specified topics to the list of "
           'brokers specified by the --broker-list option. The format to use is - {"topics": [{"topic": "foo"},'
           '{"topic": "foo1"}], "version":1}')
    a("--broker-list", metavar="BROKERLIST",
      help='The list of brokers to which the partitions need to be reassigned in the form "0,1,2". This is '
           "required if --topics-to-move-json-file is used to generate reassignment configuration")
    a("--disable-rack-aware", action="store_true", help="Disable rack aware replica assignment")
    a("--throttle", type=int, metavar="THROTTLE",
      help="The movement of partitions between brokers will be throttled to this value (bytes/sec). This option "
           "can be included with --execute when a reassignment is started, and it can be altered by resubmitting "
           "the current reassignment along with the --additional flag. The throttle rate should be at least 1 KB/s.")
    a("--replica-alter-log-dirs-throttle", type=int, metavar="THROTTLE",
      help="Not supported by josef: a josef broker has one log directory, so replicas never move between them.")
    a("--timeout", type=int, metavar="MS",
      help="The maximum time in ms to wait for log directory replica assignment to begin. (default: 10000)")
    a("--additional", action="store_true",
      help="Execute this reassignment in addition to any other ongoing ones. This option can also be used to "
           "change the throttle of an ongoing reassignment.")
    a("--preserve-throttles", action="store_true", help="Do not modify broker or topic throttles.")
    return p


def _given(args: argparse.Namespace, option: str) -> bool:
    value = getattr(args, option.replace("-", "_"))
    return value is not None and value is not False


def check_args(args: argparse.Namespace) -> str:
    """validateAndParseArgs: the one action, the connection, required and permitted options."""
    actions = [a for a in ACTIONS if getattr(args, a)]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: " + ", ".join(f"--{a}" for a in ACTIONS))
    action = actions[0]
    if args.bootstrap_server is not None and args.bootstrap_controller is not None:
        raise ToolError("Please don't specify both --bootstrap-server and --bootstrap-controller")
    if args.bootstrap_server is None and args.bootstrap_controller is None:
        raise ToolError("Please specify either --bootstrap-server or --bootstrap-controller")
    if args.bootstrap_controller is not None:
        raise ToolError("--bootstrap-controller is not supported by josef (it has no KRaft controllers): "
                        "use --bootstrap-server")
    for option in REQUIRED[action]:
        if not _given(args, option):
            raise ToolError(f'Missing required argument "[{option}]"')
    for option in OPTIONS:
        if _given(args, option) and option not in REQUIRED[action] and option not in PERMITTED[action]:
            raise ToolError(f'Option "[{option}]" can\'t be used with action "[{action}]"')
    parse_servers(args.bootstrap_server)
    if args.replica_alter_log_dirs_throttle is not None:
        raise ToolError("--replica-alter-log-dirs-throttle is not supported by josef: a josef broker has one log "
                        "directory, so replicas never move between log directories")
    return action


# -- the tool ----------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    action = check_args(args)
    # files are read and checked before connecting: a mistake costs no round trip
    if action == "generate":
        brokers, topics = parse_generate_args(read_file(args.topics_to_move_json_file), args.broker_list)
    elif action == "execute":
        data = parse_execute_json(read_file(args.reassignment_json_file))
        refuse_log_dirs(data)
    elif action in ("verify", "cancel"):
        data = parse_reassignment_json(read_file(args.reassignment_json_file))
        refuse_log_dirs(data)
    try:
        with Admin(args.bootstrap_server, args.command_config) as admin:
            if action == "generate":
                generate(admin, topics, brokers, not args.disable_rack_aware)
            elif action == "execute":
                execute(admin, data, args.additional, -1 if args.throttle is None else args.throttle)
            elif action == "verify":
                verify(admin, data, args.preserve_throttles)
            elif action == "cancel":
                cancel(admin, data, args.preserve_throttles)
            else:
                print(list_text(admin.list_reassignments()))
    except KafkaFailure as e:
        raise failed(e) from None
    return 0


def multi_line_failure(text: str) -> None:
    """A TerseException with several lines: printed as is (stderr), exit status 1."""
    sys.stdout.flush()
    print(text, file=sys.stderr)
    raise SystemExit(1)


def replica_assignment(admin: Admin, topics) -> dict[TP, list[int]]:
    """getReplicaAssignmentForTopics: every partition of the topics; an unknown topic is an error."""
    metadata = admin.metadata()
    result: dict[TP, list[int]] = {}
    for topic in sorted(set(topics)):
        if topic not in metadata.topics:
            raise KafkaFailure(3, f"Topic {topic} not found.")
        for partition, info in metadata.topics[topic].items():
            result[(topic, partition)] = list(info.replicas)
    return result


def partition_assignment(admin: Admin, partitions) -> dict[TP, list[int]]:
    """getReplicaAssignmentForPartitions: the partitions' replicas; unknown topics and partitions are errors."""
    current = replica_assignment(admin, {t for t, _ in partitions})
    missing = sorted(tp for tp in partitions if tp not in current)
    if missing:
        raise KafkaFailure(3, "Unable to find partition: " + ", ".join(map(tp_text, missing)))
    return {tp: current[tp] for tp in partitions}


def generate(admin: Admin, topics: list[str], brokers: list[int], rack_aware: bool) -> None:
    current = replica_assignment(admin, topics)
    racks = {b: rack for b, (_, _, rack) in admin.metadata().brokers.items()}
    proposed = calculate_assignment(current, broker_racks(racks, brokers, rack_aware))
    print(generate_text(current, proposed))


def execute(admin: Admin, data: ReassignmentData, additional: bool, throttle: int) -> None:
    proposed = data.targets()
    known = set(admin.metadata().brokers)
    unknown = next((b for _, replicas in data.partitions for b in replicas if b not in known), None)
    if unknown is not None:
        raise ToolError(f"Error: Unknown broker id {unknown}")
    current = partition_assignment(admin, proposed)
    ongoing = admin.list_reassignments()
    if ongoing and not additional:
        raise ToolError(CANNOT_EXECUTE_BECAUSE_OF_EXISTING_MESSAGE)
    print(current_assignment_text(proposed, current))
    if throttle >= 0:
        print(YOU_MUST_RUN_VERIFY_PERIODICALLY_MESSAGE)
        moves = proposed_move_map(ongoing, proposed, current)
        set_reassignment_throttles(admin, moves, throttle)
    sys.stdout.flush()
    errors = admin.alter_reassignments(proposed)
    if errors:
        multi_line_failure(partition_errors_text("Error reassigning partition(s):", errors))
    print(f"Successfully started partition reassignment{plural(len(proposed))} for "
          + ",".join(tp_text(tp) for tp in sorted(proposed)))


def set_reassignment_throttles(admin: Admin, moves: MoveMap, throttle: int) -> None:
    """modifyReassignmentThrottle: topic replica lists, then the rates on every broker involved."""
    leaders, followers = leader_throttles(moves), follower_throttles(moves)
    admin.incremental_alter_configs([
        (RESOURCE_TOPIC, topic, [(LEADER_THROTTLED_REPLICAS, OP_SET, leaders[topic]),
                                 (FOLLOWER_THROTTLED_REPLICAS, OP_SET, followers[topic])])
        for topic in sorted(moves)])
    admin.incremental_alter_configs([
        (RESOURCE_BROKER, str(b), [(LEADER_THROTTLED_RATE, OP_SET, str(throttle)),
                                   (FOLLOWER_THROTTLED_RATE, OP_SET, str(throttle))])
        for b in reassigning_brokers(moves)])
    print(f"The inter-broker throttle limit was set to {throttle} B/s")


def reassignment_states(admin: Admin, data: ReassignmentData) -> tuple[dict[TP, PartitionState], bool]:
    """findPartitionReassignmentStates: each target's state, and whether any reassignment is ongoing."""
    ongoing = admin.list_reassignments()
    metadata = admin.metadata()
    states: dict[TP, PartitionState] = {}
    for tp, target in data.partitions:
        if tp in ongoing:
            states[tp] = PartitionState(list(ongoing[tp].replicas), target, False)
        else:
            states[tp] = PartitionState(metadata.replicas(tp) or [], target, True)
    return states, bool(ongoing)


def verify(admin: Admin, data: ReassignmentData, preserve_throttles: bool) -> None:
    states, ongoing = reassignment_states(admin, data)
    print(status_text(states))
    print()  # the (empty) status of log directory moves, which Kafka prints on its own line
    if not ongoing and not preserve_throttles:
        clear_all_throttles(admin, data)


def clear_all_throttles(admin: Admin, data: ReassignmentData) -> None:
    """clearAllThrottles: the rates on every broker (and every target replica), the replica lists on the topics."""
    brokers = sorted(set(admin.metadata().brokers) | {b for _, replicas in data.partitions for b in replicas})
    print(f"Clearing broker-level throttles on broker{plural(len(brokers))} {ints_text(brokers)}")
    sys.stdout.flush()
    admin.incremental_alter_configs([(RESOURCE_BROKER, str(b), [(k, OP_DELETE, None) for k in BROKER_LEVEL_THROTTLES])
                                     for b in brokers])
    topics = sorted({t for (t, _), _ in data.partitions})
    print(f"Clearing topic-level throttles on topic{plural(len(topics))} {','.join(topics)}")
    sys.stdout.flush()
    admin.incremental_alter_configs([(RESOURCE_TOPIC, t, [(k, OP_DELETE, None) for k in TOPIC_LEVEL_THROTTLES])
                                     for t in topics])


def cancel(admin: Admin, data: ReassignmentData, preserve_throttles: bool) -> None:
    targets = {tp for tp, _ in data.partitions}
    active = sorted(tp for tp, r in admin.list_reassignments(targets).items() if r.adding or r.removing)
    if active:
        errors = admin.alter_reassignments({tp: None for tp in active})
        if errors:
            multi_line_failure(partition_errors_text(f"Error cancelling partition reassignment{plural(len(errors))} "
                                                     "for:", errors))
        print(f"Successfully cancelled partition reassignment{plural(len(active))} for: "
              + ",".join(map(tp_text, active)))
    else:
        print("None of the specified partition reassignments are active.")
    print("None of the specified partition moves are active.")
    if not preserve_throttles:
        clear_all_throttles(admin, data)
