"""The leader's side of replication: follower positions, the high watermark, the ISR,
and produce requests with acks=all waiting for their records to be committed.

The high watermark is the smallest log end offset among the in-sync replicas; a record
below it is on every one of them, so any replica the controller may elect from the ISR
has it. The ISR used here is conservative on purpose: a follower whose addition is being
written counts already, one whose removal is being written still counts, until the new
partition state comes back through the metadata snapshot.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from josef.protocol.errors import Error

log = logging.getLogger("josef.isr")


@dataclass
class Follower:
    log_end_offset: int = -1  # unknown until it fetches
    caught_up_at: float = field(default_factory=time.monotonic)  # last time it had the whole log
    last_fetch_at: float = 0.0
    leader_end_at_last_fetch: int = -1


@dataclass
class Led:
    """A partition this broker leads, in one leader epoch."""
    leader_epoch: int
    followers: dict[int, Follower]
    adding: set[int] = field(default_factory=set)  # ISR writes in flight
    removing: set[int] = field(default_factory=set)
    waiting: list[tuple[int, asyncio.Future]] = field(default_factory=list)  # (offset needed, ack)


class Replication:
    def __init__(self, broker):
        self.broker = broker
        self.led: dict[tuple[str, int], Led] = {}

    # --- leadership follows the metadata ------------------------------------------------

    def on_metadata(self, snapshot) -> None:
        me = self.broker.broker_id
        now_led = {}
        for topic in snapshot.topics.values():
            for p in topic.partitions:
                if p.leader == me:
                    now_led[(topic.name, p.partition)] = p
        for key in [k for k in self.led if k not in now_led]:
            self._fail_waiting(self.led.pop(key), Error.NOT_LEADER_OR_FOLLOWER)
        for key, p in now_led.items():
            led = self.led.get(key)
            if led is None or led.leader_epoch != p.leader_epoch:
                followers = {r: (led.followers.get(r) if led else None) or Follower()
                             for r in p.replicas if r != me}
                waiting = led.waiting if led else []
                self.led[key] = Led(p.leader_epoch, followers, waiting=waiting)
                plog = self.broker.logs.get(*key)
                if plog is not None and (led is None) and plog.epochs.latest_epoch < p.leader_epoch:
                    plog.assign_epoch(p.leader_epoch)  # the new epoch starts at our log end
            else:
                for r in p.replicas:
                    if r != me and r not in led.followers:
                        led.followers[r] = Follower()
                led.adding -= set(p.isr)
                led.removing &= set(p.isr)
            self.advance(key)

    def isr(self, key) -> tuple[int, ...]:
        """The ISR the high watermark and min.insync.replicas are judged by (see module doc)."""
        state = self._state(key)
        if state is None:
            return ()
        led = self.led.get(key)
        extra = tuple(sorted(led.adding - set(state.isr))) if led else ()
        return state.isr + extra

    def _state(self, key):
        topic = self.broker.store.snapshot.topics.get(key[0])
        if topic is None or key[1] >= len(topic.partitions):
            return None
        return topic.partitions[key[1]]

    # --- followers fetch ------------------------------------------------------------------

    def follower_fetched(self, key, replica: int, fetch_offset: int, plog) -> None:
        led = self.led.get(key)
        if led is None or replica not in led.followers:
            return
        follower = led.followers[replica]
        follower.log_end_offset = fetch_offset
        now = time.monotonic()
        # Kafka's rule: caught up if it has the whole log, or everything the leader had at its
        # previous fetch (under steady traffic a follower is never exactly at the log end)
        if fetch_offset >= plog.log_end_offset:
            follower.caught_up_at = now
        elif fetch_offset >= follower.leader_end_at_last_fetch >= 0:
            follower.caught_up_at = max(follower.caught_up_at, follower.last_fetch_at)
        follower.last_fetch_at, follower.leader_end_at_last_fetch = now, plog.log_end_offset
        state = self._state(key)
        if (state is not None and replica not in state.isr and replica not in led.adding
                and replica in self.broker.store.snapshot.brokers  # not one on its way out
                and fetch_offset >= max(plog.high_watermark, plog.epochs.latest_start_offset)):
            self._change_isr(key, led, add=replica)  # it has everything committed: it may join
        self.advance(key)

    def followers_caught_up(self, keys, replica: int) -> None:
        """`replica` fetched these partitions again at their log end and its fetch session left
        them unread (nothing changed, see fetch_sessions.FetchSession.plan): it is still caught
        up, which is all follower_fetched would note."""
        now = time.monotonic()
        led = self.led
        for key in keys:
            state = led.get(key)
            follower = state.followers.get(replica) if state is not None else None
            if follower is not None:
                follower.caught_up_at = follower.last_fetch_at = now

    def advance(self, key) -> None:
        """Move the high watermark to the smallest log end among the ISR; release acks."""
        plog = self.broker.logs.get(*key)
        led = self.led.get(key)
        if plog is None or led is None:
            return
        me = self.broker.broker_id
        hw = plog.log_end_offset
        for r in self.isr(key):
            if r != me:
                follower = led.followers.get(r)
                hw = min(hw, follower.log_end_offset if follower else -1)
        if hw > plog.high_watermark:
            plog.high_watermark = hw
            self.broker.purgatory.appended(key, 1 << 30)  # consumers may see more now: answer them
        if led.waiting:
            still = []
            for needed, future in led.waiting:
                if future.done():
                    continue
                if plog.high_watermark >= needed:
                    min_isr = plog.config.min_insync_replicas
                    error = Error.NONE if len(self.isr(key)) >= min_isr else Error.NOT_ENOUGH_REPLICAS_AFTER_APPEND
                    future.set_result(error)
                else:
                    still.append((needed, future))
            led.waiting = still

    def wait_committed(self, key, offset: int, timeout_s: float) -> asyncio.Future:
        """A future of the error code once the records before `offset` are on the whole ISR."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        led = self.led.get(key)
        if led is None:
            future.set_result(Error.NOT_LEADER_OR_FOLLOWER)
            return future
        led.waiting.append((offset, future))
        handle = loop.call_later(timeout_s, lambda: future.done() or future.set_result(Error.REQUEST_TIMED_OUT))
        future.add_done_callback(lambda _: handle.cancel())
        self.advance(key)
        return future

    # --- the ISR ----------------------------------------------------------------------------

    def shrink_lagging(self) -> None:
        """Drop followers that have not caught up within replica.lag.time.max.ms (Kafka's rule)."""
        lag_s = self.broker.config["replica.lag.time.max.ms"] / 1000
        now = time.monotonic()
        for key, led in self.led.items():
            state = self._state(key)
            if state is None:
                continue
            for r in state.isr:
                follower = led.followers.get(r)
                if follower is not None and r not in led.removing and now - follower.caught_up_at > lag_s:
                    log.info("%s-%d: follower %d is %.1fs behind: leaving the ISR", *key, r,
                             now - follower.caught_up_at)
                    self._change_isr(key, led, remove=r)

    def _change_isr(self, key, led: Led, add: int | None = None, remove: int | None = None) -> None:
        (led.adding if add is not None else led.removing).add(add if add is not None else remove)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, self.broker.store.change_isr, key[0], key[1], self.broker.broker_id,
                                   led.leader_epoch, add, remove)

        def done(f) -> None:
            ok = not f.cancelled() and f.exception() is None and f.result()
            if not ok:  # leadership moved on, or ZooKeeper is unreachable: the snapshot decides
                led.adding.discard(add)
                led.removing.discard(remove)
                if f.exception() is not None:
                    log.warning("%s-%d: ISR change failed: %r", *key, f.exception())
                self.advance(key)
        job.add_done_callback(done)

    def _fail_waiting(self, led: Led, error: int) -> None:
        for _, future in led.waiting:
            if not future.done():
                future.set_result(error)
        led.waiting.clear()
