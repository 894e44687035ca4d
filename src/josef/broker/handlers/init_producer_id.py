"""InitProducerId: producer ids for idempotent producers.

Transactional ids need the transaction coordinator, which this broker does not have yet;
they are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report as fatal
at once instead of retrying.
"""
from __future__ import annotations

import logging

from josef.broker.handlers import api
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
    return {"throttle_time": 0, "error_code": Error.NONE, "producer_id": broker.store.next_producer_id(),
            "producer_epoch": 0}
