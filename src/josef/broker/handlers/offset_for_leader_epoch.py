"""OffsetForLeaderEpoch: where an epoch ended on this leader, so a follower or a consumer
that saw a leader change can find the point where its log diverges (KIP-101, KIP-320)."""
from __future__ import annotations

from josef.broker.handlers import api


@api(23, "OffsetForLeaderEpoch", 2, 4)
def handle_offset_for_leader_epoch(broker, ctx, request):
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            error, epoch, end_offset = broker.replicas.end_offset_for_epoch(
                topic.topic, p.partition, p.leader_epoch, p.current_leader_epoch)
            partitions.append({"error_code": error, "partition": p.partition,
                               "leader_epoch": epoch, "end_offset": end_offset})
        topics.append({"topic": topic.topic, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}
