"""Where replicas go and who leads: the controller's decisions as pure functions.

Replica assignment is Kafka's rack-unaware algorithm with the random start fixed at 0,
so partition 0 starts on the lowest broker id and the layout is reproducible.
Leader election follows Kafka's rules: a new leader comes from the in-sync replicas in
assignment order; an out-of-sync one only when unclean election is enabled.
"""
from __future__ import annotations

from typing import NamedTuple

NO_LEADER = -1


def assign_replicas(brokers: list[int], num_partitions: int, replication_factor: int,
                    first_partition: int = 0, start_index: int = 0) -> dict[int, tuple[int, ...]]:
    """Spread partitions round-robin over `brokers`, followers shifted as Kafka does."""
    ordered = sorted(brokers)
    n = len(ordered)
    if replication_factor > n:
        raise ValueError(f"replication factor {replication_factor} larger than the {n} available brokers")
    shift = start_index
    out = {}
    for partition in range(first_partition, first_partition + num_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        replicas = [ordered[first]]
        for j in range(replication_factor - 1):
            replicas.append(ordered[(first + 1 + (shift + j) % (n - 1)) % n])
        out[partition] = tuple(replicas)
    return out


class Leadership(NamedTuple):
    leader: int
    isr: tuple[int, ...]


def elect(replicas: tuple[int, ...], isr: tuple[int, ...], live: set[int], unclean: bool = False,
          candidates: tuple[int, ...] | None = None) -> Leadership | None:
    """The leader and ISR after choosing among `candidates` (default: all replicas).

    None when nobody may lead: the caller marks the partition offline and keeps its ISR.
    """
    live_isr = tuple(r for r in isr if r in live)
    for r in candidates or replicas:
        if r in live_isr:
            return Leadership(r, live_isr)
    if unclean:
        for r in candidates or replicas:
            if r in live:
                return Leadership(r, (r,))
    return None


def after_broker_changes(replicas: tuple[int, ...], leader: int, isr: tuple[int, ...], live: set[int],
                         unclean: bool = False) -> Leadership:
    """The partition's leadership once the live brokers are `live`.

    A dead leader is replaced from the ISR; dead followers leave the ISR; when no in-sync
    replica is alive the partition goes offline (leader -1) and keeps its ISR, so the
    last in-sync replica leads again when it returns.
    """
    if leader in live:
        return Leadership(leader, tuple(r for r in isr if r in live) or (leader,))
    chosen = elect(replicas, isr, live, unclean)
    if chosen is not None:
        return chosen
    return Leadership(NO_LEADER, isr)


def preferred_leader(replicas: tuple[int, ...], leader: int, isr: tuple[int, ...], live: set[int]) -> int | None:
    """The preferred replica if it should take over now, else None."""
    if not replicas:
        return None
    preferred = replicas[0]
    if preferred != leader and preferred in live and preferred in isr:
        return preferred
    return None


def imbalanced_brokers(partitions: list[tuple[tuple[int, ...], int]], percentage: int) -> set[int]:
    """Brokers whose share of not-led preferred partitions exceeds `percentage` (Kafka's check)."""
    preferred: dict[int, int] = {}
    not_led: dict[int, int] = {}
    for replicas, leader in partitions:
        if not replicas:
            continue
        p = replicas[0]
        preferred[p] = preferred.get(p, 0) + 1
        if leader != p:
            not_led[p] = not_led.get(p, 0) + 1
    return {b for b, total in preferred.items() if not_led.get(b, 0) * 100 > percentage * total}


class Move(NamedTuple):
    replicas: tuple[int, ...]  # while the move runs: the target first, then the ones leaving
    adding: tuple[int, ...]
    removing: tuple[int, ...]


def reassignment(original: tuple[int, ...], target: tuple[int, ...]) -> Move:
    """The replica set of a partition moving from `original` to `target`, as Kafka's KIP-455."""
    return Move(tuple(dict.fromkeys(target + original)), tuple(r for r in target if r not in original),
                tuple(r for r in original if r not in target))
