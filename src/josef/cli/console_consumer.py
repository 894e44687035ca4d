"""kafka-console-consumer.sh: print the records of a topic, formatted like Kafka's
DefaultMessageFormatter.

With --group the consumer subscribes and the group coordinator assigns partitions. Without
it Kafka makes up a throw-away group; we instead assign() every partition of the matching
topics ourselves, which needs no group support from the broker. (librdkafka insists on a
group.id even then, so a console-consumer-NNNNN one is set but never joined.)
"""
from __future__ import annotations

import random
import re
import struct
import sys
import time
import uuid

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata,
    make_client, merged_config, parse_key_values, run,
)

POLL = 0.2  # seconds per poll: short, so Ctrl-C and --timeout-ms are noticed promptly
METADATA_REFRESH = 5.0  # seconds between checks for new partitions / topics in assign mode
DEFAULT_FORMATTERS = ("kafka.tools.DefaultMessageFormatter", "org.apache.kafka.tools.consumer.DefaultMessageFormatter")


# -- formatting -----------------------------------------------------------------------------------

def _fixed(fmt: str):
    s = struct.Struct(fmt)
    return lambda b: str(s.unpack(b)[0]).encode() if len(b) == s.size else b


# Kafka deserializers by simple class name; bytes that do not fit are printed as they are.
DESERIALIZERS = {
    "StringDeserializer": lambda b: b,
    "ByteArrayDeserializer": lambda b: b,
    "BytesDeserializer": lambda b: b,
    "ByteBufferDeserializer": lambda b: b,
    "ShortDeserializer": _fixed(">h"),
    "IntegerDeserializer": _fixed(">i"),
    "LongDeserializer": _fixed(">q"),
    "FloatDeserializer": _fixed(">f"),
    "DoubleDeserializer": _fixed(">d"),
    "UUIDDeserializer": lambda b: str(uuid.UUID(b.decode())).encode() if len(b) == 36 else b,
    "VoidDeserializer": lambda b: b"null",
}


def deserializer(class_name: str | None):
    if not class_name:
        return DESERIALIZERS["StringDeserializer"]
    simple = class_name.rsplit(".", 1)[-1]
    if simple not in DESERIALIZERS:
        raise ToolError(f"Deserializer {class_name} is not available; use one of {', '.join(DESERIALIZERS)}")
    return DESERIALIZERS[simple]


class MessageFormatter:
    """Kafka's DefaultMessageFormatter: optional timestamp, partition, offset, headers, key
    columns before the value, joined by key.separator."""

    TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}

    def __init__(self, props: dict[str, str], key_deserializer=None, value_deserializer=None):
        def flag(name: str, default: bool) -> bool:
            return props[name].strip().lower() == "true" if name in props else default
        self.print_timestamp = flag("print.timestamp", False)
        self.print_key = flag("print.key", False)
        self.print_value = flag("print.value", True)
        self.print_partition = flag("print.partition", False)
        self.print_offset = flag("print.offset", False)
        self.print_headers = flag("print.headers", False)
        self.key_separator = props.get("key.separator", "\t").encode()
        self.line_separator = props.get("line.separator", "\n").encode()
        self.headers_separator = props.get("headers.separator", ",").encode()
        self.null_literal = props.get("null.literal", "null").encode()
        self.key_de = deserializer(props.get("key.deserializer", key_deserializer))
        self.value_de = deserializer(props.get("value.deserializer", value_deserializer))
        self.headers_de = deserializer(props.get("headers.deserializer"))

    def _bytes(self, data, de) -> bytes:
        return self.null_literal if data is None else de(data)

    def format(self, msg) -> bytes:
        """The bytes printed for one confluent_kafka Message."""
        out = []
        columns = [self.print_timestamp, self.print_partition, self.print_offset, self.print_headers,
                   self.print_key, self.print_value]

        def separator(after: int) -> None:
            out.append(self.key_separator if any(columns[after + 1:]) else self.line_separator)

        if self.print_timestamp:
            kind, ts = msg.timestamp()
            name = self.TIMESTAMP_TYPES.get(kind)
            out.append(f"{name}:{ts}".encode() if name else b"NO_TIMESTAMP")
            separator(0)
        if self.print_partition:
            out.append(b"Partition:%d" % msg.partition())
            separator(1)
        if self.print_offset:
            out.append(b"Offset:%d" % msg.offset())
            separator(2)
        if self.print_headers:
            headers = msg.headers() or []
            if not headers:
                out.append(b"NO_HEADERS")
            for i, (name, value) in enumerate(headers):
                if i:
                    out.append(self.headers_separator)
                out.append(name.encode() + b":" + self._bytes(value, self.headers_de))
            separator(3)
        if self.print_key:
            out.append(self._bytes(msg.key(), self.key_de))
            separator(4)
        if self.print_value:
            out.append(self._bytes(msg.value(), self.value_de))
            out.append(self.line_separator)
        return b"".join(out)


# -- options --------------------------------------------------------------------------------------

def parser() -> ArgParser:
    p = ArgParser("kafka-console-consumer.sh", "This tool helps to read data from Kafka topics and outputs it to standard output.")
    add_bootstrap(p)
    p.add_argument("--topic", help="The topic to consume from.")
    p.add_argument("--include", "--whitelist", dest="include", metavar="REGEX",
                   help="Regular expression specifying list of topics to include for consumption.")
    p.add_argument("--partition", type=int, help="The partition to consume from.")
    p.add_argument("--offset", help="The offset to consume from (a non-negative number), or 'earliest' or 'latest'.")
    p.add_argument("--from-beginning", action="store_true",
                   help="Start with the earliest message present in the log rather than the latest.")
    p.add_argument("--max-messages", type=int, help="The maximum number of messages to consume before exiting.")
    p.add_argument("--timeout-ms", type=int, help="Exit if no message is available for this long.")
    p.add_argument("--skip-message-on-error", action="store_true")
    p.add_argument("--formatter", help="Only Kafka's DefaultMessageFormatter is available.")
    p.add_argument("--property", "--formatter-property", action="append", dest="property", metavar="PROP=VALUE",
                   help="Formatter settings: print.timestamp, print.key, print.offset, print.partition, "
                        "print.headers, print.value, key.separator, line.separator, headers.separator, null.literal.")
    p.add_argument("--formatter-config", metavar="FILE", help="Formatter properties file.")
    p.add_argument("--consumer-property", "--command-property", action="append", dest="consumer_property",
                   metavar="PROP=VALUE", help="Consumer config properties.")
    p.add_argument("--consumer.config", "--command-config", dest="consumer_config", metavar="FILE",
                   help="Consumer config properties file.")
    p.add_argument("--group", help="The consumer group id of the consumer.")
    p.add_argument("--isolation-level", choices=("read_committed", "read_uncommitted"))
    p.add_argument("--key-deserializer")
    p.add_argument("--value-deserializer")
    p.add_argument("--enable-systest-events", action="store_true", help="Accepted; no effect.")
    return p


def check_args(args) -> None:
    if (args.topic is None) == (args.include is None):
        raise ToolError("Exactly one of --include/--topic is required.")
    if args.partition is not None:
        if args.topic is None:
            raise ToolError("The topic is required when partition is specified.")
        if args.from_beginning and args.offset is not None:
            raise ToolError("Options from-beginning and offset cannot be specified together.")
    elif args.offset is not None:
        raise ToolError("The partition is required when offset is specified.")
    if args.formatter and args.formatter not in DEFAULT_FORMATTERS:
        raise ToolError(f"Formatter {args.formatter} is not available; only DefaultMessageFormatter is")


def start_offset(args) -> int:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
    if args.offset is None:
        return OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    text = args.offset.lower()
    if text == "earliest":
        return OFFSET_BEGINNING
    if text == "latest":
        return OFFSET_END
    if re.fullmatch(r"\d+", args.offset):
        return int(args.offset)
    raise ToolError(f"The provided offset value '{args.offset}' is incorrect. "
                    "Valid values are 'earliest', 'latest', or a non-negative long.")


def consumer_config(args, servers: str) -> dict:
    conf = merged_config(args, ["consumer_config"], ["consumer_property"])
    groups = {g for g in (args.group, conf.get("group.id")) if g}
    if len(groups) > 1:
        raise ToolError("The group ids provided in different places (directly using '--group', via "
                        "'--consumer-property', or via '--consumer.config') do not match. Detected group ids: "
                        + ", ".join(f"'{g}'" for g in sorted(groups)))
    if groups and not next(iter(groups)).strip(" \t\n\v\f\r"):
        # librdkafka has no group for a blank id, and confluent-kafka then aborts the process
        raise ToolError("The group id must not be blank.")
    if groups and args.partition is not None:
        raise ToolError("Options group and partition cannot be specified together.")
    reset = conf.get("auto.offset.reset")
    if reset is not None and args.from_beginning and reset != "earliest":
        raise ToolError(f"Can't simultaneously specify --from-beginning and 'auto.offset.reset={reset}', "
                        "please remove one option")
    conf.setdefault("auto.offset.reset", "earliest" if args.from_beginning else "latest")
    conf["bootstrap.servers"] = servers
    conf.setdefault("client.id", "console-consumer")
    if args.isolation_level:
        conf["isolation.level"] = args.isolation_level
    conf.setdefault("allow.auto.create.topics", "true")  # the Java consumer's default
    if groups:
        conf["group.id"] = args.group = groups.pop()  # a group from any source means subscribe()
    else:
        conf["group.id"] = f"console-consumer-{random.randrange(100000)}"
        conf.setdefault("enable.auto.commit", "false")
    conf["enable.partition.eof"] = "false"
    for key in ("key.deserializer", "value.deserializer"):
        conf.pop(key, None)
    return conf


# -- the tool -------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    check_args(args)
    servers = bootstrap(args)
    offset = start_offset(args)
    if args.max_messages is not None and args.max_messages <= 0:
        args.max_messages = None  # Kafka: any non-positive limit means no limit
    formatter_props = merged_config(args, ["formatter_config"], [])
    formatter_props.update(parse_key_values(args.property))
    formatter = MessageFormatter(formatter_props, args.key_deserializer, args.value_deserializer)
    conf = consumer_config(args, servers)

    check_reachable(servers)
    from confluent_kafka import Consumer
    errors = ClientErrors()
    consumer = make_client(Consumer, conf, errors)
    fetch_metadata(consumer, servers, errors=errors)
    session = ConsoleConsumer(consumer, args, offset, formatter, servers, errors)
    try:
        return session.run()
    finally:
        session.close()
        print(f"Processed a total of {session.count} messages", file=sys.stderr, flush=True)


class ConsoleConsumer:
    def __init__(self, consumer, args, offset: int, formatter: MessageFormatter, servers: str, errors):
        self.consumer, self.args, self.offset, self.formatter = consumer, args, offset, formatter
        self.servers, self.errors = servers, errors
        self.count = 0
        self.assigned: set[tuple[str, int]] = set()
        self.checked = 0.0

    def close(self) -> None:
        try:
            self.consumer.close()
        except Exception:
            pass

    def start(self) -> None:
        from confluent_kafka import TopicPartition
        args = self.args
        if args.partition is not None:
            self.consumer.assign([TopicPartition(args.topic, args.partition, self.offset)])
            self.assigned.add((args.topic, args.partition))
        elif args.group:
            self.consumer.subscribe([args.topic] if args.topic else [_subscription_regex(args.include)])
        else:
            self.assign_new()

    def assign_new(self, initial: bool = True) -> None:
        """Assign every not-yet-assigned partition of the matching topics (topics may appear later).

        Later refreshes must not end a consumer that outlives a broker restart: they wait
        briefly and, if the cluster is away, try again at the next refresh.
        """
        from confluent_kafka import TopicPartition
        self.checked = time.monotonic()
        try:
            metadata = fetch_metadata(self.consumer, self.servers, errors=self.errors,
                                      timeout=10.0 if initial else 1.0)
        except ToolError:
            if initial:
                raise
            return
        regex = _include(self.args.include) if self.args.include else None
        fresh = []
        for name, topic in metadata.topics.items():
            wanted = name == self.args.topic if regex is None else regex.fullmatch(name)
            if not wanted:
                continue
            if topic.error is not None and not topic.partitions:
                continue
            for pid in topic.partitions:
                if (name, pid) not in self.assigned:
                    fresh.append(TopicPartition(name, pid, self.offset))
                    self.assigned.add((name, pid))
        if fresh:
            self.consumer.incremental_assign(fresh)

    def run(self) -> int:
        self.start()
        args = self.args
        limit = args.max_messages
        timeout = args.timeout_ms / 1000 if args.timeout_ms is not None and args.timeout_ms >= 0 else None
        last = time.monotonic()
        out = sys.stdout.buffer
        refresh = args.partition is None and not args.group
        while limit is None or self.count < limit:
            wait = POLL if timeout is None else max(0.0, min(POLL, last + timeout - time.monotonic()))
            want = 500 if limit is None else min(500, limit - self.count)
            messages = self.consumer.consume(num_messages=want, timeout=wait)
            got = False
            for msg in messages:
                err = msg.error()
                if err is not None:
                    self._on_error(err)
                    continue
                out.write(self.formatter.format(msg))
                self.count += 1
                got = True
            if got:
                out.flush()
                last = time.monotonic()
            elif timeout is not None and time.monotonic() - last >= timeout:
                print("ERROR Error processing message, terminating consumer process: "
                      "org.apache.kafka.common.errors.TimeoutException", file=sys.stderr)
                break
            if refresh and time.monotonic() - self.checked > METADATA_REFRESH:
                self.assign_new(initial=False)
        return 0

    def _on_error(self, err) -> None:
        # librdkafka reports transient trouble (broker down, leader moving) and recovers by
        # itself, as the Java consumer does; only fatal errors end the tool.
        if err.fatal() or err.name() in ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"):
            raise ToolError(f"Error processing message, terminating consumer process: {err.str()}")


def _include(pattern: str) -> re.Pattern:
    from josef.cli.topics import include_list
    return include_list(pattern)


def _subscription_regex(pattern: str) -> str:
    """librdkafka treats a subscription starting with ^ as a (POSIX) regex; Kafka matches whole names."""
    return f"^({_include(pattern).pattern})$"
