"""The group coordinator: classic groups and committed offsets, kept in `__consumer_offsets`.

The protocol decisions live in the sans-IO `Group` state machine; this module is its edge:
it turns requests into calls, effects into replies and records, due timers into `tick`s,
and replays `__consumer_offsets` on start so a restart loses no group and no offset.
"""
from __future__ import annotations

import asyncio
import logging
import time

from josef.coordinator.consumer_protocol import subscribed_topics
from josef.coordinator.group import Group, GroupChanged, GroupState, JoinReply, SyncReply
from josef.coordinator.offsets_format import (
    OffsetValue, encode_group_key, encode_group_value, encode_offset_key, encode_offset_value,
    partition_for_group,
)
from josef.coordinator.replay import replay
from josef.protocol.errors import Error
from josef.records.batch import iter_batches
from josef.records.records import build_batch, iter_records

log = logging.getLogger("josef.coordinator")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSET_METADATA_MAX_BYTES = 4096  # offset.metadata.max.bytes
LOAD_CHUNK = 1 << 20


def now_ms() -> int:
    return int(time.time() * 1000)


class CoordinatorError(Exception):
    def __init__(self, code: int):
        super().__init__(Error(code).name)
        self.code = code


class GroupCoordinator:
    def __init__(self, broker):
        self.broker = broker
        config = broker.config
        self.num_partitions = config["offsets.topic.num.partitions"]
        self.group_options = {
            "initial_rebalance_delay_ms": config["group.initial.rebalance.delay.ms"],
            "max_size": config["group.max.size"],
            "min_session_timeout_ms": config["group.min.session.timeout.ms"],
            "max_session_timeout_ms": config["group.max.session.timeout.ms"],
        }
        self.groups: dict[str, Group] = {}
        self.offsets: dict[str, dict[tuple[str, int], OffsetValue]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.loaded: set[int] = set()  # offsets partitions whose groups this broker holds
        self._started = False

    # --- start-up -------------------------------------------------------------------

    def ensure_topic(self):
        """Start creating `__consumer_offsets` if it does not exist yet: the future of that
        metadata write, or None when there is none to wait for. No group has a coordinator
        until the topic shows in the snapshot."""
        if OFFSETS_TOPIC in self.broker.store.snapshot.topics:
            return None
        from josef.broker.topic_admin import TopicError

        def report(write) -> None:
            error = None if write.cancelled() else write.exception()
            if isinstance(error, TopicError) and error.code != Error.TOPIC_ALREADY_EXISTS:
                log.warning("cannot create %s yet: %s", OFFSETS_TOPIC, error.message)
        try:
            write = self.broker.topic_admin.create(
                OFFSETS_TOPIC, self.num_partitions, self.broker.config["offsets.topic.replication.factor"]
                if self.broker.in_cluster else 1,
                {"cleanup.policy": "compact", "compression.type": "producer", "segment.bytes": "104857600"})
        except TopicError as e:
            log.warning("cannot create %s yet: %s", OFFSETS_TOPIC, e.message)
            return None
        write.add_done_callback(report)
        return write

    def on_metadata(self, snapshot) -> None:
        """Load the groups of offsets partitions this broker now leads; drop the others."""
        topic = snapshot.topics.get(OFFSETS_TOPIC)
        if topic is None:
            led = set()
        else:
            self.num_partitions = len(topic.partitions)
            led = {p.partition for p in topic.partitions if p.leader == self.broker.broker_id}
        for partition in sorted(led - self.loaded):
            self._load(partition)
        for partition in sorted(self.loaded - led):
            self._unload(partition)

    def _load(self, partition: int) -> None:
        started = time.monotonic()
        state = replay(self._records(partition))
        for (group, topic_name, p), value in state.offsets.items():
            self.offsets.setdefault(group, {})[(topic_name, p)] = value
        for group_id, record in state.groups.items():
            self.groups[group_id] = Group.from_record(group_id, record, now_ms(), **self.group_options)
            if self._started:
                self._reschedule(group_id)
        self.loaded.add(partition)
        log.info("%s-%d: loaded %d group(s) and %d committed offset(s) in %.3fs", OFFSETS_TOPIC, partition,
                 len(state.groups), len(state.offsets), time.monotonic() - started)

    def _unload(self, partition: int) -> None:
        """Another broker coordinates these groups now: forget them and turn their members away."""
        self.loaded.discard(partition)
        for group_id in [g for g in set(self.groups) | set(self.offsets) if self.partition_for(g) == partition]:
            group = self.groups.pop(group_id, None)
            self.offsets.pop(group_id, None)
            timer = self._timers.pop(group_id, None)
            if timer is not None:
                timer.cancel()
            for member in (group.members.values() if group else ()):
                for token in (member.join_token, member.sync_token):
                    if isinstance(token, asyncio.Future) and not token.done():
                        reply = JoinReply if token is member.join_token else SyncReply
                        token.set_result(reply(token, Error.NOT_COORDINATOR))
        log.info("%s-%d: no longer coordinating its groups", OFFSETS_TOPIC, partition)

    def _records(self, partition: int):
        """(key, value) of every record of one partition of the offsets topic, in order."""
        plog = self.broker.logs.get(OFFSETS_TOPIC, partition)
        if plog is None:
            return
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            chunk = b"".join(plog.read(offset, LOAD_CHUNK, min_one=True).chunks)
            if not chunk:
                break
            for pos, header in iter_batches(chunk):
                if not header.is_control:
                    for record in iter_records(memoryview(chunk)[pos:pos + header.size]):
                        yield record.key, record.value
                offset = header.next_offset

    def start_timers(self) -> None:
        self._started = True
        for group_id in self.groups:
            self._reschedule(group_id)

    # --- where groups live --------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        return partition_for_group(group_id, self.num_partitions)

    def coordinator_for(self, group_id: str):
        """The broker that coordinates `group_id`: the leader of its offsets partition."""
        topic = self.broker.store.snapshot.topics.get(OFFSETS_TOPIC)
        if topic is None:
            return None
        leader = topic.partitions[self.partition_for(group_id)].leader
        return self.broker.store.snapshot.brokers.get(leader)

    def _check_coordinator(self, group_id: str) -> None:
        if not group_id:
            raise CoordinatorError(Error.INVALID_GROUP_ID)
        node = self.coordinator_for(group_id)
        if node is None:
            raise CoordinatorError(Error.COORDINATOR_NOT_AVAILABLE)
        if node.broker_id != self.broker.broker_id:
            raise CoordinatorError(Error.NOT_COORDINATOR)
        if self.partition_for(group_id) not in self.loaded:
            raise CoordinatorError(Error.COORDINATOR_LOAD_IN_PROGRESS)

    # --- membership ---------------------------------------------------------------

    def join(self, group_id: str, **kwargs) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            future.set_result(JoinReply(future, e.code, member_id=kwargs.get("member_id", "")))
            return future
        group = self.groups.get(group_id)
        if group is None:
            if kwargs.get("member_id"):
                future.set_result(JoinReply(future, Error.UNKNOWN_MEMBER_ID, member_id=kwargs["member_id"]))
                return future
            group = self.groups[group_id] = Group(group_id, **self.group_options)
        self._apply(group_id, group.join(future, now_ms(), **kwargs))
        return future

    def sync(self, group_id: str, **kwargs) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        group = self._existing(group_id, future, SyncReply)
        if group is not None:
            self._apply(group_id, group.sync(future, now_ms(), **kwargs))
        return future

    def heartbeat(self, group_id: str, **kwargs) -> int:
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code
        group = self.groups.get(group_id)
        if group is None:
            return Error.UNKNOWN_MEMBER_ID
        error = group.heartbeat(now_ms(), **kwargs)
        self._reschedule(group_id)
        return error

    def leave(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[int, list[int]]:
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code, []
        group = self.groups.get(group_id)
        if group is None:
            return Error.NONE, [Error.UNKNOWN_MEMBER_ID] * len(members)
        errors, effects = group.leave(now_ms(), members)
        self._apply(group_id, effects)
        return Error.NONE, errors

    def _existing(self, group_id: str, future: asyncio.Future, reply_type):
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            future.set_result(reply_type(future, e.code))
            return None
        group = self.groups.get(group_id)
        if group is None:
            future.set_result(reply_type(future, Error.UNKNOWN_MEMBER_ID))
        return group

    # --- effects and timers --------------------------------------------------------------

    def _apply(self, group_id: str, effects) -> None:
        for effect in effects:
            if isinstance(effect, GroupChanged):
                self._persist_group(group_id)
            elif not effect.token.done():
                effect.token.set_result(effect)
        self._reschedule(group_id)

    def _reschedule(self, group_id: str) -> None:
        timer = self._timers.pop(group_id, None)
        if timer is not None:
            timer.cancel()
        group = self.groups.get(group_id)
        deadline = group.next_deadline() if group is not None else None
        if deadline is not None:
            delay = max(0.0, (deadline - now_ms()) / 1000)
            self._timers[group_id] = asyncio.get_running_loop().call_later(delay, self._fire, group_id)

    def _fire(self, group_id: str) -> None:
        self._timers.pop(group_id, None)
        group = self.groups.get(group_id)
        if group is not None:
            self._apply(group_id, group.tick(now_ms()))

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # --- persistence -----------------------------------------------------------------

    def _write(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> int:
        """Append records to the group's offsets partition; the error code of the append."""
        batch = build_batch(records)
        outcome = self.broker.replicas.append(OFFSETS_TOPIC, self.partition_for(group_id), batch, 11, -1)
        if outcome.error:
            log.error("writing to %s for group %s failed: %s", OFFSETS_TOPIC, group_id, Error(outcome.error).name)
        return outcome.error

    def _persist_group(self, group_id: str) -> None:
        group = self.groups.get(group_id)
        record = group.to_record() if group is not None else None
        value = encode_group_value(record) if record is not None else None
        self._write(group_id, [(encode_group_key(group_id), value)])

    # --- offsets ---------------------------------------------------------------------

    def commit(self, group_id: str, *, member_id: str, group_instance_id: str | None, generation_id: int,
               offsets: dict[tuple[str, int], tuple[int, int, str | None]]) -> dict[tuple[str, int], int]:
        """Commit (offset, leader epoch, metadata) per partition; the error per partition."""
        try:
            self._check_coordinator(group_id)
            group = self.groups.get(group_id)
            if group is None:
                if generation_id >= 0 or member_id:
                    raise CoordinatorError(Error.ILLEGAL_GENERATION if generation_id >= 0 else Error.UNKNOWN_MEMBER_ID)
                group = self.groups[group_id] = Group(group_id, **self.group_options)
            error = group.validate_offset_commit(member_id=member_id, group_instance_id=group_instance_id,
                                                 generation_id=generation_id, now_ms=now_ms())
            if error:
                raise CoordinatorError(error)
        except CoordinatorError as e:
            return {key: e.code for key in offsets}
        topics = self.broker.store.snapshot.topics
        results, records, values = {}, [], {}
        stamp = now_ms()
        for (topic, partition), (offset, epoch, metadata) in offsets.items():
            info = topics.get(topic)
            if info is None or not 0 <= partition < len(info.partitions):
                results[(topic, partition)] = Error.UNKNOWN_TOPIC_OR_PARTITION
            elif metadata is not None and len(metadata.encode()) > OFFSET_METADATA_MAX_BYTES:
                results[(topic, partition)] = Error.OFFSET_METADATA_TOO_LARGE
            else:
                value = OffsetValue(offset, epoch, metadata or "", stamp)
                values[(topic, partition)] = value
                records.append((encode_offset_key(group_id, topic, partition), encode_offset_value(value)))
        if records:
            error = self._write(group_id, records)
            if error:
                error = Error.COORDINATOR_NOT_AVAILABLE if error != Error.MESSAGE_TOO_LARGE else Error.INVALID_COMMIT_OFFSET_SIZE
            else:
                self.offsets.setdefault(group_id, {}).update(values)
            for key in values:
                results[key] = error
        return results

    def fetch_offsets(self, group_id: str, partitions: list[tuple[str, int]] | None):
        """(group error, {(topic, partition): OffsetValue | None}); None partitions = all committed."""
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code, {}
        committed = self.offsets.get(group_id, {})
        if partitions is None:
            return Error.NONE, dict(committed)
        return Error.NONE, {key: committed.get(key) for key in partitions}

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]):
        """OffsetDelete: (group error, {partition: error}); refused for partitions the group consumes."""
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code, {}
        group = self.groups.get(group_id)
        committed = self.offsets.get(group_id)
        if group is None and not committed:
            return Error.GROUP_ID_NOT_FOUND, {}
        subscribed = subscribed_topics(group) if group is not None else set()
        if subscribed is None:  # a non-consumer protocol: cannot tell, so refuse as Kafka does
            return Error.NON_EMPTY_GROUP, {}
        results, tombstones = {}, []
        for topic, partition in partitions:
            if topic in subscribed:
                results[(topic, partition)] = Error.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                results[(topic, partition)] = Error.NONE
                if committed and (topic, partition) in committed:
                    tombstones.append((topic, partition))
        if tombstones:
            self._write(group_id, [(encode_offset_key(group_id, t, p), None) for t, p in tombstones])
            for key in tombstones:
                committed.pop(key, None)
        return Error.NONE, results

    # --- groups as a whole ----------------------------------------------------------------

    def list_groups(self, states: set[str] | None = None) -> list[tuple[str, str, str]]:
        """(group id, protocol type, state) of every group this broker coordinates."""
        out = []
        for group_id in sorted(set(self.groups) | set(self.offsets)):
            group = self.groups.get(group_id)
            state = group.state.value if group is not None else GroupState.EMPTY.value
            if group is not None and group.state == GroupState.DEAD:
                continue
            if states and state not in states:
                continue
            out.append((group_id, (group.protocol_type if group else None) or "", state))
        return out

    def describe(self, group_id: str) -> tuple[int, Group | None]:
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code, None
        return Error.NONE, self.groups.get(group_id)

    def delete_group(self, group_id: str) -> int:
        try:
            self._check_coordinator(group_id)
        except CoordinatorError as e:
            return e.code
        group = self.groups.get(group_id)
        if group is None and group_id not in self.offsets:
            return Error.GROUP_ID_NOT_FOUND
        if group is not None:
            error = group.delete_check()
            if error:
                return error
        committed = self.offsets.pop(group_id, {})
        records = [(encode_offset_key(group_id, t, p), None) for t, p in committed]
        records.append((encode_group_key(group_id), None))
        self._write(group_id, records)
        self.groups.pop(group_id, None)
        timer = self._timers.pop(group_id, None)
        if timer is not None:
            timer.cancel()
        return Error.NONE

    # --- expiry ------------------------------------------------------------------------

    def expire_offsets(self, retention_ms: int) -> int:
        """Remove committed offsets of groups without members once older than `retention_ms`,
        as Kafka does for `offsets.retention.minutes`; the number removed."""
        cutoff = now_ms() - retention_ms
        removed = 0
        for group_id in list(self.offsets):
            group = self.groups.get(group_id)
            if group is not None and group.members:
                continue
            committed = self.offsets[group_id]
            expired = [key for key, value in committed.items() if value.commit_timestamp < cutoff]
            if not expired:
                continue
            if self._write(group_id, [(encode_offset_key(group_id, t, p), None) for t, p in expired]) == Error.NONE:
                for key in expired:
                    del committed[key]
                removed += len(expired)
            if not committed:
                del self.offsets[group_id]
        return removed
