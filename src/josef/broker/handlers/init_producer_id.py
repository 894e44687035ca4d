"""InitProducerId: producer ids for idempotent producers.

Transactional ids need the transaction coordinator, which this broker does not have yet;
they are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report as fatal
at once instead of retrying.

New ids come from the store where metadata writes run: in a cluster, one in a thousand claims
a new block of ids in ZooKeeper, which must not happen on the event loop.
"""
from __future__ import annotations

import logging

from josef.broker.futures import after
from josef.broker.handlers import api
from josef.cluster.zk_store import MetadataUnavailable
from josef.protocol.errors import Error

log = logging.getLogger("josef.producer_id")


@api(22, "InitProducerId", 0, 4)
def handle_init_producer_id(broker, ctx, request):
    if request.transactional_id is not None:
        log.warning("client %s asked for transactional id %r: transactions are not supported yet",
                    ctx.client_id, request.transactional_id)
        return {"throttle_time": 0, "error_code": Error.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "producer_id": -1, "producer_epoch": -1}
    known_id = getattr(request, "producer_id", -1)
    known_epoch = getattr(request, "producer_epoch", -1)
    if known_id >= 0 and 0 <= known_epoch < 32766:
        # KIP-360: an idempotent producer may bump its own epoch to reset its sequences.
        return {"throttle_time": 0, "error_code": Error.NONE, "producer_id": known_id,
                "producer_epoch": known_epoch + 1}
    write = broker.metadata_writer.submit(broker.store.next_producer_id)

    def answer() -> dict:
        try:
            return {"throttle_time": 0, "error_code": Error.NONE, "producer_id": write.result(), "producer_epoch": 0}
        except MetadataUnavailable:  # no block of ids to be had: the client retries
            return {"throttle_time": 0, "error_code": Error.REQUEST_TIMED_OUT, "producer_id": -1,
                    "producer_epoch": -1}
    return after([write], answer)
