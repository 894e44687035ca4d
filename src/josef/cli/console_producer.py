"""kafka-console-producer.sh: one record per stdin line.

Partitions are chosen here, as Kafka's Java producer chooses them, and passed to librdkafka
explicitly: keyed records go to murmur2(key) % partitions (so keys land where Java clients
put them); keyless records stick to one partition that has a leader until a batch's worth
of bytes went there, so an offline partition never holds up the others.

Unlike Kafka, the ">" prompt is printed only when stdin is a terminal, so piped input gives
clean output.
"""
from __future__ import annotations

import random
import sys
import threading
import time

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata,
    kafka_error_text, make_client, merged_config, parse_key_values, run,
)

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
METADATA_REFRESH = 2.0  # seconds between leader checks for keyless records


# -- partitioning ---------------------------------------------------------------------------------

def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """Java's BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % numPartitions."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


class Partitioner:
    """Picks partitions from the topic's metadata, refreshed every few seconds."""

    def __init__(self, producer, topic: str, servers: str, batch_size: int, max_block_s: float, errors):
        self.producer, self.topic, self.servers = producer, topic, servers
        self.batch_size, self.max_block_s, self.errors = batch_size, max_block_s, errors
        self.partitions: list[int] = []
        self.available: list[int] = []
        self.refreshed = 0.0
        self.sticky: int | None = None
        self.sticky_bytes = 0

    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.refreshed < METADATA_REFRESH:
            return
        if self.partitions:
            # Routine check: keep the last known leaders when the cluster does not answer
            # quickly; librdkafka holds the records until it can deliver them.
            try:
                metadata = fetch_metadata(self.producer, self.servers, self.topic, self.errors, timeout=1.0)
            except ToolError:
                self.refreshed = time.monotonic()
                return
            topic = metadata.topics.get(self.topic)
            if topic is not None and topic.partitions:
                self._use(topic)
            return
        deadline = time.monotonic() + self.max_block_s
        while True:
            metadata = fetch_metadata(self.producer, self.servers, self.topic, self.errors)
            topic = metadata.topics.get(self.topic)
            if topic is not None and topic.partitions and (topic.error is None or topic.error.code() == 0
                                                           or topic.error.name() == "LEADER_NOT_AVAILABLE"):
                break
            if time.monotonic() > deadline:
                reason = f" ({topic.error.str()})" if topic is not None and topic.error is not None else ""
                raise ToolError(f"Topic {self.topic} not present in metadata after "
                                f"{int(self.max_block_s * 1000)} ms.{reason}")
            time.sleep(0.1)  # auto-creation in progress: the broker needs a moment
        self._use(topic)

    def _use(self, topic) -> None:
        self.partitions = sorted(topic.partitions)
        self.available = [p.id for p in topic.partitions.values() if p.leader >= 0]
        self.refreshed = time.monotonic()

    def choose(self, key: bytes | None, size: int) -> int:
        self.refresh(force=not self.partitions)
        if key is not None:
            return partition_for_key(key, len(self.partitions))
        candidates = self.available or self.partitions
        if self.sticky not in candidates or self.sticky_bytes >= self.batch_size:
            others = [p for p in candidates if p != self.sticky] or candidates
            self.sticky = random.choice(others)
            self.sticky_bytes = 0
        self.sticky_bytes += size
        return self.sticky


# -- reading lines --------------------------------------------------------------------------------

class LineReader:
    """Kafka's LineMessageReader: optional headers and key in front of the value."""

    def __init__(self, props: dict[str, str]):
        def flag(name: str) -> bool:
            return props.get(name, "false").strip().lower() == "true"
        self.parse_key = flag("parse.key")
        self.parse_headers = flag("parse.headers")
        self.ignore_error = flag("ignore.error")
        self.key_separator = props.get("key.separator", "\t")
        self.headers_delimiter = props.get("headers.delimiter", "\t")
        self.headers_separator = props.get("headers.separator", ",")
        self.headers_key_separator = props.get("headers.key.separator", ":")
        self.null_marker = props.get("null.marker")
        if self.null_marker is not None:
            for name, sep in (("key.separator", self.key_separator), ("headers.delimiter", self.headers_delimiter),
                              ("headers.key.separator", self.headers_key_separator)):
                if self.null_marker == sep:
                    raise ToolError(f"null.marker and {name} may not be equal")
        self.line_number = 0

    def _part(self, enabled: bool, line: str, start: int, marker: str, what: str) -> str | None:
        if not enabled:
            return None
        index = line.find(marker, start)
        if index < 0:
            if self.ignore_error:
                return None
            raise ToolError(f"No {what} found on line number {self.line_number}: '{line}'")
        return line[start:index]

    def parse(self, line: str):
        """(key bytes|None, value bytes|None, headers list) for one line without its newline."""
        self.line_number += 1
        headers_text = self._part(self.parse_headers, line, 0, self.headers_delimiter, "headers delimiter")
        start = 0 if headers_text is None else len(headers_text) + len(self.headers_delimiter)
        key = self._part(self.parse_key, line, start, self.key_separator, "key separator")
        value = line[start + (0 if key is None else len(key) + len(self.key_separator)):]
        headers = self._headers(headers_text) if headers_text is not None and headers_text != self.null_marker else []
        return self._bytes(key), self._bytes(value), headers

    def _bytes(self, text: str | None) -> bytes | None:
        if text is None or text == self.null_marker:
            return None
        return text.encode("utf-8", "surrogateescape")

    def _headers(self, text: str) -> list[tuple[str, bytes | None]]:
        headers = []
        for pair in text.split(self.headers_separator):
            index = pair.find(self.headers_key_separator)
            if index < 0:
                if not self.ignore_error:
                    raise ToolError(f"No header key separator found in pair '{pair}' on line number {self.line_number}")
                headers.append((pair, None))
                continue
            name, value = pair[:index], pair[index + len(self.headers_key_separator):]
            if name == self.null_marker:
                raise ToolError(f"Header keys should not be equal to the null marker '{self.null_marker}' "
                                "as they can't be null")
            headers.append((name, self._bytes(value)))
        return headers


def read_lines(stream, prompt: bool):
    """Lines as str without their line ending; undecodable bytes survive (surrogateescape)."""
    while True:
        if prompt:
            sys.stdout.write(">")
            sys.stdout.flush()
        raw = stream.readline()
        if not raw:
            return
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield raw.decode("utf-8", "surrogateescape")


# -- the tool -------------------------------------------------------------------------------------

def parser() -> ArgParser:
    p = ArgParser("kafka-console-producer.sh", "This tool helps to read data from standard input and publish it to Kafka.")
    add_bootstrap(p, broker_list=True)
    p.add_argument("--topic", help="REQUIRED: The topic id to produce messages to.")
    p.add_argument("--sync", action="store_true", help="Send each message synchronously, one at a time.")
    p.add_argument("--compression-codec", nargs="?", const="gzip", metavar="CODEC",
                   help="none, gzip, snappy, lz4 or zstd; without a value: gzip.")
    p.add_argument("--batch-size", type=int, help="Bytes per partition batch (default 16384).")
    p.add_argument("--message-send-max-retries", type=int, help="Retries before giving up (default 3).")
    p.add_argument("--retry-backoff-ms", type=int, help="Wait before each retry (default 100).")
    p.add_argument("--timeout", type=int, metavar="MS", help="linger.ms: how long a batch may wait (default 1000).")
    p.add_argument("--request-required-acks", help="acks: -1/all, 0 or 1 (default -1).")
    p.add_argument("--request-timeout-ms", type=int, help="Ack timeout of a produce request (default 1500).")
    p.add_argument("--metadata-expiry-ms", type=int, help="metadata.max.age.ms (default 300000).")
    p.add_argument("--max-block-ms", type=int, help="How long to wait for topic metadata (default 60000).")
    p.add_argument("--max-memory-bytes", type=int, help="Total memory for buffering (default 33554432).")
    p.add_argument("--max-partition-memory-bytes", type=int, help="Same as --batch-size.")
    p.add_argument("--socket-buffer-size", type=int, help="Socket send buffer size (default 102400).")
    p.add_argument("--property", "--reader-property", action="append", dest="property", metavar="PROP=VALUE",
                   help="Line reader settings: parse.key, key.separator, parse.headers, headers.delimiter, "
                        "headers.separator, headers.key.separator, null.marker, ignore.error.")
    p.add_argument("--reader-config", metavar="FILE", help="Line reader properties file.")
    p.add_argument("--producer-property", "--command-property", action="append", dest="producer_property",
                   metavar="PROP=VALUE", help="Producer config properties.")
    p.add_argument("--producer.config", "--command-config", dest="producer_config", metavar="FILE",
                   help="Producer config properties file.")
    p.add_argument("--line-reader", help="Only Kafka's default LineMessageReader is available.")
    return p


def producer_config(args, servers: str) -> dict:
    """Kafka's precedence: explicit flag > --producer-property > --producer.config > flag default."""
    conf = merged_config(args, ["producer_config"], ["producer_property"])
    conf["bootstrap.servers"] = servers
    conf.setdefault("client.id", "console-producer")

    def merge(key: str, flag, default, convert=str):
        if flag is not None:
            conf[key] = convert(flag)
        elif key not in conf and default is not None:
            conf[key] = convert(default)

    codec = args.compression_codec
    if codec is not None and codec not in CODECS:
        raise ToolError(f"Invalid compression codec '{codec}': use one of {', '.join(CODECS)}")
    merge("compression.type", codec, None)
    merge("linger.ms", args.timeout, 1000)
    merge("acks", args.request_required_acks, "-1")
    merge("request.timeout.ms", args.request_timeout_ms, 1500)
    merge("retries", args.message_send_max_retries, 3)
    merge("retry.backoff.ms", args.retry_backoff_ms, 100)
    merge("metadata.max.age.ms", args.metadata_expiry_ms, None)
    merge("batch.size", args.max_partition_memory_bytes or args.batch_size, 16384)
    merge("socket.send.buffer.bytes", args.socket_buffer_size, None)
    if args.max_memory_bytes is not None:
        conf["queue.buffering.max.kbytes"] = str(max(1, args.max_memory_bytes // 1024))
    if "delivery.timeout.ms" not in conf and "message.timeout.ms" not in conf:
        conf["message.timeout.ms"] = "120000"  # Java's delivery.timeout.ms default
    return conf


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    servers = bootstrap(args)
    if args.topic is None:
        raise ToolError('Missing required argument "[topic]"')
    if args.line_reader and not args.line_reader.endswith("LineMessageReader"):
        raise ToolError(f"Line reader {args.line_reader} is not available; only LineMessageReader is")
    reader_props = merged_config(args, ["reader_config"], [])
    reader_props.update(parse_key_values(args.property))
    reader = LineReader(reader_props)
    conf = producer_config(args, servers)
    max_block_s = (args.max_block_ms if args.max_block_ms is not None
                   else int(conf.pop("max.block.ms", 60000))) / 1000

    check_reachable(servers)
    from confluent_kafka import Producer
    errors = ClientErrors()
    producer = make_client(Producer, conf, errors)
    fetch_metadata(producer, servers, errors=errors)
    partitioner = Partitioner(producer, args.topic, servers, int(conf.get("batch.size", 16384)), max_block_s, errors)
    return ConsoleProducer(producer, args.topic, partitioner, args.sync).run(reader, sys.stdin.buffer)


class ConsoleProducer:
    def __init__(self, producer, topic: str, partitioner: Partitioner, sync: bool):
        self.producer, self.topic, self.partitioner, self.sync = producer, topic, partitioner, sync
        self.failed = 0
        self._stop = threading.Event()

    def on_delivery(self, err, msg) -> None:
        if err is None:
            return
        self.failed += 1
        key = msg.key()
        value = msg.value()
        print(f"ERROR Error when sending message to topic {self.topic} with key: "
              f"{'null' if key is None else f'{len(key)} bytes'}, value: "
              f"{'null' if value is None else f'{len(value)} bytes'} with error: {err.str()}",
              file=sys.stderr, flush=True)

    def _poll_loop(self) -> None:
        # Delivery reports surface only in poll(); a reader blocked on a terminal would
        # otherwise hold back error messages until the next line.
        while not self._stop.is_set():
            self.producer.poll(0.2)

    def run(self, reader: LineReader, stream) -> int:
        poller = threading.Thread(target=self._poll_loop, daemon=True)
        poller.start()
        try:
            for line in read_lines(stream, prompt=stream.isatty()):
                key, value, headers = reader.parse(line)
                self.send(key, value, headers)
        finally:
            self._drain()
            self._stop.set()
            poller.join(1)
        return 1 if self.failed else 0

    def send(self, key, value, headers) -> None:
        size = len(key or b"") + len(value or b"")
        partition = self.partitioner.choose(key, size)
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, partition=partition,
                                      headers=headers or None, on_delivery=self.on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
            except Exception as e:
                raise ToolError(f"Error when sending message to topic {self.topic}: {kafka_error_text(e)}") from None
        if self.sync:
            self._drain()

    def _drain(self) -> None:
        # flush() in short slices so Ctrl-C is still seen while the broker is slow
        while self.producer.flush(0.5) > 0:
            pass
