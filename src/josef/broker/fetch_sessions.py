"""Incremental fetch sessions (KIP-227): the broker remembers what a fetcher asked for last time.

A fetcher (a consumer, or a follower broker) that sends a full Fetch with session id 0 and epoch
0 gets a session id back, when a slot is free. From then on it sends only what changed: the
partitions it adds or whose fetch position moved (the others are taken from the session, with
the fetch offset they had) and `forgotten_topics_data` for those it drops. The answer names only
the partitions with something to say: records, a high watermark or log start offset that moved
since the session last told the fetcher, or an error. With 50 idle partitions followed, a
follower's round trip carries one partition each way instead of fifty.

Rules (Kafka's `FetchSession.scala`, `FetchMetadata.java`):

- session id 0, epoch -1: sessionless, as before KIP-227 (Fetch v4..v6, librdkafka, aiokafka);
- epoch 0: a full fetch that opens a new session; any session it names is closed first;
- epoch -1 with a session id: close that session, answer sessionless;
- any other epoch: incremental; an unknown id gets FETCH_SESSION_ID_NOT_FOUND, an epoch other
  than the one the session expects gets INVALID_FETCH_SESSION_EPOCH (a lost answer or a
  duplicate); either way the fetcher falls back to a full fetch. Epochs run 1, 2, ... and wrap
  from 2^31-1 to 1;
- an incremental fetch that leaves the session empty closes it (answer with session id 0);
- at most `max.incremental.fetch.session.cache.slots` sessions (default 1000); when full, a new
  session may take the slot of one unused for 2 minutes, else of one created more than 2 minutes
  ago that is smaller (or, for a follower, any consumer's session); otherwise it is not created
  and the answer carries session id 0, which tells the fetcher to keep sending full fetches.

Two additions of josef's own, neither visible to a well-behaved fetcher: a session answers only
to the replica id that opened it (another one gets FETCH_SESSION_ID_NOT_FOUND), and a session
never holds more partitions than the cluster has (a fetch beyond that is answered sessionless),
which bounds the memory a hostile client can pin.

Sessions live in memory only. After a broker restart every id is unknown, and a leadership change
shows up as a per-partition error in the next answer; fetchers recover with a full fetch.
Sans-IO: callers pass the time; the handler (handlers/fetch.py) does the reading.
"""
from __future__ import annotations

import random
from typing import Callable, NamedTuple

from josef.protocol.errors import Error

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
EVICTION_MS = 120_000  # Kafka's MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS
INT32_MAX = 2**31 - 1


def next_epoch(epoch: int) -> int:
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch >= INT32_MAX else epoch + 1


class CachedPartition:
    """What the session knows of one partition: the fetcher's last request for it, the high
    watermark and log start offset the fetcher was last told (-1: tell it next time), and the
    log its last read found nothing wrong with (None: read it next time)."""
    __slots__ = ("request", "high_watermark", "log_start_offset", "log")

    def __init__(self, request, high_watermark: int = -1, log_start_offset: int = -1):
        self.request = request  # josef.protocol.fetch.FetchPartition
        self.high_watermark = high_watermark
        self.log_start_offset = log_start_offset
        self.log = None


class FetchSession:
    __slots__ = ("id", "epoch", "replica_id", "partitions", "created_ms", "last_used_ms", "metadata_epoch")

    def __init__(self, session_id: int, replica_id: int, partitions: dict, now_ms: float):
        self.id = session_id
        self.epoch = next_epoch(INITIAL_EPOCH)  # the epoch the next incremental fetch must carry
        self.replica_id = replica_id
        # (topic, partition) -> CachedPartition; the order is the read order: partitions that
        # returned records move to the end, so a max_bytes budget reaches the others next time
        self.partitions: dict[tuple[str, int], CachedPartition] = partitions
        self.created_ms = now_ms
        self.last_used_ms = now_ms
        self.metadata_epoch = None  # ClusterMetadata.epoch of the last answer (see plan())

    @property
    def privileged(self) -> bool:
        """Followers' sessions: evicted last (they keep replication cheap)."""
        return self.replica_id >= 0

    def update(self, topics, forgotten) -> None:
        """Apply an incremental request: add or update what it names, then drop what it forgets."""
        parts = self.partitions
        for name, partitions in topics:
            for p in partitions:
                cached = parts.get((name, p.partition))
                if cached is None:
                    parts[(name, p.partition)] = CachedPartition(p)
                else:
                    cached.request = p
                    cached.log = None
        for name, indexes in forgotten:
            for index in indexes:
                parts.pop((name, index), None)

    def plan(self, metadata_epoch: int | None = None, follower: bool = False) -> tuple[list, list]:
        """(what to read, what not to): the session's partitions as a request's topics
        [(name, [FetchPartition])], consecutive partitions of one topic grouped (a topic may
        appear twice after rotation, as in Kafka), and the keys of those left out.

        Kafka reads every partition of a session on every fetch; the answer then drops those with
        nothing new. A partition is left out here when reading it could not give anything to say:
        the metadata (its snapshot's epoch) is that of the last answer, which found no error, the
        fetcher's parameters have not changed since, the log's high watermark and log start
        offset are what the fetcher was told, and there is nothing to send from the fetch offset
        (a follower is at the log end; a consumer at or above the high watermark). An idle
        follower at its log end stays caught up: the caller records that fetch (see
        isr.Replication.followers_caught_up), which is all a read would have done."""
        topics = []
        idle = []
        same = metadata_epoch is not None and metadata_epoch == self.metadata_epoch
        last = group = None
        for key, cached in self.partitions.items():
            plog = cached.log
            if same and plog is not None:
                hw = plog.high_watermark
                if hw == cached.high_watermark and plog.log_start_offset == cached.log_start_offset:
                    offset = cached.request.fetch_offset
                    if (offset == plog.log_end_offset) if follower else (hw <= offset <= plog.log_end_offset):
                        idle.append(key)
                        continue
            if key[0] != last:
                last = key[0]
                group = []
                topics.append((last, group))
            group.append(cached.request)
        return topics, idle

    def select(self, topics, metadata_epoch: int | None = None, quiet_log: Callable | None = None) -> list:
        """Keep, of what was read for the session, only what the fetcher has not been told yet.

        `topics` = [(name, [FetchPartitionResponse])]; updates the cached high watermarks and log
        start offsets, moves partitions with records to the end of the read order, and remembers
        for plan() the log (`quiet_log(name, partition)`, None to always read) of every partition
        answered without an error, and the `metadata_epoch` they were read under."""
        parts = self.partitions
        out = []
        rotate = []
        for name, answers in topics:
            kept = []
            for a in answers:
                key = (name, a.partition)
                cached = parts.get(key)
                if cached is None:  # forgotten since the read (only a pipelined duplicate can)
                    continue
                include = False
                if a.records:
                    include = True
                    rotate.append(key)
                if a.error_code:
                    include = True
                    cached.high_watermark = -1  # resend once the error is gone
                    cached.log = None
                else:
                    if cached.high_watermark != a.high_watermark:
                        include = True
                        cached.high_watermark = a.high_watermark
                    if cached.log_start_offset != a.log_start_offset:
                        include = True
                        cached.log_start_offset = a.log_start_offset
                    cached.log = quiet_log(name, a.partition) if quiet_log is not None else None
                if include:
                    kept.append(a)
            if kept:
                out.append((name, kept))
        for key in rotate:
            parts[key] = parts.pop(key)
        self.metadata_epoch = metadata_epoch
        return out


class Context(NamedTuple):
    """How to answer one Fetch: which partitions to read, and what to do with the answer."""
    kind: int  # SESSIONLESS, FULL, INCREMENTAL or ERROR
    topics: list  # [(name, [FetchPartition])] to read; INCREMENTAL: see FetchSession.plan()
    error: int = Error.NONE
    session: FetchSession | None = None
    epoch: int = 0  # INCREMENTAL: the session epoch the answer belongs to
    replica_id: int = -1  # FULL: who opens the session


SESSIONLESS, FULL, INCREMENTAL, ERROR = range(4)


class FetchSessionCache:
    """The broker's sessions, at most `max_slots` of them; see the module doc for the rules."""

    def __init__(self, max_slots: int, max_partitions: Callable[[], int] | None = None,
                 eviction_ms: int = EVICTION_MS, rng: random.Random | None = None):
        self.max_slots = max_slots
        self.max_partitions = max_partitions or (lambda: 1 << 62)  # a session's size limit
        self.eviction_ms = eviction_ms
        self.sessions: dict[int, FetchSession] = {}  # in order of last use, least recent first
        self.evictions = 0
        self._rng = rng or random.SystemRandom()  # ids nobody can predict

    def __len__(self) -> int:
        return len(self.sessions)

    # --- one request --------------------------------------------------------------------------

    def open(self, request, now_ms: float) -> Context:
        """Decide how to answer `request` (a josef.protocol.fetch.FetchRequest); for incremental
        fetches this updates the session and moves its epoch on, as Kafka does on arrival."""
        session_id, epoch = request.session_id, request.session_epoch
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)  # a full fetch closes the session it names
            if epoch == INITIAL_EPOCH and self.max_slots > 0:
                return Context(FULL, request.topics, replica_id=request.replica_id)
            return Context(SESSIONLESS, request.topics)
        session = self.sessions.get(session_id)
        if session is None or session.replica_id != request.replica_id:
            return Context(ERROR, [], Error.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            return Context(ERROR, [], Error.INVALID_FETCH_SESSION_EPOCH)
        session.update(request.topics, request.forgotten)
        if not session.partitions or len(session.partitions) > self.max_partitions():
            self.remove(session_id)
            return Context(SESSIONLESS, request.topics)
        self._touch(session, now_ms)
        session.epoch = next_epoch(session.epoch)
        return Context(INCREMENTAL, [], session=session, epoch=session.epoch)

    def finish(self, context: Context, topics, now_ms: float, metadata_epoch: int | None = None,
               quiet_log: Callable | None = None) -> tuple[int, list, int]:
        """(session id, topics, error) of the answer, given what was read for `context`
        (`metadata_epoch` and `quiet_log`: see FetchSession.select)."""
        kind = context.kind
        if kind == INCREMENTAL:
            session = context.session
            if session.epoch != context.epoch:  # another fetch of this session came in meanwhile
                return session.id, [], Error.INVALID_FETCH_SESSION_EPOCH
            return session.id, session.select(topics, metadata_epoch, quiet_log), Error.NONE
        if kind == FULL and topics:
            return self._create(context, topics, now_ms), topics, Error.NONE
        return INVALID_SESSION_ID, topics, context.error

    # --- the cache ----------------------------------------------------------------------------

    def _create(self, context: Context, answered, now_ms: float) -> int:
        parts: dict[tuple[str, int], CachedPartition] = {}
        for name, partitions in context.topics:
            for p in partitions:
                parts[(name, p.partition)] = CachedPartition(p)
        if len(parts) > self.max_partitions():
            return INVALID_SESSION_ID
        for name, answers in answered:
            for a in answers:
                cached = parts.get((name, a.partition))
                if cached is not None and not a.error_code:
                    cached.high_watermark, cached.log_start_offset = a.high_watermark, a.log_start_offset
        return self.create(context.replica_id, parts, now_ms)

    def create(self, replica_id: int, partitions: dict, now_ms: float) -> int:
        """A new session's id, or 0 when no slot is free and none may be taken."""
        if self.max_slots <= 0:
            return INVALID_SESSION_ID
        if len(self.sessions) >= self.max_slots and not self._evict_for(replica_id >= 0, len(partitions), now_ms):
            return INVALID_SESSION_ID
        session_id = self._new_id()
        self.sessions[session_id] = FetchSession(session_id, replica_id, partitions, now_ms)
        return session_id

    def get(self, session_id: int) -> FetchSession | None:
        return self.sessions.get(session_id)

    def remove(self, session_id: int) -> FetchSession | None:
        return self.sessions.pop(session_id, None)

    def _touch(self, session: FetchSession, now_ms: float) -> None:
        session.last_used_ms = now_ms
        del self.sessions[session.id]  # to the end: the dict stays in order of last use
        self.sessions[session.id] = session

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randrange(1, INT32_MAX + 1)
            if session_id not in self.sessions:
                return session_id

    def _evict_for(self, privileged: bool, size: int, now_ms: float) -> bool:
        """Make room for a new session of `size` partitions if Kafka's rules allow it.

        A session unused for the eviction time goes first. Otherwise the least valuable
        evictable session (ordered by privileged, then size, then id) goes if the newcomer is worth
        more: sessions older than the eviction time are evictable by anyone, consumers' sessions
        by a follower at any time."""
        oldest = next(iter(self.sessions.values()), None)
        if oldest is None:
            return False
        if now_ms - oldest.last_used_ms > self.eviction_ms:
            self.remove(oldest.id)
            self.evictions += 1
            return True
        victim = None
        for s in self.sessions.values():
            mature = now_ms - s.created_ms > self.eviction_ms
            if mature or (privileged and not s.privileged):
                if victim is None or (s.privileged, len(s.partitions), s.id) < \
                        (victim.privileged, len(victim.partitions), victim.id):
                    victim = s
        # the newcomer's key is (privileged, size, 0): it must not sort below the victim's
        if victim is None or (privileged, size, 0) < (victim.privileged, len(victim.partitions), victim.id):
            return False
        self.remove(victim.id)
        self.evictions += 1
        return True


class FetcherSession:
    """The fetcher's half of a session (Kafka's FetchSessionHandler), for josef's followers.

    `build` turns the partitions wanted now into what to send: everything on a full fetch; on an
    incremental one, only the partitions that are new or whose fetch parameters changed, and the
    ones no longer wanted as forgotten. `on_response` and `on_failure` move the session on or
    fall back to a full fetch (an error code, a lost connection, a leader that restarted).
    """
    __slots__ = ("session_id", "epoch", "sent")

    def __init__(self):
        self.session_id = INVALID_SESSION_ID
        self.epoch = INITIAL_EPOCH
        self.sent: dict = {}  # key -> fetch parameters, as the leader's session holds them

    @property
    def full(self) -> bool:
        return self.epoch in (INITIAL_EPOCH, FINAL_EPOCH)

    def build(self, wanted: dict) -> tuple[dict, list]:
        """(partitions to send, partitions to forget) for `wanted` = {key: parameters}."""
        if self.full:
            self.sent = dict(wanted)
            return self.sent, []
        sent = self.sent
        forget = [key for key in sent if key not in wanted]
        for key in forget:
            del sent[key]
        changed = {}
        for key, params in wanted.items():
            if sent.get(key) != params:
                changed[key] = sent[key] = params
        return changed, forget

    def on_response(self, error: int, session_id: int) -> bool:
        """Move on after an answer; False if the answer is a session error (resend in full)."""
        if error:
            if error == Error.FETCH_SESSION_ID_NOT_FOUND:
                self.session_id = INVALID_SESSION_ID
            self.epoch = INITIAL_EPOCH  # a full fetch, closing the session it names, if any
            return False
        if session_id == INVALID_SESSION_ID:  # sessionless answer, or the leader closed the session
            self.session_id, self.epoch = INVALID_SESSION_ID, INITIAL_EPOCH
        elif self.full:
            self.session_id, self.epoch = session_id, next_epoch(INITIAL_EPOCH)
        else:
            self.epoch = next_epoch(self.epoch)
        return True

    def on_failure(self) -> None:
        """No answer (connection lost): start again with a full fetch that closes the session."""
        self.epoch = INITIAL_EPOCH
