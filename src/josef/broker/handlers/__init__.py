"""Request handlers, one module per API family, registered by API key.

A handler is either *decoded*: it receives the kio request entity and returns the
response as a dict (or a future of one), which the dispatcher turns into the version's
response entity; or *raw*: it receives the frame and returns the encoded answer itself
(the hot path: Produce and Fetch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Handler:
    api_key: int
    name: str
    min_version: int
    max_version: int
    fn: Callable
    raw: bool = False


REGISTRY: dict[int, Handler] = {}


def api(api_key: int, name: str, min_version: int, max_version: int, *, raw: bool = False):
    """Register the decorated function as the handler of `api_key` for the given versions."""

    def register(fn):
        REGISTRY[api_key] = Handler(api_key, name, min_version, max_version, fn, raw)
        return fn

    return register


def load_all() -> dict[int, Handler]:
    from josef.broker.handlers import (  # noqa: F401  (importing registers them)
        api_versions, cluster, configs, delete_records, fetch, groups, init_producer_id, list_offsets, metadata,
        offset_for_leader_epoch, offsets, produce, reassignments, topics,
    )
    return REGISTRY
