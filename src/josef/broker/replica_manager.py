"""Partition-level decisions for Produce, Fetch and ListOffsets on this broker.

Am I the leader, is the batch acceptable, where does it go, what may a consumer see:
the handlers decode and encode; this module decides.
"""
from __future__ import annotations

import logging
import time
from typing import NamedTuple

from josef.broker.throttle import Quota, is_throttled
from josef.protocol.errors import Error
from josef.records.batch import InvalidRecord, validate_produce_records
from josef.records.records import iter_records
from josef.storage.log import LONG_MAX, OffsetOutOfRange

logger = logging.getLogger("josef.replicas")

EARLIEST, LATEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -2, -1, -3, -4, -5


class AppendOutcome(NamedTuple):
    error: int
    base_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1
    message: str | None = None
    end_offset: int = -1  # the log end after the batch: acks=all waits for the high watermark to reach it


class ReadOutcome(NamedTuple):
    error: int
    high_watermark: int = -1
    log_start_offset: int = -1
    chunks: list = []
    size: int = 0


class ReplicaManager:
    def __init__(self, broker):
        self.broker = broker
        self.logs = broker.logs
        self.leader_quota = Quota()  # leader.replication.throttled.rate

    def _leader_log(self, topic: str, partition: int):
        """The local log if this broker leads the partition, else the error to return."""
        info = self.broker.store.snapshot.topics.get(topic)
        if info is None or not 0 <= partition < len(info.partitions):
            return None, Error.UNKNOWN_TOPIC_OR_PARTITION
        if info.partitions[partition].leader != self.broker.broker_id:
            return None, Error.NOT_LEADER_OR_FOLLOWER
        log = self.logs.get(topic, partition)
        if log is None:
            return None, Error.NOT_LEADER_OR_FOLLOWER
        return log, Error.NONE

    # --- produce ----------------------------------------------------------------

    def append(self, topic: str, partition: int, records, api_version: int, acks: int) -> AppendOutcome:
        log, error = self._leader_log(topic, partition)
        if error:
            return AppendOutcome(error)
        if records is None:
            return AppendOutcome(Error.INVALID_RECORD, message="null records")
        if len(records) > log.config.max_message_bytes:
            return AppendOutcome(Error.MESSAGE_TOO_LARGE, log_start_offset=log.log_start_offset,
                                 message=f"batch of {len(records)} bytes exceeds max.message.bytes {log.config.max_message_bytes}")
        try:
            header = validate_produce_records(records, api_version)
            if "compact" in log.config.cleanup_policy and _has_null_key(records):
                raise InvalidRecord(Error.INVALID_RECORD, "Compacted topic cannot accept message without key.")
            _check_timestamps(header, log.config)
        except InvalidRecord as e:
            return AppendOutcome(e.code, log_start_offset=log.log_start_offset, message=str(e))
        state = self.broker.store.snapshot.topics[topic].partitions[partition]
        if acks == -1:
            isr, min_isr = self.broker.replication.isr((topic, partition)) or state.isr, log.config.min_insync_replicas
            if len(isr) < min_isr:
                return AppendOutcome(Error.NOT_ENOUGH_REPLICAS, log_start_offset=log.log_start_offset,
                                     message=f"The size of the current ISR {len(isr)} is insufficient to satisfy "
                                             f"the min.isr requirement of {min_isr}")
        try:
            result = log.append(records, header, state.leader_epoch, int(time.time() * 1000))
        except InvalidRecord as e:
            return AppendOutcome(e.code, log_start_offset=log.log_start_offset, message=str(e))
        except OSError as e:  # a full or failing disk: Kafka marks the log dir offline
            logger.error("append to %s-%d failed: %s", topic, partition, e)
            return AppendOutcome(Error.KAFKA_STORAGE_ERROR, message=str(e))
        if not result.duplicate:
            if self.broker.in_cluster:
                self.broker.replication.advance((topic, partition))
            else:
                log.high_watermark = log.log_end_offset  # a single replica is the whole ISR
            self.broker.purgatory.appended((topic, partition), header.size)  # followers and consumers
        return AppendOutcome(Error.NONE, result.base_offset, result.log_append_time_ms, result.log_start_offset,
                             end_offset=result.last_offset + 1)

    # --- fetch ------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, max_bytes: int, min_one: bool,
             current_leader_epoch: int = -1, replica_id: int = -1) -> ReadOutcome:
        log, error = self._leader_log(topic, partition)
        if error:
            return ReadOutcome(error)
        epoch_error = self._check_epoch(topic, partition, current_leader_epoch)
        if epoch_error:
            return ReadOutcome(epoch_error)
        hw = log.high_watermark
        throttled = False
        if replica_id >= 0:  # a follower copies up to the log end, not just what is committed
            self.broker.replication.follower_fetched((topic, partition), replica_id, offset, log)
            configs = self.broker.store.snapshot.topics[topic].configs
            throttled = is_throttled(configs.get("leader.replication.throttled.replicas"), partition,
                                     self.broker.broker_id)
            if throttled and not self.leader_quota.available(self.broker.config["leader.replication.throttled.rate"]):
                return ReadOutcome(Error.NONE, hw, log.log_start_offset)  # over quota: nothing this time
        try:
            result = log.read(offset, max_bytes, min_one=min_one,
                              max_offset=log.log_end_offset if replica_id >= 0 else hw)
        except OffsetOutOfRange:
            return ReadOutcome(Error.OFFSET_OUT_OF_RANGE, hw, log.log_start_offset)
        if throttled:
            self.leader_quota.spend(result.size, self.broker.config["leader.replication.throttled.rate"])
        return ReadOutcome(Error.NONE, hw, log.log_start_offset, result.chunks, result.size)

    def _check_epoch(self, topic: str, partition: int, current_leader_epoch: int) -> int:
        if current_leader_epoch < 0:
            return Error.NONE
        epoch = self.broker.store.snapshot.topics[topic].partitions[partition].leader_epoch
        if current_leader_epoch < epoch:
            return Error.FENCED_LEADER_EPOCH
        if current_leader_epoch > epoch:
            return Error.UNKNOWN_LEADER_EPOCH
        return Error.NONE

    # --- list offsets --------------------------------------------------------------

    def list_offset(self, topic: str, partition: int, timestamp: int, current_leader_epoch: int = -1):
        """(error, timestamp, offset, leader_epoch) as ListOffsets answers them."""
        log, error = self._leader_log(topic, partition)
        if error:
            return error, -1, -1, -1
        epoch_error = self._check_epoch(topic, partition, current_leader_epoch)
        if epoch_error:
            return epoch_error, -1, -1, -1
        epoch = self.broker.store.snapshot.topics[topic].partitions[partition].leader_epoch
        if timestamp == LATEST:
            if log.epochs.latest_start_offset > log.high_watermark:
                # KIP-207: a new leader whose high watermark has not yet caught up with where its
                # epoch began would answer lower than its predecessor did: ask to retry instead
                return Error.OFFSET_NOT_AVAILABLE, -1, -1, -1
            return Error.NONE, -1, log.high_watermark, epoch
        if timestamp in (EARLIEST, EARLIEST_LOCAL):
            return Error.NONE, -1, log.log_start_offset, epoch
        if timestamp == LATEST_TIERED:
            return Error.NONE, -1, -1, epoch
        if timestamp == MAX_TIMESTAMP:
            found = log.max_timestamp()
        elif timestamp < 0:
            return Error.INVALID_REQUEST, -1, -1, -1
        else:
            found = log.offset_for_timestamp(timestamp)
        if found is None or found[0] < 0:
            return Error.NONE, -1, -1, -1
        offset, ts = found
        return Error.NONE, ts, offset, log.epochs.epoch_for_offset(offset)

    # --- leader epochs ---------------------------------------------------------------

    def end_offset_for_epoch(self, topic: str, partition: int, leader_epoch: int, current_leader_epoch: int = -1):
        """(error, epoch, end offset): the largest epoch <= `leader_epoch` and where it ended."""
        log, error = self._leader_log(topic, partition)
        if error:
            return error, -1, -1
        epoch_error = self._check_epoch(topic, partition, current_leader_epoch)
        if epoch_error:
            return epoch_error, -1, -1
        epoch, end_offset = log.end_offset_for_epoch(leader_epoch)
        return Error.NONE, epoch, end_offset

    # --- delete records ---------------------------------------------------------------

    def delete_records(self, topic: str, partition: int, offset: int) -> tuple[int, int]:
        """(error, new low watermark) after deleting everything below `offset`."""
        log, error = self._leader_log(topic, partition)
        if error:
            return error, -1
        if offset == -1:
            offset = log.high_watermark
        if offset < 0 or offset > log.high_watermark:
            return Error.OFFSET_OUT_OF_RANGE, -1
        log.delete_records_before(offset)
        self.logs.write_checkpoints()  # the new log start offset survives a crash
        return Error.NONE, log.log_start_offset


def _check_timestamps(header, config) -> None:
    """CreateTime records must lie within message.timestamp.before/after.max.ms of now (KIP-937).

    Judged from the batch header's first and largest timestamps, without decoding records."""
    if config.message_timestamp_type != "CreateTime":
        return
    before = min(config.message_timestamp_before_max_ms, config.message_timestamp_difference_max_ms)
    after = min(config.message_timestamp_after_max_ms, config.message_timestamp_difference_max_ms)
    if before >= LONG_MAX and after >= LONG_MAX:
        return
    now = int(time.time() * 1000)
    if header.base_timestamp < now - before or header.max_timestamp > now + after:
        raise InvalidRecord(Error.INVALID_TIMESTAMP,
                            f"Timestamp of a record is out of range: not within {before} ms before or "
                            f"{after} ms after the broker's time {now}")


def _has_null_key(batch) -> bool:
    """Compaction needs a key on every record: the one place produce decodes records."""
    return any(record.key is None for record in iter_records(batch))
