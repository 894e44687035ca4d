"""Rebuild committed offsets and classic-group metadata from ``__consumer_offsets`` records.

Pure: takes the ``(key, value)`` pairs of one partition in log order and returns the state, as
Kafka's loader (``GroupMetadataManager.loadGroupsAndOffsets`` / ``GroupCoordinatorShard.replay``)
rebuilds it:

- an offset commit record sets ``(group, topic, partition)``; a later one replaces it; an offset
  tombstone deletes it;
- a group metadata record sets the group; a group tombstone deletes the group's metadata only.
  Its committed offsets stay: Kafka replays offsets independently of group metadata and loads a
  group that has offsets but no metadata as an Empty group. (When Kafka deletes a group, it writes
  an offset tombstone for each of its offsets before the group tombstone.)
- keys of other record types (KIP-848 consumer groups, KIP-932 share groups, unknown versions)
  are skipped, as Kafka's classic loader skips them.
- a record that cannot be decoded is skipped with a warning (Kafka would fail the whole load;
  josef keeps the rest of the partition available).

Transactional offset commits are the caller's business: feed only records that count, i.e. those
of non-transactional batches and of transactions whose COMMIT marker was seen (in marker order),
and no control records.
"""
from __future__ import annotations

import logging
from typing import Iterable, NamedTuple

from josef.coordinator.offsets_format import (
    GroupKey, OffsetKey, OffsetValue, decode_group_value, decode_key, decode_offset_value,
)

__all__ = ["OffsetsState", "replay"]

log = logging.getLogger(__name__)


class OffsetsState(NamedTuple):
    offsets: dict[tuple[str, str, int], OffsetValue]
    groups: dict[str, dict]


def replay(records: Iterable[tuple[bytes | None, bytes | None]]) -> OffsetsState:
    offsets: dict[tuple[str, str, int], OffsetValue] = {}
    groups: dict[str, dict] = {}
    for index, (key, value) in enumerate(records):
        if key is None:
            log.warning("__consumer_offsets record #%d has no key; skipped", index)
            continue
        try:
            decoded = decode_key(key)
        except ValueError as exc:
            log.warning("__consumer_offsets record #%d: corrupt key skipped: %s", index, exc)
            continue
        if decoded is None:
            log.debug("__consumer_offsets record #%d: record type not loaded by josef; skipped", index)
            continue
        try:
            if isinstance(decoded, OffsetKey):
                tp = (decoded.group, decoded.topic, decoded.partition)
                if value is None:
                    offsets.pop(tp, None)
                else:
                    offsets[tp] = decode_offset_value(value)
            elif isinstance(decoded, GroupKey):
                if value is None:
                    groups.pop(decoded.group, None)
                else:
                    groups[decoded.group] = decode_group_value(value)
        except ValueError as exc:
            log.warning("__consumer_offsets record #%d (%r): corrupt value skipped: %s", index, decoded, exc)
    return OffsetsState(offsets, groups)
