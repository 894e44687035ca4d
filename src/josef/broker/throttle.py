"""Replication throttles, as Kafka's: a bytes-per-second quota for the replicas a topic
lists in `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`
("partition:broker,...", or "*" for all), set by `kafka-reassign-partitions.sh --throttle`.
"""
from __future__ import annotations

import time

UNLIMITED = 2**63 - 1


def is_throttled(spec, partition: int, broker_id: int) -> bool:
    """Whether `broker_id`'s replica of `partition` is in a throttled-replicas list."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec or "").split(",")
    for item in (i.strip() for i in items):
        if item == "*":
            return True
        p, sep, b = item.partition(":")
        if sep and p.strip() == str(partition) and b.strip() == str(broker_id):
            return True
    return False


class Quota:
    """A token bucket one second deep: bytes may be spent while the balance is positive."""

    def __init__(self):
        self.balance = 0.0
        self.updated = time.monotonic()

    def _refill(self, rate: int) -> None:
        now = time.monotonic()
        self.balance = min(float(rate), self.balance + (now - self.updated) * rate)
        self.updated = now

    def available(self, rate: int) -> bool:
        if rate >= UNLIMITED:
            return True
        self._refill(rate)
        return self.balance > 0

    def spend(self, size: int, rate: int) -> None:
        if rate < UNLIMITED:
            self._refill(rate)
            self.balance -= size
