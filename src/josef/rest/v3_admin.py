"""v3 broker configs, cluster-wide broker config defaults, partition reassignments and ACLs,
as kafka-rest's resources answer them.

- `/brokers/{id}/configs` (list, get, PUT set, DELETE reset, `:alter`) and `/brokers/-/configs`:
  KafkaBrokerConfig entities. PUT, DELETE and `:alter` name configs the broker lists (else 404).
  A broker id the cluster does not have is 404 "Broker N cannot be found." (kafka-rest would
  wait for the Admin client to time out on it; a non-numeric id is Jersey's 404).
- `/broker-configs` (list, get, PUT, DELETE, `:alter`): the dynamic cluster-wide defaults
  (Kafka's `<default>` broker entity), KafkaClusterConfig entities. Only defaults that are set
  are listed; PUT and `:alter` may set any name (Kafka validates it), DELETE only a set one.
- `/topics/-/partitions/-/reassignment`, `/topics/{t}/partitions/-/reassignment`,
  `/topics/{t}/partitions/{p}/reassignment`: ongoing reassignments (KafkaReassignment); the
  lists' `self` links say `reassignments`, as kafka-rest's do.
- `/acls` (search, create, delete) and `/acls:batch`: KafkaAcl entities. A Kafka without an
  authorizer answers SECURITY_DISABLED and kafka-rest 400 40002; josef brokers have no ACL APIs
  and are answered the same way.
"""
from __future__ import annotations

from urllib.parse import quote_plus

from fastapi import FastAPI, Request
from fastapi.responses import Response

from josef.rest import errors
from josef.rest.errors import RestError
from josef.rest.kafka import (ACL_OPERATIONS, ACL_PATTERN_TYPES, ACL_PERMISSIONS, ACL_RESOURCE_TYPES, AclSpec,
                              ConfigInfo)
from josef.rest.util import expect_list, expect_object, expect_str, parse_json_body, path_int

TAGS = ["v3"]

NULL_PAYLOAD = "Payload error. Null input provided. Data is required."


def _null_payload() -> RestError:
    return RestError(422, errors.INVALID_PAYLOAD, NULL_PAYLOAD)


def _java_url_encode(value: str) -> str:
    """java.net.URLEncoder.encode(value, "UTF-8"), which kafka-rest uses for query values."""
    return quote_plus(value, safe="*").replace("~", "%7E")


# kafka-rest's enum classes (for the messages of its enum parameter converter)
_ENUMS = {"resource_type": ("ResourceType", ACL_RESOURCE_TYPES), "pattern_type": ("PatternType", ACL_PATTERN_TYPES),
          "operation": ("Operation", ACL_OPERATIONS), "permission": ("Permission", ACL_PERMISSIONS)}
_ACL_FIELDS = ("resource_type", "resource_name", "pattern_type", "principal", "host", "operation", "permission")
_ACL_ORDER = {"resource_type": list(ACL_RESOURCE_TYPES), "pattern_type": list(ACL_PATTERN_TYPES),
              "operation": list(ACL_OPERATIONS), "permission": list(ACL_PERMISSIONS)}


def _query_enum(request: Request, key: str, default: str) -> str:
    """An enum query parameter, case-insensitive; kafka-rest's converter answers 404 otherwise."""
    raw = request.query_params.get(key)
    value = default if raw is None else raw
    cls, table = _ENUMS[key]
    if value.upper() not in table:
        raise RestError(404, 404, f"The valid values for {cls} do not include '{value}'")
    return value.upper()


def _body_enum(obj: dict, key: str) -> str:
    value = obj.get(key)
    cls, table = _ENUMS[key]
    if value is None:
        raise errors.json_error(f"Missing required property '{key}' of CreateAclRequest")
    if not isinstance(value, str) or value.upper() not in table:
        raise errors.json_error(
            f"Cannot deserialize value of type `{cls}` from {value!r}: not one of the values accepted "
            f"for Enum class: [{', '.join(table)}] ({key})")
    return value.upper()


def _acl_request(obj, entity: str = "CreateAclRequest") -> AclSpec:
    """A CreateAclRequest body, checked as kafka-rest's AclManager.validateAclCreateParameters."""
    obj = expect_object(obj, entity)
    errors.reject_unknown_fields(obj, _ACL_FIELDS)
    resource_type = _body_enum(obj, "resource_type")
    pattern_type = _body_enum(obj, "pattern_type")
    operation = _body_enum(obj, "operation")
    permission = _body_enum(obj, "permission")
    strings = {}
    for key in ("resource_name", "principal", "host"):
        value = expect_str(obj.get(key), key)
        if value is None:
            raise errors.json_error(f"Missing required property '{key}' of {entity}")
        strings[key] = value
    if resource_type in ("ANY", "UNKNOWN"):
        raise errors.bad_request("resource_type cannot be ANY")
    if pattern_type in ("ANY", "MATCH", "UNKNOWN"):
        raise errors.bad_request(f"pattern_type cannot be {pattern_type}")
    if operation in ("ANY", "UNKNOWN"):
        raise errors.bad_request("operation cannot be ANY")
    if permission in ("ANY", "UNKNOWN"):
        raise errors.bad_request("permission cannot be ANY")
    return AclSpec(resource_type, strings["resource_name"], pattern_type, strings["principal"], strings["host"],
                   operation, permission)


def _alter_commands(req, entity: str) -> tuple[list[tuple[str, str | None, str]], bool]:
    """`{"data": [{"name", "value", "operation": SET|DELETE}], "validate_only"}` as kafka-rest's
    AlterConfigBatchRequestData (operation defaults to SET)."""
    req = expect_object(req, entity)
    errors.reject_unknown_fields(req, ("data", "validate_only"))
    ops = []
    for i, item in enumerate(expect_list(req.get("data"), "data")):
        item = expect_object(item, "AlterEntry")
        errors.reject_unknown_fields(item, ("name", "value", "operation"))
        key = expect_str(item.get("name"), f"data[{i}].name")
        op = (expect_str(item.get("operation"), f"data[{i}].operation") or "SET").upper()
        if not key or op not in ("SET", "DELETE"):
            raise errors.json_error(f"data[{i}]: a name and operation SET or DELETE are required")
        ops.append((key, expect_str(item.get("value"), f"data[{i}].value") if op == "SET" else None, op))
    return ops, bool(req.get("validate_only") or False)


def register_v3_admin(app: FastAPI, ctx, h) -> None:
    """Routes on `app`; `h` carries v3.py's helpers (accept, body, url, crn, meta, rel,
    collection, check_cluster, not_found, reply)."""
    backend = ctx.backend

    def config_fields(cid: str, c: ConfigInfo) -> dict:
        return {"cluster_id": cid, "name": c.name, "value": c.value, "is_default": c.is_default,
                "is_read_only": c.is_read_only, "is_sensitive": c.is_sensitive, "source": c.source,
                "synonyms": [{"name": n, "value": v, "source": s} for n, v, s in c.synonyms]}

    # -- broker configs -----------------------------------------------------------------------------
    def broker_config_data(request: Request, cid: str, bid: int, c: ConfigInfo) -> dict:
        fields = config_fields(cid, c)
        return {"kind": "KafkaBrokerConfig",
                "metadata": h.meta(request, [cid, "brokers", bid, "configs", c.name],
                                   ["kafka", cid, "broker", bid, "config", c.name]),
                "cluster_id": cid, "broker_id": bid, **{k: v for k, v in fields.items() if k != "cluster_id"}}

    async def broker_of(cid: str, bid: str) -> int:
        n = path_int(bid)
        # BrokerConfigManager rewraps its NotFoundException: an unknown cluster is a bare 404
        info = await h.check_cluster(cid, "HTTP 404 Not Found")
        if n not in {b[0] for b in info[2]}:
            raise h.not_found(f"Broker {n} cannot be found.")
        return n

    async def broker_configs(cid: str, bid: str) -> tuple[int, list[ConfigInfo]]:
        n = await broker_of(cid, bid)
        return n, await backend.run(backend.broker_configs, n)

    def config_missing(name: str, bid: int | None, cid: str) -> RestError:
        # AbstractConfigManager: "Config %s cannot be found for %s %s in cluster %s."
        return h.not_found(f"Config {name} cannot be found for BROKER {'' if bid is None else bid} in cluster {cid}.")

    @app.get("/v3/clusters/{cid}/brokers/-/configs", tags=TAGS, summary="Configs of every broker")
    async def all_broker_configs(request: Request, cid: str):
        h.accept(request)
        info = await h.check_cluster(cid)
        data = []
        for b in info[2]:
            for c in await backend.run(backend.broker_configs, b[0]):
                data.append(broker_config_data(request, cid, b[0], c))
        return h.reply(h.collection(request, "KafkaBrokerConfigList", [cid, "brokers", "-", "configs"], data))

    @app.get("/v3/clusters/{cid}/brokers/{bid}/configs", tags=TAGS, summary="A broker's configs")
    async def list_broker_configs(request: Request, cid: str, bid: str):
        h.accept(request)
        n, configs = await broker_configs(cid, bid)
        return h.reply(h.collection(request, "KafkaBrokerConfigList", [cid, "brokers", n, "configs"],
                                    [broker_config_data(request, cid, n, c) for c in configs]))

    @app.get("/v3/clusters/{cid}/brokers/{bid}/configs/{name}", tags=TAGS, summary="A broker config")
    async def get_broker_config(request: Request, cid: str, bid: str, name: str):
        h.accept(request)
        n, configs = await broker_configs(cid, bid)
        for c in configs:
            if c.name == name:
                return h.reply(broker_config_data(request, cid, n, c))
        raise errors.http_error(404)

    async def update_value(request: Request, entity: str) -> str | None:
        raw = await h.body(request)
        h.accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise _null_payload()
        req = expect_object(req, entity)
        errors.reject_unknown_fields(req, ("value",))
        return expect_str(req.get("value"), "value")

    @app.put("/v3/clusters/{cid}/brokers/{bid}/configs/{name}", tags=TAGS, summary="Set a broker config")
    async def set_broker_config(request: Request, cid: str, bid: str, name: str):
        value = await update_value(request, "UpdateBrokerConfigRequest")
        n, configs = await broker_configs(cid, bid)
        if name not in {c.name for c in configs}:
            raise config_missing(name, n, cid)
        await backend.run(backend.alter_broker_configs, n, [(name, value, "SET")])
        return Response(status_code=204)

    @app.delete("/v3/clusters/{cid}/brokers/{bid}/configs/{name}", tags=TAGS, summary="Reset a broker config")
    async def reset_broker_config(request: Request, cid: str, bid: str, name: str):
        h.accept(request)
        n, configs = await broker_configs(cid, bid)
        if name not in {c.name for c in configs}:
            raise config_missing(name, n, cid)
        await backend.run(backend.alter_broker_configs, n, [(name, None, "DELETE")])
        return Response(status_code=204)

    @app.post("/v3/clusters/{cid}/brokers/{bid}/configs:alter", tags=TAGS,
              summary="Set/delete several configs of a broker")
    async def alter_broker_configs(request: Request, cid: str, bid: str):
        raw = await h.body(request)
        h.accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise _null_payload()
        ops, validate_only = _alter_commands(req, "AlterBrokerConfigBatchRequest")
        n, configs = await broker_configs(cid, bid)
        names = {c.name for c in configs}
        if any(key not in names for key, _, _ in ops):
            raise errors.http_error(404)  # kafka-rest rewraps the not-found: "HTTP 404 Not Found"
        if ops:
            await backend.run(backend.alter_broker_configs, n, ops, validate_only)
        return Response(status_code=204)

    # -- cluster-wide broker config defaults ------------------------------------------------------------
    def cluster_config_data(request: Request, cid: str, c: ConfigInfo) -> dict:
        fields = config_fields(cid, c)
        return {"kind": "KafkaClusterConfig",
                "metadata": h.meta(request, [cid, "broker-configs", c.name], ["kafka", cid, "broker-config", c.name]),
                "cluster_id": cid, "config_type": "BROKER",
                **{k: v for k, v in fields.items() if k != "cluster_id"}}

    async def cluster_configs(cid: str) -> list[ConfigInfo]:
        # list, get and delete go through ClusterConfigManager's listing, which rewraps the
        # unknown cluster as a bare 404 (set and `:alter` do not list, and name the cluster)
        await h.check_cluster(cid, "HTTP 404 Not Found")
        return await backend.run(backend.broker_configs, None)

    @app.get("/v3/clusters/{cid}/broker-configs", tags=TAGS, summary="Cluster-wide dynamic broker config defaults")
    async def list_cluster_configs(request: Request, cid: str):
        h.accept(request)
        configs = await cluster_configs(cid)
        return h.reply(h.collection(request, "KafkaClusterConfigList", [cid, "broker-configs"],
                                    [cluster_config_data(request, cid, c) for c in configs]))

    @app.get("/v3/clusters/{cid}/broker-configs/{name}", tags=TAGS, summary="A cluster-wide broker config default")
    async def get_cluster_config(request: Request, cid: str, name: str):
        h.accept(request)
        for c in await cluster_configs(cid):
            if c.name == name:
                return h.reply(cluster_config_data(request, cid, c))
        raise errors.http_error(404)

    @app.put("/v3/clusters/{cid}/broker-configs/{name}", tags=TAGS,
             summary="Set a cluster-wide broker config default")
    async def set_cluster_config(request: Request, cid: str, name: str):
        value = await update_value(request, "UpdateClusterConfigRequest")
        await h.check_cluster(cid)
        await backend.run(backend.alter_broker_configs, None, [(name, value, "SET")])
        return Response(status_code=204)

    @app.delete("/v3/clusters/{cid}/broker-configs/{name}", tags=TAGS,
                summary="Remove a cluster-wide broker config default")
    async def reset_cluster_config(request: Request, cid: str, name: str):
        h.accept(request)
        if name not in {c.name for c in await cluster_configs(cid)}:
            raise config_missing(name, None, cid)
        await backend.run(backend.alter_broker_configs, None, [(name, None, "DELETE")])
        return Response(status_code=204)

    @app.post("/v3/clusters/{cid}/broker-configs:alter", tags=TAGS,
              summary="Set/delete several cluster-wide broker config defaults")
    async def alter_cluster_configs(request: Request, cid: str):
        raw = await h.body(request)
        h.accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise _null_payload()
        ops, validate_only = _alter_commands(req, "AlterClusterConfigBatchRequest")
        await h.check_cluster(cid)
        if ops:
            await backend.run(backend.alter_broker_configs, None, ops, validate_only)
        return Response(status_code=204)

    # -- partition reassignments ------------------------------------------------------------------------
    def reassignment_data(request: Request, cid: str, r, word: str) -> dict:
        topic, p, adding, removing = r
        seg = [cid, "topics", topic, "partitions", p]
        return {"kind": "KafkaReassignment",
                "metadata": h.meta(request, [*seg, word], ["kafka", cid, "topic", topic, "partition", p, word]),
                "cluster_id": cid, "topic_name": topic, "partition_id": p,
                "adding_replicas": adding, "removing_replicas": removing,
                "replicas": h.rel(request, *seg, "replicas")}

    async def reassignments(cid: str) -> list:
        await h.check_cluster(cid)
        return await backend.run(backend.reassignments)

    @app.get("/v3/clusters/{cid}/topics/-/partitions/-/reassignment", tags=TAGS,
             summary="Ongoing partition reassignments")
    async def list_reassignments(request: Request, cid: str):
        h.accept(request)
        data = [reassignment_data(request, cid, r, "reassignments") for r in await reassignments(cid)]
        return h.reply(h.collection(request, "KafkaReassignmentList",
                                    [cid, "topics", "-", "partitions", "-", "reassignments"], data))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/-/reassignment", tags=TAGS,
             summary="Ongoing reassignments of a topic's partitions")
    async def topic_reassignments(request: Request, cid: str, name: str):
        h.accept(request)
        data = [reassignment_data(request, cid, r, "reassignments") for r in await reassignments(cid)
                if r[0] == name]
        return h.reply(h.collection(request, "KafkaReassignmentList",
                                    [cid, "topics", name, "partitions", "-", "reassignments"], data))

    @app.get("/v3/clusters/{cid}/topics/{name}/partitions/{pid}/reassignment", tags=TAGS,
             summary="The ongoing reassignment of a partition")
    async def partition_reassignment(request: Request, cid: str, name: str, pid: str):
        h.accept(request)
        p = path_int(pid)
        for r in await reassignments(cid):
            if r[0] == name and r[1] == p:
                return h.reply(reassignment_data(request, cid, r, "reassignment"))
        raise errors.http_error(404)

    # -- ACLs ---------------------------------------------------------------------------------------------
    def acl_url(request: Request, cid: str, values: dict) -> str:
        query = "&".join(f"{k}={_java_url_encode(values[k] or '')}" for k in _ACL_FIELDS)
        return h.url(request, cid, "acls") + "?" + query

    def acl_data(request: Request, cid: str, a: AclSpec) -> dict:
        values = {k: getattr(a, k) for k in _ACL_FIELDS}
        return {"kind": "KafkaAcl", "metadata": {"self": acl_url(request, cid, values)}, "cluster_id": cid,
                **{k: (v if v is not None else "") for k, v in values.items()}}

    def acl_sort_key(d: dict):
        return tuple(_ACL_ORDER[k].index(d[k]) if k in _ACL_ORDER else d[k] for k in _ACL_FIELDS)

    def acl_filter(request: Request, default: str, unknown_message: str) -> tuple[AclSpec, dict]:
        enums = {k: _query_enum(request, k, default) for k in _ENUMS}
        for key in ("resource_type", "pattern_type", "operation", "permission"):
            if enums[key] == "UNKNOWN":
                raise errors.bad_request(unknown_message.format(key))
        strings = {k: request.query_params.get(k, "") for k in ("resource_name", "principal", "host")}
        spec = AclSpec(enums["resource_type"], strings["resource_name"] or None, enums["pattern_type"],
                       strings["principal"] or None, strings["host"] or None, enums["operation"], enums["permission"])
        return spec, {**enums, **strings}

    @app.get("/v3/clusters/{cid}/acls", tags=TAGS, summary="Search ACLs")
    async def search_acls(request: Request, cid: str):
        h.accept(request)
        spec, values = acl_filter(request, "any", "{} cannot be UNKNOWN")
        await h.check_cluster(cid)
        found = await backend.run(backend.describe_acls, spec)
        data = sorted((acl_data(request, cid, a) for a in found), key=acl_sort_key)
        return h.reply({"kind": "KafkaAclList",
                        "metadata": {"self": acl_url(request, cid, values), "next": None}, "data": data})

    @app.post("/v3/clusters/{cid}/acls", tags=TAGS, summary="Create an ACL")
    async def create_acl(request: Request, cid: str):
        raw = await h.body(request)
        h.accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise _null_payload()
        spec = _acl_request(req)
        await h.check_cluster(cid)
        await backend.run(backend.create_acls, [spec])
        location = acl_url(request, cid, {k: getattr(spec, k) for k in _ACL_FIELDS})
        return Response(status_code=201, headers={"Location": location})

    @app.post("/v3/clusters/{cid}/acls:batch", tags=TAGS, summary="Create several ACLs")
    async def create_acls(request: Request, cid: str):
        raw = await h.body(request)
        h.accept(request)
        req = parse_json_body(raw)
        if req is None:
            raise _null_payload()
        req = expect_object(req, "CreateAclBatchRequest")
        errors.reject_unknown_fields(req, ("data",))
        items = req.get("data")
        if items is None:
            raise RestError(422, errors.INVALID_PAYLOAD, "Payload error. Empty input provided. Data is required.")
        specs = [_acl_request(item) for item in expect_list(items, "data")]
        await h.check_cluster(cid)
        await backend.run(backend.create_acls, specs)
        return Response(status_code=204)

    @app.delete("/v3/clusters/{cid}/acls", tags=TAGS, summary="Delete the ACLs a filter matches")
    async def delete_acls(request: Request, cid: str):
        h.accept(request)
        spec, _ = acl_filter(request, "unknown", "{} cannot be unspecified or UNKNOWN")
        await h.check_cluster(cid)
        deleted = await backend.run(backend.delete_acls, spec)
        return h.reply({"data": sorted((acl_data(request, cid, a) for a in deleted), key=acl_sort_key)})
