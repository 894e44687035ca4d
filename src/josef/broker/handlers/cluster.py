"""DescribeCluster: the brokers, the controller and the cluster id."""
from __future__ import annotations

from josef.broker.handlers import api
from josef.protocol.errors import Error


@api(60, "DescribeCluster", 0, 1)
def handle_describe_cluster(broker, ctx, request):
    snapshot = broker.store.snapshot
    endpoint_type = getattr(request, "endpoint_type", 1)
    if endpoint_type != 1:  # 2 = controllers: a KRaft notion this broker does not have
        return {"throttle_time": 0, "error_code": Error.UNSUPPORTED_ENDPOINT_TYPE,
                "error_message": "The target is not a controller", "endpoint_type": endpoint_type,
                "cluster_id": snapshot.cluster_id, "controller_id": -1, "brokers": [],
                "cluster_authorized_operations": -2147483648}
    return {
        "throttle_time": 0, "error_code": Error.NONE, "error_message": None, "endpoint_type": 1,
        "cluster_id": snapshot.cluster_id, "controller_id": snapshot.controller_id,
        "brokers": [{"broker_id": b.broker_id, "host": b.host, "port": b.port, "rack": b.rack}
                    for b in snapshot.brokers.values()],
        "cluster_authorized_operations": -2147483648,
    }
