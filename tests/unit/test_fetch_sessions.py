"""Fetch sessions (KIP-227), both halves, without sockets: the broker's cache and a fetcher's view."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from josef.broker import fetch_sessions as fs
from josef.broker.fetch_sessions import FetcherSession, FetchSessionCache
from josef.protocol.errors import Error
from josef.protocol.fetch import FetchPartition, FetchPartitionResponse, FetchRequest


def part(index: int, offset: int = 0, epoch: int = 0, max_bytes: int = 1 << 20) -> FetchPartition:
    return FetchPartition(index, epoch, offset, -1, -1, max_bytes)


def request(topics=(), session_id=0, epoch=fs.INITIAL_EPOCH, forgotten=(), replica_id=-1) -> FetchRequest:
    return FetchRequest(replica_id, 500, 1, 1 << 20, 0, session_id, epoch,
                        [(name, list(ps)) for name, ps in topics], [(n, list(ps)) for n, ps in forgotten], "")


def answer(index: int, hw: int = 10, start: int = 0, records=(), error: int = Error.NONE):
    return FetchPartitionResponse(index, error, hw, hw, start, None, -1, list(records))


def wanted(context) -> list:
    """The partitions the handler reads for `context` (all of an incremental fetch's session)."""
    return context.session.plan()[0] if context.kind == fs.INCREMENTAL else context.topics


def read(context, state: dict) -> list:
    """What the handler would read for `context`: every wanted partition's answer from `state`
    ({(topic, partition): FetchPartitionResponse}, default: no news at hw 10)."""
    return [(name, [state.get((name, p.partition), answer(p.partition)) for p in ps]) for name, ps in wanted(context)]


def keys(topics) -> list:
    return [(name, a.partition) for name, answers in topics for a in answers]


def open_session(cache, topics, now=0, replica_id=-1, state=None):
    ctx = cache.open(request(topics, replica_id=replica_id), now)
    assert ctx.kind == fs.FULL
    session_id, out, error = cache.finish(ctx, read(ctx, state or {}), now)
    assert error == Error.NONE and session_id != 0
    return session_id


def test_sessionless_fetch_creates_nothing():
    cache = FetchSessionCache(10)
    ctx = cache.open(request([("t", [part(0)])], epoch=fs.FINAL_EPOCH), 0)
    assert ctx.kind == fs.SESSIONLESS and ctx.topics == [("t", [part(0)])]
    assert cache.finish(ctx, read(ctx, {}), 0) == (0, read(ctx, {}), Error.NONE)
    assert len(cache) == 0


def test_full_fetch_opens_a_session_that_remembers_what_it_answered():
    cache = FetchSessionCache(10)
    ctx = cache.open(request([("t", [part(0, 5), part(1, 7)])]), 1000)
    got = read(ctx, {("t", 1): answer(1, hw=20, start=3)})
    session_id, topics, error = cache.finish(ctx, got, 1000)
    assert session_id > 0 and error == Error.NONE
    assert topics == got  # a full answer names every partition asked for
    session = cache.get(session_id)
    assert session.epoch == 1 and not session.privileged
    assert [(k, c.request.fetch_offset, c.high_watermark, c.log_start_offset)
            for k, c in session.partitions.items()] == [(("t", 0), 5, 10, 0), (("t", 1), 7, 20, 3)]


def test_incremental_fetch_reads_the_whole_session_and_answers_only_what_changed():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("a", [part(0, 1), part(1, 1)]), ("b", [part(0, 1)])])
    # epoch 1 moves a-1 on to offset 4; the others come from the session
    ctx = cache.open(request([("a", [part(1, 4)])], sid, 1), 1)
    assert ctx.kind == fs.INCREMENTAL
    assert [(n, [(p.partition, p.fetch_offset) for p in ps]) for n, ps in wanted(ctx)] == \
        [("a", [(0, 1), (1, 4)]), ("b", [(0, 1)])]
    state = {("a", 1): answer(1, records=[b"x"]), ("b", 0): answer(0, hw=11)}
    session_id, topics, error = cache.finish(ctx, read(ctx, state), 1)
    assert (session_id, error) == (sid, Error.NONE)
    assert keys(topics) == [("a", 1), ("b", 0)]  # new records, a moved high watermark
    assert cache.get(sid).epoch == 2
    # nothing new at all: an empty answer
    ctx = cache.open(request([], sid, 2), 2)
    assert cache.finish(ctx, read(ctx, state | {("a", 1): answer(1)}), 2) == (sid, [], Error.NONE)


def test_log_start_offset_and_errors_are_always_reported_and_an_error_is_resent_when_it_clears():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0), part(1)])])
    ctx = cache.open(request([], sid, 1), 0)
    state = {("t", 0): answer(0, start=4), ("t", 1): answer(1, hw=-1, error=Error.NOT_LEADER_OR_FOLLOWER)}
    assert keys(cache.finish(ctx, read(ctx, state), 0)[1]) == [("t", 0), ("t", 1)]
    ctx = cache.open(request([], sid, 2), 0)
    assert keys(cache.finish(ctx, read(ctx, state), 0)[1]) == [("t", 1)]  # the error again, not t-0
    ctx = cache.open(request([], sid, 3), 0)
    state[("t", 1)] = answer(1)  # same high watermark as before the error: still sent once
    assert keys(cache.finish(ctx, read(ctx, state), 0)[1]) == [("t", 0), ("t", 1)][1:]
    ctx = cache.open(request([], sid, 4), 0)
    assert cache.finish(ctx, read(ctx, state), 0)[1] == []


def test_partitions_that_returned_records_move_to_the_end_of_the_read_order():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0), part(1), part(2)])])
    ctx = cache.open(request([], sid, 1), 0)
    cache.finish(ctx, read(ctx, {("t", 0): answer(0, records=[b"r"])}), 0)
    ctx = cache.open(request([], sid, 2), 0)
    assert [p.partition for _, ps in wanted(ctx) for p in ps] == [1, 2, 0]


def test_forgotten_partitions_leave_and_unknown_ones_are_ignored():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0), part(1)])])
    ctx = cache.open(request([("u", [part(3)])], sid, 1, forgotten=[("t", [1, 99]), ("nope", [0])]), 0)
    assert ctx.kind == fs.INCREMENTAL
    assert [(n, [p.partition for p in ps]) for n, ps in wanted(ctx)] == [("t", [0]), ("u", [3])]


def test_forgetting_everything_closes_the_session():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0)])])
    ctx = cache.open(request([], sid, 1, forgotten=[("t", [0])]), 0)
    assert ctx.kind == fs.SESSIONLESS and ctx.topics == []
    assert cache.finish(ctx, [], 0)[0] == 0 and cache.get(sid) is None


def test_session_errors():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0)])], replica_id=2)
    for req, error in [
        (request([], 12345, 1, replica_id=2), Error.FETCH_SESSION_ID_NOT_FOUND),  # unknown id
        (request([], 0, 7, replica_id=2), Error.FETCH_SESSION_ID_NOT_FOUND),  # id 0, incremental epoch
        (request([], sid, 1, replica_id=-1), Error.FETCH_SESSION_ID_NOT_FOUND),  # someone else's session
        (request([], sid, 2, replica_id=2), Error.INVALID_FETCH_SESSION_EPOCH),  # ahead
        (request([], sid, -7, replica_id=2), Error.INVALID_FETCH_SESSION_EPOCH),  # nonsense epoch
    ]:
        ctx = cache.open(req, 0)
        assert (ctx.kind, ctx.error) == (fs.ERROR, error)
        assert cache.finish(ctx, [], 0) == (0, [], error)
    assert cache.get(sid).epoch == 1  # errors leave the session as it was
    assert cache.open(request([], sid, 1, replica_id=2), 0).kind == fs.INCREMENTAL


def test_a_duplicate_incremental_fetch_invalidates_the_earlier_answer():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0)])])
    first = cache.open(request([], sid, 1), 0)
    assert cache.open(request([], sid, 1), 0).error == Error.INVALID_FETCH_SESSION_EPOCH
    second = cache.open(request([], sid, 2), 0)  # pipelined before the first was answered
    assert cache.finish(first, read(first, {}), 0) == (sid, [], Error.INVALID_FETCH_SESSION_EPOCH)
    assert cache.finish(second, read(second, {}), 0) == (sid, [], Error.NONE)


def test_full_fetches_close_the_session_they_name():
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0)])])
    ctx = cache.open(request([("t", [part(0)])], sid, fs.INITIAL_EPOCH), 0)
    assert ctx.kind == fs.FULL and cache.get(sid) is None
    new_sid = cache.finish(ctx, read(ctx, {}), 0)[0]
    assert new_sid not in (0, sid)
    ctx = cache.open(request([("t", [part(0)])], new_sid, fs.FINAL_EPOCH), 0)
    assert ctx.kind == fs.SESSIONLESS and cache.get(new_sid) is None and len(cache) == 0


def test_empty_full_fetch_opens_no_session():
    cache = FetchSessionCache(10)
    ctx = cache.open(request([]), 0)
    assert cache.finish(ctx, [], 0) == (0, [], Error.NONE) and len(cache) == 0


def test_epochs_wrap_to_one():
    assert fs.next_epoch(0) == 1 and fs.next_epoch(41) == 42
    assert fs.next_epoch(fs.INT32_MAX) == 1
    assert fs.next_epoch(-1) == -1
    cache = FetchSessionCache(10)
    sid = open_session(cache, [("t", [part(0)])])
    cache.get(sid).epoch = fs.INT32_MAX
    cache.open(request([], sid, fs.INT32_MAX), 0)
    assert cache.get(sid).epoch == 1


def test_no_slots_means_no_sessions():
    cache = FetchSessionCache(0)
    ctx = cache.open(request([("t", [part(0)])]), 0)
    assert ctx.kind == fs.SESSIONLESS and cache.finish(ctx, read(ctx, {}), 0)[0] == 0


def test_a_full_cache_keeps_young_sessions():
    cache = FetchSessionCache(2, eviction_ms=1000)
    a = open_session(cache, [("t", [part(0)])], now=0)
    b = open_session(cache, [("t", [part(0), part(1)])], now=0)
    ctx = cache.open(request([("t", [part(0), part(1), part(2)])]), 500)
    assert cache.finish(ctx, read(ctx, {}), 500)[0] == 0  # no slot: answered sessionless
    assert set(cache.sessions) == {a, b} and cache.evictions == 0


def test_a_stale_session_is_evicted_first():
    cache = FetchSessionCache(2, eviction_ms=1000)
    a = open_session(cache, [("t", [part(0), part(1), part(2)])], now=0)
    b = open_session(cache, [("t", [part(0)])], now=0)
    cache.open(request([], a, 1), 900)  # a was used recently, b not since 0
    c = open_session(cache, [("t", [part(0)])], now=1500)
    assert set(cache.sessions) == {a, c} and cache.evictions == 1 and b not in cache.sessions


def test_followers_evict_consumers_and_bigger_sessions_evict_smaller_mature_ones():
    cache = FetchSessionCache(2, eviction_ms=1000)
    small = open_session(cache, [("t", [part(0)])], now=0)
    big = open_session(cache, [("t", [part(0), part(1), part(2)])], now=0)
    for sid in (small, big):
        cache.open(request([], sid, 1), 900)  # neither is stale
    # a follower's session of one partition takes the smallest consumer session at once
    follower = open_session(cache, [("t", [part(0)])], now=950, replica_id=2)
    assert set(cache.sessions) == {big, follower}
    # a consumer may take only a mature session smaller than itself
    ctx = cache.open(request([("t", [part(0), part(1)])]), 1100)
    assert cache.finish(ctx, read(ctx, {}), 1100)[0] == 0  # big is mature but larger
    ctx = cache.open(request([("t", [part(i) for i in range(4)])]), 1100)
    bigger = cache.finish(ctx, read(ctx, {}), 1100)[0]
    assert bigger and set(cache.sessions) == {follower, bigger}
    # a consumer never takes a young follower session, nor an equal one
    ctx = cache.open(request([("t", [part(i) for i in range(9)])]), 1200)
    assert cache.finish(ctx, read(ctx, {}), 1200)[0] == 0
    assert cache.evictions == 2


def test_a_session_holds_no_more_partitions_than_the_cluster_has():
    limit = [2]
    cache = FetchSessionCache(10, max_partitions=lambda: limit[0])
    ctx = cache.open(request([("t", [part(0), part(1), part(2)])]), 0)
    assert cache.finish(ctx, read(ctx, {}), 0)[0] == 0 and len(cache) == 0
    sid = open_session(cache, [("t", [part(0), part(1)])])
    ctx = cache.open(request([("t", [part(2)])], sid, 1), 0)  # growing past the limit closes it
    assert ctx.kind == fs.SESSIONLESS and ctx.topics == [("t", [part(2)])] and cache.get(sid) is None
    assert cache.finish(ctx, read(ctx, {}), 0)[0] == 0


def test_session_ids_are_positive_and_unique():
    cache = FetchSessionCache(500, rng=random.Random(7))
    ids = {open_session(cache, [("t", [part(0)])]) for _ in range(500)}
    assert len(ids) == 500 and all(0 < i <= fs.INT32_MAX for i in ids)


class FakeLog:
    def __init__(self, end: int, hw: int, start: int = 0):
        self.log_end_offset, self.high_watermark, self.log_start_offset = end, hw, start


def planned(session, snapshot, follower):
    topics, idle = session.plan(snapshot, follower)
    return [(n, p.partition) for n, ps in topics for p in ps], idle


def test_partitions_where_nothing_can_have_changed_are_not_read_again():
    """plan() leaves out what a read could only answer with "nothing new" (see its doc)."""
    cache = FetchSessionCache(10)
    logs = {("t", 0): FakeLog(5, 5), ("t", 1): FakeLog(9, 5), ("t", 2): FakeLog(5, 5)}
    sid = open_session(cache, [("t", [part(0, 5), part(1, 7), part(2, 5)])], replica_id=3)
    session = cache.get(sid)
    snap = 7  # the metadata snapshot's epoch

    def fetch(topics=(), state=None, snapshot=snap, quiet=logs.get):
        ctx = cache.open(request(topics, sid, session.epoch, replica_id=3), 0)
        plan = planned(session, snapshot, True)
        got = [(n, [(state or {}).get((n, p), answer(p, hw=logs[(n, p)].high_watermark,
                                                     start=logs[(n, p)].log_start_offset))])
               for n, p in plan[0]]
        cache.finish(ctx, got, 0, snapshot, lambda n, p: quiet((n, p)))
        return plan

    assert fetch() == ([("t", 0), ("t", 1), ("t", 2)], [])  # nothing known yet
    # t-1's follower is behind the log end (7 < 9): always read; t-0 and t-2 are idle
    assert fetch() == ([("t", 1)], [("t", 0), ("t", 2)])
    logs[("t", 0)].log_end_offset = 6  # an append
    logs[("t", 2)].high_watermark = 4  # (a high watermark moving at all)
    assert fetch() == ([("t", 0), ("t", 1), ("t", 2)], [])
    logs[("t", 0)].log_end_offset = 5
    assert fetch() == ([("t", 1)], [("t", 0), ("t", 2)])
    logs[("t", 2)].log_start_offset = 1  # retention moved the log start
    assert fetch([("t", [part(0, 5, epoch=1)])]) == ([("t", 0), ("t", 1), ("t", 2)], [])  # t-0 was named
    assert fetch(snapshot=8) == ([("t", 0), ("t", 1), ("t", 2)], [])  # new metadata: read all
    # an error (or a follower outside the ISR: no quiet log) means reading it every time
    state = {("t", 0): answer(0, hw=-1, error=Error.FENCED_LEADER_EPOCH)}
    assert fetch(state=state, snapshot=snap) == ([("t", 0), ("t", 1), ("t", 2)], [])
    assert fetch(snapshot=snap) == ([("t", 0), ("t", 1)], [("t", 2)])
    snap2 = 9  # new metadata, where the follower is out of the ISR: no quiet logs
    assert fetch(quiet=lambda key: None, snapshot=snap2) == ([("t", 0), ("t", 1), ("t", 2)], [])
    assert fetch(snapshot=snap2) == ([("t", 0), ("t", 1), ("t", 2)], [])
    assert fetch(snapshot=snap2) == ([("t", 1)], [("t", 0), ("t", 2)])


def test_a_consumer_is_idle_at_or_above_the_high_watermark():
    cache = FetchSessionCache(10)
    logs = {("t", 0): FakeLog(9, 5), ("t", 1): FakeLog(9, 5), ("t", 2): FakeLog(9, 5)}
    sid = open_session(cache, [("t", [part(0, 4), part(1, 5), part(2, 7)])])
    session = cache.get(sid)
    snap = 7
    for expected in [([("t", 0), ("t", 1), ("t", 2)], []), ([("t", 0)], [("t", 1), ("t", 2)])]:
        ctx = cache.open(request([], sid, session.epoch), 0)
        plan = planned(session, snap, False)
        assert plan == expected
        got = [(n, [answer(p, hw=5)]) for n, p in plan[0]]
        cache.finish(ctx, got, 0, snap, lambda n, p: logs[(n, p)])


# --- the fetcher's half ---------------------------------------------------------------------------

def test_fetcher_session_sends_only_changes_after_the_full_fetch():
    s = FetcherSession()
    wanted = {("t", 0): (0, 5, -1, 0, 100), ("t", 1): (0, 7, -1, 0, 100)}
    assert s.full and s.build(wanted) == (wanted, [])
    assert s.on_response(Error.NONE, 77) and (s.session_id, s.epoch) == (77, 1)
    assert s.build(dict(wanted)) == ({}, [])
    assert s.on_response(Error.NONE, 77) and s.epoch == 2
    moved = {("t", 0): (0, 9, -1, 0, 100), ("u", 3): (0, 0, -1, 0, 100)}
    assert s.build(moved) == (moved, [("t", 1)])


def test_fetcher_session_falls_back_to_full_fetches():
    s = FetcherSession()
    s.build({("t", 0): (0,)})
    s.on_response(Error.NONE, 77)
    assert not s.on_response(Error.INVALID_FETCH_SESSION_EPOCH, 0)
    assert (s.session_id, s.epoch) == (77, 0)  # the next full fetch closes session 77
    s.on_response(Error.NONE, 78)
    assert not s.on_response(Error.FETCH_SESSION_ID_NOT_FOUND, 0)
    assert (s.session_id, s.epoch) == (0, 0)
    s.on_response(Error.NONE, 0)  # the leader had no slot: sessionless, full again next time
    assert (s.session_id, s.epoch) == (0, 0)
    s.on_response(Error.NONE, 79)
    s.on_response(Error.NONE, 0)  # an incremental answer with id 0: the leader closed it
    assert (s.session_id, s.epoch) == (0, 0)
    s.on_response(Error.NONE, 80)
    s.on_failure()
    assert (s.session_id, s.epoch) == (80, 0)


KEYS = [(t, p) for t in ("a", "b") for p in range(3)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sets(st.sampled_from(KEYS)), st.integers(0, 3), st.integers(0, 9)),
                min_size=1, max_size=30))
def test_leader_always_reads_exactly_what_the_fetcher_wants(steps):
    """A fetcher and a leader's cache talking for many rounds, with partitions coming and going,
    offsets moving, sessions lost (broker restart, eviction) and others competing for the slot."""
    cache = FetchSessionCache(1)
    fetcher = FetcherSession()
    offsets = {}
    for i, (keys_now, offset_step, event) in enumerate(steps):
        if event == 0:
            cache = FetchSessionCache(1)  # the leader restarted: every session gone
        elif event == 1:
            fetcher.on_failure()  # the connection dropped
        elif event == 2:
            cache.remove(fetcher.session_id)  # evicted
        elif event == 3:  # a consumer wants the only slot: it may not take a follower's young session
            other = cache.open(request([("z", [part(0)])], replica_id=-1), i)
            cache.finish(other, read(other, {}), i)
        want = {}
        for k in sorted(keys_now):
            offsets[k] = offsets.get(k, 0) + offset_step
            want[k] = (0, offsets[k], -1, -1, 1 << 20)
        send, forget = fetcher.build(want)
        topics = {}
        for (name, p), (epoch, offset, last, start, max_bytes) in send.items():
            topics.setdefault(name, []).append(FetchPartition(p, epoch, offset, last, start, max_bytes))
        forgotten = {}
        for name, p in forget:
            forgotten.setdefault(name, []).append(p)
        req = request(list(topics.items()), fetcher.session_id, fetcher.epoch, list(forgotten.items()), replica_id=1)
        ctx = cache.open(req, i)
        if ctx.kind == fs.ERROR:
            session_id, _, error = cache.finish(ctx, [], i)
            assert not fetcher.on_response(error, session_id)
            continue
        read_now = {(name, p.partition): (p.current_leader_epoch, p.fetch_offset, p.last_fetched_epoch,
                                          p.log_start_offset, p.partition_max_bytes)
                    for name, ps in wanted(ctx) for p in ps}
        assert read_now == want
        session_id, _, error = cache.finish(ctx, read(ctx, {}), i)
        assert fetcher.on_response(error, session_id)
