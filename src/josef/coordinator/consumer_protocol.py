"""What a "consumer" group's members subscribe to, read from their join metadata.

Kafka's ConsumerProtocolSubscription: int16 version, then an array (int32 count) of
int16-length topic names; later versions append fields we do not need.
"""
from __future__ import annotations

import struct


def decode_subscription(metadata: bytes) -> list[str]:
    """The topics of one member's subscription; ValueError when the bytes are not one."""
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        if count < 0 or count > len(metadata):
            raise ValueError(f"bad topic count {count}")
        pos, topics = 6, []
        for _ in range(count):
            (size,) = struct.unpack_from(">h", metadata, pos)
            if size < 0 or pos + 2 + size > len(metadata):
                raise ValueError("bad topic name length")
            topics.append(metadata[pos + 2:pos + 2 + size].decode())
            pos += 2 + size
        return topics
    except (struct.error, UnicodeDecodeError) as e:
        raise ValueError(str(e)) from None


def subscribed_topics(group) -> set[str] | None:
    """Union of the members' subscriptions; None when the group is not a consumer group
    (its metadata cannot be read), as Kafka then cannot tell either."""
    if not group.members:
        return set()
    if group.protocol_type != "consumer" or group.protocol_name is None:
        return None
    topics: set[str] = set()
    try:
        for member in group.members.values():
            chosen = dict(member.protocols).get(group.protocol_name)
            if chosen is not None:
                topics.update(decode_subscription(chosen))
    except ValueError:
        return None
    return topics
