"""kafka-get-offsets.sh (GetOffsetShell): print topic:partition:offset for a point in time."""
from __future__ import annotations

import re
import sys

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata,
    kafka_error_text, make_client, merged_config, run,
)

TIMEOUT = 30.0
NAMED_TIMES = {"latest": -1, "earliest": -2, "max-timestamp": -3, "earliest-local": -4, "latest-tiered": -5}
TOPIC_PARTITION = re.compile(r"([^:,]*)(?::(?:([0-9]*)|(?:([0-9]*)-([0-9]*))))?")


def parser() -> ArgParser:
    p = ArgParser("kafka-get-offsets.sh", "An interactive shell for getting topic-partition offsets.")
    add_bootstrap(p, broker_list=True)
    p.add_argument("--topic-partitions", metavar="PATTERNS",
                   help="Comma separated topic-partition patterns, e.g. topic1:1,topic2:0-3,topic3,topic4:5-,topic5:-3.")
    p.add_argument("--topic", help="The topic to get the offsets for. It also accepts a regular expression.")
    p.add_argument("--partitions", help="Comma separated list of partition ids.")
    p.add_argument("--time", default="latest",
                   help="<timestamp> / -1 or latest / -2 or earliest / -3 or max-timestamp / -4 or earliest-local "
                        "/ -5 or latest-tiered (default: latest).")
    p.add_argument("--command-config", metavar="FILE", help="Property file containing configs to be passed to Admin Client.")
    p.add_argument("--exclude-internal-topics", action="store_true", help="Exclude internal topics.")
    return p


def parse_time(text: str) -> int:
    if text in NAMED_TIMES:
        return NAMED_TIMES[text]
    try:
        return int(text)
    except ValueError:
        raise ToolError(f"Error occurred: Malformed time argument {text}. Please use -1 or latest / -2 or earliest / -3 or "
                        "max-timestamp / -4 or earliest-local / -5 or latest-tiered, or a specified long format "
                        "timestamp") from None


def offset_spec(time_value: int):
    from confluent_kafka.admin import OffsetSpec
    if time_value == -1:
        return OffsetSpec.latest()
    if time_value == -2:
        return OffsetSpec.earliest()
    if time_value == -3:
        return OffsetSpec.max_timestamp()
    return OffsetSpec.for_timestamp(time_value)  # -4/-5 travel as the same sentinels Java sends


# A filter is a function (topic, partition) -> bool; topic regexes use Kafka's IncludeList rules.

def partition_set_filter(text: str | None):
    if not text:
        return lambda p: True
    try:
        wanted = {int(x.strip()) for x in text.split(",")}
    except ValueError:
        raise ToolError(f"Error occurred: --partitions expects a comma separated list of numeric partition ids, but received: {text}") from None
    return lambda p: p in wanted


def rule_filter(spec: str):
    from josef.cli.topics import include_list
    m = TOPIC_PARTITION.fullmatch(spec)
    if not m:
        raise ToolError(f"Error occurred: Invalid rule specification: {spec}")
    topic_re = include_list(m.group(1)) if m.group(1) else None
    if m.group(2):
        n = int(m.group(2))
        part = lambda p: p == n  # noqa: E731
    elif m.group(3) or m.group(4):
        lo = int(m.group(3)) if m.group(3) else 0
        hi = int(m.group(4)) if m.group(4) else None
        part = lambda p: p >= lo and (hi is None or p < hi)  # noqa: E731
    else:
        part = lambda p: True  # noqa: E731
    return lambda t, p: (topic_re is None or bool(topic_re.fullmatch(t))) and part(p)


def build_filter(args):
    from josef.cli.topics import include_list
    if args.topic_partitions is not None:
        if args.topic is not None or args.partitions is not None:
            raise ToolError("Error occurred: --topic-partitions cannot be used with --topic or --partitions")
        rules = [rule_filter(spec) for spec in args.topic_partitions.split(",")]
        return lambda t, p: any(rule(t, p) for rule in rules)
    topic_re = include_list(args.topic if args.topic is not None else ".*")
    part = partition_set_filter(args.partitions)
    return lambda t, p: bool(topic_re.fullmatch(t)) and part(p)


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    from josef.cli.topics import INTERNAL_TOPICS
    args = parser().parse(argv)
    servers = bootstrap(args)
    spec_time = parse_time(args.time)
    wanted = build_filter(args)
    check_reachable(servers)
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    conf = merged_config(args, ["command_config"], [])
    conf["bootstrap.servers"] = servers
    conf["client.id"] = "GetOffsetShell"
    errors = ClientErrors()
    admin = make_client(AdminClient, conf, errors)
    metadata = fetch_metadata(admin, servers, errors=errors)
    partitions = [TopicPartition(name, pid)
                  for name, topic in metadata.topics.items()
                  if not (args.exclude_internal_topics and name in INTERNAL_TOPICS)
                  for pid in topic.partitions if wanted(name, pid)]
    if not partitions:
        raise ToolError("Error occurred: Could not match any topic-partitions with the specified filters")
    spec = offset_spec(spec_time)
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=TIMEOUT)
    results = {}
    for tp, future in futures.items():
        try:
            info = future.result()
        except KafkaException as e:
            print(f"Skip getting offsets for topic-partition {tp.topic}-{tp.partition} due to error: "
                  f"{kafka_error_text(e)}", file=sys.stderr)
            continue
        if info.offset >= 0:  # -1: no offset for that time
            results[(tp.topic, tp.partition)] = info.offset
    # Kafka sorts by the text "topic-partition", so t-10 comes before t-2; we do the same.
    for (topic, pid), offset in sorted(results.items(), key=lambda kv: f"{kv[0][0]}-{kv[0][1]}"):
        print(f"{topic}:{pid}:{offset}")
    return 0
