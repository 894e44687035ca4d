"""Creating, growing and deleting topics: validation as Kafka does it, then metadata and logs.

Validation runs on the event loop against the snapshot and raises TopicError; the write then
goes to the broker's MetadataWriter and is returned as a future, which fails with TopicError.
"""
from __future__ import annotations

import logging

from josef.broker.metadata_writer import Write, failed
from josef.cluster.metadata import PartitionInfo, TopicInfo
from josef.cluster.placement import assign_replicas
from josef.cluster.zk_store import MetadataUnavailable, TopicExists
from josef.config import ConfigError, parse_topic_configs, validate_topic_name
from josef.protocol.errors import Error

log = logging.getLogger("josef.topics")

MAX_PARTITIONS = 100_000  # more than any sane single broker; guards against a client asking for 2**31


class TopicError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TopicAdmin:
    def __init__(self, broker):
        self.broker = broker

    @property
    def live_brokers(self) -> list[int]:
        return sorted(self.broker.store.snapshot.brokers)

    def create(self, name: str, num_partitions: int, replication_factor: int,
               configs: dict[str, str | None] | None = None,
               assignment: dict[int, list[int]] | None = None,
               validate_only: bool = False) -> Write | None:
        """The write creating the topic (a future of its TopicInfo); None for validate_only."""
        reason = validate_topic_name(name)
        if reason:
            raise TopicError(Error.INVALID_TOPIC_EXCEPTION, reason)
        if name in self.broker.store.snapshot.topics:
            raise TopicError(Error.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if _collides(name, self.broker.store.snapshot.topics):
            raise TopicError(Error.INVALID_TOPIC_EXCEPTION,
                             f"Topic '{name}' collides with an existing topic: '.' and '_' are interchangeable in metric names.")
        defaults = self.broker.config
        if assignment:
            num_partitions, replication_factor = self._check_assignment(assignment, num_partitions, replication_factor)
        else:
            if num_partitions == -1:
                num_partitions = defaults["num.partitions"]
            if replication_factor == -1:
                replication_factor = defaults["default.replication.factor"]
            if num_partitions <= 0 or num_partitions > MAX_PARTITIONS:
                raise TopicError(Error.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
            if replication_factor <= 0:
                raise TopicError(Error.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0.")
            if replication_factor > len(self.live_brokers):
                raise TopicError(Error.INVALID_REPLICATION_FACTOR,
                                 f"Unable to replicate the partition {replication_factor} time(s): "
                                 f"The target replication factor of {replication_factor} cannot be reached "
                                 f"because only {len(self.live_brokers)} broker(s) are registered.")
        overrides = self._check_configs(configs or {})
        if validate_only:
            return None
        if not assignment:
            assignment = assign_replicas(self.live_brokers, num_partitions, replication_factor)
        return self._write(self._create, name, assignment, overrides)

    def _create(self, name: str, assignment: dict[int, list[int]], overrides: dict[str, str]) -> TopicInfo:
        topic_id = self.broker.store.create_topic(name, assignment, overrides)
        log.info("created topic %s with %d partition(s)", name, len(assignment))
        return TopicInfo(name, topic_id, tuple(PartitionInfo(p, -1, 0, tuple(r), ())
                                               for p, r in sorted(assignment.items())), overrides)

    def _write(self, fn, *args) -> Write:
        return self.broker.metadata_writer.submit(_as_topic_error, fn, *args)

    def auto_create(self, name: str) -> Write:
        """Create `name` with the broker defaults, as Metadata and Produce do for unknown topics:
        the write, failed at once (TopicError) when the broker cannot create such a topic."""
        try:
            return self.create(name, -1, -1)
        except TopicError as e:
            return failed(e)

    def delete(self, name: str) -> Write:
        """The write marking the topic for deletion; the controller deletes it."""
        if name not in self.broker.store.snapshot.topics:
            raise TopicError(Error.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
        if not self.broker.config["delete.topic.enable"]:
            raise TopicError(Error.TOPIC_DELETION_DISABLED, "Topic deletion is disabled.")
        return self._write(self._delete, name)

    def _delete(self, name: str) -> None:
        self.broker.store.delete_topic(name)
        log.info("deleting topic %s", name)

    def add_partitions(self, name: str, count: int, assignment: list[list[int]] | None,
                       validate_only: bool = False) -> Write | None:
        """The write adding the partitions; None for validate_only."""
        topic = self.broker.store.snapshot.topics.get(name)
        if topic is None:
            raise TopicError(Error.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
        current = len(topic.partitions)
        if count < current:
            raise TopicError(Error.INVALID_PARTITIONS,
                             f"Topic currently has {current} partitions, which is higher than the requested {count}.")
        if count == current:
            raise TopicError(Error.INVALID_PARTITIONS, f"Topic already has {current} partitions.")
        if count > MAX_PARTITIONS:
            raise TopicError(Error.INVALID_PARTITIONS, f"Number of partitions {count} is too large.")
        if assignment is not None:
            if len(assignment) != count - current:
                raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT,
                                 f"Increasing the number of partitions by {count - current} but "
                                 f"{len(assignment)} assignments provided.")
            for replicas in assignment:
                self._check_replicas(replicas, topic.replication_factor)
        elif topic.replication_factor > len(self.live_brokers):
            raise TopicError(Error.INVALID_REPLICATION_FACTOR,
                             f"The replication factor {topic.replication_factor} is larger than the "
                             f"{len(self.live_brokers)} available broker(s).")
        if validate_only:
            return None
        if assignment is not None:
            new = {current + i: tuple(r) for i, r in enumerate(assignment)}
        else:  # continue Kafka's round robin where partition 0's first replica started it
            brokers = self.live_brokers
            first = topic.partitions[0].replicas[0] if topic.partitions and topic.partitions[0].replicas else brokers[0]
            start = brokers.index(first) if first in brokers else 0
            new = assign_replicas(brokers, count - current, topic.replication_factor, current, start)
        return self._write(self.broker.store.add_partitions, name, new)

    # --- validation helpers ----------------------------------------------------------

    def _check_assignment(self, assignment, num_partitions, replication_factor) -> tuple[int, int]:
        if num_partitions != -1 or replication_factor != -1:
            raise TopicError(Error.INVALID_REQUEST,
                             "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.")
        partitions = sorted(assignment)
        if partitions != list(range(len(partitions))):
            raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT,
                             "Partitions should be consecutive and start at 0.")
        sizes = {len(r) for r in assignment.values()}
        if len(sizes) != 1:
            raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT,
                             "All partitions should have the same number of replicas.")
        rf = sizes.pop()
        for replicas in assignment.values():
            self._check_replicas(replicas, rf)
        return len(partitions), rf

    def _check_replicas(self, replicas: list[int], rf: int) -> None:
        if not replicas or len(replicas) != rf:
            raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT, f"Replica assignment {replicas} must have {rf} replica(s).")
        if len(set(replicas)) != len(replicas):
            raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT, f"Duplicate brokers not allowed in replica assignment: {replicas}.")
        unknown = [b for b in replicas if b not in self.broker.store.snapshot.brokers]
        if unknown:
            raise TopicError(Error.INVALID_REPLICA_ASSIGNMENT, f"Unknown broker(s) in replica assignment: {unknown}.")

    def _check_configs(self, configs: dict[str, str | None]) -> dict[str, str]:
        try:
            parse_topic_configs(configs)
        except ConfigError as e:
            raise TopicError(Error.INVALID_CONFIG, str(e)) from None
        return {k: str(v) for k, v in configs.items()}


def _as_topic_error(fn, *args):
    """Run a metadata write (where writes run); ZooKeeper being unreachable is a retriable
    error for the client."""
    try:
        return fn(*args)
    except MetadataUnavailable as e:
        raise TopicError(Error.REQUEST_TIMED_OUT, str(e)) from None
    except TopicExists as e:
        raise TopicError(Error.TOPIC_ALREADY_EXISTS, f"Topic '{e}' already exists.") from None


def _collides(name: str, topics) -> bool:
    canonical = name.replace(".", "_")
    return any(t != name and t.replace(".", "_") == canonical for t in topics)
