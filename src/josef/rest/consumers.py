"""v2 consumer instances: one librdkafka Consumer per instance, driven from one worker thread.

librdkafka consumers must not be polled from several threads at once, so every operation on
an instance (subscribe, read, commit, seek, close) is queued on that instance's own
single-thread executor; HTTP handlers await it. Instances idle longer than
`consumer.instance.timeout.ms` are closed by a reaper thread, as kafka-rest's
ExpirationThread does.

Semantics follow kafka-rest's KafkaConsumerState / KafkaConsumerReadTask:
- a read returns after `consumer.request.timeout.ms` (or the `timeout` query parameter,
  whichever is smaller) unless `fetch.min.bytes` is exceeded first; `max_bytes` caps the
  response (a record that would reach the cap stays buffered for the next read);
- records are marked consumed (offset stored) only when returned to the HTTP client, so
  "commit all" and auto-commit never skip records still buffered in the proxy;
- an explicit commit names the last record consumed and commits offset + 1, and the reply
  is an empty JSON array;
- subscribe and assign are mutually exclusive, seeking an unassigned partition is an
  illegal state (409 40903); subscribing to no topics or assigning no partitions
  unsubscribes, whatever the mode, as Java's KafkaConsumer does;
- a topic_pattern is a Java regex matched against whole topic names, internal topics left
  out; josef matches it itself and subscribes to the list (see `_refresh_pattern`).
"""
from __future__ import annotations

import asyncio
import base64
import functools
import logging
import queue
import re
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from josef.rest import errors, jsoncodec
from josef.rest.kafka import INTERNAL_TOPICS
from josef.rest.media import SCHEMA_FORMATS
from josef.rest.settings import RestSettings
from josef.rest.errors import reject_unknown_fields
from josef.rest.util import expect_int, expect_list, expect_object, expect_str, parse_json_body, topic_partitions

log = logging.getLogger("josef.rest.consumers")

FORMATS = ("binary", "json", "avro", "jsonschema", "protobuf")
# kafka-rest's CreateConsumerInstanceRequest (with its two @JsonAlias spellings)
_CREATE_FIELDS = ("id", "name", "format", "auto.offset.reset", "auto.commit.enable", "fetch.min.bytes",
                  "responseMinBytes", "consumer.request.timeout.ms", "requestWaitMs")
_OFFSET_RESET = {"latest": "latest", "earliest": "earliest", "none": "error",
                 # librdkafka's spellings, accepted as well
                 "smallest": "smallest", "largest": "largest", "beginning": "beginning", "end": "end",
                 "error": "error"}
FETCH_MIN_BYTES_MAX = 10_000_000
_MUTUALLY_EXCLUSIVE = "Subscription to topics, partitions and pattern are mutually exclusive"
_SEEK_SETTLE = 2.0  # seconds to wait for a just-assigned partition to accept a seek
_PATTERN_REFRESH_S = 5.0  # how often a read matches a topic_pattern against the topics again


class InstanceWorker(Executor):
    """One daemon thread running an instance's calls in order.

    Like a one-thread ThreadPoolExecutor, except that the thread never holds up interpreter
    exit: librdkafka's close() can block for a long time (committing to an unreachable
    cluster), and a stopping proxy must not wait on it beyond its own bound."""

    def __init__(self, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future = Future()
            self._queue.put((future, fn, args, kwargs))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._queue.put(None)
        if wait:
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting request
                future.set_exception(e)


@dataclass
class InstanceConfig:
    id: str | None = None
    name: str | None = None
    format: str = "binary"
    auto_offset_reset: str | None = None
    auto_commit_enable: str | None = None
    fetch_min_bytes: int | None = None
    request_timeout_ms: int | None = None


def parse_create_request(raw: bytes) -> InstanceConfig:
    body = parse_json_body(raw)
    if body is None:
        return InstanceConfig()
    body = expect_object(body, "CreateConsumerInstanceRequest")
    reject_unknown_fields(body, _CREATE_FIELDS)
    cfg = InstanceConfig()
    cfg.id = expect_str(body.get("id"), "id")
    cfg.name = expect_str(body.get("name"), "name")
    fmt = expect_str(body.get("format"), "format")
    if fmt is not None:
        if fmt.lower() not in FORMATS:
            raise errors.unprocessable("Invalid format type.")
        cfg.format = fmt.lower()
    cfg.auto_offset_reset = expect_str(body.get("auto.offset.reset"), "auto.offset.reset")
    cfg.auto_commit_enable = expect_str(body.get("auto.commit.enable"), "auto.commit.enable")
    min_bytes = body.get("fetch.min.bytes", body.get("responseMinBytes"))
    if min_bytes is not None:
        min_bytes = expect_int(min_bytes, "fetch.min.bytes")
        if min_bytes < -1:
            raise errors.invalid_consumer_config_constraint(
                f"Invalid value {min_bytes} for configuration fetch.min.bytes: Value must be at least -1")
        if min_bytes > FETCH_MIN_BYTES_MAX:
            raise errors.invalid_consumer_config_constraint(
                f"Invalid value {min_bytes} for configuration fetch.min.bytes: "
                f"Value must be no more than {FETCH_MIN_BYTES_MAX}")
        cfg.fetch_min_bytes = min_bytes
    wait = body.get("consumer.request.timeout.ms", body.get("requestWaitMs"))
    if wait is not None:
        cfg.request_timeout_ms = expect_int(wait, "consumer.request.timeout.ms")
    return cfg


def _consumer_conf(settings: RestSettings, group: str, name: str, cfg: InstanceConfig) -> dict:
    conf = {"client.id": f"josef-rest-{name}"[:200], **settings.client_config("consumer")}
    conf.update({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                 "enable.auto.offset.store": False})
    if cfg.auto_commit_enable is not None:
        value = cfg.auto_commit_enable.strip().lower()
        if value not in ("true", "false"):
            raise errors.invalid_consumer_config(
                f"Invalid value {cfg.auto_commit_enable} for configuration enable.auto.commit: "
                "Expected value to be either true or false")
        conf["enable.auto.commit"] = value == "true"
    if cfg.auto_offset_reset is not None:
        mapped = _OFFSET_RESET.get(cfg.auto_offset_reset.strip().lower())
        if mapped is None:
            raise errors.invalid_consumer_config(
                f"Invalid value {cfg.auto_offset_reset} for configuration auto.offset.reset: "
                "String must be one of: latest, earliest, none")
        conf["auto.offset.reset"] = mapped
    else:
        conf.setdefault("auto.offset.reset", "latest")
    # What librdkafka cannot take would abort the whole process inside confluent-kafka (an
    # assertion, not an exception): a NUL in a C string, a group id of blanks only.
    for key, value in conf.items():
        if isinstance(value, str) and "\x00" in value:
            raise errors.invalid_consumer_config(f"Invalid value for configuration {key}: a NUL character")
    if not group.strip(" \t\n\v\f\r"):
        raise errors.invalid_consumer_config(f"Invalid value {group!r} for configuration group.id: blank")
    return conf


class ConsumerInstance:
    def __init__(self, group: str, name: str, cfg: InstanceConfig, settings: RestSettings):
        self.group = group
        self.name = name
        self.cfg = cfg
        self.settings = settings
        self.format = cfg.format
        self.executor = InstanceWorker(f"rest-consumer-{name}"[:40])
        self.consumer = None
        self.buffer: deque = deque()
        self.topics: list[str] | None = None      # subscribe(topics)
        self.pattern: str | None = None           # subscribe(topic_pattern)
        self._rx: re.Pattern | None = None        # ... compiled
        self.pattern_topics: list[str] | None = None  # ... the topics it matched last
        self._pattern_checked = 0.0
        self.manual = False                       # assign(partitions)
        self.timeout_s = settings.consumer_instance_timeout_ms / 1000.0
        self.expires = time.monotonic() + self.timeout_s
        self.closed = False

    # -- housekeeping (any thread) ------------------------------------------------------------
    def touch(self) -> None:
        self.expires = time.monotonic() + self.timeout_s

    def expired(self, now: float) -> bool:
        return now >= self.expires

    # -- worker-thread operations -------------------------------------------------------------
    def open(self) -> None:
        from confluent_kafka import Consumer, KafkaException
        conf = _consumer_conf(self.settings, self.group, self.name, self.cfg)
        try:
            self.consumer = Consumer(conf)
        except KafkaException as e:
            raise errors.invalid_consumer_config(e.args[0].str() if e.args else str(e)) from None
        except (ValueError, TypeError) as e:
            raise errors.invalid_consumer_config(str(e)) from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as e:
                log.warning("closing consumer %s/%s: %s", self.group, self.name, e)
        self.buffer.clear()

    def _require_open(self):
        if self.consumer is None:
            raise errors.consumer_instance_not_found()
        return self.consumer

    def subscribe(self, topics: list[str] | None, pattern: str | None) -> None:
        from confluent_kafka import KafkaException
        consumer = self._require_open()
        if topics is None and pattern is None:
            return
        if topics is not None and not topics:
            # Java's KafkaConsumer.subscribe(empty) is unsubscribe(), whatever the current mode
            self._unsubscribe()
            return
        if topics is not None:
            if any(not t or not isinstance(t, str) or not t.strip() for t in topics):
                raise errors.unprocessable("Topic collection to subscribe to cannot contain null or empty topic")
            if self.manual or self.pattern is not None:
                raise errors.illegal_state(_MUTUALLY_EXCLUSIVE)
            subscription = list(dict.fromkeys(topics))
            try:
                consumer.subscribe(subscription)
            except KafkaException as e:
                raise errors.from_kafka_error(e.args[0]) from None
            self.topics, self.pattern, self.pattern_topics = subscription, None, None
        else:
            if self.manual or self.topics is not None:
                raise errors.illegal_state(_MUTUALLY_EXCLUSIVE)
            try:
                rx = re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as e:
                raise errors.unprocessable(f"Invalid topic_pattern: {e}") from None
            self.topics, self.pattern, self._rx = None, pattern, rx
            self._refresh_pattern(force=True)
        self.buffer.clear()

    def _refresh_pattern(self, force: bool = False) -> None:
        """A topic_pattern subscription, resolved here rather than by librdkafka: its regex
        dialect is POSIX (no `\\d`, no lookahead) where the pattern is Java's, and it matches
        internal topics, which Java's consumer leaves out (exclude.internal.topics). So match
        the cluster's topics with Python's `re` (close to java.util.regex), subscribe to that
        list, and match again every few seconds while reading, as Java does on metadata
        refresh; a changed set re-subscribes (a rebalance, as in Java)."""
        from confluent_kafka import KafkaException
        now = time.monotonic()
        if self.pattern is None or (not force and now < self._pattern_checked + _PATTERN_REFRESH_S):
            return
        self._pattern_checked = now
        try:
            md = self.consumer.list_topics(timeout=self.settings.client_timeout_ms / 1000.0)
        except KafkaException as e:  # unreachable for now: keep the pattern, match next time
            log.debug("matching topic_pattern for %s/%s: %s", self.group, self.name, e)
            return
        matched = sorted(name for name, meta in md.topics.items()
                         if name not in INTERNAL_TOPICS and meta.error is None and self._rx.fullmatch(name))
        if matched == self.pattern_topics:
            return
        try:
            if matched:
                self.consumer.subscribe(matched)
            elif self.pattern_topics:
                self.consumer.unsubscribe()
        except KafkaException as e:
            raise errors.from_kafka_error(e.args[0]) from None
        self.pattern_topics = matched

    def _unsubscribe(self) -> None:
        consumer = self._require_open()
        subscribed = self.topics is not None or self.pattern is not None
        try:
            if subscribed:
                # Java's unsubscribe() is synchronous; librdkafka's is not: a rebalance still
                # queued for this handle (the instance is only polled while reading) would
                # later assign the group's partitions and then revoke everything, undoing a
                # manual assign made meanwhile. So leave the group with this handle (close:
                # LeaveGroup, and the commit librdkafka's revoke would make) and go on with
                # a fresh one, which has no such leftovers.
                self.consumer = None
                consumer.close()
            elif self.manual:
                consumer.unassign()
        except Exception as e:
            log.debug("unsubscribe %s/%s: %s", self.group, self.name, e)
        if subscribed:
            self.open()
        self.topics = self.pattern = self._rx = self.pattern_topics = None
        self.manual = False
        self.buffer.clear()

    def unsubscribe(self) -> None:
        self._unsubscribe()

    def subscription(self) -> list[str]:
        self._require_open()
        if self.topics is not None:
            return list(self.topics)
        if self.pattern is not None:
            # Java answers the topics the pattern currently matches
            self._refresh_pattern()
            return list(self.pattern_topics or [])
        return []

    def assign(self, partitions: list[tuple[str, int]]) -> None:
        from confluent_kafka import KafkaException, TopicPartition
        consumer = self._require_open()
        if not partitions:
            # Java's KafkaConsumer.assign(empty) is unsubscribe(), whatever the current mode
            self._unsubscribe()
            return
        if self.topics is not None or self.pattern is not None:
            raise errors.illegal_state(_MUTUALLY_EXCLUSIVE)
        try:
            consumer.assign([TopicPartition(t, p) for t, p in dict.fromkeys(partitions)])
            self.manual = True
        except KafkaException as e:
            raise errors.from_kafka_error(e.args[0]) from None
        self.buffer.clear()

    def assignment(self) -> list[dict]:
        consumer = self._require_open()
        try:
            parts = consumer.assignment()
        except Exception:
            parts = []
        return [{"topic": tp.topic, "partition": tp.partition} for tp in parts]

    def _assigned(self) -> set[tuple[str, int]]:
        try:
            return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        except Exception:
            return set()

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        """Seek an assigned partition; a just-assigned partition needs a moment before
        librdkafka accepts a seek, so retry briefly on its 'erroneous state'."""
        from confluent_kafka import KafkaException, TopicPartition
        deadline = time.monotonic() + _SEEK_SETTLE
        while True:
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
                break
            except KafkaException as e:
                err = e.args[0]
                if err.name() != "_STATE" or time.monotonic() > deadline:
                    raise errors.from_kafka_error(err) from None
                time.sleep(0.01)
        # drop buffered records of that partition: they are before/after the new position
        self.buffer = deque(m for m in self.buffer if (m.topic(), m.partition()) != (topic, partition))

    def _check_assigned(self, tps) -> None:
        assigned = self._assigned()
        for topic, partition in tps:
            if (topic, partition) not in assigned:
                raise errors.illegal_state(f"No current assignment for partition {topic}-{partition}")

    def seek(self, offsets: list[tuple[str, int, int]], timestamps: list[tuple[str, int, int]]) -> None:
        from confluent_kafka import KafkaException, TopicPartition
        self._require_open()
        self._check_assigned([(t, p) for t, p, _ in offsets] + [(t, p) for t, p, _ in timestamps])
        for topic, partition, offset in offsets:
            self._seek(topic, partition, offset)
        if timestamps:
            try:
                found = self.consumer.offsets_for_times(
                    [TopicPartition(t, p, ts) for t, p, ts in timestamps],
                    timeout=self.settings.client_timeout_ms / 1000.0)
            except KafkaException as e:
                raise errors.from_kafka_error(e.args[0]) from None
            for tp in found:
                if tp.error is not None:
                    raise errors.from_kafka_error(tp.error)
                # no record at/after the timestamp: Java's offsetsForTimes gives null; seek to end
                self._seek(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -1)

    def seek_to(self, partitions: list[tuple[str, int]], beginning: bool) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
        self._require_open()
        if not partitions:  # Java's seekToBeginning/seekToEnd(empty): every assigned partition
            partitions = sorted(self._assigned())
        self._check_assigned(partitions)
        for topic, partition in partitions:
            self._seek(topic, partition, OFFSET_BEGINNING if beginning else OFFSET_END)

    def commit(self, offsets: list[tuple[str, int, int, str | None]] | None) -> list:
        from confluent_kafka import KafkaException, TopicPartition
        consumer = self._require_open()
        try:
            if offsets is None:
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as e:
                    if e.args[0].name() != "_NO_OFFSET":
                        raise
            elif offsets:
                consumer.commit(offsets=[TopicPartition(t, p, o + 1, m) if m is not None
                                         else TopicPartition(t, p, o + 1)
                                         for t, p, o, m in offsets], asynchronous=False)
        except KafkaException as e:
            raise errors.from_kafka_error(e.args[0]) from None
        return []

    def committed(self, partitions: list[tuple[str, int]]) -> dict:
        from confluent_kafka import KafkaException, TopicPartition
        consumer = self._require_open()
        if not partitions:
            return {"offsets": []}
        try:
            result = consumer.committed([TopicPartition(t, p) for t, p in partitions],
                                        timeout=self.settings.client_timeout_ms / 1000.0)
        except KafkaException as e:
            raise errors.from_kafka_error(e.args[0]) from None
        out = []
        for tp in result:
            if tp.error is None and tp.offset >= 0:
                out.append({"topic": tp.topic, "partition": tp.partition, "offset": tp.offset,
                            "metadata": tp.metadata if tp.metadata is not None else ""})
        return {"offsets": out}

    def read(self, timeout_ms: int, max_bytes: int, fmt: str) -> list[dict]:
        """One kafka-rest read task: poll until the request timeout, `fetch.min.bytes` or
        `max_bytes` ends it; return the records (and mark them consumed)."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition
        consumer = self._require_open()
        self._refresh_pattern()
        settings = self.settings
        default_wait = (self.cfg.request_timeout_ms if self.cfg.request_timeout_ms is not None
                        else settings.consumer_request_timeout_ms)
        wait_ms = default_wait if timeout_ms <= 0 else min(timeout_ms, default_wait)
        max_bytes = settings.consumer_request_max_bytes if max_bytes <= 0 else min(
            max_bytes, settings.consumer_request_max_bytes)
        min_bytes = self.cfg.fetch_min_bytes if self.cfg.fetch_min_bytes is not None else settings.fetch_min_bytes
        if min_bytes < 0:
            min_bytes = float("inf")
        backoff = settings.consumer_iterator_backoff_ms / 1000.0
        deadline = time.monotonic() + wait_ms / 1000.0
        convert = _CONVERTERS.get(fmt, _schema_record)
        out: list[dict] = []
        consumed = 0
        exceeded_min = exceeded_max = False
        last: dict[tuple[str, int], int] = {}
        try:
            while True:
                while self.buffer and not exceeded_max:
                    msg = self.buffer[0]
                    key, value = msg.key(), msg.value()
                    size = (len(key) if key else 0) + (len(value) if value else 0)
                    if consumed + size >= max_bytes:
                        exceeded_max = True
                        break
                    out.append(convert(msg))   # may raise 40801 and leave msg buffered, as Java
                    self.buffer.popleft()
                    last[(msg.topic(), msg.partition())] = msg.offset()
                    consumed += size
                    if consumed > min_bytes:
                        exceeded_min = True
                if exceeded_max or exceeded_min or time.monotonic() >= deadline:
                    break
                remaining = deadline - time.monotonic()
                try:
                    batch = consumer.consume(num_messages=settings.max_poll_records,
                                             timeout=max(0.0, min(remaining, backoff)))
                except KafkaException as e:
                    raise errors.from_kafka_error(e.args[0]) from None
                for msg in batch:
                    err = msg.error()
                    if err is None:
                        self.buffer.append(msg)
                    elif err.fatal():
                        raise errors.from_kafka_error(err)
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.debug("consumer %s/%s: %s", self.group, self.name, err.str())
        finally:
            if last:
                try:
                    consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
                except KafkaException as e:
                    # partition revoked meanwhile: nothing to mark
                    log.debug("store_offsets %s/%s: %s", self.group, self.name, e)
        return out


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _binary_record(msg) -> dict:
    return {"topic": msg.topic(), "key": _b64(msg.key()), "value": _b64(msg.value()),
            "partition": msg.partition(), "offset": msg.offset()}


def _json_value(data: bytes | None):
    if data is None:
        return None
    try:
        return jsoncodec.loads(data)
    except (ValueError, RecursionError) as e:
        raise errors.deserialization_failed(f"Error deserializing JSON message: {e}") from None


def _json_record(msg) -> dict:
    return {"topic": msg.topic(), "key": _json_value(msg.key()), "value": _json_value(msg.value()),
            "partition": msg.partition(), "offset": msg.offset()}


def _schema_record(msg) -> dict:
    raise errors.deserialization_failed(
        "Error deserializing message: Schema Registry is not configured, no Schema Registry "
        "client available to deserialize message.")


_CONVERTERS = {"binary": _binary_record, "json": _json_record}


class ConsumerManager:
    """The registry of consumer instances by (group, name), with expiry."""

    def __init__(self, settings: RestSettings):
        self.settings = settings
        self._instances: dict[tuple[str, str], ConsumerInstance | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="josef-rest-consumer-expiry", daemon=True)
        self._reaper.start()

    # -- registry ------------------------------------------------------------------------------
    def _name_for(self, cfg: InstanceConfig) -> str:
        if cfg.id is not None:
            return cfg.id
        if cfg.name is not None:
            return cfg.name
        prefix = "rest-consumer-" + (self.settings.id + "-" if self.settings.id else "")
        return prefix + str(uuid.uuid4())

    async def create(self, group: str, cfg: InstanceConfig) -> str:
        name = self._name_for(cfg)
        key = (group, name)
        with self._lock:
            if key in self._instances:
                raise errors.consumer_already_exists()
            self._instances[key] = None  # reserve the name while the consumer is built
        instance = ConsumerInstance(group, name, cfg, self.settings)
        try:
            await self._call(instance, instance.open)
        except BaseException:
            with self._lock:
                self._instances.pop(key, None)
            instance.executor.shutdown(wait=False)
            raise
        with self._lock:
            self._instances[key] = instance
        instance.touch()
        return name

    def get(self, group: str, name: str) -> ConsumerInstance:
        with self._lock:
            instance = self._instances.get((group, name))
        if instance is None or instance.closed:
            raise errors.consumer_instance_not_found()
        instance.touch()
        return instance

    async def delete(self, group: str, name: str) -> None:
        with self._lock:
            instance = self._instances.get((group, name))
            if instance is None:
                raise errors.consumer_instance_not_found()
            del self._instances[(group, name)]
        await self._close(instance)

    async def _close(self, instance: ConsumerInstance) -> None:
        try:
            await self._call(instance, instance.close)
        finally:
            instance.executor.shutdown(wait=False)

    async def _call(self, instance: ConsumerInstance, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(instance.executor, functools.partial(fn, *args))
        except RuntimeError as e:  # executor shut down: the instance was deleted meanwhile
            if "shutdown" in str(e):
                raise errors.consumer_instance_not_found() from None
            raise
        finally:
            instance.touch()

    async def call(self, group: str, name: str, method: str, *args):
        instance = self.get(group, name)
        return await self._call(instance, getattr(instance, method), *args)

    # -- expiry --------------------------------------------------------------------------------
    def _reap_loop(self) -> None:
        interval = min(1.0, max(0.05, self.settings.consumer_instance_timeout_ms / 4000.0))
        while not self._stop.wait(interval):
            now = time.monotonic()
            expired = []
            with self._lock:
                for key, instance in list(self._instances.items()):
                    if instance is not None and instance.expired(now):
                        del self._instances[key]
                        expired.append(instance)
            for instance in expired:
                log.info("consumer instance %s/%s expired", instance.group, instance.name)
                try:
                    instance.executor.submit(instance.close)
                    instance.executor.shutdown(wait=False)
                except RuntimeError:
                    pass

    def close(self, timeout: float = 5.0) -> None:
        """Close every instance (leaving their groups), bounded by `timeout` overall; a close
        still blocked then (cluster unreachable) is left to its daemon thread."""
        self._stop.set()
        with self._lock:
            instances = [i for i in self._instances.values() if i is not None]
            self._instances.clear()
        futures = []
        for instance in instances:
            try:
                futures.append(instance.executor.submit(instance.close))
            except RuntimeError:
                pass
        deadline = time.monotonic() + timeout
        for f in futures:
            try:
                f.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
        for instance in instances:
            instance.executor.shutdown(wait=False)

    def __len__(self) -> int:
        return sum(1 for i in self._instances.values() if i is not None)


# -- request bodies -------------------------------------------------------------------------------
def parse_subscription(raw: bytes) -> tuple[list[str] | None, str | None]:
    body = parse_json_body(raw)
    if body is None:
        raise errors.unprocessable("The request body may not be null")
    body = expect_object(body, "ConsumerSubscriptionRecord")
    reject_unknown_fields(body, ("topics", "topic_pattern"))
    topics = body.get("topics")
    if topics is not None:
        topics = [expect_str(t, "topics") for t in expect_list(topics, "topics")]
    pattern = expect_str(body.get("topic_pattern"), "topic_pattern")
    return topics, pattern


def parse_partitions(raw: bytes, *, required: bool = True) -> list[tuple[str, int]]:
    body = parse_json_body(raw)
    if body is None:
        if required:
            raise errors.unprocessable("The request body may not be null")
        return []
    body = expect_object(body, "ConsumerAssignmentRequest")
    reject_unknown_fields(body, ("partitions",))
    return topic_partitions(body.get("partitions"), "partitions")


def parse_commit(raw: bytes) -> list[tuple[str, int, int, str | None]] | None:
    """None = commit everything consumed; otherwise [(topic, partition, offset, metadata)]."""
    body = parse_json_body(raw)
    if body is None:
        return None
    body = expect_object(body, "ConsumerOffsetCommitRequest")
    reject_unknown_fields(body, ("offsets",))
    if body.get("offsets") is None:
        return None
    out = []
    for i, item in enumerate(expect_list(body.get("offsets"), "offsets")):
        item = expect_object(item, "TopicPartitionOffsetMetadata")
        reject_unknown_fields(item, ("topic", "partition", "offset", "metadata"))
        topic = expect_str(item.get("topic"), f"offsets[{i}].topic")
        if not topic or item.get("partition") is None or item.get("offset") is None:
            raise errors.unprocessable(f"offsets[{i}]: topic, partition and offset are required")
        partition = expect_int(item.get("partition"), f"offsets[{i}].partition")
        offset = expect_int(item.get("offset"), f"offsets[{i}].offset", long=True)
        if partition < 0 or offset < 0:
            raise errors.unprocessable(f"offsets[{i}]: partition and offset must be greater than or equal to 0")
        out.append((topic, partition, offset, expect_str(item.get("metadata"), f"offsets[{i}].metadata")))
    return out


def parse_seek(raw: bytes) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    body = parse_json_body(raw)
    if body is None:
        raise errors.unprocessable("The request body may not be null")
    body = expect_object(body, "ConsumerSeekRequest")
    reject_unknown_fields(body, ("offsets", "timestamps"))
    offsets, timestamps = [], []
    # kafka-rest's PartitionOffset/PartitionTimestamp take `int partition` and `long offset`:
    # Jackson reads a missing or null one as 0; a missing topic (or timestamp) fails the
    # AutoValue builder, a 400
    for i, item in enumerate(expect_list(body.get("offsets"), "offsets")):
        item = expect_object(item, "PartitionOffset")
        reject_unknown_fields(item, ("topic", "partition", "offset", "metadata"))
        topic = expect_str(item.get("topic"), f"offsets[{i}].topic")
        if topic is None:
            raise errors.json_error("Cannot construct instance of `PartitionOffset`, problem: Null topic")
        offsets.append((topic, expect_int(_zero_if_null(item.get("partition")), f"offsets[{i}].partition"),
                        expect_int(_zero_if_null(item.get("offset")), f"offsets[{i}].offset", long=True)))
    for i, item in enumerate(expect_list(body.get("timestamps"), "timestamps")):
        item = expect_object(item, "PartitionTimestamp")
        reject_unknown_fields(item, ("topic", "partition", "timestamp", "metadata"))
        topic = expect_str(item.get("topic"), f"timestamps[{i}].topic")
        for name in ("topic", "timestamp"):
            if item.get(name) is None:
                raise errors.json_error(f"Cannot construct instance of `PartitionTimestamp`, problem: Null {name}")
        timestamps.append((topic, expect_int(_zero_if_null(item.get("partition")), f"timestamps[{i}].partition"),
                           _timestamp_ms(item["timestamp"], f"timestamps[{i}].timestamp")))
    return offsets, timestamps


def _zero_if_null(value):
    return 0 if value is None else value


def _timestamp_ms(value, where: str) -> int:
    """Jackson's Instant: an ISO-8601 string (`2024-01-01T00:00:00Z`) or epoch seconds."""
    from datetime import datetime
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                raise ValueError("no zone")
            return int(dt.timestamp() * 1000)
        except ValueError:
            raise errors.json_error(f"Cannot deserialize value of type `Instant` from String {value!r} ({where})") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    raise errors.json_error(f"Cannot deserialize value of type `Instant` ({where})")


def check_read_format(instance: ConsumerInstance, fmt: str) -> None:
    """Jersey picks the read method by Accept; each method only reads its consumer type."""
    if fmt == instance.format:
        return
    if fmt in SCHEMA_FORMATS and instance.format in SCHEMA_FORMATS:
        return
    raise errors.consumer_format_mismatch()
