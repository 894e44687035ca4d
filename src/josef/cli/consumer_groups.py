"""kafka-consumer-groups.sh: list, describe, delete consumer groups; reset and delete their offsets.

Flags, checks and the stdout layout follow Kafka's ConsumerGroupCommand (tools/consumer/group):
the describe tables (offsets, --members [--verbose], --state), the reset plan table
(GROUP TOPIC PARTITION NEW-OFFSET) and the delete/delete-offsets reports. Where Kafka prints an
error on stdout and still exits 0, josef prints the same text on stderr and exits 1, so stdout
stays parseable and scripts can tell failure from success. Warnings and notes ("has no active
members", "is rebalancing") go to stderr as well.

Clients: confluent-kafka's AdminClient for everything it offers (ListGroups, DescribeGroups,
OffsetFetch, OffsetCommit, DeleteGroups, ListOffsets); OffsetDelete, which librdkafka's Python
binding does not expose, is sent with josef's small wire client to the group coordinator
(PLAINTEXT listeners only).
"""
from __future__ import annotations

import csv
import io
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata,
    kafka_error_text, load_properties, make_client, merged_config, parse_servers, run, warn,
)

MISSING = "-"
ACTIONS = ("list", "describe", "delete", "reset_offsets", "delete_offsets")
SCENARIOS = ("to_offset", "to_datetime", "by_duration", "to_earliest", "to_latest", "shift_by", "from_file",
             "to_current")
# Kafka's ConsumerGroupState names, in its enum order (UNKNOWN excluded from the valid list).
KAFKA_STATES = ("PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty", "Assigning", "Reconciling")
GROUP_TYPES = ("Classic", "Consumer", "Share")

# Kafka's texts for the error codes this tool reports (Errors.java); librdkafka's otherwise.
KAFKA_MESSAGES = {
    -1: "The server experienced an unexpected error when processing the request.",
    3: "This server does not host this topic-partition.",
    14: "The coordinator is loading and hence can't process requests.",
    15: "The coordinator is not available.",
    16: "This is not the correct coordinator.",
    24: "The configured groupId is invalid.",
    25: "The coordinator is not aware of this member.",
    27: "The group is rebalancing, so a rejoin is needed.",
    29: "Topic authorization failed.",
    30: "Group authorization failed.",
    68: "The group is not empty.",
    69: "The group id does not exist.",
    86: "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.",
}
ERROR_NAMES = {3: "UNKNOWN_TOPIC_OR_PARTITION", 14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE",
               16: "NOT_COORDINATOR", 24: "INVALID_GROUP_ID", 29: "TOPIC_AUTHORIZATION_FAILED",
               30: "GROUP_AUTHORIZATION_FAILED", 68: "NON_EMPTY_GROUP", 69: "GROUP_ID_NOT_FOUND",
               86: "GROUP_SUBSCRIBED_TO_TOPIC"}
RETRIABLE = {14, 15, 16}
NO_EXECUTE_WARNING = (
    "WARN: No action will be performed as the --execute option is missing. In a future major release, the default "
    "behavior of this command will be to prompt the user before executing the reset rather than doing a dry run. "
    "You should add the --dry-run option explicitly if you are scripting this command and want to keep the current "
    "default behavior without prompting.")


def parser() -> ArgParser:
    p = ArgParser("kafka-consumer-groups.sh", "This tool helps to list all consumer groups, describe a consumer "
                  "group, delete consumer group info, or reset consumer group offsets.")
    add_bootstrap(p)
    p.add_argument("--command-config", metavar="FILE",
                   help="Property file containing configs to be passed to Admin Client and Consumer.")
    p.add_argument("--group", action="append", metavar="GROUP", help="The consumer group we wish to act on.")
    p.add_argument("--all-groups", action="store_true", help="Apply to all consumer groups.")
    p.add_argument("--topic", action="append", metavar="TOPIC",
                   help="The topic whose consumer group information should be deleted or topic whose should be "
                        "included in the reset offset process. In reset-offsets, partitions can be given as "
                        "topic1:0,1,2. Can be repeated.")
    p.add_argument("--all-topics", action="store_true",
                   help="Consider all topics assigned to a group in the reset-offsets process.")
    p.add_argument("--list", action="store_true", help="List all consumer groups.")
    p.add_argument("--describe", action="store_true",
                   help="Describe consumer group and list offset lag (number of messages not yet processed).")
    p.add_argument("--delete", action="store_true", help="Delete the given groups (--group g1 --group g2).")
    p.add_argument("--reset-offsets", action="store_true",
                   help="Reset offsets of consumer groups (inactive groups only). --dry-run (default) or --execute; "
                        "one scenario and a scope (--topic or --all-topics).")
    p.add_argument("--delete-offsets", action="store_true",
                   help="Delete offsets of one consumer group for the given --topic(s).")
    p.add_argument("--dry-run", action="store_true", help="Only show results without executing changes.")
    p.add_argument("--execute", action="store_true", help="Execute operation. Supported operations: reset-offsets.")
    p.add_argument("--export", action="store_true", help="Export the reset plan as CSV.")
    p.add_argument("--to-offset", type=int, metavar="OFFSET", help="Reset offsets to a specific offset.")
    p.add_argument("--from-file", metavar="CSV", help="Reset offsets to values defined in CSV file.")
    p.add_argument("--to-datetime", metavar="DATETIME",
                   help="Reset offsets to offset from datetime. Format: 'YYYY-MM-DDTHH:mm:SS.sss'")
    p.add_argument("--by-duration", metavar="DURATION",
                   help="Reset offsets to offset by duration from current timestamp. Format: 'PnDTnHnMnS'")
    p.add_argument("--to-earliest", action="store_true", help="Reset offsets to earliest offset.")
    p.add_argument("--to-latest", action="store_true", help="Reset offsets to latest offset.")
    p.add_argument("--to-current", action="store_true", help="Reset offsets to current offset.")
    p.add_argument("--shift-by", type=int, metavar="N",
                   help="Reset offsets shifting current offset by 'n', where 'n' can be positive or negative.")
    p.add_argument("--members", action="store_true", help="Describe members of the group (with --describe).")
    p.add_argument("--verbose", action="store_true", help="Provide additional information (with --describe).")
    p.add_argument("--offsets", action="store_true",
                   help="Describe the group's partitions with their offset lag (the default of --describe).")
    p.add_argument("--state", nargs="?", const="", metavar="STATES",
                   help="With --describe: the group's state. With --list: show states, or only groups in the "
                        "given comma-separated states.")
    p.add_argument("--type", nargs="?", const="", metavar="TYPES",
                   help="With --list: show group types, or only groups of the given types.")
    p.add_argument("--timeout", type=int, default=5000, metavar="MS",
                   help="Timeout in milliseconds for each admin request (default: 5000).")
    return p


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    check_args(args)
    servers = bootstrap(args)
    plan = ResetSpec.from_args(args) if args.reset_offsets else None
    if plan is not None and not args.dry_run and not args.execute:
        print(NO_EXECUTE_WARNING, file=sys.stderr)
    check_reachable(servers)
    from confluent_kafka.admin import AdminClient
    errors = ClientErrors()
    conf = merged_config(args, ["command_config"], [])
    conf["bootstrap.servers"] = servers
    admin = make_client(AdminClient, conf, errors)
    fetch_metadata(admin, servers, errors=errors)
    service = GroupService(admin, args, servers)
    if args.list:
        service.list_groups()
    elif args.describe:
        service.describe_groups()
    elif args.delete:
        service.delete_groups()
    elif args.reset_offsets:
        service.reset_offsets(plan)
    else:
        service.delete_offsets()
    return 1 if service.failed else 0


# -- argument rules, as ConsumerGroupCommandOptions.checkArgs and main check them ----------------

def _has(args, name: str) -> bool:
    """Given on the command line (--to-offset 0 counts: no `in (None, False)` here, 0 == False)."""
    value = getattr(args, name)
    return value is not None and value is not False and value != []


def _opt(name: str) -> str:
    return f"[{name.replace('_', '-')}]"


def _invalid(args, used: str, *others: str) -> None:
    if _has(args, used):
        for other in others:
            if _has(args, other):
                raise ToolError(f'Option "{_opt(used)}" can\'t be used with option "{_opt(other)}"')


def check_args(args) -> None:
    if args.bootstrap_server is None:
        raise ToolError('Missing required argument "[bootstrap-server]"')
    for name, allowed in (("members", ("describe",)), ("verbose", ("describe",)), ("offsets", ("describe",)),
                          ("state", ("describe", "list")), ("type", ("list",))):
        if _has(args, name) and not any(getattr(args, a) for a in allowed):
            raise ToolError(f"Option(s) {_opt(name)} are unavailable given other options on the command line")
    scope = "[group], [all-groups]"
    if args.describe:
        if not args.group and not args.all_groups:
            raise ToolError(f"Option [describe] takes one of these options: {scope}")
        if sum(_has(args, o) for o in ("members", "offsets", "state")) > 1:
            raise ToolError("Option [describe] takes at most one of these options: [members], [offsets], [state]")
        if args.state:
            raise ToolError("Option [describe] does not take a value for [state]")
    if args.delete:
        if not args.group and not args.all_groups:
            raise ToolError(f"Option [delete] takes one of these options: {scope}")
        if args.topic:
            raise ToolError("The consumer does not support topic-specific offset deletion from a consumer group.")
    if args.delete_offsets and (not args.group or not args.topic):
        raise ToolError("Option [delete-offsets] takes the following options: [group], [topic]")
    if args.reset_offsets:
        if args.dry_run and args.execute:
            raise ToolError("Option [reset-offsets] only accepts one of [execute] and [dry-run]")
        if not args.group and not args.all_groups:
            raise ToolError(f"Option [reset-offsets] takes one of these options: {scope}")
        for scenario in SCENARIOS:
            _invalid(args, scenario, *(s for s in SCENARIOS if s != scenario))
    _invalid(args, "group", "all_groups")
    _invalid(args, "group", "list")
    _invalid(args, "topic", "list", "describe")
    if sum(bool(getattr(args, a)) for a in ACTIONS) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --delete, --reset-offsets, "
                        "--delete-offsets")
    if args.reset_offsets:
        if not any(_has(args, s) for s in SCENARIOS):
            raise ToolError("Option '[reset-offsets]' requires one of the following scenarios: "
                            "[" + ", ".join(_opt(s) for s in SCENARIOS) + "]")
        if not args.topic and not args.all_topics and not args.from_file:
            raise ToolError("One of the reset scopes should be defined: --all-topics, --topic.")
    if args.reset_offsets or args.delete_offsets:
        for arg in args.topic or ():
            if ":" in arg:
                parse_topic_partitions(arg)
    if args.list and args.state:
        parse_states(args.state)
    if args.list and args.type:
        parse_types(args.type)
    if args.timeout <= 0:
        raise ToolError(f"--timeout must be positive (got {args.timeout})")


def parse_states(text: str) -> set[str]:
    """Kafka's consumerGroupStatesFromString: case-insensitive names, comma separated."""
    by_upper = {s.upper(): s for s in KAFKA_STATES}
    states = {by_upper.get(s.strip().upper()) for s in text.split(",")}
    if None in states:
        raise ToolError(f"Invalid state list '{text}'. Valid states are: {', '.join(KAFKA_STATES)}")
    return states


def parse_types(text: str) -> set[str]:
    by_lower = {t.lower(): t for t in GROUP_TYPES}
    types = {by_lower.get(t.strip().lower()) for t in text.split(",")}
    if None in types:
        raise ToolError(f"Invalid types list '{text}'. Valid types are: {', '.join(GROUP_TYPES)}")
    return types


def parse_datetime(text: str) -> int:
    """Kafka's Utils.getDateTime: 'yyyy-MM-ddTHH:mm:ss.SSS' with an optional zone; UTC without one. Epoch ms."""
    if len(text.split("T")) < 2:
        raise ToolError("Error: Executing consumer group command failed due to Error parsing timestamp. "
                        "It does not contain a 'T' according to ISO8601 format")
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{1,3})"
                     r"(Z|[+-]\d{2}(?::?\d{2})?)?", text)
    try:
        if not m:
            raise ValueError
        year, month, day, hour, minute, second, millis = (int(g) for g in m.groups()[:7])
        zone = m.group(8) or "Z"
        offset = timedelta(0)
        if zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            if zone[0] == "-":
                offset = -offset
        # SimpleDateFormat's SSS reads the digits as a count of milliseconds, as here
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        raise ToolError(f'Error: Executing consumer group command failed due to Unparseable date: "{text}"') from None
    return int(moment.timestamp()) * 1000 + millis


_DURATION = re.compile(r"([-+]?)P(?:([-+]?[0-9]+)D)?(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?"
                       r"(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?", re.IGNORECASE)


def parse_duration_ms(text: str) -> int:
    """java.time.Duration.parse (ISO-8601 PnDTnHnMn.nS), in milliseconds."""
    m = _DURATION.fullmatch(text)
    if not m or m.group(3) == "T" or not any(m.group(i) for i in (2, 4, 5, 6)):
        raise ToolError("Error: Executing consumer group command failed due to Text cannot be parsed to a Duration")
    sign, days, _, hours, minutes, seconds, fraction = m.groups()
    total = Decimal(int(days or 0)) * 86400 + Decimal(int(hours or 0)) * 3600 + Decimal(int(minutes or 0)) * 60
    secs = Decimal(int(seconds or 0))
    if fraction:
        frac = Decimal(f"0.{fraction}")
        secs += -frac if (seconds or "").startswith("-") else frac
    total += secs
    if sign == "-":
        total = -total
    return int(total * 1000)


class ResetSpec:
    """The reset scenario, validated before any connection is made."""

    def __init__(self, kind: str, value=None, file_plan: dict | None = None):
        self.kind, self.value, self.file_plan = kind, value, file_plan

    @classmethod
    def from_args(cls, args) -> "ResetSpec":
        kind = next(s for s in SCENARIOS if _has(args, s))
        value = getattr(args, kind)
        if kind == "to_datetime":
            return cls(kind, parse_datetime(value))
        if kind == "by_duration":
            return cls(kind, parse_duration_ms(value))
        if kind == "from_file":
            single = args.group[0] if args.group and len(args.group) == 1 else None
            return cls(kind, value, parse_reset_plan(value, single))
        return cls(kind, value)


def parse_reset_plan(path: str, single_group: str | None) -> dict[str, dict[tuple[str, int], int]]:
    """Kafka's reset CSV: topic,partition,offset (one --group) or group,topic,partition,offset."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    except OSError as e:
        raise ToolError(f"Error: Executing consumer group command failed due to {path}: {e.strerror or e}") from None
    plan: dict[str, dict[tuple[str, int], int]] = {}
    old_format = single_group is not None and rows and len(rows[0]) == 3
    for row in rows:
        try:
            if old_format:
                group, (topic, partition, offset) = single_group, row
            else:
                group, topic, partition, offset = row
            plan.setdefault(group, {})[(topic, int(partition))] = int(offset)
        except ValueError:
            raise ToolError(f"Error: Executing consumer group command failed due to an invalid line in {path}: "
                            f"{','.join(row)}") from None
    return plan


def parse_topic_partitions(arg: str) -> list[tuple[str, int]]:
    """'topic:0,1,2' -> [(topic, 0), (topic, 1), (topic, 2)], with Kafka's messages."""
    parts = arg.split(":")
    if len(parts) != 2:
        raise ToolError(f"Invalid topic arg '{arg}', expected topic name and partitions")
    result = []
    for p in parts[1].split(","):
        try:
            result.append((parts[0], int(p)))
        except ValueError:
            raise ToolError(f"Invalid partition '{p}' specified in topic arg '{arg}''") from None
    return result


# -- talking to the cluster -----------------------------------------------------------------------

def error_text(code: int | None, fallback: str = "") -> str:
    if code in KAFKA_MESSAGES:
        return KAFKA_MESSAGES[code]
    text = fallback or (f"error code {code}" if code is not None else "unknown error")
    return text[len("Broker: "):] if text.startswith("Broker: ") else text


def _exception_code(e: BaseException) -> int | None:
    err = e.args[0] if getattr(e, "args", None) else None
    return err.code() if err is not None and hasattr(err, "code") else None


def _exception_text(e: BaseException) -> str:
    return error_text(_exception_code(e), kafka_error_text(e))


def state_name(state) -> str:
    from confluent_kafka import ConsumerGroupState
    return {
        ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
        ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
        ConsumerGroupState.STABLE: "Stable",
        ConsumerGroupState.DEAD: "Dead",
        ConsumerGroupState.EMPTY: "Empty",
    }.get(state, "Unknown")


def type_name(group_type) -> str:
    from confluent_kafka import ConsumerGroupType
    # ListGroups below v5 carries no type; such a broker has only classic groups.
    return {ConsumerGroupType.CONSUMER: "Consumer"}.get(group_type, "Classic")



class GroupService:
    def __init__(self, admin, args, servers: str):
        self.admin, self.args, self.servers = admin, args, servers
        self.timeout = args.timeout / 1000.0
        self.failed = False

    def error(self, message: str) -> None:
        """A failure that does not stop the other groups: Kafka's 'Error: ...' line, on stderr."""
        self.failed = True
        print(f"Error: {message}", file=sys.stderr)

    def _result(self, future):
        from confluent_kafka import KafkaException
        try:
            return future.result()
        except KafkaException as e:
            raise ToolError(f"Error: Executing consumer group command failed due to {_exception_text(e)}") from None

    # -- reads

    def listings(self) -> list:
        result = self._result(self.admin.list_consumer_groups(request_timeout=self.timeout))
        if result.errors:
            first = result.errors[0]
            raise ToolError(f"Error: Executing consumer group command failed due to "
                            f"{error_text(first.code(), first.str())}")
        return sorted(result.valid, key=lambda g: g.group_id)

    def group_ids(self) -> list[str]:
        if self.args.all_groups:
            return [g.group_id for g in self.listings()]
        return list(dict.fromkeys(self.args.group))

    def describe(self, groups: list[str]) -> dict:
        """{group: ConsumerGroupDescription or None (no such group)}."""
        from confluent_kafka import KafkaException
        if not groups:
            return {}
        futures = self.admin.describe_consumer_groups(groups, request_timeout=self.timeout)
        found = {}
        for group in groups:
            try:
                found[group] = futures[group].result()
            except KafkaException as e:
                if _exception_code(e) == 69:  # GROUP_ID_NOT_FOUND: newer brokers' word for Dead
                    found[group] = None
                else:
                    raise ToolError(f"Error: Executing consumer group command failed due to {_exception_text(e)}") \
                        from None
        return found

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        from confluent_kafka import ConsumerGroupTopicPartitions
        request = [ConsumerGroupTopicPartitions(group)]
        result = self._result(self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group])
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or ()
                if tp.error is None and tp.offset >= 0}

    def log_offsets(self, partitions, spec) -> dict[tuple[str, int], int | None]:
        """{(topic, partition): offset, or None where the broker gave none (Kafka's Unknown)}."""
        from confluent_kafka import KafkaException, TopicPartition
        partitions = list(dict.fromkeys(partitions))
        if not partitions:
            return {}
        futures = self.admin.list_offsets({TopicPartition(t, p): spec for t, p in partitions},
                                          request_timeout=self.timeout)
        result: dict[tuple[str, int], int | None] = {tp: None for tp in partitions}
        for tp, future in futures.items():
            try:
                result[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException:
                pass
        return result

    def log_end_offsets(self, partitions):
        from confluent_kafka.admin import OffsetSpec
        return self.log_offsets(partitions, OffsetSpec.latest())

    def log_start_offsets(self, partitions):
        from confluent_kafka.admin import OffsetSpec
        return self.log_offsets(partitions, OffsetSpec.earliest())

    def topic_partitions(self, topics: list[str]) -> list[tuple[str, int]]:
        """Partitions of the named topics; a missing topic fails as Kafka's describeTopics does."""
        metadata = self.admin.list_topics(timeout=self.timeout)
        result = []
        for topic in topics:
            t = metadata.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise ToolError("Error: Executing consumer group command failed due to "
                                f"{KAFKA_MESSAGES[3]} (topic '{topic}')")
            result.extend((topic, p) for p in sorted(t.partitions))
        return result

    def _note_state(self, group: str, desc, rows: int) -> bool:
        """Kafka's shouldPrintMemberState: notes on stderr; True when there is a table to print."""
        state = state_name(desc.state) if desc is not None else "Dead"
        if state == "Dead":
            self.error(f"Consumer group '{group}' does not exist.")
            return False
        if state == "Empty":
            print(f"Consumer group '{group}' has no active members.", file=sys.stderr)
        elif state in ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling"):
            print(f"Warning: Consumer group '{group}' is rebalancing.", file=sys.stderr)
        return rows > 0

    # -- --list

    def list_groups(self) -> None:
        args = self.args
        include_state, include_type = args.state is not None, args.type is not None
        listings = self.listings()
        if not include_state and not include_type:
            for g in listings:
                sys.stdout.write(g.group_id + "\n")
            return
        states = parse_states(args.state) if args.state else None
        types = parse_types(args.type) if args.type else None
        rows = []
        for g in listings:
            state, gtype = state_name(g.state), type_name(getattr(g, "type", None))
            if (states is None or state in states) and (types is None or gtype in types):
                rows.append((g.group_id, gtype, state))
        width = max([15] + [len(r[0]) for r in rows]) + 10
        out = []
        header = [f"{'GROUP':<{width}}"]
        if include_type:
            header.append(f"{'TYPE':<20}")
        if include_state:
            header.append(f"{'STATE':<20}")
        out.append(" ".join(header))
        for group, gtype, state in rows:
            line = [f"{group:<{width}}"]
            if include_type:
                line.append(f"{gtype:<20}")
            if include_state:
                line.append(f"{state:<20}")
            out.append(" ".join(line))
        sys.stdout.write("\n".join(out) + "\n")

    # -- --describe

    def describe_groups(self) -> None:
        groups = self.group_ids()
        descriptions = self.describe(groups)
        if self.args.members:
            for group in sorted(descriptions):
                self.print_members(group, descriptions[group])
        elif self.args.state is not None:
            for group in sorted(descriptions):
                self.print_state(group, descriptions[group])
        else:
            for group in sorted(descriptions):
                self.print_offsets(group, descriptions[group])

    def offset_rows(self, group: str, desc) -> list[tuple]:
        """Kafka's collectGroupsOffsets: one row per assigned or committed partition."""
        committed = self.committed(group)
        rows: list[tuple] = []  # (topic, partition, consumer-id, host, client-id)
        assigned: set[tuple[str, int]] = set()
        members = [m for m in (desc.members if desc is not None else []) if m.assignment.topic_partitions]
        members.sort(key=lambda m: -len(m.assignment.topic_partitions))
        for m in members:
            tps = sorted({(tp.topic, tp.partition) for tp in m.assignment.topic_partitions})
            assigned.update(tps)
            rows.extend((t, p, m.member_id, m.host, m.client_id) for t, p in tps)
        rows.extend((t, p, MISSING, MISSING, MISSING) for t, p in sorted(committed) if (t, p) not in assigned)
        ends = self.log_end_offsets([(t, p) for t, p, *_ in rows])
        result = []
        for topic, partition, member, host, client in rows:
            offset, end = committed.get((topic, partition)), ends.get((topic, partition))
            lag = end - offset if offset is not None and end is not None else None
            result.append((group, topic, partition, offset, end, lag, member, host, client))
        return result

    def print_offsets(self, group: str, desc) -> None:
        rows = self.offset_rows(group, desc) if desc is not None else []
        if not self._note_state(group, desc, len(rows)):
            return
        text = [(g, t, str(p), _col(o), _col(e), _col(lag), m, h, c) for g, t, p, o, e, lag, m, h, c in rows]
        gw = max([15] + [len(r[0]) for r in text])
        tw = max([15] + [len(r[1]) for r in text])
        cw = max([15] + [len(r[6]) for r in text])
        hw = max([15] + [len(r[7]) for r in text])

        def line(r) -> str:
            return (f"\n{r[0]:<{gw}} {r[1]:<{tw}} {r[2]:<10} {r[3]:<15} {r[4]:<15} {r[5]:<15} "
                    f"{r[6]:<{cw}} {r[7]:<{hw}} {r[8]}")

        out = [line(("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                     "HOST", "CLIENT-ID"))]
        out.extend(line(r) for r in text)
        sys.stdout.write("".join(out) + "\n")

    def print_members(self, group: str, desc) -> None:
        members = list(desc.members) if desc is not None else []
        if not self._note_state(group, desc, len(members)):
            return
        verbose = self.args.verbose
        rows = []
        for m in members:
            tps = {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
            by_topic: dict[str, list[int]] = {}
            for t, p in tps:
                by_topic.setdefault(t, []).append(p)
            assignment = ", ".join(sorted(f"{t}({','.join(map(str, sorted(ps)))})" for t, ps in by_topic.items()))
            rows.append((group, m.member_id, m.group_instance_id or "", m.host, m.client_id, str(len(tps)),
                         assignment or MISSING))
        with_instance = any(r[2] for r in rows)
        widths = [max([15] + [len(r[0]) for r in rows]), max([15] + [len(r[1]) for r in rows]),
                  max([17] + [len(r[2]) for r in rows]), max([15] + [len(r[3]) for r in rows]),
                  max([15] + [len(r[4]) for r in rows]), 15]

        def line(r) -> str:
            cols = [0, 1, 2, 3, 4, 5] if with_instance else [0, 1, 3, 4, 5]
            text = "".join(f"{r[i]:<{widths[i]}} " for i in cols)
            return text + (r[6] if verbose else "")

        header = ("GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT")
        out = ["", line(header)] + [line(r) for r in rows]
        sys.stdout.write("\n".join(out) + "\n")

    def print_state(self, group: str, desc) -> None:
        if not self._note_state(group, desc, 1):
            return
        node = desc.coordinator
        coordinator = f"{node.host}:{node.port}  ({node.id})" if node is not None else MISSING
        width = max(25, len(coordinator))

        def line(r) -> str:
            return f"\n{r[0]:<{width}} {r[1]:<25} {r[2]:<20} {r[3]:<15} {r[4]}"

        out = line(("GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"))
        out += line((group, coordinator, desc.partition_assignor or "", state_name(desc.state), len(desc.members)))
        sys.stdout.write(out + "\n")

    # -- --delete

    def delete_groups(self) -> None:
        from confluent_kafka import KafkaException
        groups = self.group_ids()
        if not groups:
            sys.stdout.write("Deletion of requested consumer groups () was successful.\n")
            return
        futures = self.admin.delete_consumer_groups(groups, request_timeout=self.timeout)
        ok, failed = [], []
        for group in groups:
            try:
                futures[group].result()
                ok.append(group)
            except KafkaException as e:
                failed.append((group, _exception_text(e)))
        quoted = ", ".join(f"'{g}'" for g in ok)
        if not failed:
            sys.stdout.write(f"Deletion of requested consumer groups ({quoted}) was successful.\n")
            return
        self.error("Deletion of some consumer groups failed:")
        for group, text in failed:
            print(f"* Group '{group}' could not be deleted due to: {text}", file=sys.stderr)
        if ok:
            sys.stdout.write(f"These consumer groups were deleted successfully: {quoted}\n")

    # -- --reset-offsets

    def reset_offsets(self, spec: ResetSpec) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        groups = self.group_ids()
        descriptions = self.describe(groups)
        plans: dict[str, dict[tuple[str, int], int]] = {}
        for group in groups:
            desc = descriptions.get(group)
            state = state_name(desc.state) if desc is not None else "Dead"
            if state not in ("Empty", "Dead"):
                self.error(f"Assignments can only be reset if the group '{group}' is inactive, "
                           f"but the current state is {state}.")
                continue
            plan = self.prepare_reset(group, spec)
            if plan is None:
                continue
            if self.args.execute and plan:
                offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(plan.items())]
                request = [ConsumerGroupTopicPartitions(group, offsets)]
                result = self._result(self.admin.alter_consumer_group_offsets(
                    request, request_timeout=self.timeout)[group])
                errors = [tp for tp in result.topic_partitions or () if tp.error is not None]
                if errors:
                    tp = errors[0]
                    self.error(f"Executing consumer group command failed due to "
                               f"{error_text(tp.error.code(), tp.error.str())} ({tp.topic}-{tp.partition})")
                    continue
            plans[group] = plan
        if self.args.export:
            single = bool(self.args.group) and len(self.args.group) == 1
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            for group in sorted(plans):
                for (t, p), o in sorted(plans[group].items()):
                    writer.writerow([t, p, o] if single else [group, t, p, o])
            sys.stdout.write(buf.getvalue() + "\n")
            return
        if not plans:
            return
        line = "\n{:<30} {:<30} {:<10} {:<15}"
        out = [line.format("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")]
        for group in sorted(plans):
            out.extend(line.format(group, t, p, o) for (t, p), o in sorted(plans[group].items()))
        sys.stdout.write("".join(out) + "\n")

    def partitions_to_reset(self, group: str) -> list[tuple[str, int]]:
        if self.args.all_topics:
            return sorted(self.committed(group))
        if self.args.topic:
            explicit, whole = [], []
            for arg in self.args.topic:
                if ":" in arg:
                    explicit.extend(parse_topic_partitions(arg))
                else:
                    whole.append(arg)
            return list(dict.fromkeys(explicit + self.topic_partitions(whole)))
        return []

    def prepare_reset(self, group: str, spec: ResetSpec) -> dict[tuple[str, int], int] | None:
        """Kafka's prepareOffsetsToReset: {(topic, partition): new offset}; None after a reported error."""
        from confluent_kafka.admin import OffsetSpec
        kind = spec.kind
        if kind == "from_file":
            wanted = spec.file_plan.get(group)
            if wanted is None:
                self.error(f"No reset plan for group {group} found")
                return None
            return self.check_range(dict(wanted))
        partitions = self.partitions_to_reset(group)
        if kind == "to_offset":
            return self.check_range({tp: spec.value for tp in partitions})
        if kind in ("to_earliest", "to_latest"):
            found = self.log_start_offsets(partitions) if kind == "to_earliest" else self.log_end_offsets(partitions)
            which = "starting" if kind == "to_earliest" else "ending"
            return {tp: self._known(found.get(tp), f"Error getting {which} offset of topic partition", tp)
                    for tp in partitions}
        if kind == "shift_by":
            current = self.committed(group)
            requested = {}
            for tp in partitions:
                if tp not in current:
                    raise ToolError(f"Cannot shift offset for partition {tp[0]}-{tp[1]} since there is no current "
                                    "committed offset")
                requested[tp] = current[tp] + spec.value
            return self.check_range(requested)
        if kind in ("to_datetime", "by_duration"):
            timestamp = spec.value if kind == "to_datetime" else int(time.time() * 1000) - spec.value
            found = self.log_offsets(partitions, OffsetSpec.for_timestamp(timestamp))
            empty = [tp for tp in partitions if found.get(tp) is None or found[tp] < 0]
            for t, p in empty:
                print(f"Warn: Partition {p} from topic {t} is empty. Falling back to latest known offset.",
                      file=sys.stderr)
            found.update(self.log_end_offsets(empty))
            return {tp: self._known(found.get(tp), "Error getting offset by timestamp of topic partition", tp)
                    for tp in partitions}
        if kind == "to_current":
            current = self.committed(group)
            missing = [tp for tp in partitions if tp not in current]
            ends = self.log_end_offsets(missing)
            return {tp: current[tp] if tp in current else
                    self._known(ends.get(tp), "Error getting ending offset of topic partition", tp)
                    for tp in partitions}
        raise AssertionError(kind)

    @staticmethod
    def _known(offset: int | None, message: str, tp: tuple[str, int]) -> int:
        if offset is None or offset < 0:
            raise ToolError(f"{message}: {tp[0]}-{tp[1]}")
        return offset

    def check_range(self, requested: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Kafka's checkOffsetsRange: clamp each offset into [log start, log end], with a warning."""
        starts = self.log_start_offsets(list(requested))
        ends = self.log_end_offsets(list(requested))
        result = {}
        for (t, p), offset in requested.items():
            end, start = ends.get((t, p)), starts.get((t, p))
            if end is not None and offset > end:
                warn(f"New offset ({offset}) is higher than latest offset for topic partition {t}-{p}. "
                     f"Value will be set to {end}")
                offset = end
            elif start is not None and offset < start:
                warn(f"New offset ({offset}) is lower than earliest offset for topic partition {t}-{p}. "
                     f"Value will be set to {start}")
                offset = start
            result[(t, p)] = offset
        return result

    # -- --delete-offsets

    def delete_offsets(self) -> None:
        group = self.args.group[0]
        topics = list(dict.fromkeys(self.args.topic))
        table: dict[tuple[str, int], str | None] = {}  # (topic, partition or -1) -> error text or None
        partitions: list[tuple[str, int]] = []
        metadata = None
        for arg in topics:
            if ":" in arg:
                partitions.extend(parse_topic_partitions(arg))
                continue
            if metadata is None:
                metadata = self.admin.list_topics(timeout=self.timeout)
            t = metadata.topics.get(arg)
            if t is None or t.error is not None or not t.partitions:
                table[(arg, -1)] = KAFKA_MESSAGES[3]
            else:
                partitions.extend((arg, p) for p in sorted(t.partitions))
        partitions = list(dict.fromkeys(partitions))
        top, results = self.send_offset_delete(group, partitions)
        if not top:  # the admin client's all() fails with the first partition error
            top = next((code for code in results.values() if code), 0)
        for tp in partitions:
            code = results.get(tp, 0) if not top or top in (86, 29, 3) else top
            table[tp] = error_text(code) if code else None
        if not top:
            sys.stdout.write(f"Request succeed for deleting offsets with topic {', '.join(topics)} group {group}\n")
        elif top == 24:
            self.error(f"'{group}' is not valid.")
        elif top == 69:
            self.error(f"'{group}' does not exist.")
        elif top == 30:
            self.error(f"Access to '{group}' is not authorized.")
        elif top == 68:
            self.error(f"Deleting offsets of a consumer group '{group}' is forbidden if the group is not empty.")
        elif top in (86, 29, 3):
            self.error("Encounter some partition level error, see the follow-up details:")
        else:
            self.error(f"Encounter some unknown error: {ERROR_NAMES.get(top, top)}")
        if any(table.values()):
            self.failed = True
        line = "\n{:<30} {:<15} {:<15}"
        out = [line.format("TOPIC", "PARTITION", "STATUS")]
        for (t, p), text in sorted(table.items()):
            out.append(line.format(t, p if p >= 0 else "Not Provided", f"Error: :{text}" if text else "Successful"))
        sys.stdout.write("".join(out) + "\n")

    def send_offset_delete(self, group: str, partitions: list[tuple[str, int]]) -> tuple[int, dict]:
        """OffsetDelete on the group's coordinator: (top-level error code, {(topic, partition): code})."""
        from josef.client.wire import KafkaConnection, WireError, build, request_class
        self._check_plaintext()
        by_topic: dict[str, list[int]] = {}
        for t, p in partitions:
            by_topic.setdefault(t, []).append(p)
        deadline = time.monotonic() + max(self.timeout, 1.0)
        last = "timed out"
        while True:
            try:
                host, port = self.find_coordinator(group)
                with KafkaConnection(host, port, self.timeout) as conn:
                    versions = conn.api_versions()
                    if 47 not in versions:
                        raise ToolError("Error: Executing consumer group command failed due to The node does not "
                                        "support OFFSET_DELETE")
                    version = conn.best_version(47, versions)
                    cls = request_class(47, version)
                    mod = sys.modules[cls.__module__]
                    request = build(cls, group_id=group, topics=tuple(
                        mod.OffsetDeleteRequestTopic(name=t, partitions=tuple(
                            mod.OffsetDeleteRequestPartition(partition_index=p) for p in ps))
                        for t, ps in by_topic.items()))
                    response = conn.request(request)
            except WireError as e:
                last = str(e)
                if time.monotonic() > deadline:
                    raise ToolError(f"Error: Executing consumer group command failed due to {last}") from None
                time.sleep(0.1)
                continue
            top = int(response.error_code)
            results = {(t.name, int(p.partition_index)): int(p.error_code)
                       for t in response.topics for p in t.partitions}
            retriable = top in RETRIABLE or any(c in RETRIABLE for c in results.values())
            if retriable and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            return top, results

    def find_coordinator(self, group: str) -> tuple[str, int]:
        from josef.client.wire import KafkaConnection, WireError, build, request_class
        last: Exception | None = None
        for host, port in parse_servers(self.servers):
            try:
                with KafkaConnection(host, port, self.timeout) as conn:
                    version = conn.best_version(10, conn.api_versions())
                    response = conn.request(build(request_class(10, version), key=group, key_type=0,
                                                  coordinator_keys=(group,)))
            except WireError as e:
                last = e
                continue
            entry = response.coordinators[0] if version >= 4 else response
            code = int(entry.error_code)
            if code:
                raise WireError(error_text(code))
            return entry.host, int(entry.port)
        raise WireError(str(last) if last else f"could not connect to {self.servers}")

    def _check_plaintext(self) -> None:
        if self.args.command_config:
            protocol = load_properties(self.args.command_config).get("security.protocol", "PLAINTEXT").upper()
            if protocol != "PLAINTEXT":
                raise ToolError(f"--delete-offsets supports PLAINTEXT listeners only (security.protocol={protocol})")


def _col(value) -> str:
    return MISSING if value is None else str(value)
