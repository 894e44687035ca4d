"""Committed offsets of groups without members expire after offsets.retention.minutes.

The broker is built in-process on a real data directory (no socket needed): the check runs
every `offsets.retention.check.interval.ms` in a live broker; here it is called directly
with a retention that has already passed, then a fresh broker replays `__consumer_offsets`.
"""
from __future__ import annotations

from josef.broker.broker import Broker
from josef.config import BrokerConfig


def make_broker(data_dir) -> Broker:
    return Broker(BrokerConfig({"log.dirs": str(data_dir), "offsets.topic.num.partitions": "3",
                               "listeners": "PLAINTEXT://127.0.0.1:0"}))


def test_expired_offsets_are_tombstoned_and_stay_gone_after_restart(tmp_path):
    broker = make_broker(tmp_path)
    broker.topic_admin.create("orders", 2, 1)
    coordinator = broker.coordinator
    results = coordinator.commit("idle-group", member_id="", group_instance_id=None, generation_id=-1,
                                 offsets={("orders", 0): (5, -1, "m"), ("orders", 1): (7, -1, None)})
    assert set(results.values()) == {0}
    coordinator.commit("fresh-group", member_id="", group_instance_id=None, generation_id=-1,
                       offsets={("orders", 0): (1, -1, None)})
    assert coordinator.expire_offsets(retention_ms=10**9) == 0  # nothing is that old
    assert coordinator.fetch_offsets("idle-group", None)[1][("orders", 1)].offset == 7
    assert coordinator.expire_offsets(retention_ms=-1) == 3  # every commit is now past retention
    assert coordinator.fetch_offsets("idle-group", None)[1] == {}
    broker.logs.close()

    reborn = make_broker(tmp_path)  # replays __consumer_offsets: the tombstones win
    assert reborn.coordinator.fetch_offsets("idle-group", None)[1] == {}
    assert reborn.coordinator.fetch_offsets("fresh-group", None)[1] == {}
    reborn.logs.close()


def test_offsets_survive_restart_when_not_expired(tmp_path):
    broker = make_broker(tmp_path)
    broker.topic_admin.create("orders", 1, 1)
    broker.coordinator.commit("g", member_id="", group_instance_id=None, generation_id=-1,
                              offsets={("orders", 0): (42, 3, "meta")})
    broker.logs.close()
    reborn = make_broker(tmp_path)
    value = reborn.coordinator.fetch_offsets("g", [("orders", 0)])[1][("orders", 0)]
    assert (value.offset, value.leader_epoch, value.metadata) == (42, 3, "meta")
    reborn.logs.close()
