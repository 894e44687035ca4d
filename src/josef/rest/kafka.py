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
_ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner picks
_NO_EXTRA: dict = {}
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
    # kafka-rest's v2 produce classifies a failed record itself (not with the exception mapper)
    return {"partition": None, "offset": None, "error_code": errors.producer_error_code(result[1]),
            "error": result[2]}


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
        produce = self.producer.produce
        on_delivery = batch.on_delivery
        # positional arguments, no per-record kwargs dict: a third less time per record
        for index, record in enumerate(records, first):
            partition = record[0]
            if partition is None:
                partition = _ANY_PARTITION
            callback = functools.partial(on_delivery, index)
            extra = _NO_EXTRA
            if len(record) > 3 and (record[3] or record[4] is not None):
                extra = {"headers": record[3] or None, "timestamp": record[4] or 0}
            deadline = None
            while True:
                try:
                    produce(topic, record[2], record[1], partition, on_delivery=callback, **extra)
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
        if not ops:
            return  # nothing to change (the Admin client refuses to send an empty list)
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

    def group_offsets(self, group: str) -> list[tuple[str, int, int | None]]:
        """[(topic, partition, committed offset or None)] as the group's OffsetFetch lists them
        (None: listed without a committed offset, as the Java Admin client's null)."""
        from confluent_kafka import ConsumerGroupTopicPartitions
        futures = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                         request_timeout=self.timeout)
        return sorted((tp.topic, tp.partition, tp.offset if tp.error is None and tp.offset >= 0 else None)
                      for tp in self._admin_result(futures[group]).topic_partitions)

    def group_lags(self, group: str, offsets: list | None = None) -> list[tuple[str, int, int, int]]:
        """[(topic, partition, committed offset, end offset)] of a group's committed partitions;
        `offsets` is group_offsets(group) when the caller has it already. The end offsets are
        read committed, as kafka-rest's lag managers ask for them; a partition whose end offset
        cannot be read is left out, as they leave out a partition without one."""
        from confluent_kafka import IsolationLevel, TopicPartition
        from confluent_kafka.admin import OffsetSpec
        committed = [(t, p, o) for t, p, o in (self.group_offsets(group) if offsets is None else offsets)
                     if o is not None]
        if not committed:
            return []
        ends = self.admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p, _ in committed},
                                       isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=self.timeout)
        end_of = {}
        for tp, fut in ends.items():
            try:
                end_of[(tp.topic, tp.partition)] = fut.result(self.timeout + 1).offset
            except Exception as e:
                log.debug("end offset of %s-%d for group %s: %s", tp.topic, tp.partition, group, e)
        return sorted((t, p, o, end_of[(t, p)]) for t, p, o in committed if (t, p) in end_of)

    # -- v3 broker configs, reassignments, ACLs ------------------------------------------------
    # librdkafka lacks what some of these need (the cluster-wide `<default>` broker entity,
    # ListPartitionReassignments, duplicate config synonyms): those go over the wire with
    # josef's own client, to the broker Kafka expects (the broker itself for its configs,
    # the controller for reassignments). The wire client speaks PLAINTEXT only; where a
    # broker cannot be reached that way, per-broker configs fall back to librdkafka.

    def _bootstrap_addresses(self) -> list[tuple[str, int]]:
        out = []
        for item in self.settings.bootstrap_servers.split(","):
            host, _, port = item.strip().rpartition(":")
            if host and port.isdigit():
                out.append((host.strip("[]"), int(port)))
        return out

    def _addresses(self, broker_id: int | None = None, controller: bool = False) -> list[tuple[str, int]]:
        """Where to send a request: broker `broker_id` only, else the controller first (when
        asked) and then every known broker and the bootstrap servers."""
        _, controller_id, brokers = self.cluster()
        by_id = {b[0]: (b[1], b[2]) for b in brokers}
        if broker_id is not None:
            return [by_id[broker_id]] if broker_id in by_id else []
        first = [by_id[controller_id]] if controller and controller_id in by_id else []
        rest = [by_id[i] for i in sorted(by_id)] + self._bootstrap_addresses()
        return list(dict.fromkeys(first + rest))

    def _wire_request(self, addresses: list[tuple[str, int]], api_key: int, make):
        """The response of the first broker in `addresses` that answers; `make(version)` builds
        the request for the version negotiated with it."""
        from josef.client.wire import KafkaConnection, WireError, client_versions
        protocol = self.settings.client_config("admin").get("security.protocol", "plaintext")
        if protocol.lower() != "plaintext":
            raise _WireUnreachable(f"this request needs a PLAINTEXT listener (security.protocol is {protocol})")
        last = "no broker address"
        for host, port in addresses:
            try:
                with KafkaConnection(host, port, timeout=self.timeout, client_id="josef-rest-admin") as conn:
                    versions = conn.api_versions()
                    lo, hi = versions.get(api_key, (0, -1))
                    ours = client_versions(api_key)
                    if min(hi, ours.stop - 1) < max(lo, ours.start):
                        raise _ApiUnsupported(api_key)
                    return conn.request(make(min(hi, ours.stop - 1)))
            except WireError as e:
                last = str(e)
        raise _WireUnreachable(last)

    # broker configs --------------------------------------------------------------------------
    def broker_configs(self, broker_id: int | None) -> list["ConfigInfo"]:
        """Configs of broker `broker_id`, or the cluster-wide dynamic defaults (`None`), sorted
        by name, with every synonym."""
        from josef.protocol.entities import to_entity
        from josef.protocol.kio_codec import request_class
        name = "" if broker_id is None else str(broker_id)

        def make(version):
            return to_entity(request_class(32, version), {
                "resources": [{"resource_type": _BROKER_RESOURCE, "resource_name": name,
                               "configuration_keys": None}],
                "include_synonyms": True, "include_documentation": False})
        try:
            response = self._wire_request(self._addresses(broker_id), 32, make)
        except _WireUnreachable as e:
            if broker_id is None:
                raise errors.RestError(500, errors.KAFKA_ERROR, f"Kafka error: {e}") from None
            return self._broker_configs_librdkafka(broker_id)
        except _ApiUnsupported as e:
            raise e.rest_error() from None
        result = response.results[0]
        code = int(result.error_code)
        if code:
            raise _kafka_code_error(code, result.error_message)
        out = []
        for c in result.configs:
            source = _config_source(getattr(c, "config_source", None), getattr(c, "is_default", False))
            out.append(ConfigInfo(c.name, c.value, source == "DEFAULT_CONFIG", bool(c.read_only),
                                  bool(c.is_sensitive), source,
                                  [(s.name, s.value, _config_source(s.source, False))
                                   for s in (getattr(c, "synonyms", None) or ())]))
        return sorted(out, key=lambda info: info.name)

    def _broker_configs_librdkafka(self, broker_id: int) -> list["ConfigInfo"]:
        from confluent_kafka.admin import ConfigResource
        futures = self.admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, str(broker_id))],
                                              request_timeout=self.timeout)
        entries = self._admin_result(next(iter(futures.values())))
        return [ConfigInfo(e.name, e.value, bool(e.is_default), bool(e.is_read_only), bool(e.is_sensitive),
                           _config_source(e.source, False),
                           [(s.name, s.value, _config_source(s.source, False)) for s in (e.synonyms or {}).values()])
                for e in (entries[k] for k in sorted(entries))]

    def alter_broker_configs(self, broker_id: int | None, ops: list[tuple[str, str | None, str]],
                             validate_only: bool = False) -> None:
        """Incremental SET/DELETE on broker `broker_id` or on the cluster-wide default (`None`)."""
        from josef.protocol.entities import to_entity
        from josef.protocol.kio_codec import request_class
        name = "" if broker_id is None else str(broker_id)
        op_codes = {"SET": 0, "DELETE": 1}

        def make(version):
            return to_entity(request_class(44, version), {
                "validate_only": validate_only,
                "resources": [{"resource_type": _BROKER_RESOURCE, "resource_name": name,
                               "configs": [{"name": k, "config_operation": op_codes[op], "value": v}
                                           for k, v, op in ops]}]})
        try:
            response = self._wire_request(self._addresses(broker_id), 44, make)
        except _WireUnreachable as e:
            if broker_id is None:
                raise errors.RestError(500, errors.KAFKA_ERROR, f"Kafka error: {e}") from None
            return self._alter_broker_configs_librdkafka(broker_id, ops, validate_only)
        except _ApiUnsupported as e:
            raise e.rest_error() from None
        for r in response.responses:
            code = int(r.error_code)
            if code:
                raise _kafka_code_error(code, r.error_message)

    def _alter_broker_configs_librdkafka(self, broker_id: int, ops, validate_only: bool) -> None:
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
        if not ops:
            return  # nothing to change (the Admin client refuses to send an empty list)
        entries = [ConfigEntry(k, v, incremental_operation=getattr(AlterConfigOpType, op)) for k, v, op in ops]
        resource = ConfigResource(ConfigResource.Type.BROKER, str(broker_id), incremental_configs=entries)
        futures = self.admin.incremental_alter_configs([resource], request_timeout=self.timeout,
                                                       validate_only=validate_only)
        self._admin_result(next(iter(futures.values())))

    # reassignments ---------------------------------------------------------------------------
    def reassignments(self) -> list[tuple[str, int, list[int], list[int]]]:
        """Ongoing partition reassignments: [(topic, partition, adding, removing)], sorted."""
        from josef.protocol.entities import to_entity
        from josef.protocol.kio_codec import request_class

        def make(version):
            return to_entity(request_class(46, version), {"timeout": int(self.timeout * 1000), "topics": None})
        for attempt in range(3):
            try:
                response = self._wire_request(self._addresses(controller=True), 46, make)
            except _WireUnreachable as e:
                raise errors.RestError(500, errors.KAFKA_ERROR, f"Kafka error: {e}") from None
            except _ApiUnsupported as e:
                raise e.rest_error() from None
            code = int(response.error_code)
            if code == _NOT_CONTROLLER and attempt < 2:
                time.sleep(0.2)  # the controller moved: ask again with fresh metadata
                continue
            if code:
                raise _kafka_code_error(code, response.error_message)
            break
        out = []
        for t in response.topics:
            for p in t.partitions:
                out.append((t.name, int(p.partition_index), [int(b) for b in p.adding_replicas],
                            [int(b) for b in p.removing_replicas]))
        return sorted(out)

    # ACLs ------------------------------------------------------------------------------------
    def describe_acls(self, acl_filter: "AclSpec") -> list["AclSpec"]:
        from confluent_kafka import KafkaException
        try:
            future = self.admin.describe_acls(acl_filter.to_filter(), request_timeout=self.timeout)
            bindings = future.result(self.timeout + 1)
        except KafkaException as e:
            raise _acl_error(e.args[0]) from None
        return [AclSpec.from_binding(b) for b in bindings or ()]

    def create_acls(self, acls: list["AclSpec"]) -> None:
        from confluent_kafka import KafkaException
        if not acls:
            return
        try:
            futures = self.admin.create_acls([a.to_binding() for a in acls], request_timeout=self.timeout)
            for future in futures.values():
                future.result(self.timeout + 1)
        except KafkaException as e:
            raise _acl_error(e.args[0]) from None

    def delete_acls(self, acl_filter: "AclSpec") -> list["AclSpec"]:
        from confluent_kafka import KafkaException
        try:
            futures = self.admin.delete_acls([acl_filter.to_filter()], request_timeout=self.timeout)
            deleted = []
            for future in futures.values():
                deleted.extend(future.result(self.timeout + 1) or ())
        except KafkaException as e:
            raise _acl_error(e.args[0]) from None
        return [AclSpec.from_binding(b) for b in deleted]


# -- helpers of the v3 admin resources ------------------------------------------------------------
_BROKER_RESOURCE = 4  # ConfigResource type BROKER on the wire
_NOT_CONTROLLER = 41
# DescribeConfigs' config_source ids and the names kafka-rest shows (ConfigSource)
_CONFIG_SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
                   3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG",
                   6: "DYNAMIC_BROKER_LOGGER_CONFIG", 8: "DYNAMIC_GROUP_CONFIG"}
_API_NAMES = {32: "DESCRIBE_CONFIGS", 44: "INCREMENTAL_ALTER_CONFIGS", 46: "LIST_PARTITION_REASSIGNMENTS"}
NO_AUTHORIZER = "No Authorizer is configured on the broker"


def _config_source(source, is_default: bool) -> str:
    if source is None:  # DescribeConfigs v0 has only is_default
        return "DEFAULT_CONFIG" if is_default else "UNKNOWN"
    return _CONFIG_SOURCES.get(int(getattr(source, "value", source)), "UNKNOWN")


@dataclass
class ConfigInfo:
    name: str
    value: str | None
    is_default: bool
    is_read_only: bool
    is_sensitive: bool
    source: str
    synonyms: list[tuple[str, str | None, str]]


class _WireUnreachable(Exception):
    pass


class _ApiUnsupported(Exception):
    def __init__(self, api_key: int):
        super().__init__(api_key)
        self.api_key = api_key

    def rest_error(self) -> errors.RestError:
        # the Java client's UnsupportedVersionException, which kafka-rest answers 400 40002
        name = _API_NAMES.get(self.api_key, str(self.api_key))
        return errors.RestError(400, errors.KAFKA_BAD_REQUEST, f"The node does not support {name}")


def _kafka_code_error(code: int, message: str | None) -> errors.RestError:
    """A Kafka protocol error code as kafka-rest answers the matching Java exception."""
    from confluent_kafka import KafkaError
    err = KafkaError(code)
    status, rest_code = errors.kafka_error_code(err)
    return errors.RestError(status, rest_code, message or err.str())


def _acl_error(err) -> errors.RestError:
    """Kafka without an authorizer answers SECURITY_DISABLED, kafka-rest 400 40002; a broker
    without the ACL APIs at all (josef) is answered the same way."""
    if err.name() in ("SECURITY_DISABLED", "_UNSUPPORTED_FEATURE", "UNSUPPORTED_VERSION"):
        return errors.RestError(400, errors.KAFKA_BAD_REQUEST, NO_AUTHORIZER)
    return errors.from_kafka_error(err)


# Kafka's enum ids (the wire values), under kafka-rest's names
ACL_RESOURCE_TYPES = {"UNKNOWN": 0, "ANY": 1, "TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5,
                      "DELEGATION_TOKEN": 6}
ACL_PATTERN_TYPES = {"UNKNOWN": 0, "ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
ACL_OPERATIONS = {"UNKNOWN": 0, "ANY": 1, "ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7,
                  "DESCRIBE": 8, "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11,
                  "IDEMPOTENT_WRITE": 12}
ACL_PERMISSIONS = {"UNKNOWN": 0, "ANY": 1, "DENY": 2, "ALLOW": 3}


def _enum_name(table: dict[str, int], value) -> str:
    number = int(getattr(value, "value", value))
    return next((k for k, v in table.items() if v == number), "UNKNOWN")


@dataclass
class AclSpec:
    """An ACL binding or filter with kafka-rest's enum names; None matches anything in a filter."""
    resource_type: str
    resource_name: str | None
    pattern_type: str
    principal: str | None
    host: str | None
    operation: str
    permission: str

    def _args(self):
        from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
        try:
            return (ResourceType(ACL_RESOURCE_TYPES[self.resource_type]), self.resource_name,
                    ResourcePatternType(ACL_PATTERN_TYPES[self.pattern_type]), self.principal, self.host,
                    AclOperation(ACL_OPERATIONS[self.operation]), AclPermissionType(ACL_PERMISSIONS[self.permission]))
        except ValueError as e:  # DELEGATION_TOKEN: librdkafka has no such resource type
            raise errors.RestError(400, errors.KAFKA_BAD_REQUEST, f"Kafka error: {e}") from None

    def to_filter(self):
        from confluent_kafka.admin import AclBindingFilter
        return AclBindingFilter(*self._args())

    def to_binding(self):
        from confluent_kafka.admin import AclBinding
        try:
            return AclBinding(*self._args())
        except (ValueError, TypeError) as e:
            raise errors.RestError(400, 400, f"Bad Request: {e}") from None

    @classmethod
    def from_binding(cls, b) -> "AclSpec":
        return cls(_enum_name(ACL_RESOURCE_TYPES, b.restype), b.name, _enum_name(ACL_PATTERN_TYPES,
                   b.resource_pattern_type), b.principal, b.host, _enum_name(ACL_OPERATIONS, b.operation),
                   _enum_name(ACL_PERMISSIONS, b.permission_type))
