"""Fetch: stored bytes go back untouched; a fetch with too little data waits in the purgatory.

Fetch sessions (KIP-227) are not kept: every answer carries session id 0, which tells a
client to send full fetch requests, as Kafka does when it has no session slot for it.
"""
from __future__ import annotations

from josef.broker.handlers import api
from josef.protocol import fetch as wire
from josef.protocol.errors import Error
from josef.protocol.header import response_header


@api(1, "Fetch", wire.MIN_VERSION, wire.MAX_VERSION, raw=True)
def handle_fetch(broker, ctx, frame, body_offset):
    request = wire.decode_fetch_request(frame, body_offset, ctx.api_version)
    if request.session_id != 0 or request.session_epoch > 0:
        return _answer(ctx, [], Error.FETCH_SESSION_ID_NOT_FOUND)
    topics, size, errors = _read_all(broker, request)
    if request.max_wait_ms <= 0 or size >= request.min_bytes or errors or not request.topics:
        return _answer(ctx, topics)
    keys = [(name, p.partition) for name, partitions in request.topics for p in partitions]

    def complete():
        return _answer(ctx, _read_all(broker, request)[0])

    return broker.purgatory.park(keys, request.min_bytes - size, complete, request.max_wait_ms / 1000)


def _read_all(broker, request):
    """Read every requested partition within the request's byte limits."""
    budget = request.max_bytes if request.max_bytes > 0 else 0x7FFFFFFF
    total = 0
    errors = False
    topics = []
    for name, partitions in request.topics:
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


def _answer(ctx, topics, error: int = Error.NONE) -> list:
    body = wire.encode_fetch_response(ctx.api_version, topics, error_code=error)
    head = response_header(ctx.correlation_id, ctx.api_version >= wire.FIRST_FLEXIBLE_VERSION)
    size = len(head) + wire.fetch_response_size(body)
    return [size.to_bytes(4, "big") + head, *body]
