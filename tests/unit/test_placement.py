"""The controller's decisions and Kafka's ZooKeeper formats, without a cluster."""
from __future__ import annotations

import json
import uuid

from hypothesis import given, strategies as st

from josef.cluster import zk_formats as zkf
from josef.cluster.listeners import Endpoint
from josef.cluster.placement import (NO_LEADER, after_broker_changes, assign_replicas, elect, imbalanced_brokers,
                                     preferred_leader, reassignment)


def test_assignment_starts_on_the_lowest_broker_like_the_seed():
    assert assign_replicas([3, 1, 2], 3, 1) == {0: (1,), 1: (2,), 2: (3,)}
    assert assign_replicas([1, 2, 3], 3, 3) == {0: (1, 2, 3), 1: (2, 3, 1), 2: (3, 1, 2)}
    # Kafka's shift of the followers after each full round of brokers
    assert assign_replicas([1, 2, 3], 6, 2) == {0: (1, 2), 1: (2, 3), 2: (3, 1), 3: (1, 3), 4: (2, 1), 5: (3, 2)}


def test_added_partitions_continue_the_round_robin():
    assert assign_replicas([1, 2, 3], 2, 1, first_partition=3) == {3: (1,), 4: (2,)}


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True), st.integers(1, 40), st.data())
def test_assignment_is_a_valid_spread(brokers, partitions, data):
    rf = data.draw(st.integers(1, len(brokers)))
    layout = assign_replicas(brokers, partitions, rf)
    assert sorted(layout) == list(range(partitions))
    for replicas in layout.values():
        assert len(replicas) == rf and len(set(replicas)) == rf and set(replicas) <= set(brokers)
    leaders = [r[0] for r in layout.values()]
    assert max(map(leaders.count, brokers)) - min(map(leaders.count, brokers)) <= 1  # leaders balanced


def test_election_takes_the_first_live_in_sync_replica():
    assert elect((1, 2, 3), (1, 2, 3), {2, 3}) == (2, (2, 3))
    assert elect((1, 2, 3), (1,), {2, 3}) is None  # only out-of-sync replicas left
    assert elect((1, 2, 3), (1,), {2, 3}, unclean=True) == (2, (2,))


def test_losing_the_last_in_sync_replica_keeps_the_isr():
    assert after_broker_changes((2,), 2, (2,), {1, 3}) == (NO_LEADER, (2,))
    assert after_broker_changes((1, 2), 2, (1, 2), {1, 3}) == (1, (1,))
    assert after_broker_changes((2,), NO_LEADER, (2,), {1, 2, 3}) == (2, (2,))  # back when it returns
    assert after_broker_changes((1, 2), 1, (1, 2), {1}) == (1, (1,))  # a dead follower leaves the ISR


def test_preferred_leader_and_imbalance():
    assert preferred_leader((2, 1), 1, (1, 2), {1, 2}) == 2
    assert preferred_leader((2, 1), 1, (1,), {1, 2}) is None  # not in sync yet
    layout = [((1, 2), 1), ((2, 1), 1), ((3, 1), 3)]
    assert imbalanced_brokers(layout, 10) == {2}
    assert reassignment((3,), (1, 2)) == ((1, 2, 3), (1, 2), (3,))
    assert reassignment((1,), (1, 2)).replicas == (1, 2)


def test_znode_formats_round_trip_and_read_like_kafka():
    topic_id = uuid.uuid4()
    a = zkf.TopicAssignment(topic_id, {0: (1, 2), 1: (2, 3)}, {1: (3,)}, {1: (1,)})
    body = json.loads(zkf.encode_assignment(a))
    assert body["partitions"] == {"0": [1, 2], "1": [2, 3]} and body["version"] == 3
    assert len(body["topic_id"]) == 22 and zkf.decode_assignment(zkf.encode_assignment(a)) == a
    s = zkf.PartitionState(2, 7, (2, 1), 4)
    assert json.loads(zkf.encode_state(s)) == {"controller_epoch": 4, "leader": 2, "version": 1,
                                               "leader_epoch": 7, "isr": [2, 1]}
    assert zkf.decode_state(zkf.encode_state(s)) == s
    reg = zkf.Registration(1, (Endpoint("HOST", "localhost", 9092), Endpoint("INTERNAL", "broker-1", 29092)))
    body = json.loads(zkf.encode_registration(reg, {"HOST": "PLAINTEXT", "INTERNAL": "PLAINTEXT"}))
    assert body["endpoints"] == ["HOST://localhost:9092", "INTERNAL://broker-1:29092"]
    assert (body["host"], body["port"]) == ("localhost", 9092)
    assert zkf.decode_registration(1, zkf.encode_registration(reg, {})) == reg
    assert zkf.decode_controller(zkf.encode_controller(3)) == 3 and zkf.decode_controller(b"junk") == -1
