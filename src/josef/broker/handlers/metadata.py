"""Metadata: brokers, controller and topic layout; unknown topics may be auto-created.

Answers are pure functions of the metadata snapshot and the question, so encoded answers
are cached per (version, snapshot epoch, question) and only the header is fresh.
"""
from __future__ import annotations

from josef.broker.futures import after
from josef.broker.handlers import api
from josef.broker.topic_admin import TopicError
from josef.config import validate_topic_name
from josef.protocol.entities import to_entity
from josef.protocol.errors import Error
from josef.protocol.kio_codec import encode_response, response_class

API_KEY = 3


@api(API_KEY, "Metadata", 0, 12, raw=False)
def handle_metadata(broker, ctx, request):
    names = None if request.topics is None else [t.name for t in request.topics]
    if ctx.api_version == 0 and not names:
        names = None  # v0 has no null: an empty list means all topics
    allow_auto = getattr(request, "allow_auto_topic_creation", True)
    writes = _auto_create(broker, names, allow_auto) if names else {}
    if writes:
        return after(writes.values(), lambda: _answer(broker, ctx, names, _pending(broker, writes)))
    return _answer(broker, ctx, names, set())


def _answer(broker, ctx, names, creating: set[str]) -> list:
    snapshot = broker.store.snapshot
    key = (ctx.api_version, snapshot.epoch, None if names is None else tuple(names), ctx.connection.listener)
    body = None if creating else broker.metadata_cache.get(key)
    if body is None:
        entity = to_entity(response_class(API_KEY, ctx.api_version),
                           _describe(snapshot, names, ctx.connection.listener, creating))
        header_size = 4 if ctx.api_version < 9 else 5
        body = encode_response(entity, 0)[header_size:]
        if not creating:
            broker.metadata_cache[key] = body
    tags = b"\x00" if ctx.api_version >= 9 else b""
    payload = ctx.correlation_id.to_bytes(4, "big", signed=True) + tags + body
    return [len(payload).to_bytes(4, "big"), payload]


def _auto_create(broker, names, allow_auto: bool) -> dict:
    """Start creating the unknown topics among `names`: {name: its write}."""
    if not (allow_auto and broker.config["auto.create.topics.enable"]):
        return {}
    writes = {}
    for name in dict.fromkeys(names):
        if name not in broker.store.snapshot.topics and validate_topic_name(name) is None:
            writes[name] = broker.topic_admin.auto_create(name)
    return writes


def _pending(broker, writes: dict) -> set[str]:
    """The topics created (or found created) whose leaders are not known yet: in a cluster the
    controller elects them a moment later. A topic that could not be created is answered as unknown."""
    pending = set()
    for name, write in writes.items():
        error = write.exception()
        if error is not None and not isinstance(error, TopicError):
            raise error
        if error is not None and error.code != Error.TOPIC_ALREADY_EXISTS:
            continue
        if name not in broker.store.snapshot.topics:
            pending.add(name)
    return pending


def _describe(snapshot, names, listener: str | None, creating: set[str] = frozenset()) -> dict:
    if names is None:
        topics = [_topic(t) for t in snapshot.topics.values()]
    else:
        topics = []
        for name in dict.fromkeys(names):
            info = snapshot.topics.get(name)
            if info is not None:
                topics.append(_topic(info))
            else:
                error = (Error.INVALID_TOPIC_EXCEPTION if validate_topic_name(name) else
                         Error.LEADER_NOT_AVAILABLE if name in creating else Error.UNKNOWN_TOPIC_OR_PARTITION)
                topics.append({"error_code": error, "name": name, "topic_id": None, "is_internal": False,
                               "partitions": []})
    return {
        "throttle_time": 0,
        "brokers": _brokers(snapshot, listener),
        "cluster_id": snapshot.cluster_id,
        "controller_id": snapshot.controller_id,
        "topics": topics,
        "cluster_authorized_operations": -2147483648,
    }


def _brokers(snapshot, listener: str | None) -> list[dict]:
    """Each broker as reached through the listener the client used; brokers without it are left out, as in Kafka."""
    out = []
    for b in snapshot.brokers.values():
        endpoint = b.endpoint(listener)
        if endpoint is not None:
            out.append({"node_id": b.broker_id, "host": endpoint[0], "port": endpoint[1], "rack": b.rack})
    return out


def _topic(info) -> dict:
    return {
        "error_code": Error.NONE,
        "name": info.name,
        "topic_id": info.topic_id,
        "is_internal": info.internal,
        "partitions": [
            {"error_code": Error.NONE if p.leader >= 0 else Error.LEADER_NOT_AVAILABLE,
             "partition_index": p.partition, "leader_id": p.leader, "leader_epoch": p.leader_epoch,
             "replica_nodes": list(p.replicas), "isr_nodes": list(p.isr),
             "offline_replicas": list(p.offline_replicas)}
            for p in info.partitions
        ],
        "topic_authorized_operations": -2147483648,
    }
