"""Kafka's classic consumer group protocol as a sans-IO state machine.

One `Group` is one consumer group: JoinGroup, SyncGroup, Heartbeat and LeaveGroup go in as
method calls with the current time (`now_ms`), and what Kafka would send out comes back as
effect values: a `JoinReply` or `SyncReply` for a parked request (identified by the opaque
`token` the caller handed in), and `GroupChanged` when the group's persistent state must be
written to `__consumer_offsets` (call `to_record()` for it). No sockets, no clocks, no tasks:
the caller fires `tick(now_ms)` once `next_deadline()` has passed.

The semantics follow Kafka's classic group coordinator: `GroupMetadataManager.classicGroup*`
and `classic/ClassicGroup.java` (Kafka 3.9/4.0 group-coordinator module), cross-checked with
the older `core/.../coordinator/group/GroupCoordinator.scala` and `DelayedJoin.scala`
(InitialDelayedJoin). Static membership is KIP-345, MEMBER_ID_REQUIRED is KIP-394.

Where Kafka leaves a parked request unanswered (a member that re-sends JoinGroup or SyncGroup
while its previous one is parked; a member removed while its SyncGroup is parked), josef
answers it, because josef answers requests in order per connection: the superseded request
gets REBALANCE_IN_PROGRESS, the removed member's UNKNOWN_MEMBER_ID. Every token thus gets
exactly one reply.
"""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from enum import Enum

from josef.protocol.errors import Error

NONE = int(Error.NONE)
COORDINATOR_NOT_AVAILABLE = int(Error.COORDINATOR_NOT_AVAILABLE)
NOT_COORDINATOR = int(Error.NOT_COORDINATOR)
ILLEGAL_GENERATION = int(Error.ILLEGAL_GENERATION)
INCONSISTENT_GROUP_PROTOCOL = int(Error.INCONSISTENT_GROUP_PROTOCOL)
UNKNOWN_MEMBER_ID = int(Error.UNKNOWN_MEMBER_ID)
INVALID_SESSION_TIMEOUT = int(Error.INVALID_SESSION_TIMEOUT)
REBALANCE_IN_PROGRESS = int(Error.REBALANCE_IN_PROGRESS)
NON_EMPTY_GROUP = int(Error.NON_EMPTY_GROUP)
GROUP_ID_NOT_FOUND = int(Error.GROUP_ID_NOT_FOUND)
MEMBER_ID_REQUIRED = int(Error.MEMBER_ID_REQUIRED)
GROUP_MAX_SIZE_REACHED = int(Error.GROUP_MAX_SIZE_REACHED)
FENCED_INSTANCE_ID = int(Error.FENCED_INSTANCE_ID)

UNKNOWN_MEMBER = ""  # JoinGroupRequest.UNKNOWN_MEMBER_ID
NO_REJOIN_RETRY_MS = 1000


class GroupState(str, Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_NO_TOKEN = object()  # "no parked request"; a caller's token may be any object, None included


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]  # (name, metadata), in the member's preference order
    assignment: bytes = b""
    # runtime state, never persisted
    join_token: object = field(default=_NO_TOKEN, init=False, repr=False, compare=False)
    sync_token: object = field(default=_NO_TOKEN, init=False, repr=False, compare=False)
    is_new: bool = field(default=False, init=False, repr=False, compare=False)
    heartbeat_deadline: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_token is not _NO_TOKEN

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_token is not _NO_TOKEN

    def metadata(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return list(protocols) == list(self.protocols)

    def vote(self, candidates: set[str]) -> str | None:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        return None


# --- effects ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class JoinReply:
    token: object
    error_code: int
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple = ()  # ((member_id, group_instance_id, metadata), ...), for the leader only
    skip_assignment: bool = False


@dataclass(frozen=True)
class SyncReply:
    token: object
    error_code: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class GroupChanged:
    """The group's persistent state changed: write `to_record()` to `__consumer_offsets`.

    It comes before the replies it guards in the same effect list (Kafka answers the leader's
    SyncGroup only once the group record is appended)."""


def _dedupe(protocols) -> list[tuple[str, bytes]]:
    """The member's protocols, first occurrence of each name kept (a name counts once)."""
    seen: set[str] = set()
    out = []
    for name, meta in protocols:
        if name not in seen:
            seen.add(name)
            out.append((name, bytes(meta)))
    return out


def new_member_id(prefix: str) -> str:
    """Kafka's `ClassicGroup.generateMemberId`: client id (or group instance id) + "-" + UUID."""
    return f"{prefix}-{uuid.uuid4()}"


class Group:
    def __init__(self, group_id: str, *, initial_rebalance_delay_ms: int = 3000, max_size: int | None = None,
                 min_session_timeout_ms: int = 6000, max_session_timeout_ms: int = 1800000,
                 new_member_join_timeout_ms: int = 300000):
        self.group_id = group_id
        self.initial_rebalance_delay_ms = max(0, initial_rebalance_delay_ms)
        self.max_size = max_size
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.new_member_join_timeout_ms = max(0, new_member_join_timeout_ms)

        self.state = GroupState.EMPTY
        self.current_state_timestamp: int = -1
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}        # group instance id -> member id
        self.pending_members: dict[str, int] = {}       # MEMBER_ID_REQUIRED ids -> expiry
        self.pending_sync_members: set[str] = set()

        # join phase timer: DelayedJoin, or InitialDelayedJoin while `_initial_join`
        self._join_deadline: int | None = None
        self._initial_join = False
        self._initial_delay_ms = 0
        self._initial_remaining_ms = 0
        self._new_member_added = False
        # sync phase timer (DelayedSync), valid for one generation
        self._sync_deadline: int | None = None
        self._sync_generation = -1
        # the last state handed out with GroupChanged (or loaded by from_record)
        self._record: dict | None = None

    # --- small queries ---------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"Group({self.group_id!r}, state={self.state.value}, generation={self.generation_id}, "
                f"protocol={self.protocol_name!r}, leader={self.leader_id!r}, members={list(self.members)})")

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id is not None and self.leader_id == member_id

    def rebalance_timeout_ms(self) -> int:
        return max((max(0, m.rebalance_timeout_ms) for m in self.members.values()), default=0)

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return self.num_awaiting_join() == len(self.members) and not self.pending_members

    def _supported_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.members.values():
            for name, _ in m.protocols:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def supports_protocols(self, protocol_type: str, names: set[str]) -> bool:
        if self.state == GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        counts = self._supported_counts()
        n = len(self.members)
        return self.protocol_type == protocol_type and any(counts.get(name, 0) == n for name in names)

    def select_protocol(self) -> str | None:
        """The protocol all members support, with the most votes (each member votes for the first
        candidate in its preference order); ties go to the first member's preference."""
        if not self.members:
            return None
        counts = self._supported_counts()
        n = len(self.members)
        candidates = {name for name, c in counts.items() if c == n}
        votes: dict[str, int] = {}
        for m in self.members.values():
            choice = m.vote(candidates)
            if choice is not None:
                votes[choice] = votes.get(choice, 0) + 1
        if not votes:
            return None
        first = next(iter(self.members.values()))
        order = {name: i for i, (name, _) in enumerate(first.protocols)}
        return min(votes, key=lambda name: (-votes[name], order.get(name, len(order))))

    def current_member_metadata(self) -> tuple:
        return tuple((m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
                     for m in self.members.values())

    def validate_member(self, member_id: str, group_instance_id: str | None) -> int:
        """Kafka's `ClassicGroup.validateMember`: FENCED_INSTANCE_ID when the instance id is mapped
        to another member id, UNKNOWN_MEMBER_ID when the instance or the member is unknown."""
        if group_instance_id is not None:
            current = self.static_members.get(group_instance_id)
            if current is None:
                return UNKNOWN_MEMBER_ID
            if current != member_id:
                return FENCED_INSTANCE_ID
        if member_id not in self.members:
            return UNKNOWN_MEMBER_ID
        return NONE

    # --- state changes ---------------------------------------------------------------------

    def _transition(self, state: GroupState, now_ms: int) -> None:
        self.state = state
        self.current_state_timestamp = now_ms

    def _changed(self, fx: list) -> None:
        self._record = self._live_record()
        fx.append(GroupChanged())

    def _reschedule_heartbeat(self, member: Member, now_ms: int, timeout_ms: int | None = None) -> None:
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.heartbeat_deadline = now_ms + max(0, timeout)

    def _answer_join(self, member: Member, reply_kwargs: dict, fx: list) -> bool:
        if not member.awaiting_join:
            return False
        fx.append(JoinReply(member.join_token, **reply_kwargs))
        member.join_token = _NO_TOKEN
        return True

    def _answer_sync(self, member: Member, reply_kwargs: dict, fx: list) -> bool:
        if not member.awaiting_sync:
            return False
        fx.append(SyncReply(member.sync_token, **reply_kwargs))
        member.sync_token = _NO_TOKEN
        return True

    def _join_reply_for(self, member: Member) -> dict:
        return dict(
            error_code=NONE, generation_id=self.generation_id, protocol_type=self.protocol_type,
            protocol_name=self.protocol_name, leader=self.leader_id or "", member_id=member.member_id,
            members=self.current_member_metadata() if self.is_leader(member.member_id) else ())

    def _add_member(self, member: Member, token, now_ms: int) -> None:
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        member.join_token = token
        self.pending_members.pop(member.member_id, None)

    def _remove_member(self, member_id: str, fx: list) -> None:
        """Drop a member (answering its parked requests with UNKNOWN_MEMBER_ID) or a pending id."""
        member = self.members.pop(member_id, None)
        if member is not None:
            self._answer_join(member, dict(error_code=UNKNOWN_MEMBER_ID, member_id=UNKNOWN_MEMBER), fx)
            self._answer_sync(member, dict(error_code=UNKNOWN_MEMBER_ID), fx)
            if member.group_instance_id is not None and \
                    self.static_members.get(member.group_instance_id) == member_id:
                del self.static_members[member.group_instance_id]
            member.heartbeat_deadline = None
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.pop(member_id, None)
        self.pending_sync_members.discard(member_id)
        if not self.pending_sync_members:
            self._sync_deadline = None

    def _update_member(self, member: Member, protocols, rebalance_timeout_ms: int, session_timeout_ms: int,
                       token, fx: list) -> None:
        member.protocols = protocols
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        # a re-sent JoinGroup supersedes the parked one (Kafka drops the old callback unanswered)
        self._answer_join(member, dict(error_code=REBALANCE_IN_PROGRESS, member_id=member.member_id), fx)
        member.join_token = token

    def _drop(self, member_id: str, now_ms: int, fx: list) -> None:
        if member_id in self.members:
            self._remove_member(member_id, fx)
            self._after_removal(now_ms, fx)
        elif member_id in self.pending_members:
            self._remove_member(member_id, fx)
            self._maybe_complete_join_phase(now_ms, fx)

    def _after_removal(self, now_ms: int, fx: list) -> None:
        """What Kafka does once members are gone: rebalance a Stable/CompletingRebalance group,
        or try to finish the join phase of a rebalancing one."""
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now_ms, fx)
        elif self.state == GroupState.PREPARING_REBALANCE:
            if not self.members:
                # nobody left to wait for, even during the initial delay: go Empty at once
                self._complete_join(now_ms, fx)
            else:
                self._maybe_complete_join_phase(now_ms, fx)

    def _maybe_prepare_rebalance_or_complete_join(self, now_ms: int, fx: list) -> None:
        if self.state in (GroupState.EMPTY, GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now_ms, fx)
        else:
            self._maybe_complete_join_phase(now_ms, fx)

    def _maybe_complete_join_phase(self, now_ms: int, fx: list) -> None:
        if self.state != GroupState.PREPARING_REBALANCE or self._initial_join:
            return  # the initial rebalance always waits for its delay (InitialDelayedJoin)
        if self.has_all_members_joined():
            self._complete_join(now_ms, fx)

    def _prepare_rebalance(self, now_ms: int, fx: list) -> None:
        if self.state == GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment(REBALANCE_IN_PROGRESS, now_ms, fx)
        self.pending_sync_members.clear()
        self._sync_deadline = None
        initial = self.state == GroupState.EMPTY
        self._transition(GroupState.PREPARING_REBALANCE, now_ms)
        if initial:
            self._initial_join = True
            self._new_member_added = False
            self._initial_delay_ms = self.initial_rebalance_delay_ms
            self._initial_remaining_ms = max(self.rebalance_timeout_ms() - self.initial_rebalance_delay_ms, 0)
            self._join_deadline = now_ms + self._initial_delay_ms
        else:
            self._initial_join = False
            if not self.members or self.has_all_members_joined():
                # (with no members left, pending ids are not waited for: the group goes Empty)
                self._complete_join(now_ms, fx)
            else:
                self._join_deadline = now_ms + self.rebalance_timeout_ms()

    def _complete_join(self, now_ms: int, fx: list) -> None:
        self._join_deadline = None
        self._initial_join = False
        for member_id in [mid for mid, m in self.members.items() if not m.awaiting_join and not m.is_static]:
            self._remove_member(member_id, fx)
        if self.members and not self._elect_joined_leader():
            # nobody rejoined (only static members that did not): wait another rebalance timeout
            # for their sessions to expire, as Kafka does (at least NO_REJOIN_RETRY_MS, so a
            # zero rebalance timeout cannot make the caller's timer spin)
            self._join_deadline = now_ms + max(self.rebalance_timeout_ms(), NO_REJOIN_RETRY_MS)
            return
        self.generation_id += 1
        if not self.members:
            self.protocol_name = None
            self.leader_id = None
            self._transition(GroupState.EMPTY, now_ms)
            self.pending_sync_members.clear()
            self._sync_deadline = None
            self._changed(fx)
            return
        self.protocol_name = self.select_protocol()
        self._transition(GroupState.COMPLETING_REBALANCE, now_ms)
        self.pending_sync_members.clear()
        for member in self.members.values():
            self._answer_join(member, self._join_reply_for(member), fx)
            self._reschedule_heartbeat(member, now_ms)
            member.is_new = False
            self.pending_sync_members.add(member.member_id)
        self._sync_deadline = now_ms + self.rebalance_timeout_ms()
        self._sync_generation = self.generation_id

    def _elect_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else the first member that did; False if none did."""
        leader = self.members.get(self.leader_id) if self.leader_id is not None else None
        if leader is not None and leader.awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def _reset_and_propagate_assignment(self, error: int, now_ms: int, fx: list) -> None:
        for member in self.members.values():
            member.assignment = b""
        self._propagate_assignment(error, now_ms, fx)

    def _propagate_assignment(self, error: int, now_ms: int, fx: list) -> None:
        ok = error == NONE
        for member in self.members.values():
            reply = dict(error_code=error, assignment=member.assignment if ok else b"",
                         protocol_type=self.protocol_type if ok else None,
                         protocol_name=self.protocol_name if ok else None)
            if self._answer_sync(member, reply, fx):
                self._reschedule_heartbeat(member, now_ms)

    # --- JoinGroup -------------------------------------------------------------------------

    def _accept_joining_member(self, member_id: str) -> bool:
        if self.max_size is None or self.state in (GroupState.EMPTY, GroupState.DEAD):
            return True
        member = self.members.get(member_id)
        if self.state == GroupState.PREPARING_REBALANCE:
            return (member is not None and member.awaiting_join) or self.num_awaiting_join() < self.max_size
        return member is not None or len(self.members) < self.max_size

    def join(self, token, now_ms: int, *, member_id: str, group_instance_id: str | None, protocol_type: str,
             protocols: list[tuple[str, bytes]], session_timeout_ms: int, rebalance_timeout_ms: int,
             client_id: str, client_host: str, require_known_member_id: bool,
             supports_skip_assignment: bool = False) -> list:
        """JoinGroup. Either answered at once (errors, MEMBER_ID_REQUIRED, the current generation
        for an unchanged follower) or parked until the join phase completes."""
        fx: list = []
        member_id = member_id or UNKNOWN_MEMBER
        protocol_type = protocol_type or ""
        protocols = _dedupe(protocols)

        def reply(error: int, mid: str) -> list:
            fx.append(JoinReply(token, error, member_id=mid))
            return fx

        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return reply(INVALID_SESSION_TIMEOUT, member_id)
        if not self._accept_joining_member(member_id):
            # Kafka drops the refused id: a pending id, or (PreparingRebalance) a member not rejoined
            self._drop(member_id, now_ms, fx)
            return reply(GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER)
        names = {name for name, _ in protocols}
        if member_id == UNKNOWN_MEMBER:
            if self.state == GroupState.DEAD:
                return reply(COORDINATOR_NOT_AVAILABLE, UNKNOWN_MEMBER)
            if not self.supports_protocols(protocol_type, names):
                return reply(INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER)
            new_id = new_member_id(group_instance_id if group_instance_id is not None else client_id)
            if group_instance_id is not None:
                old_id = self.static_members.get(group_instance_id)
                if old_id is not None:
                    self._replace_static_member(token, now_ms, group_instance_id, old_id, new_id, protocols,
                                                session_timeout_ms, rebalance_timeout_ms, supports_skip_assignment, fx)
                    return fx
            elif require_known_member_id:
                self.pending_members[new_id] = now_ms + max(0, session_timeout_ms)
                return reply(MEMBER_ID_REQUIRED, new_id)
            self._add_member_and_rebalance(token, now_ms, new_id, group_instance_id, client_id, client_host,
                                           protocol_type, protocols, session_timeout_ms, rebalance_timeout_ms, fx)
            return fx

        # a member that knows its id
        if self.state == GroupState.DEAD:
            return reply(COORDINATOR_NOT_AVAILABLE, member_id)
        if not self.supports_protocols(protocol_type, names):
            return reply(INCONSISTENT_GROUP_PROTOCOL, member_id)
        if member_id in self.pending_members:
            if group_instance_id is not None:  # pending ids are never static (Kafka: IllegalStateException)
                return reply(UNKNOWN_MEMBER_ID, member_id)
            self._add_member_and_rebalance(token, now_ms, member_id, None, client_id, client_host,
                                           protocol_type, protocols, session_timeout_ms, rebalance_timeout_ms, fx)
            return fx
        error = self.validate_member(member_id, group_instance_id)
        if error:
            return reply(error, member_id)
        member = self.members[member_id]
        if self.state == GroupState.PREPARING_REBALANCE:
            self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms, token, fx)
            self._maybe_prepare_rebalance_or_complete_join(now_ms, fx)
        elif self.state == GroupState.COMPLETING_REBALANCE:
            if member.matches(protocols):
                # it missed its JoinGroup response: hand the current generation out again
                fx.append(JoinReply(token, **self._join_reply_for(member)))
            else:
                self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms, token, fx)
                self._maybe_prepare_rebalance_or_complete_join(now_ms, fx)
        elif self.state == GroupState.STABLE:
            if self.is_leader(member_id) or not member.matches(protocols):
                # the leader rejoining forces a rebalance (e.g. topic metadata changed)
                self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms, token, fx)
                self._maybe_prepare_rebalance_or_complete_join(now_ms, fx)
            else:
                fx.append(JoinReply(token, **{**self._join_reply_for(member), "members": ()}))
        else:  # Empty: no members, so validate_member already refused; kept for safety
            return reply(UNKNOWN_MEMBER_ID, member_id)
        return fx

    def _add_member_and_rebalance(self, token, now_ms: int, member_id: str, group_instance_id: str | None,
                                  client_id: str, client_host: str, protocol_type: str, protocols,
                                  session_timeout_ms: int, rebalance_timeout_ms: int, fx: list) -> None:
        member = Member(member_id, group_instance_id, client_id, client_host, session_timeout_ms,
                        rebalance_timeout_ms, protocol_type, protocols)
        member.is_new = True
        if self.state == GroupState.PREPARING_REBALANCE and self._initial_join:
            self._new_member_added = True
        self._add_member(member, token, now_ms)
        # a new member cannot heartbeat while parked: it expires after the new-member join timeout
        self._reschedule_heartbeat(member, now_ms, self.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(now_ms, fx)

    def _replace_static_member(self, token, now_ms: int, instance_id: str, old_id: str, new_id: str, protocols,
                               session_timeout_ms: int, rebalance_timeout_ms: int, supports_skip_assignment: bool,
                               fx: list) -> None:
        """KIP-345: a static member rejoining with an unknown member id takes over its instance id;
        the old member id is fenced (its parked requests get FENCED_INSTANCE_ID)."""
        current_leader = self.leader_id
        old = self.members.pop(old_id)
        self._answer_join(old, dict(error_code=FENCED_INSTANCE_ID, member_id=old_id), fx)
        self._answer_sync(old, dict(error_code=FENCED_INSTANCE_ID), fx)
        old.heartbeat_deadline = None
        member = Member(new_id, instance_id, old.client_id, old.client_host, old.session_timeout_ms,
                        old.rebalance_timeout_ms, old.protocol_type, list(old.protocols), old.assignment)
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        self.static_members[instance_id] = new_id
        if old_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_id)
            self.pending_sync_members.add(new_id)
        self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms, token, fx)
        self._reschedule_heartbeat(member, now_ms)

        if self.state == GroupState.STABLE:
            if self.select_protocol() == self.protocol_name:
                # no rebalance: persist the new member id and hand out the current generation
                self._changed(fx)
                if supports_skip_assignment:
                    is_leader = self.is_leader(new_id)
                    reply = dict(self._join_reply_for(member), skip_assignment=is_leader)
                else:
                    # older clients: report the old leader id, so a restarted static leader does not
                    # run an assignment the Stable group would ignore
                    reply = dict(self._join_reply_for(member), members=(), leader=current_leader or "")
                self._answer_join(member, reply, fx)
            else:
                self._prepare_rebalance(now_ms, fx)
        elif self.state == GroupState.COMPLETING_REBALANCE:
            # the leader may already have been given the old member id: rebalance
            self._prepare_rebalance(now_ms, fx)
        else:
            self._maybe_complete_join_phase(now_ms, fx)

    # --- SyncGroup -------------------------------------------------------------------------

    def sync(self, token, now_ms: int, *, member_id: str, group_instance_id: str | None, generation_id: int,
             protocol_type: str | None, protocol_name: str | None, assignments: dict[str, bytes]) -> list:
        fx: list = []

        def reply(error: int) -> list:
            fx.append(SyncReply(token, error))
            return fx

        if self.state == GroupState.DEAD:
            return reply(COORDINATOR_NOT_AVAILABLE)
        if self.state == GroupState.EMPTY:
            return reply(UNKNOWN_MEMBER_ID)
        error = self.validate_member(member_id, group_instance_id)
        if error:
            return reply(error)
        if generation_id != self.generation_id:
            return reply(ILLEGAL_GENERATION)
        if protocol_type is not None and protocol_type != self.protocol_type:
            return reply(INCONSISTENT_GROUP_PROTOCOL)
        if protocol_name is not None and protocol_name != self.protocol_name:
            return reply(INCONSISTENT_GROUP_PROTOCOL)
        member = self.members[member_id]
        if self.state == GroupState.PREPARING_REBALANCE:
            return reply(REBALANCE_IN_PROGRESS)
        if self.state == GroupState.STABLE:
            self._synced(member_id)
            self._reschedule_heartbeat(member, now_ms)
            fx.append(SyncReply(token, NONE, self.protocol_type, self.protocol_name, member.assignment))
            return fx
        # CompletingRebalance: park until the leader's assignment arrives
        self._answer_sync(member, dict(error_code=REBALANCE_IN_PROGRESS), fx)  # a re-sent SyncGroup
        member.sync_token = token
        self._synced(member_id)
        if self.is_leader(member_id):
            for mid, m in self.members.items():
                m.assignment = bytes(assignments.get(mid, b""))
            self._transition(GroupState.STABLE, now_ms)
            self._changed(fx)
            self._propagate_assignment(NONE, now_ms, fx)
        return fx

    def _synced(self, member_id: str) -> None:
        self.pending_sync_members.discard(member_id)
        if not self.pending_sync_members:
            self._sync_deadline = None

    # --- Heartbeat, LeaveGroup, OffsetCommit ---------------------------------------------------

    def heartbeat(self, now_ms: int, *, member_id: str, group_instance_id: str | None, generation_id: int) -> int:
        if self.state == GroupState.DEAD:
            return COORDINATOR_NOT_AVAILABLE
        error = self.validate_member(member_id, group_instance_id)
        if error:
            return error
        if generation_id != self.generation_id:
            return ILLEGAL_GENERATION
        if self.state == GroupState.EMPTY:
            return UNKNOWN_MEMBER_ID
        self._reschedule_heartbeat(self.members[member_id], now_ms)
        if self.state == GroupState.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    def leave(self, now_ms: int, members: list[tuple[str, str | None]]) -> tuple[list[int], list]:
        """LeaveGroup for (member id, group instance id) pairs; a pair with an empty member id
        removes the static member by instance id (the admin path)."""
        fx: list = []
        if self.state == GroupState.DEAD:
            return [COORDINATOR_NOT_AVAILABLE] * len(members), fx
        errors: list[int] = []
        removed = pending_removed = False
        for member_id, instance_id in members:
            member_id = member_id or UNKNOWN_MEMBER
            if member_id == UNKNOWN_MEMBER:
                current = self.static_members.get(instance_id) if instance_id is not None else None
                if current is None:
                    errors.append(UNKNOWN_MEMBER_ID)
                else:
                    self._remove_member(current, fx)
                    removed = True
                    errors.append(NONE)
            elif member_id in self.pending_members:
                self._remove_member(member_id, fx)
                pending_removed = True
                errors.append(NONE)
            else:
                error = self.validate_member(member_id, instance_id)
                if not error:
                    self._remove_member(member_id, fx)
                    removed = True
                errors.append(error)
        if removed:
            self._after_removal(now_ms, fx)
        elif pending_removed:
            # a pending id leaving does not disturb the group, but may end a join phase waiting on it
            self._maybe_complete_join_phase(now_ms, fx)
        return errors, fx

    def validate_offset_commit(self, *, member_id: str, group_instance_id: str | None, generation_id: int,
                               now_ms: int | None = None) -> int:
        """The error for an OffsetCommit to this group (Kafka's `ClassicGroup.validateOffsetCommit`).
        With `now_ms`, a valid commit in Stable/PreparingRebalance also keeps the member's session."""
        if self.state == GroupState.DEAD:
            return COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and self.state == GroupState.EMPTY:
            return NONE  # a "simple" commit (admin client, or a consumer without group management)
        if generation_id >= 0 or member_id or group_instance_id is not None:
            error = self.validate_member(member_id, group_instance_id)
            if error:
                return error
            if generation_id != self.generation_id:
                return ILLEGAL_GENERATION
        elif self.state != GroupState.EMPTY:
            return UNKNOWN_MEMBER_ID
        if self.state == GroupState.COMPLETING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        member = self.members.get(member_id)
        if now_ms is not None and member is not None:
            self._reschedule_heartbeat(member, now_ms)
        return NONE

    # --- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        if self.state == GroupState.DEAD:
            return None
        times = [m.heartbeat_deadline for m in self.members.values() if m.heartbeat_deadline is not None]
        times.extend(self.pending_members.values())
        if self._join_deadline is not None:
            times.append(self._join_deadline)
        if self._sync_deadline is not None:
            times.append(self._sync_deadline)
        return min(times, default=None)

    def _next_due(self, now_ms: int):
        best = None
        if self._join_deadline is not None and self._join_deadline <= now_ms:
            best = (self._join_deadline, 0, "join", None)
        if self._sync_deadline is not None and self._sync_deadline <= now_ms:
            cand = (self._sync_deadline, 1, "sync", None)
            best = cand if best is None or cand[:2] < best[:2] else best
        for mid, m in self.members.items():
            if m.heartbeat_deadline is not None and m.heartbeat_deadline <= now_ms:
                if best is None or (m.heartbeat_deadline, 2) < best[:2]:
                    best = (m.heartbeat_deadline, 2, "member", mid)
        for mid, deadline in self.pending_members.items():
            if deadline <= now_ms and (best is None or (deadline, 3) < best[:2]):
                best = (deadline, 3, "pending", mid)
        return best

    def tick(self, now_ms: int) -> list:
        """Fire every timer due at `now_ms`, earliest first: session expiry of members and pending
        members, the end of the join phase (rebalance timeout or initial delay), the sync timeout."""
        fx: list = []
        while self.state != GroupState.DEAD:
            due = self._next_due(now_ms)
            if due is None:
                break
            _, _, kind, member_id = due
            if kind == "join":
                self._fire_join(now_ms, fx)
            elif kind == "sync":
                self._fire_sync(now_ms, fx)
            elif kind == "member":
                self._fire_heartbeat(member_id, now_ms, fx)
            else:
                self.pending_members.pop(member_id, None)
                self._maybe_complete_join_phase(now_ms, fx)
        return fx

    def _fire_join(self, now_ms: int, fx: list) -> None:
        self._join_deadline = None
        if self.state != GroupState.PREPARING_REBALANCE:
            return
        if self._initial_join and self._new_member_added and self._initial_remaining_ms != 0:
            # InitialDelayedJoin: members keep arriving, wait once more (up to the rebalance timeout)
            self._new_member_added = False
            delay = min(self.initial_rebalance_delay_ms, self._initial_remaining_ms)
            self._initial_remaining_ms = max(self._initial_remaining_ms - self._initial_delay_ms, 0)
            self._initial_delay_ms = delay
            self._join_deadline = now_ms + delay
            return
        self._complete_join(now_ms, fx)

    def _fire_sync(self, now_ms: int, fx: list) -> None:
        self._sync_deadline = None
        if self._sync_generation != self.generation_id:
            return
        if self.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        if not self.pending_sync_members:
            return
        for member_id in list(self.pending_sync_members):
            self._remove_member(member_id, fx)
        self._prepare_rebalance(now_ms, fx)

    def _fire_heartbeat(self, member_id: str, now_ms: int, fx: list) -> None:
        member = self.members[member_id]
        member.heartbeat_deadline = None
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            return  # members parked in a rebalance satisfy their heartbeats
        self._remove_member(member_id, fx)
        self._after_removal(now_ms, fx)

    # --- persistence, deletion ------------------------------------------------------------------

    def _live_record(self) -> dict:
        return {
            "protocol_type": self.protocol_type or "",
            "generation": self.generation_id,
            "protocol": self.protocol_name,
            "leader": self.leader_id,
            "current_state_timestamp": self.current_state_timestamp,
            "members": [{
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "rebalance_timeout": m.rebalance_timeout_ms,
                "session_timeout": m.session_timeout_ms,
                "subscription": m.metadata(self.protocol_name),
                "assignment": m.assignment,
            } for m in self.members.values()],
        }

    def to_record(self) -> dict | None:
        """The GroupMetadataValue to persist: the state as of the last `GroupChanged` (so a call in
        the middle of a rebalance still returns the last complete generation); None when Dead."""
        if self.state == GroupState.DEAD:
            return None
        return copy.deepcopy(self._record) if self._record is not None else self._live_record()

    @classmethod
    def from_record(cls, group_id: str, record: dict, now_ms: int, **kwargs) -> "Group":
        """Rebuild a group from its GroupMetadataValue: Stable with its members (whose sessions
        start now), or Empty without; an over-capacity group starts a rebalance (Kafka's onGroupLoaded)."""
        group = cls(group_id, **kwargs)
        group.generation_id = int(record.get("generation", 0))
        group.protocol_type = record.get("protocol_type") or None
        group.protocol_name = record.get("protocol")
        stamp = record.get("current_state_timestamp")
        group.current_state_timestamp = stamp if stamp is not None and stamp >= 0 else now_ms
        for m in record.get("members") or ():
            session = int(m.get("session_timeout", 0))
            rebalance = m.get("rebalance_timeout")
            member = Member(
                member_id=m["member_id"], group_instance_id=m.get("group_instance_id"),
                client_id=m.get("client_id", ""), client_host=m.get("client_host", ""),
                session_timeout_ms=session,
                rebalance_timeout_ms=int(rebalance) if rebalance is not None and rebalance >= 0 else session,
                protocol_type=group.protocol_type or "",
                protocols=[(group.protocol_name or "", bytes(m.get("subscription") or b""))],
                assignment=bytes(m.get("assignment") or b""))
            if member.member_id in group.members or (
                    member.group_instance_id is not None and member.group_instance_id in group.static_members):
                continue  # a corrupt record: keep the first of duplicates
            group.members[member.member_id] = member
            if member.group_instance_id is not None:
                group.static_members[member.group_instance_id] = member.member_id
            group._reschedule_heartbeat(member, now_ms)
        leader = record.get("leader")
        group.leader_id = leader if leader in group.members else next(iter(group.members), None)
        group.state = GroupState.STABLE if group.members else GroupState.EMPTY
        if not group.members:
            group.protocol_name = None
        group._record = group._live_record()
        if group.max_size is not None and len(group.members) > group.max_size:
            group._prepare_rebalance(now_ms, [])
        return group

    def mark_dead(self) -> list:
        """The group is gone (deleted, or this broker no longer coordinates it): parked requests
        get NOT_COORDINATOR so their clients look the coordinator up again."""
        fx: list = []
        for member in self.members.values():
            self._answer_join(member, dict(error_code=NOT_COORDINATOR, member_id=member.member_id), fx)
            self._answer_sync(member, dict(error_code=NOT_COORDINATOR), fx)
        self.state = GroupState.DEAD
        self._join_deadline = None
        self._sync_deadline = None
        self.pending_members.clear()
        return fx

    def delete_check(self) -> int:
        """DeleteGroups: NON_EMPTY_GROUP unless Empty; an Empty group is marked Dead (0).
        A group already Dead answers GROUP_ID_NOT_FOUND, as Kafka does."""
        if self.state == GroupState.DEAD:
            return GROUP_ID_NOT_FOUND
        if self.state != GroupState.EMPTY:
            return NON_EMPTY_GROUP
        self.mark_dead()
        return NONE

    def describe(self) -> dict:
        """DescribeGroups (Kafka's `summary`): protocol and member metadata/assignment only when Stable."""
        stable = self.state == GroupState.STABLE
        return {
            "state": self.state.value,
            "protocol_type": self.protocol_type or "",
            "protocol": (self.protocol_name or "") if stable else "",
            "members": [{
                "member_id": m.member_id, "group_instance_id": m.group_instance_id,
                "client_id": m.client_id, "client_host": m.client_host,
                "metadata": m.metadata(self.protocol_name) if stable else b"",
                "assignment": m.assignment if stable else b"",
            } for m in self.members.values()],
        }
