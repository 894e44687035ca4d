"""Produce: decode without copying records, append each partition's batch, answer.

Versions 0-2 are advertised but refused (UNSUPPORTED_VERSION per partition): librdkafka
derives its message-format features from Produce's advertised minimum and disables
compression when it is above 0 (KAFKA-18659), and Kafka 4 does the same for that reason.
"""
from __future__ import annotations

import asyncio
import struct

from josef.broker.futures import after, then
from josef.broker.handlers import api
from josef.protocol import produce as wire
from josef.protocol.errors import Error, MalformedRequest
from josef.protocol.header import response_header

_V0_ACKS_TIMEOUT = struct.Struct(">hi")


@api(0, "Produce", 0, wire.MAX_VERSION, raw=True)
def handle_produce(broker, ctx, frame, body_offset):
    version = ctx.api_version
    if version < wire.MIN_VERSION:
        return _refuse_old_version(ctx, frame, body_offset)
    request = wire.decode_produce_request(frame, body_offset, version)
    if request.acks not in (0, 1, -1):
        results = _all_partitions(request, Error.INVALID_REQUIRED_ACKS)
    elif request.transactional_id is not None:
        results = _all_partitions(request, Error.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    else:
        created = _auto_create(broker, request)
        if created:  # append once the unknown topics' writes are done, as if they were synchronous
            return after(created.values(), lambda: _append_all(broker, ctx, request, created))
        return _append_all(broker, ctx, request, created)
    if request.acks == 0:
        return None
    return _answer(ctx, results)


def _append_all(broker, ctx, request, created: dict):
    version = ctx.api_version
    outcomes = [(topic, [(index, _append(broker, topic, index, records, version, request.acks, created))
                         for index, records in partitions])
                for topic, partitions in request.topics]
    if request.acks == -1 and broker.in_cluster:
        return _after_commit(broker, ctx, request, outcomes)
    if request.acks == 0:
        return None
    return _answer(ctx, [(topic, [_response(index, o) for index, o in parts]) for topic, parts in outcomes])


def _answer(ctx, results) -> list:
    version = ctx.api_version
    payload = response_header(ctx.correlation_id, version >= wire.FIRST_FLEXIBLE_VERSION) + \
        wire.encode_produce_response(version, results)
    return [len(payload).to_bytes(4, "big"), payload]


def _after_commit(broker, ctx, request, outcomes):
    """acks=all: answer once every appended batch is below the high watermark (or time is up)."""
    waits = {}
    for topic, parts in outcomes:
        for index, outcome in parts:
            if outcome.error == Error.NONE:
                waits[(topic, index)] = broker.replication.wait_committed(
                    (topic, index), outcome.end_offset, max(request.timeout_ms, 0) / 1000)

    def answer(_=None):
        results = []
        for topic, parts in outcomes:
            responses = []
            for index, outcome in parts:
                future = waits.get((topic, index))
                if future is not None and future.result() != Error.NONE:
                    outcome = outcome._replace(error=future.result())
                responses.append(_response(index, outcome))
            results.append((topic, responses))
        return _answer(ctx, results)

    pending = [f for f in waits.values() if not f.done()]
    if not pending:
        return answer()
    return then(asyncio.ensure_future(asyncio.gather(*pending)), answer)


def _response(index: int, outcome) -> wire.PartitionResponse:
    return wire.PartitionResponse(index, outcome.error, outcome.base_offset, outcome.log_append_time,
                                  outcome.log_start_offset, error_message=outcome.message)


def _auto_create(broker, request) -> dict:
    """Start creating the request's unknown topics: {topic: its write}."""
    topics = broker.store.snapshot.topics
    unknown = [topic for topic, _ in request.topics if topic not in topics]
    if not unknown or not broker.config["auto.create.topics.enable"]:
        return {}
    return {topic: broker.topic_admin.auto_create(topic) for topic in dict.fromkeys(unknown)}


def _append(broker, topic: str, index: int, records, version: int, acks: int, created: dict):
    write = created.get(topic)
    if write is not None and write.exception() is not None:
        from josef.broker.replica_manager import AppendOutcome
        from josef.broker.topic_admin import TopicError
        error = write.exception()
        if not isinstance(error, TopicError):
            raise error
        return AppendOutcome(error.code, message=error.message)
    return broker.replicas.append(topic, index, records, version, acks)


def _all_partitions(request, error: int):
    return [(topic, [wire.PartitionResponse(index, error, -1) for index, _ in partitions])
            for topic, partitions in request.topics]


def _refuse_old_version(ctx, frame, pos):
    """Parse a v0-2 request just far enough to name its partitions, and refuse each."""
    view = memoryview(frame)
    try:
        acks, _timeout = _V0_ACKS_TIMEOUT.unpack_from(view, pos)
        pos += 6
        (topic_count,), pos = struct.unpack_from(">i", view, pos), pos + 4
        body = bytearray()
        body += struct.pack(">i", topic_count)
        for _ in range(topic_count):
            (name_len,) = struct.unpack_from(">h", view, pos)
            body += view[pos:pos + 2 + name_len]
            pos += 2 + name_len
            (count,) = struct.unpack_from(">i", view, pos)
            pos += 4
            body += struct.pack(">i", count)
            for _ in range(count):
                index, size = struct.unpack_from(">ii", view, pos)
                pos += 8 + max(size, 0)
                body += struct.pack(">ihq", index, Error.UNSUPPORTED_VERSION, -1)
                if ctx.api_version >= 2:
                    body += struct.pack(">q", -1)
        if pos != len(view):
            raise MalformedRequest("trailing bytes in Produce request")
    except struct.error:
        raise MalformedRequest("truncated Produce request") from None
    if acks == 0:
        return None
    if ctx.api_version >= 1:
        body += struct.pack(">i", 0)
    payload = response_header(ctx.correlation_id, False) + bytes(body)
    return [len(payload).to_bytes(4, "big"), payload]
