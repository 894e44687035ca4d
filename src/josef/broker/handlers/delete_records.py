"""DeleteRecords: move a partition's log start offset forward (-1 = its high watermark)."""
from __future__ import annotations

from josef.broker.handlers import api


@api(21, "DeleteRecords", 0, 2)
def handle_delete_records(broker, ctx, request):
    return {"throttle_time": 0, "topics": [
        {"name": t.name, "partitions": [
            dict(zip(("partition_index", "error_code", "low_watermark"),
                     (p.partition_index, *broker.replicas.delete_records(t.name, p.partition_index, p.offset))))
            for p in t.partitions]}
        for t in request.topics]}
