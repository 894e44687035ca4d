"""Kafka's ZooKeeper layout: paths and the JSON each znode holds, as pure functions.

Kept byte-compatible with Kafka's own formats so that `zkCli.sh get /brokers/ids/1` or
`get /brokers/topics/t/partitions/0/state` reads the same as on a Kafka cluster.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass

from josef.cluster.listeners import Endpoint

BROKER_IDS = "/brokers/ids"
TOPICS = "/brokers/topics"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
REASSIGN = "/admin/reassign_partitions"
DELETE_TOPICS = "/admin/delete_topics"
PREFERRED_ELECTION = "/admin/preferred_replica_election"
TOPIC_CONFIGS = "/config/topics"
BROKER_CONFIGS = "/config/brokers"
CLUSTER_ID = "/cluster/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
DEFAULT_ENTITY = "<default>"

# the persistent paths a Kafka broker creates at start-up
PERSISTENT_PATHS = ("/consumers", BROKER_IDS, TOPICS, "/brokers/seqid", "/config/changes", TOPIC_CONFIGS,
                    "/config/clients", "/config/users", BROKER_CONFIGS, DELETE_TOPICS,
                    "/isr_change_notification", "/log_dir_event_notification", PRODUCER_ID_BLOCK)


def _dump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _now_ms() -> str:
    return str(int(time.time() * 1000))


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{topic}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{TOPICS}/{topic}/partitions/{partition}/state"


def topic_config_path(topic: str) -> str:
    return f"{TOPIC_CONFIGS}/{topic}"


def broker_config_path(entity: str) -> str:
    return f"{BROKER_CONFIGS}/{entity or DEFAULT_ENTITY}"


# --- broker registration -------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    broker_id: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None


def encode_registration(reg: Registration, protocols: dict[str, str]) -> bytes:
    plaintext = next((e for e in reg.endpoints if protocols.get(e.name) == "PLAINTEXT"), None)
    body = {
        "features": {},
        "listener_security_protocol_map": {e.name: protocols.get(e.name, "PLAINTEXT") for e in reg.endpoints},
        "endpoints": [str(e) for e in reg.endpoints],
        "jmx_port": -1,
        "host": plaintext.host if plaintext else None,
        "port": plaintext.port if plaintext else -1,
        "timestamp": _now_ms(),
        "version": 5,
    }
    if reg.rack:
        body["rack"] = reg.rack
    return _dump(body)


def decode_registration(broker_id: int, data: bytes) -> Registration:
    from josef.cluster.listeners import parse_endpoints
    body = json.loads(data)
    return Registration(broker_id, tuple(parse_endpoints(",".join(body.get("endpoints", [])), "endpoints")),
                        body.get("rack"))


# --- topics --------------------------------------------------------------------------

def topic_id_text(topic_id: uuid.UUID) -> str:
    """Kafka writes topic ids as 22 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def topic_id_from_text(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


@dataclass(frozen=True)
class TopicAssignment:
    topic_id: uuid.UUID
    replicas: dict[int, tuple[int, ...]]  # partition -> replicas
    adding: dict[int, tuple[int, ...]]
    removing: dict[int, tuple[int, ...]]


def encode_assignment(a: TopicAssignment) -> bytes:
    def table(d):
        return {str(p): list(r) for p, r in sorted(d.items())}
    return _dump({"partitions": table(a.replicas), "topic_id": topic_id_text(a.topic_id),
                  "adding_replicas": table(a.adding), "removing_replicas": table(a.removing), "version": 3})


def decode_assignment(data: bytes) -> TopicAssignment:
    body = json.loads(data)

    def table(key):
        return {int(p): tuple(r) for p, r in (body.get(key) or {}).items()}
    raw_id = body.get("topic_id")
    topic_id = topic_id_from_text(raw_id) if raw_id else uuid.UUID(int=0)
    return TopicAssignment(topic_id, table("partitions"), table("adding_replicas"), table("removing_replicas"))


@dataclass(frozen=True)
class PartitionState:
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int


def encode_state(s: PartitionState) -> bytes:
    return _dump({"controller_epoch": s.controller_epoch, "leader": s.leader, "version": 1,
                  "leader_epoch": s.leader_epoch, "isr": list(s.isr)})


def decode_state(data: bytes) -> PartitionState:
    body = json.loads(data)
    return PartitionState(body["leader"], body["leader_epoch"], tuple(body["isr"]), body.get("controller_epoch", 0))


# --- controller, configs, cluster id, producer ids -----------------------------------

def encode_controller(broker_id: int) -> bytes:
    return _dump({"version": 1, "brokerid": broker_id, "timestamp": _now_ms()})


def decode_controller(data: bytes | None) -> int:
    if not data:
        return -1
    try:
        return int(json.loads(data)["brokerid"])
    except (ValueError, KeyError, TypeError):
        return -1


def encode_configs(configs: dict[str, str]) -> bytes:
    return _dump({"version": 1, "config": dict(sorted(configs.items()))})


def decode_configs(data: bytes | None) -> dict[str, str]:
    if not data:
        return {}
    return {k: str(v) for k, v in json.loads(data).get("config", {}).items()}


def encode_cluster_id(cluster_id: str) -> bytes:
    return _dump({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes) -> str:
    return json.loads(data)["id"]


def encode_reassignment(moves: dict[tuple[str, int], tuple[int, ...]]) -> bytes:
    return _dump({"version": 1, "partitions": [{"topic": t, "partition": p, "replicas": list(r)}
                                               for (t, p), r in sorted(moves.items())]})


def decode_reassignment(data: bytes | None) -> dict[tuple[str, int], tuple[int, ...]]:
    if not data:
        return {}
    body = json.loads(data)
    return {(m["topic"], int(m["partition"])): tuple(m["replicas"]) for m in body.get("partitions", [])}


def encode_producer_id_block(broker_id: int, start: int, end: int) -> bytes:
    return _dump({"version": 1, "broker": broker_id, "block_start": str(start), "block_end": str(end)})


def decode_producer_id_block_end(data: bytes | None) -> int:
    """The last id handed out so far, -1 if none."""
    if not data:
        return -1
    return int(json.loads(data)["block_end"])
