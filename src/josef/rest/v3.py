"""The v3 resources users rely on (`application/json`, Confluent's kind/metadata/related shapes):
clusters, brokers, topics (list, get, create, PATCH partitions_count, delete), topic configs
(list, get, set, reset, `:alter`), partitions and replicas, produce records (one or a stream
of JSON records per request, one delivery report each, errors per record inside HTTP 200),
`records:batch` (entries with ids, one 207 answer of successes and failures), consumer groups
with their consumers, the consumers' assignments, per-partition lags and the lag summary
(read-only). Broker configs, cluster-wide broker config
defaults, partition reassignments and ACLs are in josef.rest.v3_admin.

Errors follow kafka-rest's own resources, whose answers differ by resource: an unknown topic is
the Admin client's UnknownTopicOrPartitionException (404, 40403) where kafka-rest asks Kafka
about it, a bare "HTTP 404 Not Found" where a resource answers NotFoundException without text,
a named message where a manager checks an entity itself ("Cluster X cannot be found.").
Producing never looks the cluster up; an unknown topic or partition is answered per record as
the Java producer's "not present in metadata" (40401).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import json
import logging
import re
from datetime import datetime, timezone
from types import SimpleNamespace

from fastapi import FastAPI, Request
from fastapi.responses import Response

from josef.rest import errors, jsoncodec, media
from josef.rest.errors import RestError
from josef.rest.kafka import ProduceBatch
from josef.rest.util import expect_int, expect_list, expect_object, expect_str, parse_json_body, path_int

TAGS = ["v3"]
log = logging.getLogger("josef.rest")


class _RecordStream(Response):
    """A chunked JSON answer written while the request body is still being read.

    Starlette's StreamingResponse listens for a client disconnect with receive() at the
    same time, which would steal the request body the producer loop is reading."""

    media_type = media.JSON

    def __init__(self, chunks):
        super().__init__(status_code=200, media_type=media.JSON)
        self.chunks = chunks
        self.raw_headers = [h for h in self.raw_headers if h[0] != b"content-length"]

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _reply(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(jsoncodec.dumps(body),
                    status_code=status, media_type=media.JSON, headers=headers)


def _not_found(detail: str) -> RestError:
    """kafka-rest's `new NotFoundException(message)`: the message as it is, code 404."""
    return RestError(404, 404, detail)


def _topic_not_found(message: str | None = None) -> RestError:
    """An unknown topic where kafka-rest asks the Admin client about it: UnknownTopicOrPartition,
    404 with 40403 (GET/DELETE/PATCH a topic, its partitions, its configs)."""
    return errors.unknown_topic_partition(message) if message else errors.unknown_topic_partition()


# kafka-rest's messages for a cluster id it does not know: most resources check the cluster
# themselves; the resources that rewrap their managers' NotFoundException (a partition, configs)
# or look the cluster up with a bare NotFoundException answer Jersey's own text.
_CLUSTER_MISSING = "Cluster {} cannot be found."
_CLUSTER_MISSING_GROUPS = "Cluster {} could not be found."  # ConsumerGroupManagerImpl's wording
_HTTP_404 = "HTTP 404 Not Found"

# -- produce: the fields of kafka-rest's request entities (any other field is refused) ----------
_SCHEMA_FORMATS = ("AVRO", "JSONSCHEMA", "PROTOBUF")
_RECORD_FIELDS = frozenset({"partition_id", "headers", "key", "value", "timestamp"})
_BATCH_ENTRY_FIELDS = _RECORD_FIELDS | {"id"}
_DATA_FIELDS = frozenset({"type", "subject", "subject_name_strategy", "schema_id", "schema_version", "schema",
                          "data"})
_SCHEMA_KEYS = frozenset({"schema", "schema_id", "schema_version", "subject", "subject_name_strategy"})
_HEADER_FIELDS = frozenset({"name", "value"})
_BATCH_ID = re.compile(r"[0-9A-Za-z_-]{1,80}")  # ProduceBatchRequestEntry: 1 to 80 of these


class _Unrecognized(RestError):
    """A field the entity does not have. Inside a produce stream this answers the one record
    (400, Jackson's text); a `records:batch` request is refused whole (422, rest-utils' text)."""

    def __init__(self, entity: str, name: str):
        super().__init__(400, 400, f'Unrecognized field "{name}" (class {entity}), not marked as ignorable')
        self.field = name


def _check_fields(obj: dict, known: frozenset, entity: str) -> None:
    for key in obj:
        if key not in known:
            raise _Unrecognized(entity, key)


# the other request entities' fields (rest-utils refuses any other: 422 "Unrecognized field: x")
_CREATE_TOPIC_FIELDS = frozenset({"topic_name", "partitions_count", "replication_factor", "replicas_assignments",
                                  "configs", "validate_only"})
_CONFIG_ENTRY_FIELDS = frozenset({"name", "value"})
_ALTER_BATCH_FIELDS = frozenset({"data", "validate_only"})
_ALTER_ENTRY_FIELDS = frozenset({"name", "value", "operation"})
_reject_unknown = errors.reject_unknown_fields


@functools.lru_cache(maxsize=1024)  # asked for every produced record
def _legal_topic_name(name: str) -> bool:
    return bool(name) and len(name) <= 249 and name not in (".", "..") and all(
        c.isascii() and (c.isalnum() or c in "._-") for c in name)


def _batch_max_entries(settings) -> int:
    """kafka-rest's `api.v3.produce.batch.maximum.entries` (default 10, at least 1, at most 50),
    checked with the other settings when RestSettings is built."""
    return settings.produce_batch_maximum_entries


@functools.lru_cache(maxsize=256)
def _iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    text = _iso_seconds(ms // 1000)  # the records of a stream mostly share their second
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def _parse_instant(value, where: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                raise ValueError
            return int(dt.timestamp() * 1000)
        except ValueError:
            raise RestError(400, 400, f"Bad Request: {where}: not an ISO-8601 instant") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = value * 1000
        if not -2 ** 63 <= ms < 2 ** 63:  # also NaN and the infinities
            raise RestError(400, 400, f"Bad Request: {where}: instant out of range")
        return int(ms)
    raise RestError(400, 400, f"Bad Request: {where}: not an instant")


def register_v3(app: FastAPI, ctx) -> None:
    backend = ctx.backend

    def accept(request: Request) -> None:
        media.negotiate(request.headers.get("accept"), [(media.JSON, 1.0)])

    async def body(request: Request):
        media.require_content_type(request.headers.get("content-type"), {media.JSON})
        from josef.rest.app import read_body
        return await read_body(request, ctx.settings.request_max_bytes)

    def url(request: Request, *segments) -> str:
        from josef.rest.app import base_uri
        return base_uri(request, ctx, "v3", "clusters", *[str(s) for s in segments])

    def crn(*pairs) -> str:
        """Confluent's resource names: crn:///kafka=<cluster>/topic=<name>/..."""
        parts = ["crn://"]
        for i in range(0, len(pairs), 2):
            parts.append(f"{pairs[i]}={pairs[i + 1]}" if i + 1 < len(pairs) else str(pairs[i]))
        return "/".join(parts)

    def meta(request: Request, segments: list, resource: list) -> dict:
        return {"self": url(request, *segments), "resource_name": crn(*resource)}

    def rel(request: Request, *segments) -> dict:
        return {"related": url(request, *segments)}

    def collection(request: Request, kind: str, segments: list, data: list) -> dict:
        return {"kind": kind, "metadata": {"self": url(request, *segments), "next": None}, "data": data}

    async def cluster_info():
        return await backend.run(backend.cluster)

    async def check_cluster(cid: str, missing: str = _CLUSTER_MISSING):
        """The cluster's (id, controller, brokers); 404 (code 404) with `missing` (formatted
        with the id) when `cid` is not this cluster's id."""
        info = await cluster_info()
        if cid != info[0]:
            raise _not_found(missing.format(cid))
        return info

    # -- clusters and brokers -----------------------------------------------------------------
    def cluster_data(request: Request, info) -> dict:
        cid, controller, _ = info
        return {"kind": "KafkaCluster", "metadata": meta(request, [cid], ["kafka", cid]), "cluster_id": cid,
                "controller": rel(request, cid, "brokers", controller) if controller is not None else None,
                "acls": rel(request, cid, "acls"), "brokers": rel(request, cid, "brokers"),
                "broker_configs": rel(request, cid, "broker-configs"),
                "consumer_groups": rel(request, cid, "consumer-groups"), "topics": rel(request, cid, "topics"),
                "partition_reassignments": rel(request, cid, "topics", "-", "partitions", "-", "reassignment")}

    def broker_data(request: Request, cid: str, b) -> dict:
        bid, host, port, rack = b
        return {"kind": "KafkaBroker", "metadata": meta(request, [cid, "brokers", bid], ["kafka", cid, "broker", bid]),
                "cluster_id": cid, "broker_id": bid, "host": host, "port": port, "rack": rack,
                "configs": rel(request, cid, "brokers", bid, "configs"),
                "partition_replicas": rel(request, cid, "brokers", bid, "partition-replicas")}

    @app.get("/v3/clusters", tags=TAGS, summary="The cluster (one per proxy)")
    async def clusters(request: Request):
        accept(request)
        info = await cluster_info()
        return _reply(collection(request, "KafkaClusterList", [], [cluster_data(request, info)]))

    @app.get("/v3/clusters/{cid}", tags=TAGS, summary="A cluster")
    async def cluster(request: Request, cid: str):
        accept(request)
        return _reply(cluster_data(request, await check_cluster(cid, _HTTP_404)))

    @app.get("/v3/clusters/{cid}/brokers", tags=TAGS, summary="Brokers")
    async def brokers(request: Request, cid: str):
        accept(request)
        info = await check_cluster(cid)
        return _reply(collection(request, "KafkaBrokerList", [cid, "brokers"],
                                 [broker_data(request, cid, b) for b in info[2]]))

    @app.get("/v3/clusters/{cid}/brokers/{bid}", tags=TAGS, summary="A broker")
    async def broker(request: Request, cid: str, bid: str):
        accept(request)
        n = path_int(bid)
        info = await check_cluster(cid)
        for b in info[2]:
            if b[0] == n:
                return _reply(broker_data(request, cid, b))
        raise errors.http_error(404)  # BrokersResource: a bare NotFoundException

    # -- topics ---------------------------------------------------------------------------------
    def topic_data(request: Request, cid: str, name: str, internal: bool, partitions: list) -> dict:
        rf = len(partitions[0].replicas) if partitions else 0
        return {"kind": "KafkaTopic", "metadata": meta(request, [cid, "topics", name], ["kafka", cid, "topic", name]),
                "cluster_id": cid, "topic_name": name, "is_internal": internal, "replication_factor": rf,
                "partitions_count": len(partitions), "partitions": rel(request, cid, "topics", name, "partitions"),
                "configs": rel(request, cid, "topics", name, "configs"),
                "partition_reassignments": rel(request, cid, "topics", name, "partitions", "-", "reassignment"),
                "authorized_operations": []}

    async def topic(cid: str, name: str, cluster_missing: str = _CLUSTER_MISSING, missing: RestError | None = None):
        await check_cluster(cid, cluster_missing)
        info = await backend.run(backend.describe_topic, name)
        if info is None:
            raise missing or _topic_not_found()
        return info

    @app.get("/v3/clusters/{cid}/topics", tags=TAGS, summary="Topics (internal topics hidden)")
    async def topics(request: Request, cid: str):
        accept(request)
        await check_cluster(cid)
        names = await backend.run(backend.topic_names)
        infos = await asyncio.gather(*(backend.run(backend.describe_topic, n) for n in names))
        data = [topic_data(request, cid, i.name, i.internal, i.partitions) for i in infos if i is not None]
        return _reply(collection(request, "KafkaTopicList", [cid, "topics"], data))

    @app.get("/v3/clusters/{cid}/topics/{name}", tags=TAGS, summary="A topic")
    async def topic_get(request: Request, cid: str, name: str):
        accept(request)
        info = await topic(cid, name)
        return _reply(topic_data(request, cid, info.name, info.internal, info.partitions))

    @app.post("/v3/clusters/{cid}/topics", tags=TAGS, summary="Create a topic")
    async def topic_create(request: Request, cid: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Request body is empty. Data is required.")
        req = expect_object(req, "CreateTopicRequest")
        _reject_unknown(req, _CREATE_TOPIC_FIELDS)
        name = expect_str(req.get("topic_name"), "topic_name")
        if not name or len(name) > 249 or name in (".", "..") or any(
                not (c.isascii() and (c.isalnum() or c in "._-")) for c in name):
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Invalid topic name.")
        partitions = req.get("partitions_count")
        partitions = expect_int(partitions, "partitions_count") if partitions is not None else None
        rf = req.get("replication_factor")
        rf = expect_int(rf, "replication_factor") if rf is not None else None
        configs = {}
        for i, c in enumerate(expect_list(req.get("configs"), "configs")):
            c = expect_object(c, "ConfigEntry")
            _reject_unknown(c, _CONFIG_ENTRY_FIELDS)
            key = expect_str(c.get("name"), f"configs[{i}].name")
            if not key:
                raise errors.json_error(f"configs[{i}].name is required")
            configs[key] = expect_str(c.get("value"), f"configs[{i}].value")
        assignments = None
        if req.get("replicas_assignments"):
            raw_assign = expect_object(req["replicas_assignments"], "Map<Integer, List<Integer>>")
            assignments = {expect_int(k, "replicas_assignments"): [expect_int(b, "replicas_assignments") for b in
                                                                  expect_list(v, "replicas_assignments")]
                           for k, v in raw_assign.items()}
        validate_only = bool(req.get("validate_only", False))
        await check_cluster(cid)
        await backend.run(backend.create_topic, name, partitions, rf,
                          {k: v for k, v in configs.items() if v is not None}, assignments, validate_only)
        info = None if validate_only else await backend.run(backend.describe_topic, name)
        if info is None:
            count = partitions if partitions is not None else (len(assignments) if assignments else 0)
            data = topic_data(request, cid, name, False, [])
            data["partitions_count"] = count
            data["replication_factor"] = rf or 0
        else:
            data = topic_data(request, cid, info.name, info.internal, info.partitions)
        return _reply(data, 200 if validate_only else 201, headers={"Location": data["metadata"]["self"]})

    @app.patch("/v3/clusters/{cid}/topics/{name}", tags=TAGS, summary="Increase partitions_count")
    async def topic_patch(request: Request, cid: str, name: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD,
                                   "Payload error. Request body is empty. Partitions_count is required.")
        req = expect_object(req, "PartitionsCountRequest")
        _reject_unknown(req, frozenset({"partitions_count"}))
        count = expect_int(req.get("partitions_count"), "partitions_count")
        await topic(cid, name)
        await backend.run(backend.create_partitions, name, count, _topic_not_found())
        info = await topic(cid, name)
        return _reply(topic_data(request, cid, info.name, info.internal, info.partitions))

    @app.delete("/v3/clusters/{cid}/topics/{name}", tags=TAGS, summary="Delete a topic")
    async def topic_delete(request: Request, cid: str, name: str):
        accept(request)
        await check_cluster(cid)
        await backend.run(backend.delete_topic, name, _topic_not_found())
        return Response(status_code=204)

    # -- partitions and replicas -----------------------------------------------------------------
    def partition_data(request: Request, cid: str, name: str, p) -> dict:
        seg = [cid, "topics", name, "partitions", p.partition]
        return {"kind": "KafkaPartition",
                "metadata": meta(request, seg, ["kafka", cid, "topic", name, "partition", p.partition]),
                "cluster_id": cid, "topic_name": name, "partition_id": p.partition,
                "leader": rel(request, *seg, "replicas", p.leader) if p.leader >= 0 else None,
                "replicas": rel(request, *seg, "replicas"), "reassignment": rel(request, *seg, "reassignment")}

    def replica_data(request: Request, cid: str, name: str, p, b: int) -> dict:
        seg = [cid, "topics", name, "partitions", p.partition, "replicas", b]
        return {"kind": "KafkaReplica",
                "metadata": meta(request, seg, ["kafka", cid, "topic", name, "partition", p.partition, "replica", b]),
                "cluster_id": cid, "topic_name": name, "partition_id": p.partition, "broker_id": b,
                "is_leader": b == p.leader, "is_in_sync": b in p.isr, "broker": rel(request, cid, "brokers", b)}

    async def partition(cid: str, name: str, pid: str, replicas: bool = False):
        """As kafka-rest's PartitionManager.getPartition: an unknown cluster is Jersey's bare 404,
        an unknown topic 40403 naming the partition; an unknown partition is a bare 404, or for
        the replicas resources ReplicaManager's message."""
        n = path_int(pid)
        info = await topic(cid, name, _HTTP_404,
                           _topic_not_found(f"This server does not host topic-partition {n} for topic {name}"))
        part = info.partition(n)
        if part is None:
            if replicas:
                raise _not_found(f"Partition {n} of topic {name} could not be found on cluster {cid}.")
            raise errors.http_error(404)
        return part

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions", tags=TAGS, summary="Partitions")
    async def partitions(request: Request, cid: str, name: str):
        accept(request)
        info = await topic(cid, name)
        return _reply(collection(request, "KafkaPartitionList", [cid, "topics", name, "partitions"],
                                 [partition_data(request, cid, name, p) for p in info.partitions]))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/{pid}", tags=TAGS, summary="A partition")
    async def partition_get(request: Request, cid: str, name: str, pid: str):
        accept(request)
        return _reply(partition_data(request, cid, name, await partition(cid, name, pid)))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/{pid}/replicas", tags=TAGS, summary="Replicas")
    async def replicas(request: Request, cid: str, name: str, pid: str):
        accept(request)
        p = await partition(cid, name, pid, replicas=True)
        return _reply(collection(request, "KafkaReplicaList",
                                 [cid, "topics", name, "partitions", p.partition, "replicas"],
                                 [replica_data(request, cid, name, p, b) for b in p.replicas]))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/{pid}/replicas/{bid}", tags=TAGS, summary="A replica")
    async def replica(request: Request, cid: str, name: str, pid: str, bid: str):
        accept(request)
        b = path_int(bid)
        p = await partition(cid, name, pid, replicas=True)
        if b not in p.replicas:
            raise errors.http_error(404)  # ReplicasResource: a bare NotFoundException
        return _reply(replica_data(request, cid, name, p, b))

    # -- topic configs ---------------------------------------------------------------------------
    def source_name(source) -> str:
        from confluent_kafka.admin import ConfigSource
        try:
            name = ConfigSource(source).name if isinstance(source, int) else source.name
        except (ValueError, AttributeError):
            name = "UNKNOWN"
        return "UNKNOWN" if name in ("UNKNOWN_CONFIG", "UNKNOWN") else name

    def config_data(request: Request, cid: str, name: str, e) -> dict:
        return {"kind": "KafkaTopicConfig",
                "metadata": meta(request, [cid, "topics", name, "configs", e.name],
                                 ["kafka", cid, "topic", name, "config", e.name]),
                "cluster_id": cid, "topic_name": name, "name": e.name,
                "value": None if e.is_sensitive else e.value, "is_default": bool(e.is_default),
                "is_read_only": bool(e.is_read_only), "is_sensitive": bool(e.is_sensitive),
                "source": source_name(e.source),
                "synonyms": [{"name": s.name, "value": s.value, "source": source_name(s.source)}
                             for s in (e.synonyms or {}).values()]}

    async def configs_of(cid: str, name: str) -> list:
        # TopicConfigManager rewraps its errors: an unknown cluster becomes a bare 404
        await topic(cid, name, _HTTP_404)
        return await backend.run(backend.config_entries, name, _topic_not_found())

    @app.get("/v3/clusters/{cid}/topics/{name}/configs", tags=TAGS, summary="Topic configs")
    async def configs(request: Request, cid: str, name: str):
        accept(request)
        entries = await configs_of(cid, name)
        return _reply(collection(request, "KafkaTopicConfigList", [cid, "topics", name, "configs"],
                                 [config_data(request, cid, name, e) for e in entries]))

    @app.get("/v3/clusters/{cid}/topics/{name}/configs/{key}", tags=TAGS, summary="A topic config")
    async def config_get(request: Request, cid: str, name: str, key: str):
        accept(request)
        for e in await configs_of(cid, name):
            if e.name == key:
                return _reply(config_data(request, cid, name, e))
        raise errors.http_error(404)  # TopicConfigsResource: a bare NotFoundException

    async def alter(cid: str, name: str, ops, validate_only: bool = False, one: bool = False):
        """Alter configs the topic has (kafka-rest checks them first): an unknown name is 404,
        with AbstractConfigManager's message for PUT/DELETE of one config, bare for `:alter`."""
        known = {e.name for e in await configs_of(cid, name)}
        for key, _, _ in ops:
            if key not in known:
                raise _not_found(f"Config {key} cannot be found for TOPIC {name} in cluster {cid}.") if one \
                    else errors.http_error(404)
        await backend.run(backend.alter_topic_configs, name, ops, validate_only, _topic_not_found())

    @app.put("/v3/clusters/{cid}/topics/{name}/configs/{key}", tags=TAGS, summary="Set a topic config")
    async def config_set(request: Request, cid: str, name: str, key: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Request body is empty. Data is required.")
        req = expect_object(req, "UpdateTopicConfigRequest")
        _reject_unknown(req, frozenset({"value"}))
        value = expect_str(req.get("value"), "value")
        await alter(cid, name, [(key, value, "SET")], one=True)
        return Response(status_code=204)

    @app.delete("/v3/clusters/{cid}/topics/{name}/configs/{key}", tags=TAGS, summary="Reset a topic config")
    async def config_reset(request: Request, cid: str, name: str, key: str):
        accept(request)
        await alter(cid, name, [(key, None, "DELETE")], one=True)
        return Response(status_code=204)

    @app.post("/v3/clusters/{cid}/topics/{name}/configs:alter", tags=TAGS, summary="Set/delete several configs")
    async def configs_alter(request: Request, cid: str, name: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Request body is empty. Data is required.")
        req = expect_object(req, "AlterTopicConfigBatchRequest")
        _reject_unknown(req, _ALTER_BATCH_FIELDS)
        ops = []
        for i, item in enumerate(expect_list(req.get("data"), "data")):
            item = expect_object(item, "AlterConfigCommand")
            _reject_unknown(item, _ALTER_ENTRY_FIELDS)
            key = expect_str(item.get("name"), f"data[{i}].name")
            op = (expect_str(item.get("operation"), f"data[{i}].operation") or "SET").upper()
            if not key or op not in ("SET", "DELETE"):
                raise errors.json_error(f"data[{i}]: a name and operation SET or DELETE are required")
            ops.append((key, expect_str(item.get("value"), f"data[{i}].value") if op == "SET" else None, op))
        await alter(cid, name, ops, bool(req.get("validate_only", False)))
        return Response(status_code=204)

    # -- produce records -----------------------------------------------------------------------------
    def data_shape(data, where: str):
        """A ProduceRequestData as kafka-rest reads it from the request: (type or "", object), or
        None. Errors here are the request's own (400), as Jackson's when it reads the entity."""
        if data is None:
            return None
        data = expect_object(data, "ProduceRequestData")
        _check_fields(data, _DATA_FIELDS, "ProduceRequestData")
        fmt = (expect_str(data.get("type"), f"{where}.type") or "").upper()
        if fmt and fmt not in ("BINARY", "JSON", "STRING") + _SCHEMA_FORMATS:
            raise errors.RestError(400, 400, f"Bad Request: {where}.type: unknown format {fmt}")
        if fmt in _SCHEMA_FORMATS and (data.get("schema") is None or data.get("schema_id") is not None
                                       or data.get("schema_version") is not None):
            # a serializer type wants its raw schema (ProduceRequestData's own checks)
            raise errors.RestError(400, 400, "Bad Request: Schema Registry must be configured when using schemas.")
        return fmt, data

    def serialize(shape, where: str):
        """(type name or None, bytes or None) for a data_shape(); errors here are the record's."""
        if shape is None:
            return None, None
        fmt, data = shape
        schema_given = (not _SCHEMA_KEYS.isdisjoint(data)  # usually: the generator is the slow part
                        and any(data.get(k) is not None for k in _SCHEMA_KEYS))
        if fmt in _SCHEMA_FORMATS or (not fmt and schema_given):
            # kafka-rest without a Schema Registry (SchemaManagerThrowing), answered per record
            raise errors.in_stream_constraint(errors.schema_registry_required())
        fmt = fmt or "BINARY"
        value = data.get("data")
        if value is None:
            return fmt, None
        if fmt == "BINARY":
            if not isinstance(value, str):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a base64 string.")
            try:
                return fmt, base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a valid base64 string.") from None
        if fmt == "STRING":
            if not isinstance(value, str):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a string.")
            return fmt, value.encode("utf-8")
        return fmt, jsoncodec.dumps(value)

    def parse_record(obj, fields: frozenset = _RECORD_FIELDS, entity: str = "ProduceRequest"):
        """A v3 ProduceRequest (or records:batch entry) as (record, key type, value type, error).

        What kafka-rest finds reading the request raises (a field of the wrong type or unknown,
        bad header base64, ...); what it finds producing the record (a negative partition, data
        its type cannot take, a schema) is returned as `error`, an answer for this record alone."""
        obj = expect_object(obj, entity)
        _check_fields(obj, fields, entity)
        partition = obj.get("partition_id")
        if partition is not None:
            partition = expect_int(partition, "partition_id")
        headers = []
        for i, h in enumerate(expect_list(obj.get("headers"), "headers")):
            h = expect_object(h, "ProduceRequestHeader")
            _check_fields(h, _HEADER_FIELDS, "ProduceRequestHeader")
            hname = expect_str(h.get("name"), f"headers[{i}].name")
            hvalue = h.get("value")
            if hvalue is not None:
                if not isinstance(hvalue, str):
                    raise errors.bad_request(f"headers[{i}].value is not a base64 string.")
                try:
                    hvalue = base64.b64decode(hvalue.encode("ascii"), validate=True)
                except (binascii.Error, ValueError, UnicodeEncodeError):
                    raise errors.bad_request(f"headers[{i}].value is not a valid base64 string.") from None
            headers.append((hname or "", hvalue))
        key_shape = data_shape(obj.get("key"), "key")
        value_shape = data_shape(obj.get("value"), "value")
        ts = obj.get("timestamp")
        ts = _parse_instant(ts, "timestamp") if ts is not None else None
        try:
            if partition is not None and partition < 0:
                raise errors.partition_not_found()
            key_fmt, key = serialize(key_shape, "key")
            value_fmt, value = serialize(value_shape, "value")
        except RestError as e:
            return None, None, None, e
        return (partition, key, value, headers, ts), key_fmt, value_fmt, None

    def placement_error(name: str, partition: int | None, count: int | None) -> RestError | None:
        """Where kafka-rest's Java producer gives up on a record's topic or partition (after
        max.block.ms; josef does not wait): a TimeoutException "not present in metadata", which
        it answers 40401; an illegal topic name is an InvalidTopicException, 40002."""
        if not _legal_topic_name(name):
            return RestError(400, errors.KAFKA_BAD_REQUEST, f"Invalid topics: [{name}]")
        if count is None:
            return RestError(404, errors.TOPIC_NOT_FOUND, f"Topic {name} not present in metadata.")
        if partition is not None and partition >= count:
            return RestError(404, errors.TOPIC_NOT_FOUND, f"Partition {partition} of topic {name} with partition "
                                                          f"count {count} is not present in metadata.")
        return None

    async def topic_partitions(name: str, wanted: int = -1) -> int | None:
        """The topic's partition count for producing (None: no such topic), asked again when a
        record names a partition beyond a cached count (partitions may have been added)."""
        if not _legal_topic_name(name):
            return None
        count = await backend.run(backend.partition_count, name)
        if count is not None and wanted >= count:
            count = await backend.run(backend._refresh_partition_count, name)
        return count

    @app.post("/v3/clusters/{cid}/topics/{name}/records", tags=TAGS,
              summary="Produce records: one JSON record, or a stream of them on one (chunked) request")
    async def produce(request: Request, cid: str, name: str):
        media.require_content_type(request.headers.get("content-type"), {media.JSON})
        accept(request)
        # as kafka-rest: the cluster id is not looked up (it is echoed in the answers), and an
        # unknown topic or partition is answered for each record inside the 200
        count = await topic_partitions(name)
        return _RecordStream(_produce_stream(request, cid, name, count))

    async def _produce_stream(request: Request, cid: str, name: str, count: int | None):
        """Parse JSON records as they arrive, produce each, and answer each in order as its
        delivery report comes back (errors of one record do not end the stream).

        The records of one received chunk go to the producer in one executor call, and the
        answers that are ready together leave in one write: a stream of many records costs a
        thread hop per chunk, not per record, while a client that waits for each answer
        before sending the next record still gets it at once."""
        loop = asyncio.get_running_loop()
        pending: collections.deque = collections.deque()  # answers in record order; None ends
        arrived = asyncio.Event()
        limit = ctx.settings.request_max_bytes

        def push(item) -> None:
            pending.append(item)
            arrived.set()

        async def read_and_produce():
            stream = jsoncodec.JsonStream()
            seen, total = 0, 0

            async def produce(objs: list) -> None:
                nonlocal seen
                seen += len(objs)
                for item in await produce_many(objs):
                    push(item)

            try:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > limit:
                        push(errors.http_error(413).body())
                        return
                    objs = stream.feed(chunk)
                    if objs:
                        await produce(objs)
                objs, err = stream.finish()
                if objs:
                    await produce(objs)
                if err is not None:
                    push(RestError(400, 400, f"Bad Request: {err}").body())
                elif seen == 0:
                    push(RestError(422, errors.INVALID_PAYLOAD,
                                   "Payload error. Request body is empty. Data is required.").body())
            except UnicodeDecodeError:
                push(errors.json_error("Invalid UTF-8 in request body").body())
            except RecursionError:
                push(errors.json_error("Request body nested too deeply").body())
            except Exception:
                log.exception("v3 produce stream failed")
                push(errors.internal_error().body())
            finally:
                push(None)

        async def produce_many(objs: list) -> list:
            """Per record, in order: an error body now, or (future of the chunk's deliveries,
            index in them, formats, key, value). The valid records of a chunk are enqueued in
            one executor call and resolve one future: one loop wake-up per chunk, not per
            record."""
            nonlocal count
            parsed = []
            for obj in objs:
                try:
                    rec, kf, vf, err = parse_record(obj)
                except RestError as e:
                    rec, kf, vf, err = None, None, None, e
                parsed.append((rec, kf, vf, err))
            wanted = max((p[0][0] for p in parsed if p[0] is not None and p[0][0] is not None), default=-1)
            if count is not None and wanted >= count:
                count = await topic_partitions(name, wanted)
            items, records = [], []
            future = loop.create_future()
            for rec, kf, vf, err in parsed:
                err = err or placement_error(name, rec[0], count)
                if err is not None:
                    items.append(err.body())
                    continue
                items.append((future, len(records), kf, vf, rec[1], rec[2]))
                records.append(rec)
            if records:
                await backend.run(backend.enqueue, name, records, ProduceBatch(len(records), loop, future))
            return items

        def ready(item) -> bool:
            return isinstance(item, dict) or item[0].done()

        def answer(item) -> bytes:
            if not isinstance(item, dict):
                future, index, kf, vf, key, value = item
                item = render(cid, name, future.result()[index], kf, vf, key, value)
            return jsoncodec.dumps(item)

        reader = asyncio.create_task(read_and_produce())
        try:
            first = True
            while True:
                while not pending:
                    arrived.clear()
                    await arrived.wait()
                head = pending[0]
                if head is None:
                    break
                if not ready(head):
                    await asyncio.wait([head[0]])
                out = []
                while pending and pending[0] is not None and ready(pending[0]):
                    out.append(answer(pending.popleft()))
                yield (b"" if first else b"\n") + b"\n".join(out)
                first = False
        finally:
            if not reader.done():
                reader.cancel()

    def render(cid: str, name: str, r: tuple, kf, vf, key, value) -> dict:
        if r[0] != "ok":
            code = errors.kafka_error_code(r[1])[1] if r[1] is not None else errors.KAFKA_RETRIABLE_ERROR
            return {"error_code": code, "message": r[2]}
        entry = {"error_code": 200, "cluster_id": cid, "topic_name": name, "partition_id": r[1],
                 "offset": r[2], "timestamp": _iso(r[3])}
        if kf is not None:
            entry["key"] = {"type": kf, "size": len(key) if key is not None else 0}
        if vf is not None:
            entry["value"] = {"type": vf, "size": len(value) if value is not None else 0}
        return entry

    # -- produce a batch of records (records:batch) -------------------------------------------------
    max_entries = _batch_max_entries(ctx.settings)

    def parse_batch(req) -> list[tuple]:
        """The entries of a ProduceBatchRequest as (id, record, key type, value type, error), or
        the request's refusal: a body that does not read as the entity (400, or 422 for an
        unknown field), then kafka-rest's batch checks (422 with 42208)."""
        if req is None:
            raise errors.produce_batch_error("Request body is empty. Data is required.")
        req = expect_object(req, "ProduceBatchRequest")
        out = []
        try:
            _check_fields(req, frozenset({"entries"}), "ProduceBatchRequest")
            for entry in expect_list(req.get("entries"), "entries"):
                rec, kf, vf, err = parse_record(entry, _BATCH_ENTRY_FIELDS, "ProduceBatchRequestEntry")
                if "id" not in entry:  # the entry's builder refuses a null id (Jackson reports it)
                    raise errors.json_error("Cannot construct instance of `Builder`, problem: Null id")
                entry_id = entry["id"]
                if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
                    raise errors.produce_batch_error("Batch entry identifier is not a valid string.")
                out.append((entry_id, rec, kf, vf, err))
        except _Unrecognized as e:
            raise errors.unrecognized_field(e.field) from None
        if len({e[0] for e in out}) != len(out):
            raise errors.produce_batch_error("Batch entry IDs are not distinct.")
        if not out:
            raise errors.produce_batch_error("Empty batch.")
        if len(out) > max_entries:
            raise errors.produce_batch_error("Too many entries in batch.")
        return out

    @app.post("/v3/clusters/{cid}/topics/{name}/records:batch", tags=TAGS, status_code=207,
              summary="Produce a batch of records, each with an id (at most api.v3.produce.batch.maximum.entries, "
                      "10 by default): 207 Multi-Status with the successes and failures by id")
    async def produce_batch(request: Request, cid: str, name: str):
        raw = await body(request)
        accept(request)
        entries = parse_batch(parse_json_body(raw))
        wanted = max((e[1][0] for e in entries if e[1] is not None and e[1][0] is not None), default=-1)
        problem = None
        try:
            count = await topic_partitions(name, wanted)
        except RestError as e:  # the producer's metadata failed: every record fails with it
            count, problem = None, e
        failed: dict[int, RestError] = {}
        valid: list[int] = []
        for i, (_, rec, _, _, err) in enumerate(entries):
            err = err or problem or placement_error(name, rec[0], count)
            if err is not None:
                failed[i] = err
            else:
                valid.append(i)
        results = {}
        if valid:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            report = ProduceBatch(len(valid), loop, future)
            await backend.run(backend.enqueue, name, [entries[i][1] for i in valid], report)
            results = dict(zip(valid, await future))
        successes, failures = [], []
        for i, (entry_id, rec, kf, vf, _) in enumerate(entries):
            if i in failed:
                failures.append({"id": entry_id, **failed[i].body()})
                continue
            answer = render(cid, name, results[i], kf, vf, rec[1], rec[2])
            code = answer.pop("error_code")
            if code == 200:
                successes.append({"id": entry_id, **answer})
            else:
                failures.append({"id": entry_id, "error_code": code, "message": answer["message"]})
        return _reply({"successes": successes, "failures": failures}, 207)

    # -- consumer groups (read-only) ---------------------------------------------------------------
    def group_data(request: Request, cid: str, g, coordinator: int | None) -> dict:
        gid = g.group_id
        seg = [cid, "consumer-groups", gid]
        state = getattr(getattr(g, "state", None), "name", "UNKNOWN")
        return {"kind": "KafkaConsumerGroup", "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid]),
                "cluster_id": cid, "consumer_group_id": gid, "is_simple": bool(getattr(g, "is_simple_consumer_group", False)),
                "partition_assignor": getattr(g, "partition_assignor", "") or "", "state": state,
                "coordinator": rel(request, cid, "brokers", coordinator) if coordinator is not None else None,
                "consumers": rel(request, *seg, "consumers"), "lag_summary": rel(request, *seg, "lag-summary")}

    async def group(cid: str, gid: str, missing: RestError):
        await check_cluster(cid, _CLUSTER_MISSING_GROUPS)
        return await backend.run(backend.describe_group, gid, missing)

    @app.get("/v3/clusters/{cid}/consumer-groups", tags=TAGS, summary="Consumer groups")
    async def groups(request: Request, cid: str):
        accept(request)
        await check_cluster(cid, _CLUSTER_MISSING_GROUPS)
        listings = await backend.run(backend.consumer_groups)
        descs = await asyncio.gather(*(backend.run(backend.describe_group, g.group_id, _not_found("gone"))
                                       for g in listings), return_exceptions=True)
        data = [group_data(request, cid, d, d.coordinator.id if d.coordinator else None)
                for d in descs if not isinstance(d, BaseException)]
        return _reply(collection(request, "KafkaConsumerGroupList", [cid, "consumer-groups"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}", tags=TAGS, summary="A consumer group")
    async def group_get(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, errors.http_error(404))  # ConsumerGroupsResource: a bare NotFoundException
        return _reply(group_data(request, cid, d, d.coordinator.id if d.coordinator else None))

    # consumers, their assignments and the group's lags: kafka-rest's ConsumersResource,
    # ConsumerAssignmentsResource and ConsumerLagsResource over one DescribeGroups (and, for lags,
    # the committed and read-committed end offsets)
    def consumer_data(request: Request, cid: str, gid: str, m) -> dict:
        seg = [cid, "consumer-groups", gid, "consumers", m.member_id]
        return {"kind": "KafkaConsumer",
                "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid, "consumer", m.member_id]),
                "cluster_id": cid, "consumer_group_id": gid, "consumer_id": m.member_id,
                "instance_id": m.group_instance_id, "client_id": m.client_id,
                "assignments": rel(request, *seg, "assignments")}

    def assigned(m) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions if m.assignment else []))

    def partition_owners(d) -> dict:
        return {tp: m for m in d.members for tp in assigned(m)}

    async def group_consumer(cid: str, gid: str, consumer_id: str, missing: RestError):
        """The member `consumer_id` of the group (ConsumerManagerImpl: "Consumer Group X does not
        exist." for an unknown group), else `missing`."""
        d = await group(cid, gid, _not_found(f"Consumer Group {gid} does not exist."))
        for m in d.members:
            if m.member_id == consumer_id:
                return m
        raise missing

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers", tags=TAGS, summary="Members of a group")
    async def group_consumers(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, _not_found(f"Consumer Group {gid} does not exist."))
        data = [consumer_data(request, cid, gid, m) for m in sorted(d.members, key=lambda m: m.member_id)]
        return _reply(collection(request, "KafkaConsumerList", [cid, "consumer-groups", gid, "consumers"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers/{consumer_id}", tags=TAGS,
             summary="A member of a group")
    async def group_consumer_get(request: Request, cid: str, gid: str, consumer_id: str):
        accept(request)
        m = await group_consumer(cid, gid, consumer_id, errors.http_error(404))  # a bare NotFoundException
        return _reply(consumer_data(request, cid, gid, m))

    def assignment_data(request: Request, cid: str, gid: str, consumer_id: str, topic: str, p: int) -> dict:
        seg = [cid, "consumer-groups", gid, "consumers", consumer_id, "assignments", topic, "partitions", p]
        return {"kind": "KafkaConsumerAssignment",
                "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid, "consumer", consumer_id,
                                                "assignment", topic, "partition", p]),
                "cluster_id": cid, "consumer_group_id": gid, "consumer_id": consumer_id, "topic_name": topic,
                "partition_id": p, "partition": rel(request, cid, "topics", topic, "partitions", p),
                "lag": rel(request, cid, "consumer-groups", gid, "lags", topic, "partitions", p)}

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers/{consumer_id}/assignments", tags=TAGS,
             summary="The partitions assigned to a member of a group")
    async def group_consumer_assignments(request: Request, cid: str, gid: str, consumer_id: str):
        accept(request)
        m = await group_consumer(cid, gid, consumer_id, _not_found(f"Consumer {consumer_id} does not exist."))
        data = [assignment_data(request, cid, gid, consumer_id, t, p) for t, p in assigned(m)]
        return _reply(collection(request, "KafkaConsumerAssignmentList",
                                 [cid, "consumer-groups", gid, "consumers", consumer_id, "assignments"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers/{consumer_id}/assignments/{topic}/partitions/{pid}",
             tags=TAGS, summary="A partition assigned to a member of a group")
    async def group_consumer_assignment(request: Request, cid: str, gid: str, consumer_id: str, topic: str, pid: str):
        accept(request)
        p = path_int(pid)
        m = await group_consumer(cid, gid, consumer_id, _not_found(f"Consumer {consumer_id} does not exist."))
        if (topic, p) not in assigned(m):
            raise errors.http_error(404)  # a bare NotFoundException
        return _reply(assignment_data(request, cid, gid, consumer_id, topic, p))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lag-summary", tags=TAGS, summary="Lag summary")
    async def group_lag(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, _not_found(f"Consumer Group {gid} could not be found."))
        lags = await backend.run(backend.group_lags, gid)
        if not lags:  # a group without committed offsets has no lag summary in kafka-rest
            raise _not_found("Consumer group offsets could not be found.")
        owner = partition_owners(d)
        total = sum(max(0, end - off) for _, _, off, end in lags)
        worst = max(lags, key=lambda x: max(0, x[3] - x[2]), default=None)
        seg = [cid, "consumer-groups", gid, "lag-summary"]
        body_ = {"kind": "KafkaConsumerGroupLagSummary",
                 "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid, "lag-summary"]),
                 "cluster_id": cid, "consumer_group_id": gid, "max_lag_consumer_id": "", "max_lag_instance_id": None,
                 "max_lag_client_id": "", "max_lag_topic_name": "", "max_lag_partition_id": 0, "max_lag": 0,
                 "total_lag": total, "max_lag_consumer": None, "max_lag_partition": None}
        if worst is not None:
            t, p, off, end = worst
            m = owner.get((t, p))
            body_.update({"max_lag_topic_name": t, "max_lag_partition_id": p, "max_lag": max(0, end - off),
                          "max_lag_partition": rel(request, cid, "topics", t, "partitions", p)})
            if m is not None:
                body_.update({"max_lag_consumer_id": m.member_id, "max_lag_instance_id": m.group_instance_id,
                              "max_lag_client_id": m.client_id,
                              "max_lag_consumer": rel(request, cid, "consumer-groups", gid, "consumers", m.member_id)})
        return _reply(body_)

    def lag_data(request: Request, cid: str, gid: str, lag: tuple, m) -> dict:
        t, p, off, end = lag
        seg = [cid, "consumer-groups", gid, "lags", t, "partitions", p]
        return {"kind": "KafkaConsumerLag",
                "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid, "lag", t, "partition", p]),
                "cluster_id": cid, "consumer_group_id": gid, "topic_name": t, "partition_id": p,
                "consumer_id": m.member_id if m is not None else "",
                "instance_id": m.group_instance_id if m is not None else None,
                "client_id": m.client_id if m is not None else "",
                "current_offset": off, "log_end_offset": end, "lag": max(0, end - off)}

    async def group_lag_entries(request: Request, cid: str, gid: str) -> list[dict]:
        """ConsumerLagManagerImpl: every committed partition of the group with its end offset and
        the member it is assigned to (blank when none); 404 for an unknown group or a group
        without committed offsets."""
        d = await group(cid, gid, _not_found(f"Consumer Group {gid} could not be found."))

        def read():
            offsets = backend.group_offsets(gid)
            return offsets, (backend.group_lags(gid, offsets) if offsets else [])
        offsets, lags = await backend.run(read)
        if not offsets:
            raise _not_found("Consumer group offsets could not be found.")
        owner = partition_owners(d)
        return [lag_data(request, cid, gid, lag, owner.get((lag[0], lag[1]))) for lag in lags]

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lags", tags=TAGS,
             summary="The lag of each committed partition of a group, largest first")
    async def group_lags(request: Request, cid: str, gid: str):
        accept(request)
        data = await group_lag_entries(request, cid, gid)
        if not data:
            raise _not_found("Consumer lags not found.")
        data.sort(key=lambda x: (-x["lag"], x["topic_name"], x["partition_id"]))
        return _reply(collection(request, "KafkaConsumerLagList", [cid, "consumer-groups", gid, "lags"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lags/{topic}/partitions/{pid}", tags=TAGS,
             summary="The lag of one partition of a group")
    async def group_partition_lag(request: Request, cid: str, gid: str, topic: str, pid: str):
        accept(request)
        p = path_int(pid)
        for entry in await group_lag_entries(request, cid, gid):
            if entry["topic_name"] == topic and entry["partition_id"] == p:
                return _reply(entry)
        raise errors.http_error(404)  # a bare NotFoundException

    from josef.rest.v3_admin import register_v3_admin
    register_v3_admin(app, ctx, SimpleNamespace(accept=accept, body=body, url=url, crn=crn, meta=meta, rel=rel,
                                                collection=collection, check_cluster=check_cluster,
                                                not_found=_not_found, reply=_reply))
