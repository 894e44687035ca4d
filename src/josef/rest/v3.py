"""The v3 resources users rely on (`application/json`, Confluent's kind/metadata/related shapes):
clusters, brokers, topics (list, get, create, PATCH partitions_count, delete), topic configs
(list, get, set, reset, `:alter`), partitions and replicas. Produce is in josef.rest.v3_produce,
consumer groups in josef.rest.v3_groups; broker configs, cluster-wide broker config defaults,
partition reassignments and ACLs in josef.rest.v3_admin. They share the helpers made here.

Errors follow kafka-rest's own resources, whose answers differ by resource: an unknown topic is
the Admin client's UnknownTopicOrPartitionException (404, 40403) where kafka-rest asks Kafka
about it, a bare "HTTP 404 Not Found" where a resource answers NotFoundException without text,
a named message where a manager checks an entity itself ("Cluster X cannot be found.").
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from fastapi import FastAPI, Request
from fastapi.responses import Response

from josef.rest import errors, jsoncodec, media
from josef.rest.errors import RestError
from josef.rest.util import expect_int, expect_list, expect_object, expect_str, parse_json_body, path_int

TAGS = ["v3"]


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
_HTTP_404 = "HTTP 404 Not Found"

# the other request entities' fields (rest-utils refuses any other: 422 "Unrecognized field: x")
_CREATE_TOPIC_FIELDS = frozenset({"topic_name", "partitions_count", "replication_factor", "replicas_assignments",
                                  "configs", "validate_only"})
_CONFIG_ENTRY_FIELDS = frozenset({"name", "value"})
_ALTER_BATCH_FIELDS = frozenset({"data", "validate_only"})
_ALTER_ENTRY_FIELDS = frozenset({"name", "value", "operation"})
_reject_unknown = errors.reject_unknown_fields


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

    h = SimpleNamespace(accept=accept, body=body, url=url, crn=crn, meta=meta, rel=rel, collection=collection,
                        check_cluster=check_cluster, not_found=_not_found, reply=_reply)
    from josef.rest.v3_admin import register_v3_admin
    from josef.rest.v3_groups import register_v3_groups
    from josef.rest.v3_produce import register_v3_produce
    register_v3_produce(app, ctx, h)
    register_v3_groups(app, ctx, h)
    register_v3_admin(app, ctx, h)
