"""Fetch: stored bytes go back untouched; a fetch with too little data waits in the purgatory.

Fetch sessions (KIP-227, broker/fetch_sessions.py): a fetch with session id 0 and epoch -1 (Fetch
v4..v6, librdkafka, aiokafka) takes the sessionless path, unchanged; anything else asks the
session cache which partitions to read (the request's, or those of the session that may have
news: FetchSession.plan) and how to answer (open a session, keep only what changed, or a
session error). A long poll of a session waits on all its partitions.
"""
from __future__ import annotations

import time

from josef.broker import fetch_sessions as sessions
from josef.broker.handlers import api
from josef.protocol import fetch as wire
from josef.protocol.errors import Error
from josef.protocol.header import response_header


@api(1, "Fetch", wire.MIN_VERSION, wire.MAX_VERSION, raw=True)
def handle_fetch(broker, ctx, frame, body_offset):
    request = wire.decode_fetch_request(frame, body_offset, ctx.api_version)
    if request.session_id != sessions.INVALID_SESSION_ID or request.session_epoch != sessions.FINAL_EPOCH:
        return _fetch_in_session(broker, ctx, request)
    topics, size, errors = _read_all(broker, request, request.topics)
    if request.max_wait_ms <= 0 or size >= request.min_bytes or errors or not request.topics:
        return _answer(ctx, topics)
    keys = [(name, p.partition) for name, partitions in request.topics for p in partitions]

    def complete():
        return _answer(ctx, _read_all(broker, request, request.topics)[0])

    return broker.purgatory.park(keys, request.min_bytes - size, complete, request.max_wait_ms / 1000)


def _fetch_in_session(broker, ctx, request):
    cache = broker.fetch_sessions
    context = cache.open(request, time.monotonic() * 1000)
    kind = context.kind
    if kind == sessions.ERROR:
        return _answer(ctx, [], context.error)
    if kind == sessions.INCREMENTAL:
        session = context.session
        follower = request.replica_id >= 0
        keys = list(session.partitions)

        def plan():  # ClusterMetadata.epoch moves with every snapshot swap (both metadata stores)
            wanted, idle = session.plan(broker.store.snapshot.epoch, follower)
            if idle and follower:
                broker.replication.followers_caught_up(idle, request.replica_id)
            return wanted
    else:
        keys = [(name, p.partition) for name, partitions in context.topics for p in partitions]

        def plan():
            return context.topics

    def answer(read):
        snapshot = broker.store.snapshot
        session_id, read, error = cache.finish(context, read, time.monotonic() * 1000, snapshot.epoch,
                                               _quiet_log(broker, snapshot, request.replica_id))
        return _answer(ctx, read, error, session_id)

    topics, size, errors = _read_all(broker, request, plan())
    if request.max_wait_ms <= 0 or size >= request.min_bytes or errors or not keys:
        return answer(topics)

    def complete():
        return answer(_read_all(broker, request, plan())[0])

    return broker.purgatory.park(keys, request.min_bytes - size, complete, request.max_wait_ms / 1000)


def _quiet_log(broker, snapshot, replica_id: int):
    """For FetchSession.select: the log of a partition answered without an error, which a later
    fetch may then leave unread while nothing changes; for a follower only while it is in the ISR
    (a follower outside it must be read, so that it can join)."""
    logs = broker.logs
    if replica_id < 0:
        return logs.get
    topics = snapshot.topics

    def get(name, partition):
        topic = topics.get(name)
        if topic is None or partition >= len(topic.partitions) or replica_id not in topic.partitions[partition].isr:
            return None
        return logs.get(name, partition)
    return get


def _read_all(broker, request, wanted):
    """Read every partition of `wanted` ([(topic, [FetchPartition])]) within the byte limits."""
    budget = request.max_bytes if request.max_bytes > 0 else 0x7FFFFFFF
    total = 0
    errors = False
    topics = []
    for name, partitions in wanted:
        answers = []
        for p in partitions:
            limit = min(p.partition_max_bytes, max(budget - total, 0))
            outcome = broker.replicas.read(name, p.partition, p.fetch_offset, limit,
                                           min_one=total == 0, current_leader_epoch=p.current_leader_epoch,
                                           replica_id=request.replica_id)
            errors = errors or outcome.error != Error.NONE
            total += outcome.size
            answers.append(wire.FetchPartitionResponse(
                p.partition, outcome.error, outcome.high_watermark,
                last_stable_offset=outcome.high_watermark, log_start_offset=outcome.log_start_offset,
                aborted_transactions=None, records=outcome.chunks))
        topics.append((name, answers))
    return topics, total, errors


def _answer(ctx, topics, error: int = Error.NONE, session_id: int = 0) -> list:
    body = wire.encode_fetch_response(ctx.api_version, topics, error_code=error, session_id=session_id)
    head = response_header(ctx.correlation_id, ctx.api_version >= wire.FIRST_FLEXIBLE_VERSION)
    size = len(head) + wire.fetch_response_size(body)
    return [size.to_bytes(4, "big") + head, *body]
