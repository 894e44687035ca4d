"""The data directory: partition logs, checkpoints, identity, clean-shutdown marker (Kafka's LogManager).

Layout, as Kafka's `log.dirs` entry:

    meta.properties                      version=0, broker.id=, cluster.id=
    .lock                                flock'd while a broker uses the directory
    .kafka_cleanshutdown                 present only between a clean close and the next start
    recovery-point-offset-checkpoint     "0", count, "topic partition offset" lines
    log-start-offset-checkpoint          (same format)
    replication-offset-checkpoint        high watermarks (same format)
    <topic>-<partition>/                 one PartitionLog each
    <topic>-<partition>.<hex>-delete/    a deleted partition on its way out

Synchronous and free of asyncio: the broker calls it from its event loop, and nothing here
blocks for long except close() and the flushes the broker schedules.
"""
from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

from josef.storage.checkpoint import CorruptCheckpoint, fsync_dir, read_checkpoint, write_atomically, write_checkpoint
from josef.storage.log import LogConfig, PartitionLog

META_PROPERTIES = "meta.properties"
CLEAN_SHUTDOWN = ".kafka_cleanshutdown"
LOCK_FILE = ".lock"
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
REPLICATION_CHECKPOINT = "replication-offset-checkpoint"
DELETE_SUFFIX = "-delete"

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")

TopicPartition = tuple[str, int]


PARTITION_METADATA = "partition.metadata"


class InconsistentStorage(Exception):
    """The data directory belongs to another broker or cluster, or is in use."""


def parse_partition_dir(name: str) -> TopicPartition | None:
    """("my-topic", 3) from "my-topic-3"; None for anything else (deleted, future, stray dirs)."""
    topic, dash, partition = name.rpartition("-")
    if not dash or not topic or not partition.isdigit() or not _TOPIC_NAME.match(topic) or topic in (".", ".."):
        return None
    return topic, int(partition)


def valid_topic_name(topic: str) -> bool:
    return bool(_TOPIC_NAME.match(topic)) and topic not in (".", "..")


def new_cluster_id() -> str:
    """Kafka's format: a random UUID as 22 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def stored_cluster_id(data_dir: Path) -> str | None:
    """The cluster id in a data directory's meta.properties, if it has one."""
    path = Path(data_dir) / META_PROPERTIES
    return read_properties(path).get("cluster.id") if path.exists() else None


class LogManager:
    def __init__(self, data_dir: Path, broker_id: int, cluster_id: str | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker_id = broker_id
        self._lock_fd = self._lock()
        try:
            self.cluster_id = self._check_meta(cluster_id)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.had_clean_shutdown = (self.data_dir / CLEAN_SHUTDOWN).exists()
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._recovery_points = self._read_offsets(RECOVERY_POINT_CHECKPOINT)
        self._log_starts = self._read_offsets(LOG_START_CHECKPOINT)
        self._high_watermarks = self._read_offsets(REPLICATION_CHECKPOINT)
        self._closed = False

    # -- identity ----------------------------------------------------------------------------

    def _lock(self) -> int:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InconsistentStorage(f"{self.data_dir} is in use by another broker") from None
        return fd

    def _check_meta(self, cluster_id: str | None) -> str:
        path = self.data_dir / META_PROPERTIES
        props = read_properties(path) if path.exists() else {}
        stored_broker = props.get("broker.id", props.get("node.id"))
        if stored_broker is not None and stored_broker.strip() != str(self.broker_id):
            raise InconsistentStorage(f"configured broker.id {self.broker_id} does not match stored "
                                      f"broker.id {stored_broker} in {path}")
        stored_cluster = props.get("cluster.id")
        if stored_cluster and cluster_id and stored_cluster != cluster_id:
            raise InconsistentStorage(f"cluster id {cluster_id} does not match stored cluster.id "
                                      f"{stored_cluster} in {path}")
        if stored_cluster and stored_broker is not None:
            return stored_cluster
        cluster_id = stored_cluster or cluster_id or new_cluster_id()
        write_properties(path, {"cluster.id": cluster_id, "version": "0", "broker.id": str(self.broker_id)})
        return cluster_id

    # -- logs --------------------------------------------------------------------------------

    def load(self, topic_configs: dict[str, LogConfig], default_config: LogConfig | None = None) -> None:
        """Open every partition directory; recover them unless the last shutdown was clean."""
        default_config = default_config or LogConfig()
        for name in sorted(os.listdir(self.data_dir)):
            path = self.data_dir / name
            if not path.is_dir():
                continue
            if name.endswith(DELETE_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)  # a deletion the last run did not finish
                continue
            tp = parse_partition_dir(name)
            if tp is None or tp in self._logs:
                continue
            config = topic_configs.get(tp[0], default_config)
            self._logs[tp] = PartitionLog.open(
                path, tp[0], tp[1], config,
                recovery_point=self._recovery_points.get(tp, 0),
                log_start_offset=self._log_starts.get(tp, 0),
                clean_shutdown=self.had_clean_shutdown)
        # From here on a crash must lead to recovery.
        (self.data_dir / CLEAN_SHUTDOWN).unlink(missing_ok=True)
        fsync_dir(self.data_dir)

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig, topic_id: str | None = None) -> PartitionLog:
        """The partition's log, created (empty) if it does not exist yet. `topic_id` is written
        to `partition.metadata`, as Kafka does, so a topic re-created under the same name while
        this broker was away is told apart from the old one."""
        log = self._logs.get((topic, partition))
        if log is not None:
            return log
        if not valid_topic_name(topic) or partition < 0:
            raise ValueError(f"invalid topic partition {topic!r}-{partition}")
        path = self.data_dir / f"{topic}-{partition}"
        log = PartitionLog.open(path, topic, partition, config)
        if topic_id is not None:  # Kafka's format: "key: value" lines
            write_atomically(path / PARTITION_METADATA, f"version: 0\ntopic_id: {topic_id}\n")
        fsync_dir(self.data_dir)
        self._logs[(topic, partition)] = log
        return log

    def topic_id(self, topic: str, partition: int) -> str | None:
        """The topic id recorded in the partition's `partition.metadata`, if any."""
        path = self.data_dir / f"{topic}-{partition}" / PARTITION_METADATA
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "topic_id":
                return value.strip()
        return None

    def delete_topic(self, topic: str) -> list[int]:
        """Close and remove every partition of `topic`; the partitions removed."""
        removed = []
        for partition in self.partitions(topic):
            self.delete_partition(topic, partition)
            removed.append(partition)
        return removed

    def delete_partition(self, topic: str, partition: int) -> None:
        log = self._logs.pop((topic, partition), None)
        if log is None:
            return
        log.close(flush=False)
        # Rename first (atomic): a crash mid-removal leaves a `-delete` dir that load() finishes off.
        target = self.data_dir / f"{topic}-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
        os.replace(log.dir, target)
        fsync_dir(self.data_dir)
        shutil.rmtree(target, ignore_errors=True)
        for offsets in (self._recovery_points, self._log_starts, self._high_watermarks):
            offsets.pop((topic, partition), None)

    def partitions(self, topic: str) -> list[int]:
        return sorted(p for t, p in self._logs if t == topic)

    def topics(self) -> set[str]:
        return {t for t, _ in self._logs}

    def logs(self) -> Iterator[tuple[TopicPartition, PartitionLog]]:
        return iter(list(self._logs.items()))

    def high_watermark_checkpoint(self, topic: str, partition: int) -> int | None:
        """The high watermark checkpointed by the last run (for the replica manager), if any."""
        return self._high_watermarks.get((topic, partition))

    # -- periodic work -----------------------------------------------------------------------

    def flush_logs(self, now_ms: int | None = None) -> None:
        """Flush logs whose flush.ms has elapsed or that rolled a segment since their last flush."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        for log in self._logs.values():
            rolled_up_to = log.active_segment.base_offset
            if now_ms - log.last_flush_ms >= log.config.flush_ms:
                log.flush(now_ms=now_ms)
            elif log.recovery_point < rolled_up_to:
                log.flush(rolled_up_to, now_ms=now_ms)

    def delete_old_segments(self, now_ms: int | None = None) -> int:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return sum(log.delete_old_segments(now_ms) for log in self._logs.values())

    def write_checkpoints(self) -> None:
        logs = sorted(self._logs.items())
        write_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT,
                         ((t, p, log.recovery_point) for (t, p), log in logs))
        write_checkpoint(self.data_dir / LOG_START_CHECKPOINT,
                         ((t, p, log.log_start_offset) for (t, p), log in logs))
        write_checkpoint(self.data_dir / REPLICATION_CHECKPOINT,
                         ((t, p, log.high_watermark) for (t, p), log in logs))

    def _read_offsets(self, name: str) -> dict[TopicPartition, int]:
        try:
            entries = read_checkpoint(self.data_dir / name, 3)
        except CorruptCheckpoint:
            return {}  # recovery from offset 0 is slow but correct
        return {(topic, int(partition)): int(offset) for topic, partition, offset in entries}

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close every log, write the checkpoints, then mark the shutdown clean."""
        if self._closed:
            return
        for log in self._logs.values():
            log.close()
        self.write_checkpoints()
        fd = os.open(self.data_dir / CLEAN_SHUTDOWN, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.data_dir)
        os.close(self._lock_fd)
        self._closed = True


def read_properties(path: Path) -> dict[str, str]:
    """A Java .properties file, as far as Kafka's own files use it (key=value, # comments)."""
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def write_properties(path: Path, props: dict[str, str]) -> None:
    stamp = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    write_atomically(path, f"#\n#{stamp}\n" + "".join(f"{k}={v}\n" for k, v in props.items()))
