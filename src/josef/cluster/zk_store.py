"""Cluster metadata kept in ZooKeeper, seen by this broker as one immutable snapshot.

Every broker watches the znodes it needs (registrations, controller, topic assignments,
partition states, configs) and rebuilds its snapshot when one changes; the controller
alone writes partition states. Watch callbacks run on kazoo's thread and only record
raw znode data; the snapshot is rebuilt on the event loop, coalescing bursts of changes.

Admin writes (topics, configs, reassignments) go straight to ZooKeeper from whichever
broker received the request, as Kafka's AdminZkClient does; the controller reacts. They
block for their round trips, so the broker runs them in its metadata-writer thread
(josef.broker.metadata_writer), never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from types import MappingProxyType
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (BadVersionError, ConnectionClosedError, ConnectionLoss, NodeExistsError, NoNodeError,
                              SessionExpiredError)
from kazoo.handlers.threading import KazooTimeoutError

from josef.cluster import zk_formats as zkf
from josef.cluster.listeners import Listeners
from josef.cluster.metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from josef.cluster.placement import reassignment

log = logging.getLogger("josef.zk")

OP_TIMEOUT_S = 10.0
PRODUCER_ID_BLOCK = 1000


class MetadataUnavailable(Exception):
    """ZooKeeper did not answer in time (no quorum, or unreachable)."""


class TopicExists(Exception):
    pass


def split_connect(connect: str) -> tuple[str, str]:
    """'h1:2181,h2:2181/chroot' -> ('h1:2181,h2:2181', '/chroot')."""
    hosts, slash, chroot = connect.partition("/")
    chroot = ("/" + chroot.strip("/")) if slash and chroot.strip("/") else ""
    return hosts, chroot


class ZkMetadataStore:
    def __init__(self, connect: str, broker_id: int, listeners: Listeners, rack: str | None,
                 session_timeout_ms: int, connection_timeout_ms: int | None = None):
        self.hosts, self.chroot = split_connect(connect)
        self.broker_id = broker_id
        self.listeners = listeners
        self.rack = rack
        self.session_timeout_s = session_timeout_ms / 1000
        self.connection_timeout_s = (connection_timeout_ms or session_timeout_ms) / 1000
        self.zk = KazooClient(hosts=self.hosts + self.chroot, timeout=self.session_timeout_s)
        self.cluster_id = ""
        self.broker_configs: dict[str, dict[str, str]] = {}
        self.snapshot = ClusterMetadata("", -1, MappingProxyType({}), MappingProxyType({}))
        # raw znode data, written by kazoo's callback thread under the lock
        self._lock = threading.Lock()
        self._registrations: dict[int, zkf.Registration] = {}
        self._controller = -1
        self._assignments: dict[str, zkf.TopicAssignment] = {}
        self._states: dict[tuple[str, int], zkf.PartitionState] = {}
        self._topic_configs: dict[str, dict[str, str]] = {}
        self._watched_topics: set[str] = set()
        self._watched_states: set[tuple[str, int]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publish_pending = False
        self.on_change: Callable[[ClusterMetadata, ClusterMetadata], None] | None = None
        self._registration_data = b""
        self._closing = False

    # --- start and stop -----------------------------------------------------------------

    def connect(self) -> None:
        """Connect, create Kafka's persistent paths and read the cluster id (blocking)."""
        if self.chroot:
            bootstrap = KazooClient(hosts=self.hosts, timeout=self.session_timeout_s)
            bootstrap.start(timeout=self.connection_timeout_s)
            try:
                bootstrap.ensure_path(self.chroot)
            finally:
                bootstrap.stop()
                bootstrap.close()
        self.zk.start(timeout=self.connection_timeout_s)
        for path in zkf.PERSISTENT_PATHS:
            self.zk.ensure_path(path)

    def ensure_cluster_id(self, proposed: str) -> str:
        """The cluster id in ZooKeeper, created from `proposed` by the first broker."""
        try:
            self.zk.create(zkf.CLUSTER_ID, zkf.encode_cluster_id(proposed), makepath=True)
        except NodeExistsError:
            pass
        self.cluster_id = zkf.decode_cluster_id(self.zk.get(zkf.CLUSTER_ID)[0])
        return self.cluster_id

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching; kazoo reads every watched znode once before returning, so the
        first snapshot is complete. `on_change(old, new)` is called for later ones."""
        self._loop = loop
        self.zk.add_listener(self._on_session_state)
        self.zk.DataWatch(zkf.CONTROLLER, self._on_controller)
        self.zk.ChildrenWatch(zkf.BROKER_IDS, self._on_broker_ids)
        self.zk.ChildrenWatch(zkf.TOPICS, self._on_topics)
        for entity in ("", str(self.broker_id)):
            self.zk.DataWatch(zkf.broker_config_path(entity), self._broker_config_watcher(entity))
        self._publish()

    def register_data(self) -> bytes:
        reg = zkf.Registration(self.broker_id, self.listeners.advertised, self.rack)
        return zkf.encode_registration(reg, self.listeners.protocols)

    def register(self) -> None:
        """Create /brokers/ids/<id>; an earlier session of ours may still hold it for a while."""
        self._registration_data = self.register_data()
        path = zkf.broker_path(self.broker_id)
        deadline = time.monotonic() + self.session_timeout_s * 2 + 5
        while True:
            try:
                self.zk.create(path, self._registration_data, ephemeral=True)
                log.info("registered broker %d at %s", self.broker_id, path)
                return
            except NodeExistsError:
                try:
                    _, stat = self.zk.get(path)
                    if stat.ephemeralOwner == self.zk.client_id[0]:
                        return
                except NoNodeError:
                    continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker id {self.broker_id} is registered by another live broker")
                log.info("waiting for an earlier registration of broker %d to expire", self.broker_id)
                time.sleep(0.5)

    def _on_session_state(self, state) -> None:
        if state == KazooState.LOST and not self._closing:
            log.warning("ZooKeeper session lost; will register again on reconnect")
        elif state == KazooState.CONNECTED and self._registration_data and not self._closing:
            self.zk.handler.spawn(self._reregister)

    def _reregister(self) -> None:
        try:
            if self.zk.exists(zkf.broker_path(self.broker_id)) is None:
                self.register()
        except Exception as e:  # a flapping session: the next CONNECTED tries again
            log.warning("re-registration failed: %s", e)

    def deregister(self) -> None:
        """Leave the live brokers while keeping the session (controlled shutdown)."""
        self._registration_data = b""  # and do not come back on a reconnect
        try:
            self._wait(self.zk.delete_async(zkf.broker_path(self.broker_id)))
        except NoNodeError:
            pass

    def close(self) -> None:
        """Leave the cluster: closing the session deletes our registration at once."""
        self._closing = True
        try:
            self.zk.stop()
            self.zk.close()
        except Exception as e:
            log.warning("closing the ZooKeeper session: %s", e)

    # --- watches (kazoo's thread) ------------------------------------------------------

    def _on_controller(self, data, stat) -> None:
        with self._lock:
            self._controller = zkf.decode_controller(data)
        self._schedule_publish()

    def _on_broker_ids(self, children) -> None:
        regs = {}
        for child in children:
            try:
                regs[int(child)] = zkf.decode_registration(int(child), self.zk.get(zkf.broker_path(int(child)))[0])
            except (NoNodeError, ValueError):
                continue
        with self._lock:
            self._registrations = regs
        self._schedule_publish()

    def _on_topics(self, children) -> bool | None:
        if self._closing:
            return False
        names = set(children)
        with self._lock:
            for gone in self._watched_topics - names:
                self._forget_topic(gone)
            new = names - self._watched_topics
            self._watched_topics |= new
        for name in new:
            self.zk.DataWatch(zkf.topic_path(name), self._topic_watcher(name))
            self.zk.DataWatch(zkf.topic_config_path(name), self._topic_config_watcher(name))
        self._schedule_publish()
        return None

    def _forget_topic(self, name: str) -> None:
        self._watched_topics.discard(name)
        self._assignments.pop(name, None)
        self._topic_configs.pop(name, None)
        for key in [k for k in self._watched_states if k[0] == name]:
            self._watched_states.discard(key)
            self._states.pop(key, None)

    def _topic_watcher(self, name: str):
        def watch(data, stat):
            with self._lock:
                if name not in self._watched_topics:
                    return False
                if data is None:
                    self._assignments.pop(name, None)
                    new_partitions = []
                else:
                    assignment = zkf.decode_assignment(data)
                    self._assignments[name] = assignment
                    new_partitions = [p for p in assignment.replicas if (name, p) not in self._watched_states]
                    self._watched_states.update((name, p) for p in new_partitions)
            for p in new_partitions:
                self.zk.DataWatch(zkf.partition_state_path(name, p), self._state_watcher(name, p))
            self._schedule_publish()
            return None
        return watch

    def _state_watcher(self, name: str, partition: int):
        def watch(data, stat):
            with self._lock:
                if (name, partition) not in self._watched_states:
                    return False
                if data is None:
                    self._states.pop((name, partition), None)
                else:
                    self._states[(name, partition)] = zkf.decode_state(data)
            self._schedule_publish()
            return None
        return watch

    def _topic_config_watcher(self, name: str):
        def watch(data, stat):
            with self._lock:
                if name not in self._watched_topics:
                    return False
                self._topic_configs[name] = zkf.decode_configs(data)
            self._schedule_publish()
            return None
        return watch

    def _broker_config_watcher(self, entity: str):
        def watch(data, stat):
            with self._lock:
                configs = zkf.decode_configs(data)
                if configs:
                    self.broker_configs[entity] = configs
                else:
                    self.broker_configs.pop(entity, None)
            self._schedule_publish()
            return not self._closing and None
        return watch

    # --- the snapshot (event loop) -----------------------------------------------------

    def _schedule_publish(self) -> None:
        loop = self._loop
        if loop is None or self._publish_pending or loop.is_closed():
            return
        self._publish_pending = True
        try:
            loop.call_soon_threadsafe(self._publish)
        except RuntimeError:  # loop closed while shutting down
            pass

    def _publish(self) -> None:
        self._publish_pending = False
        with self._lock:
            regs = dict(self._registrations)
            controller = self._controller
            assignments = dict(self._assignments)
            states = dict(self._states)
            configs = {k: dict(v) for k, v in self._topic_configs.items()}
        brokers = {}
        for broker_id, reg in sorted(regs.items()):
            endpoints = {e.name: (e.host, e.port) for e in reg.endpoints}
            default = reg.endpoints[0]
            brokers[broker_id] = BrokerInfo(broker_id, default.host, default.port, reg.rack,
                                            MappingProxyType(endpoints))
        topics = {}
        for name, a in assignments.items():
            partitions = []
            for p in range(len(a.replicas)):
                replicas = a.replicas.get(p, ())
                state = states.get((name, p))
                offline = tuple(r for r in replicas if r not in brokers)
                if state is None:
                    partitions.append(PartitionInfo(p, -1, 0, replicas, (), offline))
                else:
                    partitions.append(PartitionInfo(p, state.leader, state.leader_epoch, replicas, state.isr,
                                                    offline, a.adding.get(p, ()), a.removing.get(p, ())))
            topics[name] = TopicInfo(name, a.topic_id, tuple(partitions), MappingProxyType(configs.get(name, {})))
        old = self.snapshot
        self.snapshot = ClusterMetadata(self.cluster_id, controller, MappingProxyType(brokers),
                                        MappingProxyType(topics), epoch=old.epoch + 1)
        if self.on_change is not None:
            self.on_change(old, self.snapshot)

    # --- writes (any broker; blocking: off the event loop) ---------------------------------

    def _wait(self, async_result):
        try:
            return async_result.get(timeout=OP_TIMEOUT_S)
        except KazooTimeoutError:
            raise MetadataUnavailable("ZooKeeper did not answer in time") from None
        except (ConnectionLoss, SessionExpiredError, ConnectionClosedError) as e:
            raise MetadataUnavailable(f"ZooKeeper connection lost: {type(e).__name__}") from None

    def _publish_soon(self) -> None:
        """Read-your-writes for a write made off the loop: the snapshot is rebuilt on the loop
        before the writer's caller is called back there (both go through call_soon_threadsafe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._publish)
            except RuntimeError:  # loop closed while shutting down
                pass

    def create_topic(self, name: str, assignment: dict[int, tuple[int, ...]], configs: dict[str, str]) -> uuid.UUID:
        topic_id = uuid.uuid4()
        data = zkf.encode_assignment(zkf.TopicAssignment(topic_id, dict(assignment), {}, {}))
        if self._wait(self.zk.exists_async(zkf.topic_path(name))) is not None:
            raise TopicExists(name)
        self._write_configs(zkf.topic_config_path(name), configs)
        try:
            self._wait(self.zk.create_async(zkf.topic_path(name), data))
        except NodeExistsError:
            raise TopicExists(name) from None
        return topic_id

    def add_partitions(self, name: str, new: dict[int, tuple[int, ...]]) -> None:
        data, stat = self._wait(self.zk.get_async(zkf.topic_path(name)))
        a = zkf.decode_assignment(data)
        replicas = {**a.replicas, **new}
        self._wait(self.zk.set_async(zkf.topic_path(name), zkf.encode_assignment(
            zkf.TopicAssignment(a.topic_id, replicas, a.adding, a.removing)), version=stat.version))

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self._write_configs(zkf.topic_config_path(name), configs)
        with self._lock:  # read-your-writes for the caller; the watch confirms it shortly
            if name in self._topic_configs:
                self._topic_configs[name] = dict(configs)
        self._publish_soon()

    def set_broker_configs(self, entity: str, configs: dict[str, str]) -> None:
        self._write_configs(zkf.broker_config_path(entity), configs)
        with self._lock:
            if configs:
                self.broker_configs[entity] = dict(configs)
            else:
                self.broker_configs.pop(entity, None)
        self._publish_soon()  # the broker's effective config follows in on_change

    def _write_configs(self, path: str, configs: dict[str, str]) -> None:
        data = zkf.encode_configs(configs)
        try:
            self._wait(self.zk.set_async(path, data))
        except NoNodeError:
            try:
                self._wait(self.zk.create_async(path, data, makepath=True))
            except NodeExistsError:
                self._wait(self.zk.set_async(path, data))

    def delete_topic(self, name: str) -> None:
        try:
            self._wait(self.zk.create_async(f"{zkf.DELETE_TOPICS}/{name}", b"", makepath=True))
        except NodeExistsError:
            pass

    def reassign(self, moves: dict[tuple[str, int], tuple[int, ...] | None]) -> dict[tuple[str, int], str | None]:
        """Start (replicas) or cancel (None) reassignments; an error text per partition or None."""
        errors: dict[tuple[str, int], str | None] = {}
        by_topic: dict[str, list[tuple[int, tuple[int, ...] | None]]] = {}
        for (topic, p), target in moves.items():
            by_topic.setdefault(topic, []).append((p, target))
        for topic, items in by_topic.items():
            for _ in range(5):  # optimistic concurrency on the topic's znode
                try:
                    data, stat = self._wait(self.zk.get_async(zkf.topic_path(topic)))
                except NoNodeError:
                    errors.update({(topic, p): "UNKNOWN_TOPIC_OR_PARTITION" for p, _ in items})
                    break
                a = zkf.decode_assignment(data)
                replicas, adding, removing = dict(a.replicas), dict(a.adding), dict(a.removing)
                for p, target in items:
                    if p not in replicas:
                        errors[(topic, p)] = "UNKNOWN_TOPIC_OR_PARTITION"
                        continue
                    original = tuple(r for r in replicas[p] if r not in adding.get(p, ()))
                    if target is None:
                        if p not in adding and p not in removing:
                            errors[(topic, p)] = "NO_REASSIGNMENT_IN_PROGRESS"
                            continue
                        replicas[p] = original
                        adding.pop(p, None)
                        removing.pop(p, None)
                    else:
                        move = reassignment(original, target)
                        if move.adding or move.removing:
                            replicas[p], adding[p], removing[p] = move
                        else:
                            replicas[p] = target
                            adding.pop(p, None)
                            removing.pop(p, None)
                    errors[(topic, p)] = None
                new = zkf.encode_assignment(zkf.TopicAssignment(a.topic_id, replicas, adding, removing))
                try:
                    self._wait(self.zk.set_async(zkf.topic_path(topic), new, version=stat.version))
                    break
                except BadVersionError:
                    continue
        return errors

    def request_preferred_election(self, partitions: list[tuple[str, int]]) -> None:
        """Ask the controller for preferred leaders (Kafka's /admin/preferred_replica_election)."""
        for _ in range(5):
            try:
                data, stat = self._wait(self.zk.get_async(zkf.PREFERRED_ELECTION))
            except NoNodeError:
                data, stat = None, None
            wanted = {**zkf.decode_reassignment(data), **{tp: () for tp in partitions}}
            body = zkf.encode_reassignment(wanted)
            try:
                if stat is None:
                    self._wait(self.zk.create_async(zkf.PREFERRED_ELECTION, body, makepath=True))
                else:
                    self._wait(self.zk.set_async(zkf.PREFERRED_ELECTION, body, version=stat.version))
                return
            except (NodeExistsError, NoNodeError, BadVersionError):
                continue

    def change_isr(self, topic: str, partition: int, leader: int, leader_epoch: int,
                   add: int | None = None, remove: int | None = None) -> bool:
        """The leader adds a caught-up follower to the ISR or drops a lagging one.

        A conditional write: it fails (False) when leadership or epoch moved on meanwhile, so
        a deposed leader can never overwrite the controller's newer state. Runs in a thread.
        """
        path = zkf.partition_state_path(topic, partition)
        for _ in range(5):
            data, stat = self._wait(self.zk.get_async(path))
            state = zkf.decode_state(data)
            if (state.leader, state.leader_epoch) != (leader, leader_epoch):
                return False
            isr = tuple(r for r in state.isr if r != remove)
            if add is not None and add not in isr:
                # only a replica may join: a broker a finished reassignment just removed can still
                # be fetching on a view that is one watch behind (its state version guards this read)
                assignment = zkf.decode_assignment(self._wait(self.zk.get_async(zkf.topic_path(topic)))[0])
                if add not in assignment.replicas.get(partition, ()):
                    return False
                isr += (add,)
            if isr == state.isr:
                return True
            new = zkf.PartitionState(leader, leader_epoch, isr, state.controller_epoch)
            try:
                self._wait(self.zk.set_async(path, zkf.encode_state(new), version=stat.version))
            except BadVersionError:
                continue
            log.info("%s-%d: ISR %s -> %s", topic, partition, list(state.isr), list(isr))
            with self._lock:  # read-your-writes: the watch confirms it shortly
                if (topic, partition) in self._watched_states:
                    self._states[(topic, partition)] = new
            self._schedule_publish()
            return True
        return False

    def next_producer_id(self) -> int:
        """The next id of this broker's block; claims a new block when it is used up. Called only
        from the metadata-writer thread, which serializes it."""
        if not hasattr(self, "_pid_next") or self._pid_next > self._pid_end:
            self._pid_next, self._pid_end = self._claim_producer_id_block()
        pid = self._pid_next
        self._pid_next += 1
        return pid

    def _claim_producer_id_block(self) -> tuple[int, int]:
        """Reserve the next block of ids with a conditional write, as Kafka's brokers do."""
        while True:
            data, stat = self._wait(self.zk.get_async(zkf.PRODUCER_ID_BLOCK))
            start = zkf.decode_producer_id_block_end(data) + 1
            end = start + PRODUCER_ID_BLOCK - 1
            try:
                self._wait(self.zk.set_async(zkf.PRODUCER_ID_BLOCK,
                                             zkf.encode_producer_id_block(self.broker_id, start, end),
                                             version=stat.version))
                return start, end
            except BadVersionError:
                continue
