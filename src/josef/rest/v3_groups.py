"""v3 consumer groups, read-only as in kafka-rest: groups, their consumers, the consumers'
assignments, per-partition lags and the lag summary."""
from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request

from josef.rest import errors
from josef.rest.errors import RestError
from josef.rest.util import path_int

TAGS = ["v3"]
_CLUSTER_MISSING_GROUPS = "Cluster {} could not be found."  # ConsumerGroupManagerImpl's wording


def register_v3_groups(app: FastAPI, ctx, h) -> None:
    """The consumer-group routes; `h` holds the v3 helpers josef.rest.v3.register_v3 shares."""
    backend = ctx.backend
    accept, check_cluster, collection, meta, rel = h.accept, h.check_cluster, h.collection, h.meta, h.rel
    reply, not_found = h.reply, h.not_found

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
        descs = await asyncio.gather(*(backend.run(backend.describe_group, g.group_id, not_found("gone"))
                                       for g in listings), return_exceptions=True)
        data = [group_data(request, cid, d, d.coordinator.id if d.coordinator else None)
                for d in descs if not isinstance(d, BaseException)]
        return reply(collection(request, "KafkaConsumerGroupList", [cid, "consumer-groups"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}", tags=TAGS, summary="A consumer group")
    async def group_get(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, errors.http_error(404))  # ConsumerGroupsResource: a bare NotFoundException
        return reply(group_data(request, cid, d, d.coordinator.id if d.coordinator else None))

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
        d = await group(cid, gid, not_found(f"Consumer Group {gid} does not exist."))
        for m in d.members:
            if m.member_id == consumer_id:
                return m
        raise missing

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers", tags=TAGS, summary="Members of a group")
    async def group_consumers(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, not_found(f"Consumer Group {gid} does not exist."))
        data = [consumer_data(request, cid, gid, m) for m in sorted(d.members, key=lambda m: m.member_id)]
        return reply(collection(request, "KafkaConsumerList", [cid, "consumer-groups", gid, "consumers"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers/{consumer_id}", tags=TAGS,
             summary="A member of a group")
    async def group_consumer_get(request: Request, cid: str, gid: str, consumer_id: str):
        accept(request)
        m = await group_consumer(cid, gid, consumer_id, errors.http_error(404))  # a bare NotFoundException
        return reply(consumer_data(request, cid, gid, m))

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
        m = await group_consumer(cid, gid, consumer_id, not_found(f"Consumer {consumer_id} does not exist."))
        data = [assignment_data(request, cid, gid, consumer_id, t, p) for t, p in assigned(m)]
        return reply(collection(request, "KafkaConsumerAssignmentList",
                                 [cid, "consumer-groups", gid, "consumers", consumer_id, "assignments"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/consumers/{consumer_id}/assignments/{topic}/partitions/{pid}",
             tags=TAGS, summary="A partition assigned to a member of a group")
    async def group_consumer_assignment(request: Request, cid: str, gid: str, consumer_id: str, topic: str, pid: str):
        accept(request)
        p = path_int(pid)
        m = await group_consumer(cid, gid, consumer_id, not_found(f"Consumer {consumer_id} does not exist."))
        if (topic, p) not in assigned(m):
            raise errors.http_error(404)  # a bare NotFoundException
        return reply(assignment_data(request, cid, gid, consumer_id, topic, p))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lag-summary", tags=TAGS, summary="Lag summary")
    async def group_lag(request: Request, cid: str, gid: str):
        accept(request)
        d = await group(cid, gid, not_found(f"Consumer Group {gid} could not be found."))
        lags = await backend.run(backend.group_lags, gid)
        if not lags:  # a group without committed offsets has no lag summary in kafka-rest
            raise not_found("Consumer group offsets could not be found.")
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
        return reply(body_)

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
        d = await group(cid, gid, not_found(f"Consumer Group {gid} could not be found."))

        def read():
            offsets = backend.group_offsets(gid)
            return offsets, (backend.group_lags(gid, offsets) if offsets else [])
        offsets, lags = await backend.run(read)
        if not offsets:
            raise not_found("Consumer group offsets could not be found.")
        owner = partition_owners(d)
        return [lag_data(request, cid, gid, lag, owner.get((lag[0], lag[1]))) for lag in lags]

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lags", tags=TAGS,
             summary="The lag of each committed partition of a group, largest first")
    async def group_lags(request: Request, cid: str, gid: str):
        accept(request)
        data = await group_lag_entries(request, cid, gid)
        if not data:
            raise not_found("Consumer lags not found.")
        data.sort(key=lambda x: (-x["lag"], x["topic_name"], x["partition_id"]))
        return reply(collection(request, "KafkaConsumerLagList", [cid, "consumer-groups", gid, "lags"], data))

    @app.get("/v3/clusters/{cid}/consumer-groups/{gid}/lags/{topic}/partitions/{pid}", tags=TAGS,
             summary="The lag of one partition of a group")
    async def group_partition_lag(request: Request, cid: str, gid: str, topic: str, pid: str):
        accept(request)
        p = path_int(pid)
        for entry in await group_lag_entries(request, cid, gid):
            if entry["topic_name"] == topic and entry["partition_id"] == p:
                return reply(entry)
        raise errors.http_error(404)  # a bare NotFoundException
