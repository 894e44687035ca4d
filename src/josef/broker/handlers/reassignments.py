"""AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders.

Any broker takes them: the request is validated against this broker's metadata and
written to ZooKeeper (where metadata writes run: off the event loop), where the controller
picks it up (as for CreateTopics). A single
`josef serve` broker has nowhere to move a replica, so only no-op moves succeed there.
"""
from __future__ import annotations

from josef.broker.futures import after, then
from josef.broker.handlers import api
from josef.cluster.placement import preferred_leader
from josef.cluster.zk_store import MetadataUnavailable
from josef.protocol.entities import ms
from josef.protocol.errors import Error

PREFERRED, UNCLEAN = 0, 1


def _partition(snapshot, topic: str, partition: int):
    info = snapshot.topics.get(topic)
    if info is None or not 0 <= partition < len(info.partitions):
        return None
    return info.partitions[partition]


@api(45, "AlterPartitionReassignments", 0, 0)
def handle_alter_reassignments(broker, ctx, request):
    snapshot = broker.store.snapshot
    results: dict[tuple[str, int], tuple[int, str | None]] = {}
    moves = {}
    for topic in request.topics:
        for p in topic.partitions:
            key = (topic.name, p.partition_index)
            state = _partition(snapshot, *key)
            target = None if p.replicas is None else tuple(p.replicas)
            if state is None:
                results[key] = (Error.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
            elif target is not None and not target:
                results[key] = (Error.INVALID_REPLICA_ASSIGNMENT, "The replica list is empty.")
            elif target is not None and len(set(target)) != len(target):
                results[key] = (Error.INVALID_REPLICA_ASSIGNMENT, f"Duplicate replicas in {list(target)}.")
            elif target is not None and any(r not in snapshot.brokers for r in target):
                unknown = [r for r in target if r not in snapshot.brokers]
                results[key] = (Error.INVALID_REPLICA_ASSIGNMENT, f"Unknown broker(s) {unknown}.")
            elif target is None and not (state.adding_replicas or state.removing_replicas):
                results[key] = (Error.NO_REASSIGNMENT_IN_PROGRESS, "No reassignment in progress.")
            elif not broker.in_cluster:
                results[key] = (Error.NONE, None)  # the only possible target: where it already is
            else:
                moves[key] = target
    write = broker.metadata_writer.submit(broker.store.reassign, moves) if moves else None

    def answer() -> dict:
        if write is not None:
            try:
                outcome = write.result()
            except MetadataUnavailable as e:
                outcome = {}
                results.update({key: (Error.REQUEST_TIMED_OUT, str(e)) for key in moves})
            for key, error in outcome.items():
                if key not in results:
                    results[key] = (Error.NONE, None) if error is None else (Error[error], error)
        return {"throttle_time": 0, "error_code": Error.NONE, "error_message": None,
                "responses": _group(results, lambda p, v: {"partition_index": p, "error_code": v[0],
                                                           "error_message": v[1]}, "name", "partitions")}
    return after([write] if write is not None else [], answer)


@api(46, "ListPartitionReassignments", 0, 0)
def handle_list_reassignments(broker, ctx, request):
    snapshot = broker.store.snapshot
    if request.topics is None:
        wanted = [(t.name, p.partition) for t in snapshot.topics.values() for p in t.partitions]
    else:
        wanted = [(t.name, p) for t in request.topics for p in t.partition_indexes]
    ongoing = {}
    for key in wanted:
        state = _partition(snapshot, *key)
        if state is not None and (state.adding_replicas or state.removing_replicas):
            ongoing[key] = state
    return {"throttle_time": 0, "error_code": Error.NONE, "error_message": None,
            "topics": _group(ongoing, lambda p, s: {
                "partition_index": p, "replicas": list(s.replicas), "adding_replicas": list(s.adding_replicas),
                "removing_replicas": list(s.removing_replicas)}, "name", "partitions")}


@api(43, "ElectLeaders", 0, 2)
def handle_elect_leaders(broker, ctx, request):
    snapshot = broker.store.snapshot
    election = getattr(request, "election_type", PREFERRED)
    explicit = request.topic_partitions is not None
    if explicit:
        wanted = [(t.topic, p) for t in request.topic_partitions for p in t.partitions]
    else:
        wanted = [(t.name, p.partition) for t in snapshot.topics.values() for p in t.partitions]
    results: dict[tuple[str, int], tuple[int, str | None]] = {}
    to_elect = {}
    for key in dict.fromkeys(wanted):
        state = _partition(snapshot, *key)
        if state is None:
            results[key] = (Error.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
        elif election == UNCLEAN:
            if state.leader >= 0:
                results[key] = (Error.ELECTION_NOT_NEEDED, None)
            elif not any(r in snapshot.brokers for r in state.replicas):
                results[key] = (Error.ELIGIBLE_LEADERS_NOT_AVAILABLE,
                                f"No live replica of {key[0]}-{key[1]} to elect.")
            else:
                to_elect[key] = None  # any live replica will do
        elif election != PREFERRED:
            results[key] = (Error.INVALID_REQUEST, f"Unknown election type {election}")
        elif state.replicas and state.leader == state.replicas[0]:
            results[key] = (Error.ELECTION_NOT_NEEDED, None)
        elif preferred_leader(state.replicas, state.leader, state.isr, set(snapshot.brokers)) is None:
            results[key] = (Error.PREFERRED_LEADER_NOT_AVAILABLE,
                            f"Failed to elect leader for partition {key[0]}-{key[1]} under strategy "
                            f"PreferredReplicaPartitionLeaderElectionStrategy")
        else:
            to_elect[key] = state.replicas[0]
    if not explicit:  # as Kafka: an election of everything reports only what it tried
        results = {k: v for k, v in results.items() if v[0] != Error.ELECTION_NOT_NEEDED}

    def response(_=None) -> dict:
        now = broker.store.snapshot
        for key, leader in to_elect.items():
            results[key] = (Error.NONE, None) if _elected(_partition(now, *key), leader) else (
                Error.REQUEST_TIMED_OUT, "The election did not finish within the request's timeout.")
        return {"throttle_time": 0, "error_code": Error.NONE,
                "replica_election_results": _group(results, lambda p, v: {
                    "partition_id": p, "error_code": v[0], "error_message": v[1]}, "topic", "partition_result")}

    def wait_elected():
        done = broker.when(lambda m: all(_elected(_partition(m, *k), leader) for k, leader in to_elect.items()),
                           ms(request.timeout) / 1000)
        return then(done, response)

    if not to_elect:
        return response()
    if election == UNCLEAN:  # as Kafka: only the controller takes unclean elections
        if broker.controller is None or not broker.controller.active:
            return {"throttle_time": 0, "error_code": Error.NOT_CONTROLLER, "replica_election_results": []}
        broker.controller.elect_unclean(list(to_elect))
        return wait_elected()
    write = broker.metadata_writer.submit(broker.store.request_preferred_election, list(to_elect))

    def requested():
        try:
            write.result()
        except MetadataUnavailable:
            return response()  # REQUEST_TIMED_OUT for each
        return wait_elected()
    return after([write], requested)


def _elected(state, leader: int | None) -> bool:
    """The partition now has `leader` (None: any leader at all)."""
    return state is not None and (state.leader >= 0 if leader is None else state.leader == leader)


def _group(items: dict, shape, topic_field: str, partitions_field: str) -> list[dict]:
    by_topic: dict[str, list] = {}
    for (topic, partition), value in sorted(items.items()):
        by_topic.setdefault(topic, []).append(shape(partition, value))
    return [{topic_field: t, partitions_field: parts} for t, parts in by_topic.items()]
