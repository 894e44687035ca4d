"""kafka-broker-api-versions.sh: the API versions each broker of the cluster supports.

librdkafka keeps ApiVersions to itself, so this tool speaks the protocol directly
(josef.client.wire): Metadata on a bootstrap server for the broker list, then ApiVersions on
every broker. Output as Kafka's NodeApiVersions.toString(true); "usable" is the highest
version both the broker and this client (kio's schemas, Kafka 4.x) speak.
"""
from __future__ import annotations

import sys

from josef.cli.common import (
    ArgParser, ToolError, add_bootstrap, bootstrap, load_properties, parse_servers, run, warn,
)

TIMEOUT = 10.0
METADATA = 3

# Kafka's names for API keys kio has no schema for (ZooKeeper-era inter-broker APIs).
_LEGACY_NAMES = {4: "LeaderAndIsr", 5: "StopReplica", 6: "UpdateMetadata", 7: "ControlledShutdown"}

# ApiKeys.clientApis() of Kafka 4.x: the keys a broker listener can serve. Ones a broker
# does not list print as UNSUPPORTED, as Kafka's tool does.
CLIENT_APIS = frozenset([*range(0, 4), *range(8, 52), 55, 57, 60, 61, 65, 66, 68, 69, 71, 72, 74, 75, 76, 77,
                         78, 79, 80, 81, 88, 89, 90, 91, 92])


def api_name(key: int) -> str | None:
    from kio.schema.index import api_key_map
    snake = api_key_map.get(key)
    if snake is None:
        return _LEGACY_NAMES.get(key)
    return "".join(part.capitalize() for part in snake.split("_"))


def format_versions(versions: dict[int, tuple[int, int]]) -> str:
    """The "(\\n\\tProduce(0): 0 to 11 [usable: 11],\\n\\t...\\n)" block for one broker."""
    from josef.client.wire import client_versions
    lines = {}
    for key, (lo, hi) in versions.items():
        name = api_name(key)
        text = f"{name}({key}): " if name else f"UNKNOWN({key}): "
        text += str(lo) if lo == hi else f"{lo} to {hi}"
        ours = client_versions(key)
        if name and ours:
            if ours.stop - 1 < lo:
                text += " [unusable: node too new]"
            elif hi < ours.start:
                text += " [unusable: node too old]"
            else:
                text += f" [usable: {min(ours.stop - 1, hi)}]"
        lines[key] = text
    for key in CLIENT_APIS - versions.keys():
        lines[key] = f"{api_name(key)}({key}): UNSUPPORTED"
    return "(\n\t" + ",\n\t".join(lines[k] for k in sorted(lines)) + "\n)"


def node_text(node_id: int, host: str, port: int, rack: str | None) -> str:
    return f"{host}:{port} (id: {node_id} rack: {rack if rack is not None else 'null'})"


def parser() -> ArgParser:
    p = ArgParser("kafka-broker-api-versions.sh", "This tool helps to retrieve broker version information.")
    add_bootstrap(p)
    p.add_argument("--command-config", metavar="FILE",
                   help="Property file containing configs to be passed to Admin Client.")
    return p


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    servers = bootstrap(args)
    if args.command_config:
        protocol = load_properties(args.command_config).get("security.protocol", "PLAINTEXT").upper()
        if protocol != "PLAINTEXT":
            warn(f"security.protocol={protocol} is not supported by this tool; connecting in plaintext")
    brokers = discover_brokers(servers)
    from josef.client.wire import KafkaConnection, WireError
    for node_id, host, port, rack in sorted(brokers):
        try:
            with KafkaConnection(host, port, TIMEOUT) as conn:
                text = format_versions(conn.api_versions())
        except WireError as e:
            text = f"ERROR: {e}"
        sys.stdout.write(f"{node_text(node_id, host, port, rack)} -> {text}\n")
    return 0


def discover_brokers(servers: str) -> list[tuple[int, str, int, str | None]]:
    """(id, host, port, rack) of every broker, from the first bootstrap server that answers."""
    from josef.client.wire import KafkaConnection, WireError, build, request_class
    last = None
    for host, port in parse_servers(servers):
        try:
            with KafkaConnection(host, port, TIMEOUT) as conn:
                version = conn.best_version(METADATA, conn.api_versions())
                request = build(request_class(METADATA, version), topics=(), allow_auto_topic_creation=False,
                                include_cluster_authorized_operations=False,
                                include_topic_authorized_operations=False)
                response = conn.request(request)
                return [(int(b.node_id), b.host, int(b.port), b.rack) for b in response.brokers]
        except WireError as e:
            last = e
    raise ToolError(str(last) if last else f"could not connect to {servers}")
