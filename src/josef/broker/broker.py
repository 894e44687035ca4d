"""One broker: its config, metadata, logs, request handling and listening socket."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from josef.broker.cache import LruCache
from josef.broker.config_admin import ConfigAdmin
from josef.broker.dispatcher import Dispatcher
from josef.broker.purgatory import FetchPurgatory
from josef.broker.replica_manager import ReplicaManager
from josef.broker.server import KafkaServer
from josef.broker.topic_admin import TopicAdmin
from josef.cluster.local_store import LocalMetadataStore
from josef.cluster.metadata import BrokerInfo, TopicInfo
from josef.config import BrokerConfig, effective_topic_configs
from josef.coordinator.service import GroupCoordinator
from josef.storage.cleaner import LogCleaner
from josef.storage.log import LogConfig
from josef.storage.manager import LogManager

log = logging.getLogger("josef.broker")

SHUTDOWN_GRACE_S = 5.0
FLUSH_CHECK_S = 1.0
METADATA_CACHE_SIZE = 256


class Broker:
    def __init__(self, config: BrokerConfig, host: str, port: int, advertised_host: str | None = None):
        self.static_props = dict(config.raw)  # server.properties, environment, overrides, flags
        self.config = config
        self.broker_id = config.broker_id
        self.host, self.port = host, port
        self.advertised_host = advertised_host or host
        self.data_dir = Path(config.log_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = LocalMetadataStore(self.data_dir, BrokerInfo(self.broker_id, self.advertised_host, port),
                                        cluster_id=config["cluster.id"])
        self.config = self._effective_config()  # dynamic broker configs persisted by an earlier run
        self.logs = LogManager(self.data_dir, self.broker_id, self.store.cluster_id)
        topics = self.store.snapshot.topics
        self.logs.load({name: self.log_config(t) for name, t in topics.items()})
        for topic in topics.values():
            self.open_topic_logs(topic)
        self.purgatory = FetchPurgatory()
        self.metadata_cache = LruCache(METADATA_CACHE_SIZE)  # encoded Metadata answers
        self.replicas = ReplicaManager(self)
        self.topic_admin = TopicAdmin(self)
        self.coordinator = GroupCoordinator(self)
        self.coordinator.load()
        self.config_admin = ConfigAdmin(self)
        self.dispatcher = Dispatcher(self)
        self.server = KafkaServer(self.dispatcher, host, port, config["socket.request.max.bytes"])
        self._tasks: list[asyncio.Task] = []
        self.cleaner: LogCleaner | None = None  # compaction, started with the broker

    # --- topics and their logs ----------------------------------------------------

    def topic_configs(self, topic: TopicInfo) -> dict[str, object]:
        return effective_topic_configs(self.config, dict(topic.configs))

    def log_config(self, topic: TopicInfo) -> LogConfig:
        return LogConfig.from_dict({k: str(v) for k, v in self.topic_configs(topic).items()})

    def open_topic_logs(self, topic: TopicInfo) -> None:
        config = self.log_config(topic)
        for p in topic.partitions:
            if self.broker_id in p.replicas and self.logs.get(topic.name, p.partition) is None:
                self.logs.create(topic.name, p.partition, config)

    def close_topic_logs(self, name: str) -> None:
        for partition in self.logs.delete_topic(name):
            if self.cleaner is not None:
                self.cleaner.partition_deleted((name, partition))

    # --- dynamic configs ------------------------------------------------------------

    def _effective_config(self) -> BrokerConfig:
        dynamic = self.store.broker_configs
        return BrokerConfig({**self.static_props, **dynamic.get("", {}), **dynamic.get(str(self.broker_id), {})})

    def alter_topic_configs(self, name: str, overrides: dict[str, str]) -> None:
        self._reconfigure_logs([self.store.set_topic_configs(name, overrides)])

    def alter_broker_configs(self, entity: str, overrides: dict[str, str]) -> None:
        self.store.set_broker_configs(entity, overrides)
        self.config = self._effective_config()
        self._reconfigure_logs(self.store.snapshot.topics.values())

    def _reconfigure_logs(self, topics) -> None:
        """New settings reach open logs at once: no restart needed."""
        for topic in topics:
            config = self.log_config(topic)
            for p in topic.partitions:
                log = self.logs.get(topic.name, p.partition)
                if log is not None:
                    log.config = config

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self.server.start()
        self.port = self.server.port
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
        retention_ms = self.config["offsets.retention.minutes"] * 60_000
        self._tasks.append(asyncio.create_task(self._every(
            self.config["offsets.retention.check.interval.ms"] / 1000,
            lambda: self.coordinator.expire_offsets(retention_ms))))
        log.info("broker %d serving Kafka on %s:%d (cluster %s)", self.broker_id, self.host, self.port,
                 self.store.cluster_id)

    @staticmethod
    async def _every(interval: float, job) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                job()
            except OSError as e:
                log.error("%s failed: %s", getattr(job, "__name__", job), e)

    async def shutdown(self) -> None:
        """Stop accepting, answer what is owed, then close every log cleanly."""
        started = time.monotonic()
        await self.server.stop_accepting()
        self.purgatory.finish_all()
        await self.server.drain(SHUTDOWN_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cleaner is not None:
            self.cleaner.close()
        self.coordinator.stop()
        self.logs.close()
        log.info("broker %d shut down cleanly in %.2fs", self.broker_id, time.monotonic() - started)
