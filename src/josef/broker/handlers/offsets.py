"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete."""
from __future__ import annotations

from josef.broker.handlers import api
from josef.protocol.errors import Error


@api(8, "OffsetCommit", 2, 8)
def handle_offset_commit(broker, ctx, request):
    offsets = {}
    for topic in request.topics:
        for p in topic.partitions:
            offsets[(topic.name, p.partition_index)] = (
                p.committed_offset, getattr(p, "committed_leader_epoch", -1), p.committed_metadata)
    results = broker.coordinator.commit(
        request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        generation_id=request.generation_id_or_member_epoch, offsets=offsets)
    return {"throttle_time": 0, "topics": [
        {"name": topic.name, "partitions": [
            {"partition_index": p.partition_index, "error_code": results[(topic.name, p.partition_index)]}
            for p in topic.partitions]}
        for topic in request.topics]}


@api(9, "OffsetFetch", 1, 8)
def handle_offset_fetch(broker, ctx, request):
    if ctx.api_version >= 8:
        groups = [_fetch_group(broker, g.group_id, g.topics) for g in request.groups]
        return {"throttle_time": 0, "groups": groups}
    answer = _fetch_group(broker, request.group_id, request.topics)
    if ctx.api_version < 2 and answer["error_code"]:  # v1 has no group-level error: carry it per partition
        for topic in answer["topics"]:
            for p in topic["partitions"]:
                p["error_code"] = answer["error_code"]
    return {"throttle_time": 0, "topics": answer["topics"], "error_code": answer["error_code"]}


def _fetch_group(broker, group_id: str, topics) -> dict:
    wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    error, committed = broker.coordinator.fetch_offsets(group_id, wanted)
    if wanted is None:
        wanted = sorted(committed)
    by_topic: dict[str, list] = {}
    for topic, partition in wanted:
        value = committed.get((topic, partition))
        by_topic.setdefault(topic, []).append({
            "partition_index": partition,
            "committed_offset": value.offset if value else -1,
            "committed_leader_epoch": value.leader_epoch if value else -1,
            "metadata": value.metadata if value else "",
            "error_code": Error.NONE,
        })
    return {"group_id": group_id, "error_code": error,
            "topics": [{"name": name, "partitions": parts} for name, parts in by_topic.items()]}


@api(47, "OffsetDelete", 0, 0)
def handle_offset_delete(broker, ctx, request):
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    error, results = broker.coordinator.delete_offsets(request.group_id, wanted)
    return {"throttle_time": 0, "error_code": error, "topics": [
        {"name": t.name, "partitions": [
            {"partition_index": p.partition_index, "error_code": results.get((t.name, p.partition_index), Error.NONE)}
            for p in t.partitions]}
        for t in request.topics]}
