"""The classic group protocol state machine (josef.coordinator.group), sans-IO."""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from josef.coordinator.group import (
    Group, GroupChanged, GroupState, JoinReply, SyncReply,
)

NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
GROUP_MAX_SIZE_REACHED = 81
FENCED_INSTANCE_ID = 82
COORDINATOR_NOT_AVAILABLE = 15

RANGE = [("range", b"range-meta")]
SESSION = 10_000
REBALANCE = 30_000


def join(g, token, now, member_id="", *, client="c", instance=None, protocols=RANGE, session=SESSION,
         rebalance=REBALANCE, require=False, ptype="consumer", skip=False):
    return g.join(token, now, member_id=member_id, group_instance_id=instance, protocol_type=ptype,
                  protocols=list(protocols), session_timeout_ms=session, rebalance_timeout_ms=rebalance,
                  client_id=client, client_host="/127.0.0.1", require_known_member_id=require,
                  supports_skip_assignment=skip)


def sync(g, token, now, member_id, generation, assignments=None, *, instance=None, ptype=None, pname=None):
    return g.sync(token, now, member_id=member_id, group_instance_id=instance, generation_id=generation,
                  protocol_type=ptype, protocol_name=pname, assignments=assignments or {})


def hb(g, now, member_id, generation, instance=None):
    return g.heartbeat(now, member_id=member_id, group_instance_id=instance, generation_id=generation)


def replies(fx, kind=None):
    out = {e.token: e for e in fx if not isinstance(e, GroupChanged)}
    if kind is not None:
        assert all(isinstance(e, kind) for e in out.values())
    return out


def changed(fx) -> bool:
    return any(isinstance(e, GroupChanged) for e in fx)


def stable_group(n=2, *, instances=None, **kwargs):
    """A Stable group of n members (tokens j0.., s0..); returns (group, member ids, now)."""
    g = Group("g", **kwargs)
    instances = instances or [None] * n
    for i in range(n):
        assert join(g, f"j{i}", 0, client=f"c{i}", instance=instances[i]) == []
    fx = g.tick(g.next_deadline())
    while g.state == GroupState.PREPARING_REBALANCE:
        fx += g.tick(g.next_deadline())
    r = replies(fx, JoinReply)
    ids = [r[f"j{i}"].member_id for i in range(n)]
    now = g.next_deadline() - 1  # before any session expires
    now = min(now, 6000)
    leader = g.leader_id
    for i, mid in enumerate(ids):
        if mid != leader:
            assert sync(g, f"s{i}", now, mid, g.generation_id) == []
    li = ids.index(leader)
    fx = sync(g, f"s{li}", now, leader, g.generation_id, {mid: mid.encode() for mid in ids})
    assert g.state == GroupState.STABLE and changed(fx)
    return g, ids, now


# --- the happy path --------------------------------------------------------------------------

def test_two_members_join_delay_sync_stable():
    g = Group("g")
    assert g.state == GroupState.EMPTY
    assert join(g, "a", 0, client="ca") == []
    assert g.state == GroupState.PREPARING_REBALANCE
    assert g.next_deadline() == 3000  # initial rebalance delay
    assert join(g, "b", 100, client="cb") == []
    assert g.tick(2999) == []
    # a member arrived during the delay: InitialDelayedJoin waits one more delay
    assert g.tick(3000) == []
    assert g.next_deadline() == 6000
    fx = g.tick(6000)
    r = replies(fx, JoinReply)
    assert set(r) == {"a", "b"}
    a, b = r["a"], r["b"]
    assert a.error_code == b.error_code == NONE
    assert a.generation_id == b.generation_id == 1
    assert a.member_id.startswith("ca-") and b.member_id.startswith("cb-")
    assert a.leader == b.leader == a.member_id  # the first member leads
    assert a.protocol_type == "consumer" and a.protocol_name == "range"
    assert {m[0] for m in a.members} == {a.member_id, b.member_id}
    assert all(m[2] == b"range-meta" and m[1] is None for m in a.members)
    assert b.members == ()
    assert g.state == GroupState.COMPLETING_REBALANCE
    assert hb(g, 6100, b.member_id, 1) == NONE  # heartbeats are fine while completing
    # the follower's sync waits for the leader's
    assert sync(g, "sb", 6200, b.member_id, 1) == []
    fx = sync(g, "sa", 6300, a.member_id, 1, {a.member_id: b"A", b.member_id: b"B"})
    assert isinstance(fx[0], GroupChanged)  # persisted before the replies go out
    r = replies(fx, SyncReply)
    assert r["sa"].assignment == b"A" and r["sb"].assignment == b"B"
    assert r["sa"].error_code == r["sb"].error_code == NONE
    assert r["sa"].protocol_type == "consumer" and r["sa"].protocol_name == "range"
    assert g.state == GroupState.STABLE
    assert g.members[a.member_id].assignment == b"A"
    assert hb(g, 7000, a.member_id, 1) == NONE
    # a late sync in Stable gets the stored assignment at once
    fx = sync(g, "again", 7000, b.member_id, 1)
    assert replies(fx)["again"].assignment == b"B"


def test_single_member_completes_after_initial_delay():
    g = Group("g", initial_rebalance_delay_ms=500)
    join(g, "a", 1000)
    assert g.tick(1499) == []
    r = replies(g.tick(1500))
    assert r["a"].generation_id == 1 and r["a"].leader == r["a"].member_id


def test_initial_delay_extension_is_capped_by_rebalance_timeout():
    g = Group("g", initial_rebalance_delay_ms=3000)
    join(g, "a", 0, rebalance=7000)  # remaining after the first delay: 4000
    now, token = 0, 0
    while g.state == GroupState.PREPARING_REBALANCE:
        deadline = g.next_deadline()
        token += 1
        join(g, f"t{token}", deadline - 1, client=f"c{token}")  # keep arriving
        g.tick(deadline)
        now = deadline
    # 3000 + 3000 + min(3000, remaining) ... never beyond the rebalance timeout (+ one delay)
    assert now <= 3000 + 7000
    assert g.state == GroupState.COMPLETING_REBALANCE


def test_leader_missing_assignment_gets_empty_bytes():
    g2 = Group("g")
    join(g2, "a", 0)
    join(g2, "b", 0)
    g2.tick(3000)
    r = replies(g2.tick(6000))
    leader = r["a"].member_id
    fx = sync(g2, "sa", 6000, leader, 1, {leader: b"x", "stranger": b"y"})
    assert g2.members[r["b"].member_id].assignment == b""
    assert replies(fx)["sa"].assignment == b"x"


def test_protocol_selection_by_votes():
    g = Group("g", initial_rebalance_delay_ms=0)
    join(g, "a", 0, protocols=[("roundrobin", b"1"), ("range", b"1")])
    join(g, "b", 0, protocols=[("range", b"2"), ("roundrobin", b"2")])
    join(g, "c", 0, protocols=[("range", b"3"), ("roundrobin", b"3"), ("sticky", b"3")])
    r = replies(g.tick(0))
    assert r["a"].protocol_name == "range"  # 2 votes against 1
    leader = r[next(t for t in r if r[t].members)]
    assert {m[2] for m in leader.members} == {b"1", b"2", b"3"}


# --- KIP-394 ---------------------------------------------------------------------------------

def test_member_id_required_dance():
    g = Group("g")
    fx = join(g, "a1", 0, client="cli", require=True)
    r = replies(fx)["a1"]
    assert r.error_code == MEMBER_ID_REQUIRED and r.member_id.startswith("cli-")
    assert g.state == GroupState.EMPTY and not g.members  # a pending id is not a member yet
    assert g.next_deadline() == SESSION
    assert join(g, "a2", 10, r.member_id, client="cli", require=True) == []
    assert r.member_id in g.members and g.state == GroupState.PREPARING_REBALANCE
    done = replies(g.tick(3010))["a2"]
    assert done.error_code == NONE and done.member_id == r.member_id and done.leader == r.member_id


def test_pending_member_expires_after_session_timeout():
    g = Group("g")
    pending = replies(join(g, "a1", 0, require=True))["a1"].member_id
    assert g.tick(SESSION) == []
    assert not g.pending_members
    r = replies(join(g, "a2", SESSION + 1, pending, require=True))["a2"]
    assert r.error_code == UNKNOWN_MEMBER_ID


def test_pending_member_blocks_join_completion_until_it_rejoins():
    g, (a, b), now = stable_group(2)
    pending = replies(join(g, "n1", now, require=True, client="n"))["n1"].member_id
    assert g.state == GroupState.STABLE  # MEMBER_ID_REQUIRED does not rebalance
    join(g, "a", now, a)  # the leader rejoins: rebalance
    join(g, "b", now, b)
    assert g.state == GroupState.PREPARING_REBALANCE  # still waiting for the pending member
    fx = join(g, "n2", now, pending, require=True, client="n")
    r = replies(fx)
    assert set(r) == {"a", "b", "n2"} and r["n2"].generation_id == 2


# --- rebalances ------------------------------------------------------------------------------

def test_third_member_join_triggers_rebalance():
    g, (a, b), now = stable_group(2)
    assert join(g, "c", now, client="cc") == []
    assert g.state == GroupState.PREPARING_REBALANCE
    assert hb(g, now, a, 1) == REBALANCE_IN_PROGRESS
    assert hb(g, now, b, 1) == REBALANCE_IN_PROGRESS
    assert replies(sync(g, "x", now, a, 1))["x"].error_code == REBALANCE_IN_PROGRESS
    assert join(g, "a2", now, a) == []
    fx = join(g, "b2", now, b)  # everyone is back: the join phase completes at once
    r = replies(fx)
    assert set(r) == {"c", "a2", "b2"}
    assert {x.generation_id for x in r.values()} == {2}
    assert r["a2"].leader == a  # the old leader keeps leading
    assert len(r["a2"].members) == 3


def test_leave_triggers_rebalance():
    g, (a, b), now = stable_group(2)
    errors, fx = g.leave(now, [(b, None)])
    assert errors == [NONE] and fx == []
    assert g.state == GroupState.PREPARING_REBALANCE and b not in g.members
    assert hb(g, now, a, 1) == REBALANCE_IN_PROGRESS
    r = replies(join(g, "a2", now + 1, a))
    assert r["a2"].generation_id == 2 and r["a2"].leader == a
    assert hb(g, now, b, 1) == UNKNOWN_MEMBER_ID


def test_leader_leaving_hands_leadership_to_a_rejoined_member():
    g, (a, b), now = stable_group(2)
    g.leave(now, [(a, None)])
    r = replies(join(g, "b2", now, b))
    assert r["b2"].leader == b and g.leader_id == b


def test_last_member_leaving_empties_the_group():
    g, (a, b), now = stable_group(2)
    g.leave(now, [(a, None)])
    errors, fx = g.leave(now, [(b, None)])
    assert errors == [NONE] and changed(fx)
    assert g.state == GroupState.EMPTY and not g.members and g.leader_id is None
    assert g.generation_id == 2  # Kafka moves to a new (empty) generation
    rec = g.to_record()
    assert rec["members"] == [] and rec["generation"] == 2 and rec["protocol"] is None
    assert rec["protocol_type"] == "consumer"
    assert g.next_deadline() is None


def test_last_member_leaving_while_an_id_is_pending_empties_the_group():
    g, (a,), now = stable_group(1)
    replies(join(g, "p", now, require=True))  # a pending id does not keep the group alive
    g.leave(now, [(a, None)])
    assert g.state == GroupState.EMPTY and not g.members


def test_zero_rebalance_timeout_does_not_spin_when_nobody_rejoins():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    g.leave(now, [(b, "ib")])
    g.members[a].rebalance_timeout_ms = 0
    end = g._join_deadline
    assert hb(g, end - 1, a, 1, instance="ia") == REBALANCE_IN_PROGRESS
    g.tick(end)  # the join phase ends: the static member did not rejoin, it is kept
    assert a in g.members and g.state == GroupState.PREPARING_REBALANCE
    assert g._join_deadline - end >= 1000


def test_leave_of_parked_joiner_answers_it():
    g, (a, b), now = stable_group(2)
    join(g, "c", now, client="cc")
    cid = g.members[next(m for m in g.members if m not in (a, b))].member_id
    errors, fx = g.leave(now, [(cid, None)])
    assert errors == [NONE]
    r = replies(fx)["c"]
    assert r.error_code == UNKNOWN_MEMBER_ID and r.member_id == ""


def test_session_expiry_evicts_member_and_rebalances():
    g, (a, b), now = stable_group(2)
    t = now + SESSION - 1
    assert hb(g, t, a, 1) == NONE
    fx = g.tick(now + SESSION)  # b never heartbeat again
    assert b not in g.members and g.state == GroupState.PREPARING_REBALANCE and fx == []
    assert hb(g, t + 10, a, 1) == REBALANCE_IN_PROGRESS
    r = replies(join(g, "a2", t + 20, a))
    assert r["a2"].generation_id == 2 and len(r["a2"].members) == 1


def test_all_members_expiring_empties_the_group():
    g, (a, b), now = stable_group(2)
    fx = g.tick(now + SESSION + 1)
    assert g.state == GroupState.EMPTY and changed(fx) and not g.members
    assert g.next_deadline() is None


def test_rebalance_timeout_removes_members_that_did_not_rejoin():
    g, (a, b), now = stable_group(2, initial_rebalance_delay_ms=3000)
    join(g, "a2", now, a)  # leader rejoins, b keeps heartbeating but never rejoins
    fx = []
    for t in range(now + 3000, now + REBALANCE, 3000):
        fx += g.tick(t)
        assert hb(g, t, b, 1) == REBALANCE_IN_PROGRESS
    assert fx == [] and g.state == GroupState.PREPARING_REBALANCE
    fx = g.tick(now + REBALANCE)
    r = replies(fx)
    assert set(r) == {"a2"} and r["a2"].generation_id == 2
    assert list(g.members) == [a]
    assert hb(g, now + REBALANCE, b, 1) == UNKNOWN_MEMBER_ID


def test_new_member_parked_too_long_expires():
    g, (a, b), now = stable_group(2, new_member_join_timeout_ms=SESSION)
    join(g, "c", now, client="cc", rebalance=10 * REBALANCE)
    assert hb(g, now + SESSION - 1, a, 1) == hb(g, now + SESSION - 1, b, 1) == REBALANCE_IN_PROGRESS
    fx = g.tick(now + SESSION)  # the new member's join timeout, before the rebalance timeout
    assert replies(fx)["c"].error_code == UNKNOWN_MEMBER_ID


def test_sync_timeout_removes_members_that_never_synced():
    g = Group("g", initial_rebalance_delay_ms=0)
    join(g, "a", 0, client="a")
    join(g, "b", 0, client="b")
    r = replies(g.tick(0))
    a, b = r["a"].member_id, r["b"].member_id
    assert sync(g, "sb", 10, b, 1) == []
    assert hb(g, 5000, a, 1) == NONE  # the leader is alive but never syncs
    fx = g.tick(REBALANCE)
    assert replies(fx)["sb"].error_code == REBALANCE_IN_PROGRESS
    assert a not in g.members and g.state == GroupState.PREPARING_REBALANCE


def test_changed_metadata_during_completing_rebalance_restarts_it():
    g = Group("g", initial_rebalance_delay_ms=0)
    join(g, "a", 0, client="a")
    join(g, "b", 0, client="b")
    r = replies(g.tick(0))
    a, b = r["a"].member_id, r["b"].member_id
    sync(g, "sb", 1, b, 1)
    fx = join(g, "a2", 2, a, protocols=[("range", b"new")])
    assert replies(fx)["sb"].error_code == REBALANCE_IN_PROGRESS
    assert g.state == GroupState.PREPARING_REBALANCE
    r = replies(join(g, "b2", 3, b))
    assert r["a2"].generation_id == r["b2"].generation_id == 2


def test_same_metadata_rejoin_while_completing_repeats_the_answer():
    g = Group("g", initial_rebalance_delay_ms=0)
    join(g, "a", 0, client="a")
    join(g, "b", 0, client="b")
    r = replies(g.tick(0))
    a = r["a"].member_id
    again = replies(join(g, "a2", 1, a))["a2"]
    assert again.generation_id == 1 and again.leader == a and len(again.members) == 2
    assert g.state == GroupState.COMPLETING_REBALANCE


def test_follower_rejoin_in_stable_is_answered_without_rebalance():
    g, (a, b), now = stable_group(2)
    r = replies(join(g, "b2", now, b))["b2"]
    assert r.error_code == NONE and r.generation_id == 1 and r.leader == a and r.members == ()
    assert g.state == GroupState.STABLE
    assert join(g, "a2", now, a) == []  # the leader rejoining forces a rebalance
    assert g.state == GroupState.PREPARING_REBALANCE


def test_resent_join_and_sync_answer_the_superseded_request():
    g, (a, b), now = stable_group(2)
    join(g, "c1", now, client="cc")
    c = next(m for m in g.members if m not in (a, b))
    fx = join(g, "c2", now + 1, c, client="cc")
    assert replies(fx)["c1"].error_code == REBALANCE_IN_PROGRESS
    join(g, "a1", now + 2, a)
    r = replies(join(g, "b1", now + 3, b))
    assert set(r) == {"c2", "a1", "b1"}
    assert sync(g, "sb1", now + 4, b, 2) == []
    fx = sync(g, "sb2", now + 5, b, 2)
    assert replies(fx)["sb1"].error_code == REBALANCE_IN_PROGRESS


# --- KIP-345 static membership --------------------------------------------------------------

def test_static_member_replacement_fences_the_old_id():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    assert a.startswith("ia-") and b.startswith("ib-")
    fx = join(g, "b-restart", now, instance="ib", client="other")
    r = replies(fx)["b-restart"]
    assert changed(fx)  # the new member id is persisted, no rebalance
    assert g.state == GroupState.STABLE and g.generation_id == 1
    new_b = r.member_id
    assert new_b != b and new_b.startswith("ib-") and r.generation_id == 1 and r.leader == a
    assert g.members[new_b].assignment == b.encode()  # keeps its assignment
    assert hb(g, now, b, 1, instance="ib") == FENCED_INSTANCE_ID
    assert replies(sync(g, "old", now, b, 1, instance="ib"))["old"].error_code == FENCED_INSTANCE_ID
    assert hb(g, now, b, 1) == UNKNOWN_MEMBER_ID
    assert g.validate_offset_commit(member_id=b, group_instance_id="ib", generation_id=1) == FENCED_INSTANCE_ID
    assert hb(g, now, new_b, 1, instance="ib") == NONE
    assert replies(sync(g, "new", now, new_b, 1, instance="ib"))["new"].assignment == b.encode()
    assert [m["member_id"] for m in g.to_record()["members"]] == [a, new_b]


def test_static_leader_replacement_reports_old_leader_or_skips_assignment():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    r = replies(join(g, "x", now, instance="ia"))["x"]
    assert g.leader_id == r.member_id and r.leader == a  # old clients: told the old leader id
    assert r.members == ()
    r2 = replies(join(g, "y", now, instance="ia", skip=True))["y"]  # v9+: SkipAssignment
    assert r2.skip_assignment and r2.leader == r2.member_id and len(r2.members) == 2
    assert g.state == GroupState.STABLE


def test_static_replacement_fences_parked_join():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    join(g, "a-rejoin", now, a, instance="ia")  # leader rejoin: rebalance, parked
    fx = join(g, "a-new", now + 1, instance="ia")
    r = replies(fx)
    assert r["a-rejoin"].error_code == FENCED_INSTANCE_ID
    assert "a-new" not in r  # still parked, waiting for b
    fx = join(g, "b-rejoin", now + 2, b, instance="ib")
    r = replies(fx)
    assert r["a-new"].generation_id == 2 and r["a-new"].leader == r["a-new"].member_id


def test_static_replacement_with_new_protocol_rebalances():
    g, (a,), now = stable_group(1, instances=["ia"])
    fx = join(g, "a2", now, instance="ia", protocols=[("roundrobin", b"rr"), ("range", b"r")])
    # the chosen protocol would change: rebalance, which the only member has already joined
    r = replies(fx)["a2"]
    assert not changed(fx) and g.state == GroupState.COMPLETING_REBALANCE
    assert r.generation_id == 2 and r.protocol_name == "roundrobin" and r.leader == r.member_id


def test_static_replacement_with_same_choice_keeps_stable():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    fx = join(g, "b2", now, instance="ib", protocols=[("range", b"other")])
    assert changed(fx) and g.state == GroupState.STABLE
    assert replies(fx)["b2"].error_code == NONE


def test_static_member_survives_rebalance_timeout_until_session_expiry():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    join(g, "a2", now, a, instance="ia")
    for t in range(now + 3000, now + REBALANCE, 3000):
        assert g.tick(t) == []
        assert hb(g, t, b, 1, instance="ib") == REBALANCE_IN_PROGRESS
    fx = g.tick(now + REBALANCE)
    r = replies(fx)
    assert r["a2"].generation_id == 2
    assert b in g.members  # Kafka keeps a static member that did not rejoin
    assert len(r["a2"].members) == 2


def test_leave_by_instance_id():
    g, (a, b), now = stable_group(2, instances=["ia", "ib"])
    errors, _ = g.leave(now, [("", "ib"), ("", "nope"), ("", None)])
    assert errors == [NONE, UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID]
    assert b not in g.members and "ib" not in g.static_members
    errors, _ = g.leave(now, [(a, "wrong")])
    assert errors == [UNKNOWN_MEMBER_ID]


# --- error codes -----------------------------------------------------------------------------

def test_unknown_member_errors():
    g, (a, b), now = stable_group(2)
    assert replies(join(g, "j", now, "ghost"))["j"].error_code == UNKNOWN_MEMBER_ID
    assert replies(sync(g, "s", now, "ghost", 1))["s"].error_code == UNKNOWN_MEMBER_ID
    assert hb(g, now, "ghost", 1) == UNKNOWN_MEMBER_ID
    assert g.leave(now, [("ghost", None)])[0] == [UNKNOWN_MEMBER_ID]
    assert hb(g, now, a, 1, instance="unknown-instance") == UNKNOWN_MEMBER_ID
    empty = Group("e")
    assert replies(sync(empty, "s", 0, "ghost", 0))["s"].error_code == UNKNOWN_MEMBER_ID
    assert hb(empty, 0, "ghost", 0) == UNKNOWN_MEMBER_ID
    assert replies(join(empty, "j", 0, "ghost"))["j"].error_code == UNKNOWN_MEMBER_ID


def test_wrong_generation():
    g, (a, b), now = stable_group(2)
    assert hb(g, now, a, 7) == ILLEGAL_GENERATION
    assert replies(sync(g, "s", now, a, 0))["s"].error_code == ILLEGAL_GENERATION
    assert g.validate_offset_commit(member_id=a, group_instance_id=None, generation_id=0) == ILLEGAL_GENERATION


def test_inconsistent_protocol():
    g, (a, b), now = stable_group(2)
    r = replies(join(g, "j", now, protocols=[("roundrobin", b"")]))["j"]
    assert r.error_code == INCONSISTENT_GROUP_PROTOCOL and r.member_id == ""
    assert replies(join(g, "k", now, ptype="connect"))["k"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert replies(join(g, "l", now, a, protocols=[("other", b"")]))["l"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert replies(sync(g, "s", now, a, 1, ptype="connect"))["s"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert replies(sync(g, "t", now, a, 1, pname="sticky"))["t"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert replies(sync(g, "u", now, a, 1, ptype="consumer", pname="range"))["u"].error_code == NONE
    empty = Group("e")
    assert replies(join(empty, "j", 0, protocols=[]))["j"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert replies(join(empty, "k", 0, ptype=""))["k"].error_code == INCONSISTENT_GROUP_PROTOCOL
    assert empty.state == GroupState.EMPTY


def test_invalid_session_timeout():
    g = Group("g", min_session_timeout_ms=6000, max_session_timeout_ms=60000)
    assert replies(join(g, "a", 0, session=5999))["a"].error_code == INVALID_SESSION_TIMEOUT
    assert replies(join(g, "b", 0, session=60001))["b"].error_code == INVALID_SESSION_TIMEOUT
    assert g.state == GroupState.EMPTY and not g.members
    assert join(g, "c", 0, session=60000) == []


def test_group_max_size():
    g, (a, b), now = stable_group(2, max_size=2)
    r = replies(join(g, "c", now))["c"]
    assert r.error_code == GROUP_MAX_SIZE_REACHED and g.state == GroupState.STABLE
    assert replies(join(g, "d", now, require=True))["d"].error_code == GROUP_MAX_SIZE_REACHED
    # while rebalancing the limit counts members that rejoined
    g2 = Group("g2", max_size=1, initial_rebalance_delay_ms=0)
    join(g2, "a", 0)
    assert replies(join(g2, "b", 0))["b"].error_code == GROUP_MAX_SIZE_REACHED
    assert len(g2.members) == 1


def test_sync_during_rebalance():
    g, (a, b), now = stable_group(2)
    join(g, "c", now)
    assert replies(sync(g, "s", now, b, 1))["s"].error_code == REBALANCE_IN_PROGRESS


def test_dead_group_refuses_everything():
    g = Group("g")
    assert g.delete_check() == NONE and g.state == GroupState.DEAD
    assert g.delete_check() == GROUP_ID_NOT_FOUND
    assert replies(join(g, "j", 0))["j"].error_code == COORDINATOR_NOT_AVAILABLE
    assert replies(sync(g, "s", 0, "m", 0))["s"].error_code == COORDINATOR_NOT_AVAILABLE
    assert hb(g, 0, "m", 0) == COORDINATOR_NOT_AVAILABLE
    assert g.leave(0, [("m", None)])[0] == [COORDINATOR_NOT_AVAILABLE]
    assert g.to_record() is None and g.next_deadline() is None and g.tick(10**9) == []


def test_delete_check_refuses_non_empty_group():
    g, _, _ = stable_group(1)
    assert g.delete_check() == NON_EMPTY_GROUP and g.state == GroupState.STABLE


def test_mark_dead_answers_parked_requests():
    g, (a, b), now = stable_group(2)
    join(g, "a2", now, a)
    fx = g.mark_dead()
    assert replies(fx)["a2"].error_code == 16  # NOT_COORDINATOR


def test_validate_offset_commit():
    g = Group("g")
    assert g.validate_offset_commit(member_id="", group_instance_id=None, generation_id=-1) == NONE
    assert g.validate_offset_commit(member_id="x", group_instance_id=None, generation_id=3) == UNKNOWN_MEMBER_ID
    g, (a, b), now = stable_group(2)
    assert g.validate_offset_commit(member_id="", group_instance_id=None, generation_id=-1) == UNKNOWN_MEMBER_ID
    assert g.validate_offset_commit(member_id=a, group_instance_id=None, generation_id=1) == NONE
    join(g, "c", now)
    assert g.validate_offset_commit(member_id=a, group_instance_id=None, generation_id=1) == NONE  # Preparing
    join(g, "a2", now, a)
    join(g, "b2", now, b)
    assert g.state == GroupState.COMPLETING_REBALANCE
    assert g.validate_offset_commit(member_id=a, group_instance_id=None, generation_id=2) == REBALANCE_IN_PROGRESS


def test_offset_commit_keeps_the_session():
    g, (a,), now = stable_group(1)
    t = now + SESSION - 1
    assert g.validate_offset_commit(member_id=a, group_instance_id=None, generation_id=1, now_ms=t) == NONE
    g.tick(now + SESSION)
    assert a in g.members


def test_duplicate_protocol_names_count_once():
    g = Group("g", initial_rebalance_delay_ms=0)
    join(g, "a", 0, protocols=[("x", b"1"), ("x", b"2")])
    join(g, "b", 0, protocols=[("y", b"1"), ("x", b"1")])
    r = replies(g.tick(0))
    assert r["a"].protocol_name == "x"
    # a third member without x cannot join although "x" was listed twice by one member
    assert replies(join(g, "c", 0, protocols=[("y", b"")]))["c"].error_code == INCONSISTENT_GROUP_PROTOCOL


# --- persistence -----------------------------------------------------------------------------

def test_record_round_trip():
    g, (a, b), now = stable_group(2, instances=["ia", None])
    rec = g.to_record()
    assert rec["generation"] == 1 and rec["protocol"] == "range" and rec["leader"] == a
    assert rec["protocol_type"] == "consumer"
    by_id = {m["member_id"]: m for m in rec["members"]}
    assert by_id[a]["group_instance_id"] == "ia" and by_id[b]["group_instance_id"] is None
    assert by_id[a]["subscription"] == b"range-meta" and by_id[b]["assignment"] == b.encode()
    assert by_id[a]["session_timeout"] == SESSION and by_id[a]["rebalance_timeout"] == REBALANCE
    assert by_id[a]["client_id"] == "c0" and by_id[a]["client_host"] == "/127.0.0.1"

    g2 = Group.from_record("g", rec, 100_000)
    assert g2.state == GroupState.STABLE and g2.generation_id == 1 and g2.leader_id == a
    assert g2.protocol_type == "consumer" and g2.protocol_name == "range"
    assert g2.to_record() == rec
    assert g2.static_members == {"ia": a}
    assert g2.next_deadline() == 100_000 + SESSION  # sessions restart at load time
    assert hb(g2, 100_001, a, 1, instance="ia") == NONE
    assert replies(sync(g2, "s", 100_001, b, 1))["s"].assignment == b.encode()
    # a restarted member rejoining with the same metadata needs no rebalance
    assert replies(join(g2, "j", 100_002, b))["j"].generation_id == 1
    # through the wire format of __consumer_offsets too
    from josef.coordinator.offsets_format import decode_group_value, encode_group_value
    g3 = Group.from_record("g", decode_group_value(encode_group_value(rec)), 0)
    assert g3.to_record() == rec


def test_restored_members_expire_and_group_empties():
    g, _, _ = stable_group(2)
    g2 = Group.from_record("g", g.to_record(), 50_000)
    fx = g2.tick(50_000 + SESSION)
    assert g2.state == GroupState.EMPTY and g2.generation_id == 2 and changed(fx)


def test_empty_record_restores_an_empty_group():
    g, (a, b), now = stable_group(2)
    g.leave(now, [(a, None), (b, None)])
    g2 = Group.from_record("g", g.to_record(), 0)
    assert g2.state == GroupState.EMPTY and not g2.members and g2.generation_id == 2
    assert join(g2, "x", 0) == []
    assert replies(g2.tick(3000))["x"].generation_id == 3


def test_over_capacity_group_rebalances_after_load():
    g, (a, b), now = stable_group(2)
    g2 = Group.from_record("g", g.to_record(), 0, max_size=1)
    assert g2.state == GroupState.PREPARING_REBALANCE


def test_to_record_mid_rebalance_is_the_last_generation():
    g, (a, b), now = stable_group(2)
    rec = g.to_record()
    join(g, "c", now, client="new")
    assert g.state == GroupState.PREPARING_REBALANCE
    assert g.to_record() == rec


# --- random schedules --------------------------------------------------------------------------

CLIENTS = [("c0", None), ("c1", None), ("c2", None), ("s0", "inst-0"), ("s1", "inst-1")]
PROTOCOL_SETS = [
    [("range", b"r")],
    [("range", b"r2"), ("roundrobin", b"rr")],
    [("roundrobin", b"rr"), ("range", b"r")],
    [("sticky", b"s")],
]
ALLOWED_ERRORS = {0, 15, 16, 22, 23, 25, 26, 27, 79, 81, 82}


class GroupMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = 0
        self.g = Group("g", initial_rebalance_delay_ms=300, max_size=4, min_session_timeout_ms=100,
                       max_session_timeout_ms=5000, new_member_join_timeout_ms=3000)
        self.tokens = itertools.count()
        self.outstanding: set[int] = set()
        self.token_client: dict[int, int] = {}
        self.known: dict[int, tuple[str, int]] = {}  # client -> (member id, generation) it last learnt
        self.last_generation = 0
        self.last_assignments: set[bytes] = set()

    # effects bookkeeping
    def apply(self, fx):
        assert isinstance(fx, list)
        for e in fx:
            assert isinstance(e, (JoinReply, SyncReply, GroupChanged))
            if isinstance(e, GroupChanged):
                continue
            assert e.token in self.outstanding, f"token {e.token} answered twice or never asked"
            self.outstanding.discard(e.token)
            assert e.error_code in ALLOWED_ERRORS
            client = self.token_client.pop(e.token)
            if isinstance(e, JoinReply):
                if e.error_code in (0, 79):
                    self.known[client] = (e.member_id, e.generation_id)
                if e.error_code == 0:
                    assert e.leader and 0 < e.generation_id <= self.g.generation_id
                    assert e.protocol_name is not None
                    if e.members:
                        assert e.leader == e.member_id
                        assert any(m[0] == e.member_id for m in e.members)
            elif e.error_code == 0:
                assert self.g.state == GroupState.STABLE

    def new_token(self, client):
        t = next(self.tokens)
        self.outstanding.add(t)
        self.token_client[t] = client
        return t

    def ident(self, client, use_known):
        member_id, generation = self.known.get(client, ("", 0))
        if not use_known:
            member_id = ""
        return member_id, generation

    @rule(client=st.integers(0, len(CLIENTS) - 1), use_known=st.booleans(), require=st.booleans(),
          protos=st.integers(0, len(PROTOCOL_SETS) - 1), session=st.sampled_from([50, 500, 1500, 4000]),
          rebalance=st.sampled_from([0, 400, 2000]))
    def join(self, client, use_known, require, protos, session, rebalance):
        member_id, _ = self.ident(client, use_known)
        client_id, instance = CLIENTS[client]
        token = self.new_token(client)
        fx = self.g.join(token, self.now, member_id=member_id, group_instance_id=instance,
                         protocol_type="consumer", protocols=PROTOCOL_SETS[protos], session_timeout_ms=session,
                         rebalance_timeout_ms=rebalance, client_id=client_id, client_host="/h",
                         require_known_member_id=require)
        self.apply(fx)

    @precondition(lambda self: self.known)
    @rule(data=st.data(), garble=st.booleans())
    def sync(self, data, garble):
        client = data.draw(st.sampled_from(sorted(self.known)))
        member_id, generation = self.ident(client, True)
        if garble:
            generation += 1
        token = self.new_token(client)
        assignments = {mid: f"{mid}@{self.g.generation_id}".encode() for mid in self.g.members}
        is_leader = self.g.leader_id == member_id
        fx = self.g.sync(token, self.now, member_id=member_id, group_instance_id=CLIENTS[client][1],
                         generation_id=generation, protocol_type=None, protocol_name=None, assignments=assignments)
        if is_leader and self.g.state == GroupState.STABLE and any(isinstance(e, GroupChanged) for e in fx):
            self.last_assignments = set(assignments.values())
        self.apply(fx)

    def client_of(self, member_id):
        return next((c for c, (mid, _) in self.known.items() if mid == member_id), None)

    @precondition(lambda self: self.g.state == GroupState.COMPLETING_REBALANCE)
    @rule(missing=st.booleans())
    def leader_syncs(self, missing):
        """Steer towards Stable: the leader, if a client knows it is, sends its assignment."""
        leader = self.g.leader_id
        client = self.client_of(leader)
        if client is None:
            return
        assignments = {mid: f"{mid}@{self.g.generation_id}".encode() for mid in self.g.members}
        if missing and len(assignments) > 1:
            assignments.pop(next(m for m in assignments if m != leader))
        token = self.new_token(client)
        fx = self.g.sync(token, self.now, member_id=leader, group_instance_id=CLIENTS[client][1],
                         generation_id=self.g.generation_id, protocol_type="consumer",
                         protocol_name=self.g.protocol_name, assignments=assignments)
        assert self.g.state == GroupState.STABLE and isinstance(fx[0], GroupChanged)
        self.last_assignments = set(assignments.values())
        self.apply(fx)

    @rule(client=st.integers(0, len(CLIENTS) - 1))
    def heartbeat(self, client):
        member_id, generation = self.ident(client, True)
        error = self.g.heartbeat(self.now, member_id=member_id, group_instance_id=CLIENTS[client][1],
                                 generation_id=generation)
        assert error in ALLOWED_ERRORS

    @rule(clients=st.lists(st.integers(0, len(CLIENTS) - 1), min_size=1, max_size=3), by_instance=st.booleans())
    def leave(self, clients, by_instance):
        members = []
        for c in clients:
            member_id, _ = self.ident(c, True)
            instance = CLIENTS[c][1]
            members.append(("" if by_instance and instance else member_id, instance))
        errors, fx = self.g.leave(self.now, members)
        assert len(errors) == len(members) and all(e in ALLOWED_ERRORS for e in errors)
        self.apply(fx)

    @rule(ms=st.sampled_from([0, 1, 50, 99, 100, 200, 300, 301, 1000, 2999, 5000]))
    def advance(self, ms):
        self.now += ms
        self.apply(self.g.tick(self.now))

    @rule()
    def to_next_deadline(self):
        deadline = self.g.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
            self.apply(self.g.tick(self.now))

    @rule()
    def round_trip(self):
        rec = self.g.to_record()
        assert rec is not None
        restored = Group.from_record("g", rec, self.now)
        assert restored.generation_id <= self.g.generation_id
        assert restored.to_record()["members"] == rec["members"]

    @invariant()
    def invariants(self):
        g = self.g
        assert g.state != GroupState.DEAD
        assert g.generation_id >= self.last_generation
        self.last_generation = g.generation_id
        assert (g.state == GroupState.EMPTY) == (not g.members)
        if g.members:
            assert g.leader_id in g.members
        else:
            assert g.leader_id is None
        if g.state == GroupState.STABLE:
            for m in g.members.values():
                assert m.assignment in self.last_assignments or m.assignment == b""
                assert not m.awaiting_join and not m.awaiting_sync
        if g.state == GroupState.PREPARING_REBALANCE:
            assert g._join_deadline is not None
        for instance, member_id in g.static_members.items():
            assert g.members[member_id].group_instance_id == instance
        assert len(g.static_members) == sum(1 for m in g.members.values() if m.is_static)
        deadline = g.next_deadline()
        assert deadline is None or deadline > self.now or g._next_due(self.now) is not None
        # every parked token belongs to a member
        parked = {m.join_token for m in g.members.values() if m.awaiting_join}
        parked |= {m.sync_token for m in g.members.values() if m.awaiting_sync}
        assert parked <= self.outstanding

    def teardown(self):
        # let every timer run out: every request must have had its one answer
        for _ in range(1000):
            deadline = self.g.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline) + 1
            self.apply(self.g.tick(self.now))
        assert self.g.next_deadline() is None
        assert self.g.state == GroupState.EMPTY and not self.g.members
        assert not self.outstanding, f"unanswered tokens {self.outstanding}"


GroupMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestGroupMachine = GroupMachine.TestCase
