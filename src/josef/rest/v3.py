"""The v3 resources users rely on (`application/json`, Confluent's kind/metadata/related shapes):
clusters, brokers, topics (list, get, create, PATCH partitions_count, delete), topic configs
(list, get, set, reset, `:alter`), partitions and replicas, produce records (one or a stream
of JSON records per request, one delivery report each, errors per record inside HTTP 200),
consumer groups with their consumers and lag summary (read-only). Broker configs, cluster-wide
broker config defaults, partition reassignments and ACLs are in josef.rest.v3_admin.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import collections
import functools
import json
import logging
from datetime import datetime, timezone
from types import SimpleNamespace

from fastapi import FastAPI, Request
from fastapi.responses import Response

from josef.rest import errors, jsoncodec, media
from josef.rest.errors import RestError
from josef.rest.kafka import ProduceBatch
from josef.rest.jsoncodec import reject_json_constant
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


def _topic_not_found() -> RestError:
    return RestError(404, 404, "This server does not host this topic-partition.")


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
        return int(value * 1000)
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

    async def check_cluster(cid: str):
        info = await cluster_info()
        if cid != info[0]:
            raise _not_found(f"Cluster {cid} cannot be found.")
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
        return _reply(cluster_data(request, await check_cluster(cid)))

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
        raise _not_found(f"Broker {n} cannot be found.")

    # -- topics ---------------------------------------------------------------------------------
    def topic_data(request: Request, cid: str, name: str, internal: bool, partitions: list) -> dict:
        rf = len(partitions[0].replicas) if partitions else 0
        return {"kind": "KafkaTopic", "metadata": meta(request, [cid, "topics", name], ["kafka", cid, "topic", name]),
                "cluster_id": cid, "topic_name": name, "is_internal": internal, "replication_factor": rf,
                "partitions_count": len(partitions), "partitions": rel(request, cid, "topics", name, "partitions"),
                "configs": rel(request, cid, "topics", name, "configs"),
                "partition_reassignments": rel(request, cid, "topics", name, "partitions", "-", "reassignment"),
                "authorized_operations": []}

    async def topic(cid: str, name: str):
        await check_cluster(cid)
        info = await backend.run(backend.describe_topic, name)
        if info is None:
            raise _topic_not_found()
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
        count = expect_int(expect_object(req, "PartitionsCountRequest").get("partitions_count"), "partitions_count")
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

    async def partition(cid: str, name: str, pid: str):
        n = path_int(pid)
        info = await topic(cid, name)
        part = info.partition(n)
        if part is None:
            raise _topic_not_found()
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
        p = await partition(cid, name, pid)
        return _reply(collection(request, "KafkaReplicaList",
                                 [cid, "topics", name, "partitions", p.partition, "replicas"],
                                 [replica_data(request, cid, name, p, b) for b in p.replicas]))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/{pid}/replicas/{bid}", tags=TAGS, summary="A replica")
    async def replica(request: Request, cid: str, name: str, pid: str, bid: str):
        accept(request)
        b = path_int(bid)
        p = await partition(cid, name, pid)
        if b not in p.replicas:
            raise _not_found(f"Replica {b} cannot be found.")
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
        await topic(cid, name)
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
        raise _not_found(f"Config {key} cannot be found for topic {name}.")

    async def alter(cid: str, name: str, ops, validate_only: bool = False):
        await topic(cid, name)
        await backend.run(backend.alter_topic_configs, name, ops, validate_only, _topic_not_found())

    @app.put("/v3/clusters/{cid}/topics/{name}/configs/{key}", tags=TAGS, summary="Set a topic config")
    async def config_set(request: Request, cid: str, name: str, key: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Request body is empty. Data is required.")
        value = expect_str(expect_object(req, "UpdateTopicConfigRequest").get("value"), "value")
        await alter(cid, name, [(key, value, "SET")])
        return Response(status_code=204)

    @app.delete("/v3/clusters/{cid}/topics/{name}/configs/{key}", tags=TAGS, summary="Reset a topic config")
    async def config_reset(request: Request, cid: str, name: str, key: str):
        accept(request)
        await alter(cid, name, [(key, None, "DELETE")])
        return Response(status_code=204)

    @app.post("/v3/clusters/{cid}/topics/{name}/configs:alter", tags=TAGS, summary="Set/delete several configs")
    async def configs_alter(request: Request, cid: str, name: str):
        raw = await body(request)
        accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise errors.RestError(422, errors.INVALID_PAYLOAD, "Payload error. Request body is empty. Data is required.")
        req = expect_object(req, "AlterTopicConfigBatchRequest")
        ops = []
        for i, item in enumerate(expect_list(req.get("data"), "data")):
            item = expect_object(item, "AlterConfigCommand")
            key = expect_str(item.get("name"), f"data[{i}].name")
            op = (expect_str(item.get("operation"), f"data[{i}].operation") or "SET").upper()
            if not key or op not in ("SET", "DELETE"):
                raise errors.json_error(f"data[{i}]: a name and operation SET or DELETE are required")
            ops.append((key, expect_str(item.get("value"), f"data[{i}].value") if op == "SET" else None, op))
        await alter(cid, name, ops, bool(req.get("validate_only", False)))
        return Response(status_code=204)

    # -- produce records -----------------------------------------------------------------------------
    def serialize(data: dict | None, where: str):
        """(type name or None, bytes or None) for a v3 ProduceRequestData."""
        if data is None:
            return None, None
        data = expect_object(data, "ProduceRequestData")
        fmt = (expect_str(data.get("type"), f"{where}.type") or "").upper()
        schema_given = any(data.get(k) is not None for k in
                           ("schema", "schema_id", "schema_version", "subject", "subject_name_strategy"))
        if fmt in ("AVRO", "JSONSCHEMA", "PROTOBUF") or (not fmt and schema_given):
            raise errors.RestError(400, 400, "Bad Request: Schema Registry must be configured when using schemas.")
        if fmt and fmt not in ("BINARY", "JSON", "STRING"):
            raise errors.RestError(400, 400, f"Bad Request: {where}.type: unknown format {fmt}")
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

    def parse_record(obj, count: int | None):
        obj = expect_object(obj, "ProduceRequest")
        partition = obj.get("partition_id")
        if partition is not None:
            partition = expect_int(partition, "partition_id")
            if partition < 0 or (count is not None and partition >= count):
                raise errors.partition_not_found()
        headers = []
        for i, h in enumerate(expect_list(obj.get("headers"), "headers")):
            h = expect_object(h, "ProduceRequestHeader")
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
        key_fmt, key = serialize(obj.get("key"), "key")
        value_fmt, value = serialize(obj.get("value"), "value")
        ts = obj.get("timestamp")
        ts = _parse_instant(ts, "timestamp") if ts is not None else None
        return (partition, key, value, headers, ts), key_fmt, value_fmt

    @app.post("/v3/clusters/{cid}/topics/{name}/records", tags=TAGS,
              summary="Produce records: one JSON record, or a stream of them on one (chunked) request")
    async def produce(request: Request, cid: str, name: str):
        media.require_content_type(request.headers.get("content-type"), {media.JSON})
        accept(request)
        await check_cluster(cid)
        count = await backend.run(backend.partition_count, name)
        if count is None:
            raise _topic_not_found()
        return _RecordStream(_produce_stream(request, cid, name, count))

    async def _produce_stream(request: Request, cid: str, name: str, count: int):
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
            decoder = json.JSONDecoder(parse_constant=reject_json_constant)
            utf8 = codecs.getincrementaldecoder("utf-8")()
            buf, pos, seen, total = "", 0, 0, 0
            try:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > limit:
                        push(errors.http_error(413).body())
                        return
                    buf = buf[pos:] + utf8.decode(chunk)
                    pos = 0
                    objs = []
                    while True:
                        while pos < len(buf) and buf[pos].isspace():
                            pos += 1
                        if pos >= len(buf):
                            break
                        try:
                            obj, pos = decoder.raw_decode(buf, pos)
                        except json.JSONDecodeError:
                            break  # incomplete: wait for more bytes (judged at the end)
                        objs.append(obj)
                    seen += len(objs)
                    if objs:
                        for item in await produce_many(objs):
                            push(item)
                buf = buf[pos:] + utf8.decode(b"", final=True)
                if buf.strip():
                    try:
                        decoder.raw_decode(buf.strip())
                        err = "Unexpected content after a record"
                    except json.JSONDecodeError as e:
                        err = f"Unexpected character at line {e.lineno} column {e.colno}: {e.msg}"
                    push(RestError(400, 400, f"Bad Request: {err}").body())
                elif seen == 0:
                    push(RestError(422, errors.INVALID_PAYLOAD,
                                   "Payload error. Request body is empty. Data is required.").body())
            except UnicodeDecodeError:
                push(errors.json_error("Invalid UTF-8 in request body").body())
            except Exception:
                log.exception("v3 produce stream failed")
                push(errors.internal_error().body())
            finally:
                push(None)

        async def produce_many(objs: list) -> list:
            """Per record, in order: an error body now, or (future of the delivery, formats,
            key, value); the valid records are enqueued in one executor call."""
            items, batch = [], []
            for obj in objs:
                try:
                    rec, kf, vf = parse_record(obj, count)
                except RestError as e:
                    items.append(e.body())
                    continue
                future = loop.create_future()
                batch.append((rec, ProduceBatch(1, loop, future)))
                items.append((future, kf, vf, rec[1], rec[2]))
            if batch:
                await backend.run(enqueue_each, name, batch)
            return items

        def enqueue_each(topic: str, batch: list) -> None:
            for rec, report in batch:
                backend.enqueue(topic, [rec], report)

        def ready(item) -> bool:
            return isinstance(item, dict) or item[0].done()

        def answer(item) -> bytes:
            if not isinstance(item, dict):
                future, kf, vf, key, value = item
                item = render(cid, name, future.result()[0], kf, vf, key, value)
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

    async def group(cid: str, gid: str):
        await check_cluster(cid)
        return await backend.run(backend.describe_group, gid,
                                 _not_found(f"Consumer group {gid} cannot be found."))

    @app.get("/v3/clusters/{cid}/consumer-groups", tags=TAGS, summary="Consumer groups")
    async def groups(request: Request, cid: str):
        accept(request)
        await check_cluster(cid)
        listings = await backend.run(backend.consumer_groups)
        descs = await asyncio.gather(*(backend.run(backend.describe_group, g.group_id, _not_found("gone"))
                                       for g in listings), return_exceptions=True)
        data = [group_data(request, cid, d, d.coordinator.id if d.coordinator else None)
                for d in descs if not isinstance(d, BaseException)]
        return _reply(collection(request, "KafkaConsumerGroupList", [cid, "consumer-groups"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}", tags=TAGS, summary="A consumer group")
    async def group_get(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid)
        return _reply(group_data(request, cid, d, d.coordinator.id if d.coordinator else None))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers", tags=TAGS, summary="Members of a group")
    async def group_consumers(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid)
        data = []
        for m in d.members:
            seg = [cid, "consumer-groups", gid, "consumers", m.member_id]
            data.append({"kind": "KafkaConsumer",
                         "metadata": meta(request, seg, ["kafka", cid, "consumer-group", gid, "consumer", m.member_id]),
                         "cluster_id": cid, "consumer_group_id": gid, "consumer_id": m.member_id,
                         "instance_id": m.group_instance_id, "client_id": m.client_id,
                         "assignments": rel(request, *seg, "assignments")})
        return _reply(collection(request, "KafkaConsumerList", [cid, "consumer-groups", gid, "consumers"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lag-summary", tags=TAGS, summary="Lag summary")
    async def group_lag(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid)
        lags = await backend.run(backend.group_lags, gid)
        owner = {}
        for m in d.members:
            for tp in (m.assignment.topic_partitions if m.assignment else []):
                owner[(tp.topic, tp.partition)] = m
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

    from josef.rest.v3_admin import register_v3_admin
    register_v3_admin(app, ctx, SimpleNamespace(accept=accept, body=body, url=url, crn=crn, meta=meta, rel=rel,
                                                collection=collection, check_cluster=check_cluster,
                                                not_found=_not_found, reply=_reply))
