"""The controller: one broker, elected through /controller, that keeps partitions led.

Every broker runs one `Controller`; the broker that creates the ephemeral /controller
znode is active until its session ends, and bumps /controller_epoch on taking over.
Every write the active controller makes is a ZooKeeper transaction that also checks the
epoch znode's version, so a controller that lost its seat cannot overwrite a newer one.

The work is one reconcile pass over the whole cluster, run on a thread of its own
whenever a watched znode changes (brokers, topics, assignments, deletions,
reassignments, elections) and on a timer for leader balance. A pass reads state fresh
from ZooKeeper, decides with the pure functions of `placement`, and writes differences.
"""
from __future__ import annotations

import logging
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from josef.cluster import zk_formats as zkf
from josef.cluster.placement import (NO_LEADER, after_broker_changes, elect, imbalanced_brokers,
                                     preferred_leader, reassignment)

log = logging.getLogger("josef.controller")

SAFETY_PASS_S = 10.0  # a full pass even without events: heals anything a lost watch missed


class Controller:
    def __init__(self, zk: KazooClient, broker_id: int, settings):
        """`settings()` returns the current broker config (for unclean election and balance)."""
        self.zk = zk
        self.broker_id = broker_id
        self.settings = settings
        self.active = False
        self.epoch = 0
        self._epoch_version = -1
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"controller-{broker_id}", daemon=True)
        self._next_balance_check = 0.0
        self._balance_now = False
        self._unclean_wanted: set[tuple[str, int]] = set()  # ElectLeaders(UNCLEAN), handed in by the broker
        self._lock = threading.Lock()

    def start(self) -> None:
        self.zk.add_listener(self._on_session_state)
        self.zk.DataWatch(zkf.CONTROLLER, self._on_controller_node)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self.active:
            self.active = False
            try:  # let another broker take over at once rather than after our session ends
                data, _ = self.zk.get(zkf.CONTROLLER)
                if zkf.decode_controller(data) == self.broker_id:
                    self.zk.delete(zkf.CONTROLLER)
            except Exception as e:  # the session may be gone already: then so is the znode
                log.debug("resigning: %r", e)

    def trigger(self, *_args) -> None:
        self._wake.set()

    def elect_unclean(self, partitions: list[tuple[str, int]]) -> None:
        """Let an out-of-sync replica lead these offline partitions on the next pass (may lose data)."""
        with self._lock:
            self._unclean_wanted.update(partitions)
        self._wake.set()

    def _on_session_state(self, state) -> None:
        if state == KazooState.LOST and self.active:
            log.warning("controller %d lost its ZooKeeper session: resigning", self.broker_id)
            self.active = False
        self._wake.set()

    def _on_controller_node(self, data, stat) -> None:
        if data is not None and zkf.decode_controller(data) != self.broker_id:
            self.active = False  # someone else holds the seat
        self._wake.set()  # and when the seat is free, try to take it

    # --- the controller thread -------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(timeout=SAFETY_PASS_S)
            self._wake.clear()
            if self._stopped.is_set():
                break
            try:
                if not self.active:
                    self._try_to_lead()
                if self.active:
                    self._reconcile()
            except Exception as e:  # transient ZooKeeper trouble: retry soon
                if self._stopped.is_set():
                    break
                log.warning("controller pass failed: %r", e)
                time.sleep(0.2)
                self._wake.set()

    def _try_to_lead(self) -> None:
        try:
            self.zk.create(zkf.CONTROLLER, zkf.encode_controller(self.broker_id), ephemeral=True)
        except NodeExistsError:
            return
        for _ in range(10):
            try:
                data, stat = self.zk.get(zkf.CONTROLLER_EPOCH)
                epoch = int(data or b"0") + 1
                stat = self.zk.set(zkf.CONTROLLER_EPOCH, str(epoch).encode(), version=stat.version)
                break
            except NoNodeError:
                try:
                    epoch = 1
                    self.zk.create(zkf.CONTROLLER_EPOCH, b"1")
                    stat = self.zk.exists(zkf.CONTROLLER_EPOCH)
                    break
                except NodeExistsError:
                    continue
            except BadVersionError:
                continue
        else:  # give the seat back rather than hold it without an epoch
            self.zk.delete(zkf.CONTROLLER)
            raise RuntimeError("could not bump /controller_epoch")
        self.epoch, self._epoch_version = epoch, stat.version
        self.active = True
        self._next_balance_check = time.monotonic() + self.settings()["leader.imbalance.check.interval.seconds"]
        log.info("broker %d is the controller (epoch %d)", self.broker_id, epoch)

    # --- one pass ----------------------------------------------------------------------

    def _fenced_commit(self, ops) -> bool:
        """Apply `ops(transaction)` only if we still hold the controller epoch."""
        tx = self.zk.transaction()
        tx.check(zkf.CONTROLLER_EPOCH, self._epoch_version)
        ops(tx)
        results = tx.commit()
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            if isinstance(results[0], Exception):
                log.warning("controller %d was fenced (epoch moved on): resigning", self.broker_id)
                self.active = False
            return False
        return True

    def _reconcile(self) -> None:
        config = self.settings()
        live = {int(c) for c in self.zk.get_children(zkf.BROKER_IDS, watch=self.trigger)}
        self._delete_topics()
        preferred_wanted = self._preferred_requests()
        with self._lock:
            unclean_wanted, self._unclean_wanted = self._unclean_wanted, set()
        legacy_moves = self._legacy_reassignments()
        if time.monotonic() >= self._next_balance_check:
            self._next_balance_check = time.monotonic() + config["leader.imbalance.check.interval.seconds"]
            self._balance_now = config["auto.leader.rebalance.enable"]
        topics = self.zk.get_children(zkf.TOPICS, watch=self.trigger)
        layout = []  # (replicas, leader) of every partition, for the balance check
        for topic in topics:
            try:
                data, stat = self.zk.get(zkf.topic_path(topic), watch=self.trigger)
            except NoNodeError:
                continue
            assignment = zkf.decode_assignment(data)
            if legacy_moves:
                assignment = self._start_legacy(topic, assignment, stat, legacy_moves)
            unclean = self._unclean(topic, config)
            for partition, replicas in sorted(assignment.replicas.items()):
                key = (topic, partition)
                leader = self._partition_pass(topic, partition, assignment, replicas, live,
                                              unclean or key in unclean_wanted, key in preferred_wanted)
                layout.append((replicas, leader))
            self._finish_reassignments(topic, live)
        if self._balance_now:
            self._balance_now = False
            self._rebalance(topics, live, config["leader.imbalance.per.broker.percentage"], layout)
        if preferred_wanted:
            self._delete_quietly(zkf.PREFERRED_ELECTION)
        if legacy_moves and not self._any_reassignment(legacy_moves):
            self._delete_quietly(zkf.REASSIGN)

    def _unclean(self, topic: str, config) -> bool:
        try:
            overrides = zkf.decode_configs(self.zk.get(zkf.topic_config_path(topic))[0])
        except NoNodeError:
            overrides = {}
        value = overrides.get("unclean.leader.election.enable")
        return value.lower() == "true" if value is not None else config["unclean.leader.election.enable"]

    def _partition_pass(self, topic, partition, assignment, replicas, live, unclean, preferred) -> int:
        """Create, repair or move one partition's leadership; returns its leader."""
        path = zkf.partition_state_path(topic, partition)
        try:
            data, stat = self.zk.get(path)
        except NoNodeError:
            alive = tuple(r for r in replicas if r in live)
            if not alive:
                return NO_LEADER
            state = zkf.PartitionState(alive[0], 0, alive, self.epoch)
            self.zk.ensure_path(path.rsplit("/", 1)[0])  # parents hold no data: no fencing needed
            self._fenced_commit(lambda tx: tx.create(path, zkf.encode_state(state)))
            return state.leader
        state = zkf.decode_state(data)
        target = tuple(r for r in replicas if r not in assignment.removing.get(partition, ()))
        leader, isr = after_broker_changes(replicas, state.leader, state.isr, live, unclean)
        if leader not in replicas and leader != NO_LEADER:  # its replica was moved away
            chosen = elect(replicas, isr, live, unclean, candidates=target)
            leader, isr = chosen if chosen else (NO_LEADER, isr)
        if preferred:
            better = preferred_leader(replicas, leader, isr, live)
            if better is not None:
                leader = better
        if (leader, isr) != (state.leader, state.isr):
            new = zkf.PartitionState(leader, state.leader_epoch + 1, isr, self.epoch)
            if self._fenced_commit(lambda tx: tx.set_data(path, zkf.encode_state(new), version=stat.version)):
                log.info("%s-%d: leader %d -> %d, isr %s (epoch %d)", topic, partition, state.leader, leader,
                         list(isr), new.leader_epoch)
        return leader

    def _finish_reassignments(self, topic: str, live: set[int]) -> None:
        """Complete reassignments whose target replicas are all in sync: drop the leavers."""
        try:
            data, stat = self.zk.get(zkf.topic_path(topic))
        except NoNodeError:
            return
        a = zkf.decode_assignment(data)
        if not a.adding and not a.removing:
            return
        replicas, adding, removing = dict(a.replicas), dict(a.adding), dict(a.removing)
        state_writes = []
        for p in sorted(set(adding) | set(removing)):
            target = tuple(r for r in replicas[p] if r not in removing.get(p, ()))
            try:  # watched: the leader adding a caught-up replica to the ISR wakes us
                sdata, sstat = self.zk.get(zkf.partition_state_path(topic, p), watch=self.trigger)
            except NoNodeError:
                continue
            state = zkf.decode_state(sdata)
            if not all(r in state.isr for r in target):
                continue  # new replicas still catching up
            if state.leader not in target:
                chosen = elect(target, state.isr, live, False, candidates=target)
                if chosen is None:
                    continue
                leader = chosen.leader
            else:
                leader = state.leader
            isr = tuple(r for r in state.isr if r in target)
            if (leader, isr) != (state.leader, state.isr):
                state_writes.append((p, sstat.version, zkf.PartitionState(leader, state.leader_epoch + 1, isr,
                                                                          self.epoch)))
            replicas[p] = target
            adding.pop(p, None)
            removing.pop(p, None)
            log.info("%s-%d: reassignment to %s complete", topic, p, list(target))
        if (replicas, adding, removing) == (a.replicas, a.adding, a.removing):
            return
        new = zkf.encode_assignment(zkf.TopicAssignment(a.topic_id, replicas, adding, removing))

        def ops(tx):
            for p, version, state in state_writes:
                tx.set_data(zkf.partition_state_path(topic, p), zkf.encode_state(state), version=version)
            tx.set_data(zkf.topic_path(topic), new, version=stat.version)
        self._fenced_commit(ops)

    def _rebalance(self, topics, live, percentage, layout) -> None:
        """Kafka's auto leader rebalance: give preferred replicas back their leadership."""
        unbalanced = imbalanced_brokers(layout, percentage)
        if not unbalanced:
            return
        for topic in topics:
            try:
                a = zkf.decode_assignment(self.zk.get(zkf.topic_path(topic))[0])
            except NoNodeError:
                continue
            for p, replicas in a.replicas.items():
                if replicas and replicas[0] in unbalanced and p not in a.adding and p not in a.removing:
                    self._partition_pass(topic, p, a, replicas, live, False, True)

    # --- admin znodes -------------------------------------------------------------------

    def _delete_topics(self) -> None:
        for topic in self.zk.get_children(zkf.DELETE_TOPICS, watch=self.trigger):
            def ops(tx, topic=topic):
                for path in _subtree(self.zk, zkf.topic_path(topic)):
                    tx.delete(path)
                if self.zk.exists(zkf.topic_config_path(topic)):
                    tx.delete(zkf.topic_config_path(topic))
                tx.delete(f"{zkf.DELETE_TOPICS}/{topic}")
            if self._fenced_commit(ops):
                log.info("deleted topic %s", topic)

    def _preferred_requests(self) -> set[tuple[str, int]]:
        try:
            data, _ = self.zk.get(zkf.PREFERRED_ELECTION, watch=self.trigger)
        except NoNodeError:
            self.zk.exists(zkf.PREFERRED_ELECTION, watch=self.trigger)
            return set()
        return set(zkf.decode_reassignment(data))

    def _legacy_reassignments(self) -> dict[tuple[str, int], tuple[int, ...]]:
        try:
            data, _ = self.zk.get(zkf.REASSIGN, watch=self.trigger)
        except NoNodeError:
            self.zk.exists(zkf.REASSIGN, watch=self.trigger)
            return {}
        try:
            return zkf.decode_reassignment(data)
        except (ValueError, KeyError, TypeError):
            log.error("ignoring malformed %s", zkf.REASSIGN)
            self._delete_quietly(zkf.REASSIGN)
            return {}

    def _start_legacy(self, topic, assignment, stat, moves):
        """Turn entries of /admin/reassign_partitions into reassignments on the topic znode."""
        replicas, adding, removing = dict(assignment.replicas), dict(assignment.adding), dict(assignment.removing)
        started = False
        for (t, p), target in moves.items():
            if t != topic or p not in replicas or p in adding or p in removing or replicas[p] == target:
                continue
            replicas[p], adding[p], removing[p] = reassignment(replicas[p], target)
            started = True
        if not started:
            return assignment
        new = zkf.TopicAssignment(assignment.topic_id, replicas, adding, removing)
        if self._fenced_commit(lambda tx: tx.set_data(zkf.topic_path(topic), zkf.encode_assignment(new),
                                                      version=stat.version)):
            return new
        return assignment

    def _any_reassignment(self, moves) -> bool:
        for topic in {t for t, _ in moves}:
            try:
                a = zkf.decode_assignment(self.zk.get(zkf.topic_path(topic))[0])
            except NoNodeError:
                continue
            if any((topic, p) in moves for p in set(a.adding) | set(a.removing)):
                return True
        return False

    def _delete_quietly(self, path: str) -> None:
        try:
            self.zk.delete(path)
        except NoNodeError:
            pass


def _subtree(zk: KazooClient, path: str) -> list[str]:
    """Every znode under `path`, children before parents, for a recursive delete."""
    out = []
    try:
        for child in zk.get_children(path):
            out.extend(_subtree(zk, f"{path}/{child}"))
    except NoNodeError:
        return []
    out.append(path)
    return out
