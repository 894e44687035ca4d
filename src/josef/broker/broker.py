"""One broker: its config, metadata, logs, request handling and listening socket."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Callable

from josef.broker.cache import LruCache
from josef.broker.config_admin import ConfigAdmin
from josef.broker.dispatcher import Dispatcher
from josef.broker.fetch_sessions import FetchSessionCache
from josef.broker.purgatory import FetchPurgatory
from josef.broker.isr import Replication
from josef.broker.metadata_writer import MetadataWriter
from josef.broker.replica_fetcher import ReplicaFetchers
from josef.broker.replica_manager import ReplicaManager
from josef.broker.server import KafkaServer
from josef.broker.topic_admin import TopicAdmin
from josef.cluster.controller import Controller
from josef.cluster.listeners import Listeners, resolve, with_bound_ports
from josef.cluster.local_store import LocalMetadataStore
from josef.cluster.metadata import BrokerInfo, ClusterMetadata, TopicInfo
from josef.cluster.zk_formats import topic_id_text
from josef.cluster.zk_store import ZkMetadataStore
from josef.config import BrokerConfig, effective_topic_configs
from josef.coordinator.service import GroupCoordinator
from josef.storage.cleaner import LogCleaner
from josef.storage.log import LogConfig
from josef.storage.manager import LogManager, new_cluster_id, stored_cluster_id

log = logging.getLogger("josef.broker")

SHUTDOWN_GRACE_S = 5.0
FLUSH_CHECK_S = 1.0
METADATA_CACHE_SIZE = 256


class Broker:
    def __init__(self, config: BrokerConfig, listeners: Listeners | None = None):
        self.static_props = dict(config.raw)  # server.properties, environment, overrides, flags
        self.config = config
        self.broker_id = config.broker_id
        self.listeners = listeners = listeners or resolve(config.raw)
        self.data_dir = Path(config.log_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.in_cluster = bool(config["zookeeper.connect"])
        if self.in_cluster:
            self.store = ZkMetadataStore(config["zookeeper.connect"], self.broker_id, listeners,
                                         config["broker.rack"], config["zookeeper.session.timeout.ms"],
                                         config["zookeeper.connection.timeout.ms"])
            self.store.connect()
            self.store.ensure_cluster_id(stored_cluster_id(self.data_dir) or config["cluster.id"] or new_cluster_id())
            self.store.watch(asyncio.get_running_loop())  # the first snapshot is complete on return
        else:
            adv = listeners.advertised[0]
            self.store = LocalMetadataStore(self.data_dir, BrokerInfo(self.broker_id, adv.host, adv.port),
                                            cluster_id=config["cluster.id"])
        self.config = self._effective_config()  # dynamic broker configs persisted by an earlier run
        self.logs = LogManager(self.data_dir, self.broker_id, self.store.cluster_id)
        topics = self.store.snapshot.topics
        self.logs.load({name: self.log_config(t) for name, t in topics.items()})
        if self.in_cluster:  # what was committed, not what this replica happens to hold
            for (topic, partition), plog in self.logs.logs():
                checkpoint = self.logs.high_watermark_checkpoint(topic, partition)
                plog.high_watermark = min(checkpoint or 0, plog.log_end_offset)
        self.purgatory = FetchPurgatory()
        self.fetch_sessions = FetchSessionCache(self.config["max.incremental.fetch.session.cache.slots"],
                                                self._partition_count)
        self._counted: tuple[object, int] = (None, 0)
        self.metadata_cache = LruCache(METADATA_CACHE_SIZE)  # encoded Metadata answers
        self.replicas = ReplicaManager(self)
        self.replication = Replication(self)
        self.metadata_writer = MetadataWriter(off_loop=self.in_cluster)  # ZooKeeper writes leave the loop
        self.topic_admin = TopicAdmin(self)
        self.coordinator = GroupCoordinator(self)
        self.config_admin = ConfigAdmin(self)
        self.dispatcher = Dispatcher(self)
        max_request = config["socket.request.max.bytes"]
        self.servers = [KafkaServer(self.dispatcher, e.host or None, e.port, max_request, e.name)
                        for e in listeners.bind]
        self._tasks: list[asyncio.Task] = []
        self._waiters: list[tuple[Callable, asyncio.Future]] = []
        self.cleaner: LogCleaner | None = None  # compaction, started with the broker
        self.controller: Controller | None = None
        self.fetchers = ReplicaFetchers(self)
        self.started = False
        self._on_metadata(ClusterMetadata("", -1, {}, {}), self.store.snapshot, first=True)
        self.store.on_change = self._on_metadata
        if not self.in_cluster:
            self.coordinator.ensure_topic()

    # --- reacting to metadata --------------------------------------------------------------

    def _on_metadata(self, old: ClusterMetadata, new: ClusterMetadata, first: bool = False) -> None:
        """Bring local logs, configs, coordinators and waiters in line with a new snapshot."""
        if new.topics is not old.topics or first:
            for name, topic in old.topics.items():
                now = new.topics.get(name)
                if now is None or now.topic_id != topic.topic_id:
                    self.close_topic_logs(name)
            if first and self.in_cluster:  # deleted, or re-created, while this broker was down
                for name in self.logs.topics():
                    topic = new.topics.get(name)
                    if topic is None or any(self.logs.topic_id(name, p) not in (None, topic_id_text(topic.topic_id))
                                            for p in self.logs.partitions(name)):
                        self.close_topic_logs(name)
            for topic in new.topics.values():
                before = old.topics.get(topic.name)
                self.open_topic_logs(topic)
                if before is not None and before.configs != topic.configs:
                    self._reconfigure_logs([topic])
        dynamic = self._effective_config()
        if dynamic.raw != self.config.raw:
            self.config = dynamic
            self._reconfigure_logs(new.topics.values())
        if self.in_cluster:
            self.replication.on_metadata(new)
        self.coordinator.on_metadata(new)
        if self.in_cluster and self.started:
            self.fetchers.on_metadata(new)
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for predicate, future in waiting:
                if future.done():
                    continue
                if predicate(new):
                    future.set_result(True)
                else:
                    self._waiters.append((predicate, future))

    def _partition_count(self) -> int:
        """Partitions in the cluster (the most a fetch session may hold), counted once per snapshot."""
        topics = self.store.snapshot.topics
        if self._counted[0] is not topics:
            self._counted = (topics, sum(len(t.partitions) for t in topics.values()))
        return self._counted[1]

    def when(self, predicate: Callable[[ClusterMetadata], bool], timeout_s: float) -> asyncio.Future:
        """A future that turns True once the metadata satisfies `predicate`, False at the deadline."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if predicate(self.store.snapshot):
            future.set_result(True)
            return future
        self._waiters.append((predicate, future))
        handle = loop.call_later(max(timeout_s, 0), lambda: future.done() or future.set_result(False))
        future.add_done_callback(lambda _: handle.cancel())
        return future

    # --- topics and their logs ----------------------------------------------------

    def topic_configs(self, topic: TopicInfo) -> dict[str, object]:
        return effective_topic_configs(self.config, dict(topic.configs))

    def log_config(self, topic: TopicInfo) -> LogConfig:
        return LogConfig.from_dict({k: str(v) for k, v in self.topic_configs(topic).items()})

    def open_topic_logs(self, topic: TopicInfo) -> None:
        """Create logs for the partitions this broker holds; drop those moved elsewhere."""
        config = None
        for p in topic.partitions:
            mine = self.broker_id in p.replicas
            present = self.logs.get(topic.name, p.partition) is not None
            if mine and not present:
                config = config or self.log_config(topic)
                self.logs.create(topic.name, p.partition, config,
                                 topic_id_text(topic.topic_id) if self.in_cluster else None)
            elif present and not mine and self.in_cluster:
                self.logs.delete_partition(topic.name, p.partition)
                if self.cleaner is not None:
                    self.cleaner.partition_deleted((topic.name, p.partition))

    def close_topic_logs(self, name: str) -> None:
        for partition in self.logs.delete_topic(name):
            if self.cleaner is not None:
                self.cleaner.partition_deleted((name, partition))

    # --- dynamic configs ------------------------------------------------------------

    def _effective_config(self) -> BrokerConfig:
        dynamic = self.store.broker_configs
        return BrokerConfig({**self.static_props, **dynamic.get("", {}), **dynamic.get(str(self.broker_id), {})})

    # metadata writes: they run where self.metadata_writer runs them; logs and the effective
    # config follow through _on_metadata, which both stores call on the loop before answering

    def alter_topic_configs(self, name: str, overrides: dict[str, str]) -> None:
        self.store.set_topic_configs(name, overrides)

    def alter_broker_configs(self, entity: str, overrides: dict[str, str]) -> None:
        self.store.set_broker_configs(entity, overrides)

    def _reconfigure_logs(self, topics) -> None:
        """New settings reach open logs at once: no restart needed."""
        for topic in topics:
            config = self.log_config(topic)
            for p in topic.partitions:
                log = self.logs.get(topic.name, p.partition)
                if log is not None:
                    log.config = config

    # --- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port of the first listener (the one `josef serve` has)."""
        return self.servers[0].port

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
        self.listeners = with_bound_ports(self.listeners, {s.listener: s.port for s in self.servers})
        if self.in_cluster:
            self.store.listeners = self.listeners
            self.store.register()  # only now can other brokers and clients reach us
            self.controller = Controller(self.store.zk, self.broker_id, lambda: self.config)
            self.controller.start()
            self.started = True
            self.fetchers.on_metadata(self.store.snapshot)
        else:
            adv = self.listeners.advertised[0]
            self.store.set_endpoint(adv.host, adv.port)
        checkpoint_s = self.config["log.flush.offset.checkpoint.interval.ms"] / 1000
        if checkpoint_s > 0:
            self._tasks.append(asyncio.create_task(self._every(checkpoint_s, self.logs.write_checkpoints)))
        # flush.ms and rolled segments: fsync them and move the recovery point, so a crash
        # re-validates only the unflushed tail
        self._tasks.append(asyncio.create_task(self._every(FLUSH_CHECK_S, self.logs.flush_logs)))
        self._tasks.append(asyncio.create_task(self._every(
            self.config["log.retention.check.interval.ms"] / 1000, self.logs.delete_old_segments)))
        if self.config["log.cleaner.enable"]:
            self.cleaner = LogCleaner(self.data_dir, self.config["log.cleaner.dedupe.buffer.size"],
                                      load_factor=self.config["log.cleaner.io.buffer.load.factor"])
            self._tasks.append(asyncio.create_task(
                self.cleaner.run(self.logs.logs, self.config["log.cleaner.backoff.ms"] / 1000)))
        self.coordinator.start_timers()
        if self.in_cluster:
            self._tasks.append(asyncio.create_task(self._every(
                self.config["replica.lag.time.max.ms"] / 2000, self.replication.shrink_lagging)))
        retention_ms = self.config["offsets.retention.minutes"] * 60_000
        self._tasks.append(asyncio.create_task(self._every(
            self.config["offsets.retention.check.interval.ms"] / 1000,
            lambda: self.coordinator.expire_offsets(retention_ms))))
        log.info("broker %d serving Kafka on %s (cluster %s)", self.broker_id,
                 ", ".join(str(e) for e in self.listeners.advertised), self.store.cluster_id)

    @staticmethod
    async def _every(interval: float, job) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                job()
            except OSError as e:
                log.error("%s failed: %s", getattr(job, "__name__", job), e)

    async def _hand_over_leadership(self) -> None:
        """Kafka's controlled shutdown: leave the live brokers but keep serving until the
        controller has moved every leadership we hold to another in-sync replica, so clients
        see NOT_LEADER_OR_FOLLOWER and move instead of timing out."""
        me = self.broker_id

        def leads_nothing_movable(m: ClusterMetadata) -> bool:
            """No partition led here still has another in-sync replica on a live broker."""
            return not any(p.leader == me and any(r != me and r in m.brokers for r in p.isr)
                           for t in m.topics.values() for p in t.partitions)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.deregister)
        except Exception as e:
            log.warning("controlled shutdown: could not deregister: %r", e)
            return
        await self.fetchers.stop()  # a follower on its way out must not rejoin any ISR
        timeout = self.config["zookeeper.session.timeout.ms"] / 1000
        if not await self.when(leads_nothing_movable, timeout):
            log.warning("controlled shutdown: leadership not moved within %.1fs", timeout)

    async def shutdown(self) -> None:
        """Stop accepting, answer what is owed, then close every log cleanly."""
        started = time.monotonic()
        if self.controller is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.controller.stop)
        if self.in_cluster and self.started and self.config["controlled.shutdown.enable"]:
            await self._hand_over_leadership()
        await self.fetchers.stop()
        for server in self.servers:
            await server.stop_accepting()
        self.purgatory.finish_all()
        await asyncio.gather(*(server.drain(SHUTDOWN_GRACE_S) for server in self.servers))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cleaner is not None:
            self.cleaner.close()
        self.coordinator.stop()
        self.metadata_writer.close()
        self.logs.close()
        if self.in_cluster:
            self.store.close()  # our registration goes with the session
        log.info("broker %d shut down cleanly in %.2fs", self.broker_id, time.monotonic() - started)
