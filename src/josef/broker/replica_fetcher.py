"""Followers: one fetcher per leader broker copies that leader's batches byte for byte.

A fetcher sends Fetch with this broker's id as replica id over the inter-broker
listener, appends what comes back with the leader's offsets and epochs, and follows the
leader's high watermark. The network call runs in a worker thread (the small blocking
client); appends run on the event loop, which owns the logs. This is the copy step of a
reassignment; leader-epoch truncation and the full ISR protocol build on it.
"""
from __future__ import annotations

import asyncio
import logging
import time

from josef.broker.throttle import Quota, is_throttled
from josef.client.wire import KafkaConnection, WireError, request_class
from josef.protocol.entities import to_entity
from josef.protocol.errors import Error
from josef.records.batch import InvalidRecord

log = logging.getLogger("josef.fetcher")

FETCH_VERSION = 12
MAX_WAIT_MS = 500
PARTITION_MAX_BYTES = 1 << 20
RETRY_S = 0.5


class ReplicaFetchers:
    """The fetchers of this broker, kept in line with the metadata snapshot."""

    def __init__(self, broker):
        self.broker = broker
        self.wanted: dict[int, set[tuple[str, int]]] = {}  # leader id -> partitions to follow
        self.tasks: dict[int, asyncio.Task] = {}
        self.validated: dict[tuple[str, int], int] = {}  # leader epoch our log was checked against
        self.quota = Quota()  # follower.replication.throttled.rate, shared by every fetcher
        self.closed = False

    def on_metadata(self, snapshot) -> None:
        if self.closed:
            return
        me = self.broker.broker_id
        wanted: dict[int, set[tuple[str, int]]] = {}
        for topic in snapshot.topics.values():
            for p in topic.partitions:
                if me in p.replicas and p.leader >= 0 and p.leader != me:
                    wanted.setdefault(p.leader, set()).add((topic.name, p.partition))
        self.wanted = wanted
        for leader in wanted:
            if leader not in self.tasks or self.tasks[leader].done():
                self.tasks[leader] = asyncio.get_running_loop().create_task(self._run(leader))

    async def stop(self) -> None:
        self.closed = True
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    async def _run(self, leader: int) -> None:
        conn = None
        try:
            while self.wanted.get(leader):
                if conn is None:
                    conn = await self._connect(leader)
                    if conn is None:
                        await asyncio.sleep(RETRY_S)
                        continue
                try:
                    unchecked = self._unchecked(leader)
                    if unchecked:
                        response = await asyncio.to_thread(conn.request, self._epoch_request(unchecked))
                        self._truncate(leader, unchecked, response)
                    request = self._request(leader)
                    if request is None:  # nothing checked against this leader's epoch yet
                        await asyncio.sleep(RETRY_S / 5)
                        continue
                    response = await asyncio.to_thread(conn.request, request)
                except (WireError, OSError) as e:
                    log.info("fetching from broker %d: %s", leader, e)
                    conn.close()
                    conn = None
                    await asyncio.sleep(RETRY_S)
                    continue
                if not self._apply(leader, response):
                    await asyncio.sleep(RETRY_S / 5)  # only errors: metadata is converging
        finally:
            if conn is not None:
                conn.close()
            self.tasks.pop(leader, None)

    async def _connect(self, leader: int) -> KafkaConnection | None:
        info = self.broker.store.snapshot.brokers.get(leader)
        endpoint = info.endpoint(self.broker.listeners.inter_broker) if info else None
        if endpoint is None:
            return None
        try:
            return await asyncio.to_thread(KafkaConnection, endpoint[0], endpoint[1], 10.0,
                                           f"replica-fetcher-{self.broker.broker_id}")
        except (WireError, OSError) as e:
            log.info("cannot reach broker %d at %s:%d: %s", leader, *endpoint, e)
            return None

    def _request(self, leader: int):
        topics: dict[str, list[dict]] = {}
        snapshot = self.broker.store.snapshot
        for name, partition in sorted(self.wanted.get(leader, ())):
            plog = self.broker.logs.get(name, partition)
            info = snapshot.topics.get(name)
            if plog is None or info is None or self.validated.get((name, partition)) != \
                    info.partitions[partition].leader_epoch:
                continue
            if self._throttled(info, partition) and not self.quota.available(self._rate()):
                continue
            topics.setdefault(name, []).append({
                "partition": partition, "current_leader_epoch": info.partitions[partition].leader_epoch,
                "fetch_offset": plog.log_end_offset, "last_fetched_epoch": -1,
                "log_start_offset": plog.log_start_offset, "partition_max_bytes": PARTITION_MAX_BYTES})
        if not topics:
            return None
        return to_entity(request_class(1, FETCH_VERSION), {
            "cluster_id": None, "replica_id": self.broker.broker_id, "max_wait": MAX_WAIT_MS, "min_bytes": 1,
            "max_bytes": 0x7FFFFFFF, "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
            "forgotten_topics_data": [], "rack_id": ""})

    def _throttled(self, info, partition: int) -> bool:
        return info is not None and is_throttled(info.configs.get("follower.replication.throttled.replicas"),
                                                 partition, self.broker.broker_id)

    def _rate(self) -> int:
        return self.broker.config["follower.replication.throttled.rate"]

    # --- truncation by leader epoch (KIP-101, KIP-279) -----------------------------------

    def _unchecked(self, leader: int) -> dict[tuple[str, int], int]:
        """Partitions whose leader epoch changed since our log was last checked against it."""
        snapshot = self.broker.store.snapshot
        out = {}
        for key in self.wanted.get(leader, ()):
            info = snapshot.topics.get(key[0])
            if info is not None and self.validated.get(key) != info.partitions[key[1]].leader_epoch:
                out[key] = info.partitions[key[1]].leader_epoch
        return out

    def _epoch_request(self, unchecked: dict[tuple[str, int], int]):
        topics: dict[str, list[dict]] = {}
        for (name, partition), current in sorted(unchecked.items()):
            plog = self.broker.logs.get(name, partition)
            topics.setdefault(name, []).append({
                "partition": partition, "current_leader_epoch": current,
                "leader_epoch": plog.epochs.latest_epoch if plog is not None else -1})
        return to_entity(request_class(23, 4), {"replica_id": self.broker.broker_id, "topics": [
            {"topic": t, "partitions": ps} for t, ps in topics.items()]})

    def _truncate(self, leader: int, unchecked: dict[tuple[str, int], int], response) -> None:
        """Cut our log back to where it stops agreeing with the leader's, then fetch from there."""
        for topic in response.topics:
            for p in topic.partitions:
                key = (topic.topic, p.partition)
                plog = self.broker.logs.get(*key)
                if plog is None or key not in unchecked or p.error_code != Error.NONE:
                    continue
                mine = plog.epochs.latest_epoch
                if mine < 0:
                    point = plog.log_end_offset  # nothing written under any epoch yet
                elif p.end_offset < 0:
                    point = min(plog.high_watermark, plog.log_end_offset)
                elif p.leader_epoch == mine:
                    point = min(p.end_offset, plog.log_end_offset)
                else:  # the leader never had our latest epoch: agree up to the end of its last one
                    _, own_end = plog.end_offset_for_epoch(p.leader_epoch)
                    point = min(p.end_offset, own_end if own_end >= 0 else plog.log_end_offset)
                if point < plog.log_end_offset:
                    log.info("%s-%d: truncating from %d to %d to match leader %d", *key, plog.log_end_offset,
                             point, leader)
                    plog.truncate_to(point)
                self.validated[key] = unchecked[key]

    def _apply(self, leader: int, response) -> bool:
        """Append what the leader sent; False if every partition came back with an error."""
        now = int(time.time() * 1000)
        progressed = False
        for topic in response.responses:
            for p in topic.partitions:
                key = (topic.topic, p.partition_index)
                plog = self.broker.logs.get(*key)
                if plog is None or key not in self.wanted.get(leader, ()):
                    continue
                if p.error_code == Error.OFFSET_OUT_OF_RANGE:
                    if p.log_start_offset > plog.log_end_offset:
                        log.info("%s-%d: behind the leader's log start %d: starting over there", *key,
                                 p.log_start_offset)
                        plog.truncate_fully_and_start_at(p.log_start_offset)
                    else:  # ahead of the leader's log end: find the divergence point again
                        self.validated.pop(key, None)
                    continue
                if p.error_code != Error.NONE:
                    continue  # a leader change on its way: the next snapshot redirects us
                progressed = True
                if p.records:
                    if self._throttled(self.broker.store.snapshot.topics.get(key[0]), key[1]):
                        self.quota.spend(len(p.records), self._rate())
                    try:
                        plog.append_as_follower(p.records, now)
                    except InvalidRecord as e:
                        log.error("%s-%d: refusing replicated data: %s", *key, e)
                        continue
                plog.high_watermark = min(max(plog.high_watermark, p.high_watermark), plog.log_end_offset)
        return progressed
