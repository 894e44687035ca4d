"""Followers: one fetcher per leader broker copies that leader's batches byte for byte.

A fetcher sends Fetch with this broker's id as replica id over the inter-broker
listener, appends what comes back with the leader's offsets and epochs, and follows the
leader's high watermark. Everything runs on the event loop, which owns the logs: the
connection (client/async_wire.py) reads each response into one buffer, josef's own decoder
(protocol/fetch.py) hands every partition's records over as a slice of it, and the log
appends that slice; no record byte is copied or parsed on the way beyond the batch headers
and CRCs the append checks. (A worker thread with the blocking client used to do the network
part: the hop cost more CPU and latency than it saved, bench/RESULTS.md.) This is the copy
step of a reassignment; leader-epoch truncation and the full ISR protocol build on it.

Each fetcher keeps an incremental fetch session (KIP-227, broker/fetch_sessions.py) with its
leader: after one full fetch, a request names only the partitions whose fetch position moved
and the answer only those with news, so an idle partition costs a round trip nothing on the
wire. A session error, a lost connection or a leader without a free slot sends it back to full
fetches. A partition that comes back with an error sits out the next RETRY_S / 5 (as Kafka's
fetcher backs a failed partition off), so it neither stalls the others nor makes the leader
answer at once in a loop.
"""
from __future__ import annotations

import asyncio
import logging
import time

from josef.broker.fetch_sessions import FetcherSession
from josef.broker.throttle import Quota, is_throttled
from josef.client.async_wire import AsyncKafkaConnection
from josef.client.wire import WireError, request_class
from josef.protocol.entities import to_entity
from josef.protocol.errors import Error
from josef.records.batch import InvalidRecord

log = logging.getLogger("josef.fetcher")

FETCH_VERSION = 12
MAX_WAIT_MS = 500
PARTITION_MAX_BYTES = 1 << 20
# Kafka's replica.fetch.response.max.bytes default; the connection refuses frames over 100 MiB,
# so asking for more would make a far-behind follower of many partitions reconnect forever
RESPONSE_MAX_BYTES = 10 << 20
RETRY_S = 0.5


class ReplicaFetchers:
    """The fetchers of this broker, kept in line with the metadata snapshot."""

    def __init__(self, broker):
        self.broker = broker
        self.wanted: dict[int, set[tuple[str, int]]] = {}  # leader id -> partitions to follow
        self.tasks: dict[int, asyncio.Task] = {}
        self.validated: dict[tuple[str, int], int] = {}  # leader epoch our log was checked against
        self.backoff: dict[tuple[str, int], tuple[int, float]] = {}  # partition -> (leader, may fetch again at)
        self.sessions: dict[int, FetcherSession] = {}  # leader id -> our fetch session with it
        self._followed_cache: dict[int, tuple] = {}  # leader id -> (snapshot, keys, entries)
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
        self._followed_cache = {leader: c for leader, c in self._followed_cache.items() if leader in wanted}
        if self.backoff:
            followed = set().union(*wanted.values())
            self.backoff = {k: t for k, t in self.backoff.items() if k in followed}
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
        session = self.sessions[leader] = FetcherSession()
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
                        response = await conn.request(self._epoch_request(unchecked))
                        self._truncate(leader, unchecked, response)
                    request = self._request(leader, session)
                    if request is None:  # nothing checked against this leader's epoch yet
                        await asyncio.sleep(RETRY_S / 5)
                        continue
                    response = await conn.fetch(request)
                except (WireError, OSError) as e:
                    log.info("fetching from broker %d: %s", leader, e)
                    session.on_failure()
                    conn.close()
                    conn = None
                    await asyncio.sleep(RETRY_S)
                    continue
                was_full = session.full
                if not session.on_response(response.error_code, response.session_id):
                    log.info("fetch session %d with broker %d: error %d; fetching in full", request.session_id,
                             leader, response.error_code)
                    continue
                if was_full and session.session_id:
                    log.info("fetch session %d with broker %d opened for %d partitions", session.session_id,
                             leader, len(session.sent))
                self._apply(leader, response)
        finally:
            if conn is not None:
                conn.close()
            self.tasks.pop(leader, None)
            if self.sessions.get(leader) is session:
                del self.sessions[leader]

    async def _connect(self, leader: int) -> AsyncKafkaConnection | None:
        info = self.broker.store.snapshot.brokers.get(leader)
        endpoint = info.endpoint(self.broker.listeners.inter_broker) if info else None
        if endpoint is None:
            return None
        try:
            return await AsyncKafkaConnection.connect(endpoint[0], endpoint[1], 10.0,
                                                      f"replica-fetcher-{self.broker.broker_id}")
        except (WireError, OSError) as e:
            log.info("cannot reach broker %d at %s:%d: %s", leader, *endpoint, e)
            return None

    def _followed(self, leader: int) -> list:
        """[(key, log or None, leader epoch, follower-throttled)] of the partitions we follow on
        `leader`, sorted; worked out once per metadata snapshot (a fetch loop runs per round trip)."""
        snapshot = self.broker.store.snapshot
        keys = self.wanted.get(leader, ())
        cached = self._followed_cache.get(leader)
        if cached is not None and cached[0] is snapshot and cached[1] is keys:
            return cached[2]
        entries = []
        complete = True
        for key in sorted(keys):
            info = snapshot.topics.get(key[0])
            if info is None:
                continue
            plog = self.broker.logs.get(*key)
            complete = complete and plog is not None
            entries.append((key, plog, info.partitions[key[1]].leader_epoch, self._throttled(info, key[1])))
        if complete:  # a log not open yet: look again next time
            self._followed_cache[leader] = (snapshot, keys, entries)
        return entries

    def _request(self, leader: int, session: FetcherSession):
        """The next Fetch for `leader`, or None when no partition may fetch from it now."""
        wanted = {}
        validated, backoff = self.validated, self.backoff
        now = time.monotonic()
        for key, plog, epoch, throttled in self._followed(leader):
            if plog is None or validated.get(key) != epoch:
                continue
            if backoff and key in backoff:
                if backoff[key][0] == leader and backoff[key][1] > now:
                    continue
                del backoff[key]
            if throttled and not self.quota.available(self._rate()):
                continue
            # FetchPartition v12 order: current_leader_epoch, fetch_offset, last_fetched_epoch,
            # log_start_offset, partition_max_bytes
            wanted[key] = (epoch, plog.log_end_offset, -1, plog.log_start_offset, PARTITION_MAX_BYTES)
        if not wanted:
            return None
        send, forget = session.build(wanted)
        topics: dict[str, list[dict]] = {}
        for (name, partition), (epoch, offset, last_epoch, start, max_bytes) in send.items():
            topics.setdefault(name, []).append({
                "partition": partition, "current_leader_epoch": epoch, "fetch_offset": offset,
                "last_fetched_epoch": last_epoch, "log_start_offset": start, "partition_max_bytes": max_bytes})
        forgotten: dict[str, list[int]] = {}
        for name, partition in forget:
            forgotten.setdefault(name, []).append(partition)
        return to_entity(request_class(1, FETCH_VERSION), {
            "cluster_id": None, "replica_id": self.broker.broker_id, "max_wait": MAX_WAIT_MS, "min_bytes": 1,
            "max_bytes": RESPONSE_MAX_BYTES, "isolation_level": 0, "session_id": session.session_id,
            "session_epoch": session.epoch,
            "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
            "forgotten_topics_data": [{"topic": t, "partitions": ps} for t, ps in forgotten.items()],
            "rack_id": ""})

    def _throttled(self, info, partition: int) -> bool:
        return info is not None and is_throttled(info.configs.get("follower.replication.throttled.replicas"),
                                                 partition, self.broker.broker_id)

    def _rate(self) -> int:
        return self.broker.config["follower.replication.throttled.rate"]

    # --- truncation by leader epoch (KIP-101, KIP-279) -----------------------------------

    def _unchecked(self, leader: int) -> dict[tuple[str, int], int]:
        """Partitions whose leader epoch changed since our log was last checked against it."""
        validated = self.validated
        return {key: epoch for key, _, epoch, _ in self._followed(leader) if validated.get(key) != epoch}

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

    def _apply(self, leader: int, response) -> None:
        """Append what the leader sent; partitions that came back with an error back off."""
        now = int(time.time() * 1000)
        for name, partitions in response.topics:
            for p in partitions:
                key = (name, p.partition)
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
                if p.error_code != Error.NONE:  # a leader change on its way: the next snapshot redirects us
                    self.backoff[key] = (leader, time.monotonic() + RETRY_S / 5)
                    continue
                if p.records:
                    if self._throttled(self.broker.store.snapshot.topics.get(key[0]), key[1]):
                        self.quota.spend(len(p.records), self._rate())
                    try:
                        plog.append_as_follower(p.records, now)
                    except InvalidRecord as e:
                        log.error("%s-%d: refusing replicated data: %s", *key, e)
                        continue
                plog.high_watermark = min(max(plog.high_watermark, p.high_watermark), plog.log_end_offset)
