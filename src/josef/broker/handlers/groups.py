"""The classic group protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
ListGroups, DescribeGroups, DeleteGroups. Thin over the GroupCoordinator."""
from __future__ import annotations

from josef.broker.futures import after, then
from josef.broker.handlers import api
from josef.protocol.entities import ms
from josef.protocol.errors import Error

NO_AUTHORIZED_OPERATIONS = -2147483648


def _client_host(ctx) -> str:
    return "/" + ctx.connection.peer.rsplit(":", 1)[0]


@api(10, "FindCoordinator", 0, 4)
def handle_find_coordinator(broker, ctx, request):
    key_type = getattr(request, "key_type", 0)
    keys = list(request.coordinator_keys) if ctx.api_version >= 4 else [request.key]

    def problem(key) -> str | None:
        if key_type not in (0, 1):
            return f"Unsupported key type {key_type}"
        if key_type == 0 and not key:
            return "Group id must not be empty"
        return None
    problems = [problem(key) for key in keys]
    # the first lookup creates __consumer_offsets: answer once that write is done
    creating = broker.coordinator.ensure_topic() if None in problems else None

    def answer() -> dict:
        answers = []
        for key, invalid in zip(keys, problems):
            node, error, message = None, Error.NONE, None
            if invalid:
                error, message = Error.INVALID_REQUEST, invalid
            else:
                # transactional ids are refused at InitProducerId until transactions exist;
                # until then their coordinator is simply the group coordinator's broker
                node = broker.coordinator.coordinator_for(key or "")
                endpoint = node.endpoint(ctx.connection.listener) if node is not None else None
                if endpoint is None:
                    node, error, message = None, Error.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available."
            answers.append({"key": key, "node_id": node.broker_id if node else -1,
                            "host": endpoint[0] if node else "", "port": endpoint[1] if node else -1,
                            "error_code": error, "error_message": message})
        if ctx.api_version >= 4:
            return {"throttle_time": 0, "coordinators": answers}
        return {"throttle_time": 0, **answers[0]}
    return after([creating] if creating is not None else [], answer)


@api(11, "JoinGroup", 0, 9)
def handle_join_group(broker, ctx, request):
    session = ms(request.session_timeout)
    rebalance = ms(request.rebalance_timeout) if ctx.api_version >= 1 else session
    future = broker.coordinator.join(
        request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
        session_timeout_ms=session, rebalance_timeout_ms=rebalance,
        client_id=ctx.client_id or "", client_host=_client_host(ctx),
        require_known_member_id=ctx.api_version >= 4, supports_skip_assignment=ctx.api_version >= 9)

    def response(reply) -> dict:
        return {
            "throttle_time": 0, "error_code": reply.error_code, "generation_id": reply.generation_id,
            "protocol_type": reply.protocol_type, "protocol_name": reply.protocol_name or ("" if ctx.api_version < 7 else None),
            "leader": reply.leader, "skip_assignment": reply.skip_assignment, "member_id": reply.member_id,
            "members": [{"member_id": m, "group_instance_id": i, "metadata": meta} for m, i, meta in reply.members],
        }

    return then(future, response)


@api(14, "SyncGroup", 0, 5)
def handle_sync_group(broker, ctx, request):
    future = broker.coordinator.sync(
        request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        generation_id=request.generation_id,
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments})
    return then(future, lambda reply: {
        "throttle_time": 0, "error_code": reply.error_code, "protocol_type": reply.protocol_type,
        "protocol_name": reply.protocol_name, "assignment": reply.assignment})


@api(12, "Heartbeat", 0, 4)
def handle_heartbeat(broker, ctx, request):
    error = broker.coordinator.heartbeat(
        request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None), generation_id=request.generation_id)
    return {"throttle_time": 0, "error_code": error}


@api(13, "LeaveGroup", 0, 5)
def handle_leave_group(broker, ctx, request):
    if ctx.api_version >= 3:
        members = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        members = [(request.member_id, None)]
    error, errors = broker.coordinator.leave(request.group_id, members)
    if ctx.api_version < 3 and not error and errors:
        error = errors[0]
    return {"throttle_time": 0, "error_code": error,
            "members": [{"member_id": m, "group_instance_id": i, "error_code": e}
                        for (m, i), e in zip(members, errors)]}


@api(16, "ListGroups", 0, 4)
def handle_list_groups(broker, ctx, request):
    states = set(getattr(request, "states_filter", ()) or ())
    groups = broker.coordinator.list_groups(states or None)
    return {"throttle_time": 0, "error_code": Error.NONE,
            "groups": [{"group_id": g, "protocol_type": t, "group_state": s} for g, t, s in groups]}


@api(15, "DescribeGroups", 0, 5)
def handle_describe_groups(broker, ctx, request):
    described = []
    for group_id in request.groups:
        error, group = broker.coordinator.describe(group_id)
        entry = {"error_code": error, "group_id": group_id, "group_state": "Dead", "protocol_type": "",
                 "protocol_data": "", "members": [], "authorized_operations": NO_AUTHORIZED_OPERATIONS}
        if group is not None:
            entry.update(group_state=group.state.value, protocol_type=group.protocol_type or "",
                         protocol_data=group.protocol_name or "",
                         members=[{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                                   "client_id": m.client_id, "client_host": m.client_host,
                                   "member_metadata": dict(m.protocols).get(group.protocol_name, b""),
                                   "member_assignment": m.assignment}
                                  for m in group.members.values()])
        elif error == Error.NONE and group_id in broker.coordinator.offsets:
            entry["group_state"] = "Empty"
        described.append(entry)
    return {"throttle_time": 0, "groups": described}


@api(42, "DeleteGroups", 0, 2)
def handle_delete_groups(broker, ctx, request):
    return {"throttle_time": 0, "results": [
        {"group_id": g, "error_code": broker.coordinator.delete_group(g)} for g in request.groups_names]}
