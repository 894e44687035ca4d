"""ListOffsets: earliest, latest, max timestamp, or the first offset at a timestamp."""
from __future__ import annotations

from josef.broker.handlers import api
from josef.protocol.errors import Error


@api(2, "ListOffsets", 1, 8)
def handle_list_offsets(broker, ctx, request):
    topics = []
    seen = set()
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            key = (topic.name, p.partition_index)
            if key in seen:
                error, ts, offset, epoch = Error.INVALID_REQUEST, -1, -1, -1
            else:
                seen.add(key)
                error, ts, offset, epoch = broker.replicas.list_offset(
                    topic.name, p.partition_index, p.timestamp, getattr(p, "current_leader_epoch", -1))
            partitions.append({"partition_index": p.partition_index, "error_code": error,
                               "timestamp": ts, "offset": offset, "leader_epoch": epoch,
                               "old_style_offsets": [offset] if offset >= 0 else []})
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}
