"""Metadata for a single broker without ZooKeeper, kept in one JSON file in the data dir.

Every change is written to a temporary file, fsynced and renamed over the old one, so a
crash leaves either the old or the new metadata, never a torn file.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from josef.cluster.metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo

FILE_NAME = "josef-metadata.json"
PRODUCER_ID_BLOCK = 1000


class LocalMetadataStore:
    def __init__(self, data_dir: Path, broker: BrokerInfo, cluster_id: str | None = None):
        self.path = Path(data_dir) / FILE_NAME
        self.broker = broker
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.cluster_id = state.get("cluster_id") or cluster_id or _new_cluster_id()
        self._next_producer_id = state.get("producer_id_block_end", 0)
        # dynamic broker configs by entity: "<id>" for one broker, "" for the cluster default
        self.broker_configs: dict[str, dict[str, str]] = state.get("broker_configs", {})
        self._producer_id_limit = self._next_producer_id
        topics = {name: _topic_from_json(name, t, broker.broker_id) for name, t in state.get("topics", {}).items()}
        self.snapshot = ClusterMetadata(
            cluster_id=self.cluster_id,
            controller_id=broker.broker_id,
            brokers=MappingProxyType({broker.broker_id: broker}),
            topics=MappingProxyType(topics),
        )
        self.on_change = None  # called with (old, new) snapshots after every change
        if not self.path.exists():
            self._save()

    # --- topics (the same write interface as the ZooKeeper store) ------------------------

    def create_topic(self, name: str, assignment: dict[int, tuple[int, ...]], configs: dict[str, str]) -> uuid.UUID:
        me = self.broker.broker_id
        topic = TopicInfo(
            name=name,
            topic_id=uuid.uuid4(),
            partitions=tuple(PartitionInfo(p, me, 0, (me,), (me,)) for p in range(len(assignment))),
            configs=MappingProxyType(dict(configs)),
        )
        self._replace_topic(name, topic)
        return topic.topic_id

    def add_partitions(self, name: str, new: dict[int, tuple[int, ...]]) -> None:
        old = self.snapshot.topics[name]
        me = self.broker.broker_id
        added = tuple(PartitionInfo(p, me, 0, (me,), (me,)) for p in sorted(new))
        self._replace_topic(name, TopicInfo(old.name, old.topic_id, old.partitions + added, old.configs))

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        old = self.snapshot.topics[name]
        self._replace_topic(name, TopicInfo(old.name, old.topic_id, old.partitions, MappingProxyType(dict(configs))))

    def set_broker_configs(self, entity: str, configs: dict[str, str]) -> None:
        if configs:
            self.broker_configs[entity] = dict(configs)
        else:
            self.broker_configs.pop(entity, None)
        self._save()
        self._changed(self.snapshot.with_topics(dict(self.snapshot.topics)))

    def delete_topic(self, name: str) -> None:
        topics = dict(self.snapshot.topics)
        topics.pop(name, None)
        self._changed(self.snapshot.with_topics(topics))

    def _replace_topic(self, name: str, topic: TopicInfo) -> None:
        topics = dict(self.snapshot.topics)
        topics[name] = topic
        self._changed(self.snapshot.with_topics(topics))

    def _changed(self, snapshot: ClusterMetadata) -> None:
        old, self.snapshot = self.snapshot, snapshot
        self._save()
        if self.on_change is not None:
            self.on_change(old, snapshot)

    def set_endpoint(self, host: str, port: int) -> None:
        """The address actually bound (port 0 asks the OS for one)."""
        self.broker = BrokerInfo(self.broker.broker_id, host, port, self.broker.rack)
        self.snapshot = replace(self.snapshot, brokers=MappingProxyType({self.broker.broker_id: self.broker}),
                                epoch=self.snapshot.epoch + 1)

    # --- producer ids ---------------------------------------------------------

    def next_producer_id(self) -> int:
        """Unique across restarts: ids are reserved in persisted blocks, as Kafka's controller does."""
        if self._next_producer_id >= self._producer_id_limit:
            self._producer_id_limit = self._next_producer_id + PRODUCER_ID_BLOCK
            self._save()
        pid = self._next_producer_id
        self._next_producer_id += 1
        return pid

    # --- persistence -----------------------------------------------------------

    def _save(self) -> None:
        state = {
            "version": 1,
            "cluster_id": self.cluster_id,
            "producer_id_block_end": self._producer_id_limit,
            "broker_configs": self.broker_configs,
            "topics": {
                t.name: {"topic_id": str(t.topic_id), "partitions": len(t.partitions), "configs": dict(t.configs)}
                for t in self.snapshot.topics.values()
            },
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


def _topic_from_json(name: str, t: dict, me: int) -> TopicInfo:
    return TopicInfo(
        name=name,
        topic_id=uuid.UUID(t["topic_id"]),
        partitions=tuple(PartitionInfo(p, me, 0, (me,), (me,)) for p in range(t["partitions"])),
        configs=MappingProxyType(dict(t.get("configs", {}))),
    )


def _new_cluster_id() -> str:
    """22 characters of URL-safe base64, like Kafka's cluster ids."""
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
