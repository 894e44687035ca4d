"""kafka-topics.sh: create, list, describe, alter (partitions) and delete topics.

Output follows Kafka 3.x's TopicCommand (the --describe layout without 4.x's Elr columns).
Broker errors print as Kafka prints them ("Error while executing topic command : ...") but
on stderr, where Kafka also logs them, so stdout stays parseable.
"""
from __future__ import annotations

import base64
import re
import sys

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata,
    kafka_error_text, make_client, merged_config,
)

INTERNAL_TOPICS = {"__consumer_offsets", "__transaction_state"}
ACTIONS = ("create", "list", "describe", "alter", "delete")
TIMEOUT = 30.0  # seconds for one admin request
ALTER_CONFIG_HINT = " (To alter topic configurations, the kafka-configs tool can be used.)"


class CommandFailed(ToolError):
    def __init__(self, message: str):
        super().__init__(f"Error while executing topic command : {message}")


def parser() -> ArgParser:
    p = ArgParser("kafka-topics.sh", "This tool helps to create, delete, describe, or change a topic.")
    add_bootstrap(p)
    p.add_argument("--command-config", metavar="FILE", help="Property file containing configs to be passed to Admin Client.")
    for action in ACTIONS:
        p.add_argument(f"--{action}", action="store_true")
    p.add_argument("--topic", help="The topic to create, alter, describe or delete. It also accepts a regular "
                                   "expression, except for --create option.")
    p.add_argument("--topic-id", help="The topic-id to describe.")
    p.add_argument("--config", action="append", metavar="NAME=VALUE",
                   help="A topic configuration override for the topic being created.")
    p.add_argument("--partitions", type=int, metavar="N", help="The number of partitions for the topic.")
    p.add_argument("--replication-factor", type=int, metavar="R", help="The replication factor for each partition.")
    p.add_argument("--replica-assignment", metavar="B1:B2,B3:B4,...",
                   help="A list of manual partition-to-broker assignments.")
    p.add_argument("--under-replicated-partitions", action="store_true")
    p.add_argument("--unavailable-partitions", action="store_true")
    p.add_argument("--under-min-isr-partitions", action="store_true")
    p.add_argument("--at-min-isr-partitions", action="store_true")
    p.add_argument("--topics-with-overrides", action="store_true")
    p.add_argument("--if-exists", action="store_true")
    p.add_argument("--if-not-exists", action="store_true")
    p.add_argument("--exclude-internal", action="store_true")
    p.add_argument("--partition-size-limit-per-response", type=int, help="Accepted for compatibility.")
    return p


def main(argv: list[str]) -> int:
    from josef.cli.common import run
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    check_args(args)
    servers = bootstrap(args)
    check_reachable(servers)
    from confluent_kafka.admin import AdminClient
    errors = ClientErrors()
    conf = merged_config(args, ["command_config"], [])
    conf["bootstrap.servers"] = servers
    admin = make_client(AdminClient, conf, errors)
    fetch_metadata(admin, servers, errors=errors)  # fails fast and clearly if unreachable
    action = next(a for a in ACTIONS if getattr(args, a))
    return globals()[f"do_{action}"](admin, args) or 0


# -- argument rules, as TopicCommandOptions checks them -------------------------------------------

def check_args(args) -> None:
    chosen = [a for a in ACTIONS if getattr(args, a)]
    if len(chosen) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --create, --alter or --delete")
    if args.bootstrap_server is None:
        raise ToolError("--bootstrap-server must be specified")
    action = chosen[0]
    if action not in ("list", "describe") and args.topic is None:
        raise ToolError('Missing required argument "[topic]"')
    if action == "alter":
        if args.config:
            raise ToolError('Option "[config]" can\'t be used with option "[alter]"' + ALTER_CONFIG_HINT)
        if args.partitions is None:
            raise ToolError('Missing required argument "[partitions]"')
    allowed = {
        "config": ("create",), "partitions": ("create", "alter"), "replication_factor": ("create",),
        "replica_assignment": ("create", "alter"), "if_exists": ("alter", "delete", "describe"),
        "if_not_exists": ("create",), "exclude_internal": ("list", "describe"),
        "under_replicated_partitions": ("describe",), "unavailable_partitions": ("describe",),
        "under_min_isr_partitions": ("describe",), "at_min_isr_partitions": ("describe",),
        "topics_with_overrides": ("describe",),
    }
    for attr, actions in allowed.items():
        value = getattr(args, attr)
        if value not in (None, False, []) and action not in actions:
            raise ToolError(f'Option "[{attr.replace("_", "-")}]" can\'t be used with option "[{action}]"')
    if action == "create" and args.replica_assignment:
        for other in ("partitions", "replication_factor"):
            if getattr(args, other) is not None:
                raise ToolError(f'Option "[replica-assignment]" can\'t be used with option "[{other.replace("_", "-")}]"')
    reports = [r for r in ("under_replicated_partitions", "unavailable_partitions", "under_min_isr_partitions",
                           "at_min_isr_partitions") if getattr(args, r)]
    if reports and args.topics_with_overrides:
        raise ToolError(f'Option "[{reports[0].replace("_", "-")}]" can\'t be used with option "[topics-with-overrides]"')


def parse_replica_assignment(text: str) -> list[list[int]]:
    assignment: list[list[int]] = []
    for i, part in enumerate(text.split(",")):
        try:
            brokers = [int(b.strip()) for b in part.split(":")]
        except ValueError:
            raise ToolError(f"Invalid replica assignment: {text}") from None
        dupes = sorted({b for b in brokers if brokers.count(b) > 1})
        if dupes:
            raise CommandFailed("Partition replica lists may not contain duplicate entries: " + ",".join(map(str, dupes)))
        if assignment and len(brokers) != len(assignment[0]):
            raise CommandFailed(f"Partition {i} has different replication factor: {brokers}")
        assignment.append(brokers)
    return assignment


def parse_configs(items) -> dict[str, str]:
    configs = {}
    for item in items or ():
        parts = re.split(r"\s*=\s*", item)
        if len(parts) != 2:
            raise ToolError('requirement failed: Invalid topic config: all configs to be added must be in the format "key=val".')
        configs[parts[0].strip()] = parts[1].strip()
    return configs


# -- topic selection ------------------------------------------------------------------------------

def include_list(pattern: str) -> re.Pattern:
    """Kafka's IncludeList: commas mean alternatives, quotes and spaces are dropped."""
    cleaned = pattern.strip().replace(",", "|").replace(" ", "")
    cleaned = re.sub(r"^[\"']+", "", cleaned)
    cleaned = re.sub(r"[\"']+$", "", cleaned)
    try:
        return re.compile(cleaned)
    except re.error as e:
        raise ToolError(f"Invalid topic pattern {pattern!r}: {e}") from None


def matching_topics(metadata, pattern: str | None, exclude_internal: bool) -> list[str]:
    regex = include_list(pattern) if pattern else None
    names = []
    for name in sorted(metadata.topics):
        if exclude_internal and name in INTERNAL_TOPICS:
            continue
        if regex is None or regex.fullmatch(name):
            names.append(name)
    return names


def ensure_found(found: list, args) -> None:
    if args.topic and not found and not args.if_exists:
        raise CommandFailed(f"Topic '{args.topic}' does not exist as expected")


def _result(future):
    """A future's value, with broker errors as CommandFailed carrying Kafka's message."""
    from confluent_kafka import KafkaException
    try:
        return future.result()
    except KafkaException as e:
        raise CommandFailed(kafka_error_text(e)) from None


# -- actions --------------------------------------------------------------------------------------

def do_create(admin, args) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic
    name = args.topic
    if args.replication_factor is not None and not 1 <= args.replication_factor <= 32767:
        raise ToolError("The replication factor must be between 1 and 32767 inclusive")
    if args.partitions is not None and args.partitions < 1:
        raise ToolError("The partitions must be greater than 0")
    if "." in name or "_" in name:
        print("WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') "
              "could collide. To avoid issues it is best to use either, but not both.")
    configs = parse_configs(args.config)
    if args.replica_assignment:
        assignment = parse_replica_assignment(args.replica_assignment)
        # librdkafka wants the count spelled out next to an explicit assignment
        topic = NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment, config=configs)
    else:
        topic = NewTopic(name, num_partitions=args.partitions if args.partitions is not None else -1,
                         replication_factor=args.replication_factor if args.replication_factor is not None else -1,
                         config=configs)
    future = admin.create_topics([topic], request_timeout=TIMEOUT)[name]
    try:
        future.result()
    except KafkaException as e:
        err = e.args[0]
        if args.if_not_exists and err.name() == "TOPIC_ALREADY_EXISTS":
            return
        if err.name() == "TOPIC_ALREADY_EXISTS" and "exist" not in err.str().lower():
            raise CommandFailed(f"Topic '{name}' already exists.") from None
        raise CommandFailed(err.str()) from None
    print(f"Created topic {name}.")


def do_list(admin, args) -> None:
    metadata = admin.list_topics(timeout=TIMEOUT)
    names = matching_topics(metadata, args.topic, args.exclude_internal)
    if names:
        print("\n".join(names))


def do_delete(admin, args) -> None:
    names = matching_topics(admin.list_topics(timeout=TIMEOUT), args.topic, args.exclude_internal)
    ensure_found(names, args)
    if not names:
        return
    futures = admin.delete_topics(names, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
    for name in names:
        _result(futures[name])


def do_alter(admin, args) -> None:
    from confluent_kafka.admin import NewPartitions
    metadata = admin.list_topics(timeout=TIMEOUT)
    names = matching_topics(metadata, args.topic, args.exclude_internal)
    ensure_found(names, args)
    if not names:
        return
    requests = []
    for name in names:
        assignment = None
        if args.replica_assignment:
            current = len(metadata.topics[name].partitions)
            assignment = parse_replica_assignment(args.replica_assignment)[current:]
        requests.append(NewPartitions(name, args.partitions, assignment) if assignment
                        else NewPartitions(name, args.partitions))
    futures = admin.create_partitions(requests, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
    for name in names:
        _result(futures[name])


def do_describe(admin, args) -> None:
    metadata = admin.list_topics(timeout=TIMEOUT)
    if args.topic_id:
        names = _names_for_topic_id(admin, metadata, args)
    else:
        names = matching_topics(metadata, args.topic, args.exclude_internal)
        ensure_found(names, args)
    if not names:
        return
    descriptions = _describe_topics(admin, metadata, names)
    configs = _topic_configs(admin, names)
    live = set(metadata.brokers)
    report_partitions_only = any((args.under_replicated_partitions, args.unavailable_partitions,
                                  args.under_min_isr_partitions, args.at_min_isr_partitions))
    out = sys.stdout
    for name in names:
        topic_id, partitions = descriptions[name]
        entries = configs.get(name, {})
        overrides = {k: v for k, (v, is_default) in entries.items() if not is_default}
        if not partitions:
            continue
        if not report_partitions_only and (not args.topics_with_overrides or overrides):
            line = f"Topic: {name}"
            if topic_id:
                line += f"\tTopicId: {topic_id}"
            line += (f"\tPartitionCount: {len(partitions)}\tReplicationFactor: {len(partitions[0][2])}"
                     f"\tConfigs: {','.join(f'{k}={v}' for k, v in overrides.items())}")
            out.write(line + "\n")
        if args.topics_with_overrides:
            continue
        min_isr = int(entries.get("min.insync.replicas", ("1", True))[0] or 1)
        for pid, leader, replicas, isr in partitions:
            if report_partitions_only and not _wanted(args, leader, replicas, isr, min_isr, live):
                continue
            out.write(f"\tTopic: {name}\tPartition: {pid}\tLeader: {leader if leader >= 0 else 'none'}"
                      f"\tReplicas: {','.join(map(str, replicas))}\tIsr: {','.join(map(str, isr))}\n")


def _wanted(args, leader, replicas, isr, min_isr, live) -> bool:
    has_leader = leader >= 0
    return ((args.under_replicated_partitions and len(replicas) - len(isr) > 0)
            or (args.unavailable_partitions and (not has_leader or leader not in live))
            or (args.under_min_isr_partitions and (not has_leader or len(isr) < min_isr))
            or (args.at_min_isr_partitions and len(isr) == min_isr))


def _describe_topics(admin, metadata, names):
    """{name: (topic id or None, [(partition, leader, replicas, isr)])}.

    DescribeTopics (Metadata v10+) gives the topic id; plain metadata is the fallback.
    """
    from confluent_kafka import KafkaException, TopicCollection
    result = {}
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=TIMEOUT)
        for name in names:
            d = futures[name].result()
            parts = sorted((p.id, p.leader.id if p.leader is not None else -1,
                            [n.id for n in p.replicas], [n.id for n in p.isr]) for p in d.partitions)
            result[name] = (kafka_uuid(d.topic_id), parts)
        return result
    except (KafkaException, AttributeError, TypeError):
        pass
    for name in names:
        t = metadata.topics[name]
        parts = sorted((p.id, p.leader, list(p.replicas), list(p.isrs)) for p in t.partitions.values())
        result[name] = (None, parts)
    return result


def kafka_uuid(uuid) -> str | None:
    """Kafka's text form of a topic id (URL-safe base64, no padding); None for none or zero."""
    if uuid is None:
        return None
    raw = b"".join(int(bits).to_bytes(8, "big", signed=int(bits) < 0) for bits in
                   (uuid.get_most_significant_bits(), uuid.get_least_significant_bits()))
    if not any(raw):
        return None
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _topic_configs(admin, names) -> dict[str, dict[str, tuple[str, bool]]]:
    """{topic: {config: (value, is_default)}}; empty when the broker cannot describe configs."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    try:
        futures = admin.describe_configs([ConfigResource("TOPIC", n) for n in names], request_timeout=TIMEOUT)
        for resource, future in futures.items():
            entries = future.result()
            out[resource.name] = {k: (e.value, e.is_default) for k, e in entries.items()}
    except (KafkaException, ValueError):
        pass
    return out


def _names_for_topic_id(admin, metadata, args) -> list[str]:
    from confluent_kafka import KafkaException, TopicCollection
    names = matching_topics(metadata, None, args.exclude_internal)
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=TIMEOUT)
        found = [n for n in names if kafka_uuid(futures[n].result().topic_id) == args.topic_id]
    except KafkaException as e:
        raise CommandFailed(kafka_error_text(e)) from None
    if not found and not args.if_exists:
        raise CommandFailed(f"TopicId '{args.topic_id}' does not exist as expected")
    return found
