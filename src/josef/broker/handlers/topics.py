"""CreateTopics, DeleteTopics and CreatePartitions: thin over TopicAdmin.

Each topic is validated at once; the writes run where metadata writes run (off the event
loop for ZooKeeper), and the answer is built once they are all done.
"""
from __future__ import annotations

from josef.broker.futures import after, then
from josef.broker.handlers import api
from josef.protocol.entities import ms
from josef.broker.topic_admin import TopicError
from josef.config import TOPIC_CONFIGS
from josef.protocol.errors import Error


@api(19, "CreateTopics", 2, 7)
def handle_create_topics(broker, ctx, request):
    results = []
    writes = []  # (result, write)
    seen = set()
    for topic in request.topics:
        result = {"name": topic.name, "topic_id": None, "error_code": Error.NONE, "error_message": None,
                  "num_partitions": -1, "replication_factor": -1, "configs": None}
        if topic.name in seen:
            result.update(error_code=Error.INVALID_REQUEST, error_message=f"Create topics request from client contains duplicate topic: {topic.name}")
            results.append(result)
            continue
        seen.add(topic.name)
        assignment = {a.partition_index: list(a.broker_ids) for a in topic.assignments} or None
        configs = {c.name: c.value for c in topic.configs}
        try:
            write = broker.topic_admin.create(topic.name, topic.num_partitions, topic.replication_factor,
                                              configs, assignment, request.validate_only)
        except TopicError as e:
            result.update(error_code=e.code, error_message=e.message)
        else:
            if write is not None:
                writes.append((result, write))
            else:  # validate_only: report what would have been created
                result.update(num_partitions=topic.num_partitions if topic.num_partitions > 0
                              else (len(assignment) if assignment else broker.config["num.partitions"]),
                              replication_factor=topic.replication_factor if topic.replication_factor > 0
                              else broker.config["default.replication.factor"])
        results.append(result)

    def answer():
        for result, write in writes:
            try:
                info = write.result()
            except TopicError as e:
                result.update(error_code=e.code, error_message=e.message)
            else:
                result.update(topic_id=info.topic_id, num_partitions=len(info.partitions),
                              replication_factor=info.replication_factor, configs=_describe_configs(broker, info))
        created = {r["name"] for r in results if r["error_code"] == Error.NONE and r["topic_id"] is not None}
        return _after(broker, ms(request.timeout), lambda m: all(_led(m, name) for name in created),
                      {"throttle_time": 0, "topics": results})
    return after([w for _, w in writes], answer)


def _led(snapshot, name: str) -> bool:
    topic = snapshot.topics.get(name)
    return topic is not None and all(p.leader >= 0 for p in topic.partitions)


def _after(broker, timeout_ms: int, predicate, response: dict):
    """Answer once every broker-local view shows the change (or the request's timeout passes),
    so a client may use a topic as soon as it is told it exists, as with Kafka."""
    if predicate(broker.store.snapshot):
        return response
    return then(broker.when(predicate, max(timeout_ms, 0) / 1000), lambda _: response)


def _describe_configs(broker, info) -> list[dict]:
    values = broker.topic_configs(info)
    # config_source: 1 = DYNAMIC_TOPIC_CONFIG, 5 = DEFAULT_CONFIG (4 = STATIC_BROKER_CONFIG not tracked yet)
    return [{"name": name, "value": _text(values[name]), "read_only": False,
             "config_source": 1 if name in info.configs else 5, "is_sensitive": False}
            for name in sorted(TOPIC_CONFIGS)]


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@api(20, "DeleteTopics", 1, 6)
def handle_delete_topics(broker, ctx, request):
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    writes = []  # (result, write)
    for name, topic_id in wanted:
        snapshot = broker.store.snapshot
        info = snapshot.topics.get(name) if name else (snapshot.topic_by_id(topic_id) if topic_id else None)
        result = {"name": info.name if info else name, "topic_id": topic_id,
                  "error_code": Error.NONE, "error_message": None}
        if info is None:
            error = Error.UNKNOWN_TOPIC_ID if name is None else Error.UNKNOWN_TOPIC_OR_PARTITION
            result.update(error_code=error, error_message="This server does not host this topic.")
        else:
            try:
                writes.append((result, broker.topic_admin.delete(info.name)))
                result["topic_id"] = info.topic_id
            except TopicError as e:
                result.update(error_code=e.code, error_message=e.message)
        results.append(result)

    def answer():
        _record_errors(writes)
        deleted = {r["name"] for r in results if r["error_code"] == Error.NONE}
        return _after(broker, ms(request.timeout), lambda m: not deleted & set(m.topics),
                      {"throttle_time": 0, "responses": results})
    return after([w for _, w in writes], answer)


@api(37, "CreatePartitions", 0, 3)
def handle_create_partitions(broker, ctx, request):
    results = []
    writes = []  # (result, write)
    for topic in request.topics:
        assignment = None if topic.assignments is None else [list(a.broker_ids) for a in topic.assignments]
        result = {"name": topic.name, "error_code": Error.NONE, "error_message": None}
        try:
            write = broker.topic_admin.add_partitions(topic.name, topic.count, assignment, request.validate_only)
        except TopicError as e:
            result.update(error_code=e.code, error_message=e.message)
        else:
            if write is not None:
                writes.append((result, write))
        results.append(result)

    def answer():
        _record_errors(writes)
        grown = {r["name"]: t.count for r, t in zip(results, request.topics)
                 if r["error_code"] == Error.NONE and not request.validate_only}
        return _after(broker, ms(request.timeout),
                      lambda m: all(n in m.topics and len(m.topics[n].partitions) >= c and _led(m, n)
                                    for n, c in grown.items()),
                      {"throttle_time": 0, "results": results})
    return after([w for _, w in writes], answer)


def _record_errors(writes) -> None:
    """Put the error of each failed write into its topic's result."""
    for result, write in writes:
        error = write.exception()
        if isinstance(error, TopicError):
            result.update(error_code=error.code, error_message=error.message)
        elif error is not None:
            raise error

