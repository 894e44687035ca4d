"""The cluster's metadata as one immutable snapshot, swapped whole when anything changes.

Readers (every request handler) take `store.snapshot` once and never lock; writers build
a new snapshot and replace the reference.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class BrokerInfo:
    broker_id: int
    host: str
    port: int
    rack: str | None = None
    endpoints: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # listener -> (host, port)

    def endpoint(self, listener: str | None) -> tuple[str, int] | None:
        """Where clients that came in on `listener` reach this broker; None if it has no such listener."""
        if not self.endpoints:
            return self.host, self.port
        return self.endpoints.get(listener) if listener else (self.host, self.port)


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    adding_replicas: tuple[int, ...] = ()  # while a reassignment runs
    removing_replicas: tuple[int, ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionInfo, ...]
    configs: Mapping[str, str] = field(default_factory=dict)  # overrides only, as strings

    @property
    def internal(self) -> bool:
        return self.name.startswith("__")

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


@dataclass(frozen=True)
class ClusterMetadata:
    cluster_id: str
    controller_id: int
    brokers: Mapping[int, BrokerInfo]
    topics: Mapping[str, TopicInfo]
    epoch: int = 0  # bumped on every change: cache keys derive from it

    def with_topics(self, topics: dict[str, TopicInfo]) -> "ClusterMetadata":
        return replace(self, topics=MappingProxyType(dict(topics)), epoch=self.epoch + 1)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return next((t for t in self.topics.values() if t.topic_id == topic_id), None)
