"""The REST Proxy's Kafka side: one AdminClient and one Producer (librdkafka) shared by all
requests, and the thread pool that runs their blocking calls.

Nothing here may run on the event loop: every method is blocking and is called through
`KafkaBackend.run` (an executor of its own, so a busy proxy never starves the default
executor of a broker sharing the loop). Produce is flush-free: records are enqueued on the
shared Producer and a poller thread turns delivery reports into the results of an asyncio
future, one wake-up of the loop per HTTP request.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from josef.rest import errors
from josef.rest.settings import RestSettings

log = logging.getLogger("josef.rest")

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
_METADATA_TTL = 5.0  # seconds a produce-side partition count is trusted before re-asking


@dataclass
class PartitionInfo:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]

    def v2(self) -> dict:
        return {"partition": self.partition, "leader": self.leader,
                "replicas": [{"broker": r, "leader": r == self.leader, "in_sync": r in self.isr}
                             for r in self.replicas]}


@dataclass
class TopicInfo:
    name: str
    internal: bool
    partitions: list[PartitionInfo]

    def partition(self, p: int) -> PartitionInfo | None:
        for info in self.partitions:
            if info.partition == p:
                return info
        return None


class ProduceBatch:
    """Delivery results of one HTTP produce request, resolved into one asyncio future.

    A result is `("ok", partition, offset, timestamp_ms)` or `("error", KafkaError or None,
    message)`; the v2 and v3 resources render them in their own shapes."""

    __slots__ = ("results", "remaining", "future", "loop", "lock")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future):
        self.results: list[tuple | None] = [None] * count
        self.remaining = count
        self.loop = loop
        self.future = future
        self.lock = threading.Lock()
        if count == 0:
            loop.call_soon_threadsafe(_resolve, future, self.results)

    def set(self, index: int, result: tuple) -> None:
        with self.lock:
            if self.results[index] is not None:
                return
            self.results[index] = result
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.loop.call_soon_threadsafe(_resolve, self.future, self.results)

    def on_delivery(self, index: int, err, msg) -> None:
        if err is not None:
            self.set(index, ("error", err, err.str()))
        else:
            self.set(index, ("ok", msg.partition(), msg.offset(), msg.timestamp()[1]))


def _resolve(future: asyncio.Future, results) -> None:
    if not future.done():
        future.set_result(results)


def v2_result(result: tuple) -> dict:
    """A delivery result as a v2 PartitionOffset."""
    if result[0] == "ok":
        return {"partition": result[1], "offset": result[2], "error_code": None, "error": None}
    err = result[1]
    code = errors.kafka_error_code(err)[1] if err is not None else errors.KAFKA_RETRIABLE_ERROR
    return {"partition": None, "offset": None, "error_code": code, "error": result[2]}


def _kafka_exception_error(exc) -> errors.RestError:
    err = exc.args[0] if exc.args else None
    if hasattr(err, "code"):
        return errors.from_kafka_error(err)
    return errors.RestError(500, errors.KAFKA_ERROR, f"Kafka error: {exc}")


class KafkaBackend:
    def __init__(self, settings: RestSettings):
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        self.settings = settings
        self.timeout = settings.client_timeout_ms / 1000.0
        admin_conf = {"client.id": "josef-rest-admin", **settings.client_config("admin")}
        producer_conf = {
            "client.id": "josef-rest-producer",
            # Java's default partitioner, so a key lands where a Java client would put it
            "partitioner": "murmur2_random",
            "linger.ms": 1,
            **settings.client_config("producer"),
        }
        self.admin = AdminClient(admin_conf)
        self.producer = Producer(producer_conf)
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="josef-rest")
        self._partition_counts: dict[str, tuple[float, int]] = {}
        self._running = True
        self._poller = threading.Thread(target=self._poll_loop, name="josef-rest-producer-poll", daemon=True)
        self._poller.start()

    # -- plumbing -----------------------------------------------------------------------------
    async def run(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def _poll_loop(self) -> None:
        while self._running:
            try:
                self.producer.poll(0.1)
            except Exception:  # a failing callback must not kill delivery reports
                log.exception("producer poll failed")

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (bounded), then stop the poller and the pool."""
        try:
            self.producer.flush(timeout)
        except Exception:
            log.exception("producer flush failed")
        self._running = False
        self._poller.join(timeout=2)
        self.executor.shutdown(wait=False, cancel_futures=True)
        # drop the librdkafka handles now rather than whenever the app is collected, so they
        # stop talking to the cluster at once
        self.producer = None
        self.admin = None

    # -- metadata -----------------------------------------------------------------------------
    def broker_ids(self) -> list[int]:
        from confluent_kafka import KafkaException
        try:
            cluster = self.admin.describe_cluster(request_timeout=self.timeout).result(self.timeout + 1)
            return sorted(node.id for node in cluster.nodes)
        except KafkaException as e:
            raise _kafka_exception_error(e) from None
        except Exception:
            # older brokers without DescribeCluster: the Metadata response lists them too
            md = self._list_topics()
            return sorted(md.brokers)

    def _list_topics(self):
        from confluent_kafka import KafkaException
        try:
            return self.admin.list_topics(timeout=self.timeout)
        except KafkaException as e:
            raise _kafka_exception_error(e) from None

    def topic_names(self) -> list[str]:
        md = self._list_topics()
        return sorted(name for name, t in md.topics.items()
                      if name not in INTERNAL_TOPICS and t.error is None)

    def describe_topic(self, name: str) -> TopicInfo | None:
        """The topic's partitions, or None when it does not exist (never auto-creates it)."""
        from confluent_kafka import KafkaException, TopicCollection
        if not name:
            return None
        try:
            futures = self.admin.describe_topics(TopicCollection([name]), request_timeout=self.timeout)
            desc = futures[name].result(self.timeout + 1)
        except KafkaException as e:
            err = e.args[0]
            if err.name() in ("UNKNOWN_TOPIC_OR_PART", "TOPIC_EXCEPTION", "INVALID_TOPIC_EXCEPTION", "_UNKNOWN_TOPIC"):
                return None
            raise errors.from_kafka_error(err) from None
        except (ValueError, TypeError):
            return None
        parts = []
        for p in desc.partitions:
            leader = p.leader.id if p.leader is not None else -1
            parts.append(PartitionInfo(p.id, leader, [r.id for r in p.replicas], [r.id for r in p.isr]))
        parts.sort(key=lambda info: info.partition)
        return TopicInfo(desc.name, bool(desc.is_internal), parts)

    def topic_configs(self, name: str) -> dict[str, str | None]:
        """All configs of a topic, `{}` when the broker does not answer DescribeConfigs."""
        from confluent_kafka.admin import ConfigResource
        try:
            futures = self.admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)],
                                                  request_timeout=self.timeout)
            entries = next(iter(futures.values())).result(self.timeout + 1)
            return {key: entry.value for key, entry in sorted(entries.items())}
        except Exception as e:  # unsupported API, timeout, ...: configs are best effort in v2
            log.debug("DescribeConfigs for %s failed: %s", name, e)
            return {}

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec
        tp = TopicPartition(topic, partition)
        try:
            earliest = self.admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=self.timeout)
            latest = self.admin.list_offsets({tp: OffsetSpec.latest()}, request_timeout=self.timeout)
            begin = next(iter(earliest.values())).result(self.timeout + 1).offset
            end = next(iter(latest.values())).result(self.timeout + 1).offset
        except KafkaException as e:
            err = e.args[0]
            if err.name() in ("_UNKNOWN_PARTITION", "UNKNOWN_TOPIC_OR_PART"):
                raise errors.partition_not_found() from None
            raise errors.from_kafka_error(err) from None
        return begin, end

    # -- produce ------------------------------------------------------------------------------
    def partition_count(self, topic: str) -> int | None:
        """Partitions of `topic` as the producer sees them, asking the cluster (which may
        auto-create the topic, as for any producer) when the cached count is old."""
        now = time.monotonic()
        cached = self._partition_counts.get(topic)
        if cached and cached[0] > now:
            return cached[1]
        return self._refresh_partition_count(topic)

    def _refresh_partition_count(self, topic: str) -> int | None:
        from confluent_kafka import KafkaException
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                md = self.producer.list_topics(topic=topic, timeout=self.timeout)
            except KafkaException as e:
                raise _kafka_exception_error(e) from None
            except (ValueError, TypeError):
                return None
            t = md.topics.get(topic)
            if t is not None and t.partitions:
                break
            name = t.error.name() if t is not None and t.error is not None else ""
            if name == "TOPIC_AUTHORIZATION_FAILED":
                raise errors.from_kafka_error(t.error)
            # a topic being auto-created answers LEADER_NOT_AVAILABLE for a moment
            if name != "LEADER_NOT_AVAILABLE" or time.monotonic() > deadline:
                self._partition_counts.pop(topic, None)
                return None
            time.sleep(0.05)
        count = len(t.partitions)
        self._partition_counts[topic] = (time.monotonic() + _METADATA_TTL, count)
        return count

    def check_partitions(self, topic: str, partitions: set[int]) -> None:
        """404 40401 if the topic does not exist, 40402 if a requested partition does not."""
        count = self.partition_count(topic)
        if count is None:
            raise errors.topic_not_found()
        if partitions and max(partitions) >= count:
            count = self._refresh_partition_count(topic)  # partitions may have been added
            if count is None:
                raise errors.topic_not_found()
        if any(p < 0 or p >= count for p in partitions):
            raise errors.partition_not_found()

    def enqueue(self, topic: str, records: list[tuple], batch: ProduceBatch, first: int = 0) -> None:
        """Hand records `(partition, key, value[, headers, timestamp_ms])` to the shared
        producer; delivery reports complete `batch` at indexes first, first+1, ..."""
        from confluent_kafka import KafkaException
        producer = self.producer
        for index, record in enumerate(records, first):
            partition, key, value = record[0], record[1], record[2]
            extra = {}
            if partition is not None:
                extra["partition"] = partition
            if len(record) > 3:
                if record[3]:
                    extra["headers"] = record[3]
                if record[4] is not None:
                    extra["timestamp"] = record[4]
            callback = functools.partial(batch.on_delivery, index)
            deadline = None
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=callback, **extra)
                    break
                except BufferError:
                    # local queue full: wait for deliveries to make room (bounded)
                    now = time.monotonic()
                    deadline = deadline or now + 30.0
                    if now > deadline:
                        batch.set(index, ("error", None, "Local: Queue full"))
                        break
                    time.sleep(0.005)
                except KafkaException as e:
                    batch.set(index, ("error", e.args[0], e.args[0].str()))
                    break

    # -- v3 admin -----------------------------------------------------------------------------
    def _admin_result(self, future, not_found=None):
        from confluent_kafka import KafkaException
        try:
            return future.result(self.timeout + 1)
        except KafkaException as e:
            err = e.args[0]
            if not_found is not None and err.name() in ("UNKNOWN_TOPIC_OR_PART", "TOPIC_EXCEPTION",
                                                        "_UNKNOWN_TOPIC", "GROUP_ID_NOT_FOUND"):
                raise not_found from None
            raise errors.from_kafka_error(err) from None

    def cluster(self):
        """(cluster id, controller id or None, [(broker id, host, port, rack)])."""
        desc = self._admin_result(self.admin.describe_cluster(request_timeout=self.timeout))
        brokers = sorted((n.id, n.host, n.port, n.rack) for n in desc.nodes)
        controller = desc.controller.id if desc.controller is not None else None
        return desc.cluster_id or "", controller, brokers

    def create_topic(self, name: str, partitions: int | None, replication: int | None,
                     configs: dict[str, str], assignments: dict[int, list[int]] | None,
                     validate_only: bool) -> None:
        from confluent_kafka.admin import NewTopic
        if assignments:
            # confluent-kafka wants the count alongside an assignment (and sends -1 on the wire)
            topic = NewTopic(name, num_partitions=len(assignments),
                             replica_assignment=[assignments[p] for p in sorted(assignments)], config=configs)
        else:
            topic = NewTopic(name, num_partitions=partitions if partitions is not None else -1,
                             replication_factor=replication if replication is not None else -1, config=configs)
        futures = self.admin.create_topics([topic], operation_timeout=self.timeout,
                                           request_timeout=self.timeout, validate_only=validate_only)
        self._admin_result(futures[name])

    def delete_topic(self, name: str, not_found) -> None:
        futures = self.admin.delete_topics([name], operation_timeout=self.timeout, request_timeout=self.timeout)
        self._admin_result(futures[name], not_found)
        self._partition_counts.pop(name, None)

    def create_partitions(self, name: str, total: int, not_found) -> None:
        from confluent_kafka.admin import NewPartitions
        futures = self.admin.create_partitions([NewPartitions(name, total)], operation_timeout=self.timeout,
                                               request_timeout=self.timeout)
        self._admin_result(futures[name], not_found)
        self._partition_counts.pop(name, None)

    def config_entries(self, name: str, not_found) -> list:
        """ConfigEntry objects (with source, synonyms, flags) of a topic, sorted by name."""
        from confluent_kafka.admin import ConfigResource
        futures = self.admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)],
                                              request_timeout=self.timeout)
        entries = self._admin_result(next(iter(futures.values())), not_found)
        return [entries[k] for k in sorted(entries)]

    def alter_topic_configs(self, name: str, ops: list[tuple[str, str | None, str]], validate_only: bool,
                            not_found) -> None:
        """Incremental SET/DELETE of topic configs."""
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
        entries = [ConfigEntry(key, value, incremental_operation=getattr(AlterConfigOpType, op))
                   for key, value, op in ops]
        resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)
        futures = self.admin.incremental_alter_configs([resource], request_timeout=self.timeout,
                                                       validate_only=validate_only)
        self._admin_result(next(iter(futures.values())), not_found)

    def consumer_groups(self) -> list:
        result = self._admin_result(self.admin.list_consumer_groups(request_timeout=self.timeout))
        return sorted(result.valid, key=lambda g: g.group_id)

    def describe_group(self, group: str, not_found):
        futures = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)
        desc = self._admin_result(futures[group], not_found)
        if desc is None or getattr(desc.state, "name", "") == "DEAD":
            raise not_found
        return desc

    def group_lags(self, group: str) -> list[tuple[str, int, int, int]]:
        """[(topic, partition, committed offset, end offset)] of a group's committed partitions."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec
        futures = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                         request_timeout=self.timeout)
        committed = [tp for tp in self._admin_result(futures[group]).topic_partitions
                     if tp.error is None and tp.offset >= 0]
        if not committed:
            return []
        ends = self.admin.list_offsets({TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()
                                        for tp in committed}, request_timeout=self.timeout)
        end_of = {}
        for tp, fut in ends.items():
            try:
                end_of[(tp.topic, tp.partition)] = fut.result(self.timeout + 1).offset
            except Exception:
                end_of[(tp.topic, tp.partition)] = tp.offset
        return sorted((tp.topic, tp.partition, tp.offset, end_of.get((tp.topic, tp.partition), tp.offset))
                      for tp in committed)
