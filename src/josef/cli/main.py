"""`josef <tool> [args]` and the Kafka-named scripts (kafka-topics.sh, ...).

Imports stay lazy: `josef serve` must not pay for argparse, kio or librdkafka before the
broker starts, and each tool loads only its own module. A tool is a module in josef.cli with
`main(argv: list[str]) -> int`; new tools only need an entry in TOOLS.
"""
from __future__ import annotations

import importlib
import sys

# tool name -> (module, one-line description)
TOOLS: dict[str, tuple[str, str]] = {
    "serve": ("josef.cli.serve", "Run a single broker (embedded metadata) and the REST Proxy."),
    "broker": ("josef.cli.broker", "Run one broker of a ZooKeeper-coordinated cluster."),
    "rest-proxy": ("josef.cli.rest_proxy", "Run the Confluent-compatible REST Proxy."),
    "cluster": ("josef.cli.cluster", "Run the local ZooKeeper + brokers + REST Proxy topology."),
    "topics": ("josef.cli.topics", "Create, delete, describe, or change a topic (kafka-topics.sh)."),
    "console-producer": ("josef.cli.console_producer", "Write lines from stdin to a topic."),
    "console-consumer": ("josef.cli.console_consumer", "Print records of topics to stdout."),
    "consumer-groups": ("josef.cli.consumer_groups", "List, describe, reset consumer groups."),
    "configs": ("josef.cli.configs", "Describe and alter topic and broker configs."),
    "reassign-partitions": ("josef.cli.reassign_partitions", "Move partition replicas between brokers."),
    "leader-election": ("josef.cli.leader_election", "Elect preferred or unclean leaders."),
    "get-offsets": ("josef.cli.get_offsets", "Print topic:partition:offset for a time (kafka-get-offsets.sh)."),
    "delete-records": ("josef.cli.delete_records", "Delete records below an offset."),
    "dump-log": ("josef.cli.dump_log", "Print the contents of log segment and index files."),
    "producer-perf-test": ("josef.cli.producer_perf_test", "Measure producer throughput."),
    "consumer-perf-test": ("josef.cli.consumer_perf_test", "Measure consumer throughput."),
    "broker-api-versions": ("josef.cli.broker_api_versions", "Print the API versions every broker supports."),
}


def _available(module: str) -> bool:
    from importlib.util import find_spec
    try:
        return find_spec(module) is not None
    except ImportError:
        return False


def _usage() -> str:
    lines = ["usage: josef <tool> [options]     (josef <tool> --help for a tool's options)", "", "tools:"]
    width = max(map(len, TOOLS))
    for name, (module, text) in TOOLS.items():
        if _available(module):
            lines.append(f"  {name:<{width}}  {text}")
    return "\n".join(lines)


def run_tool(name: str, argv: list[str]) -> int:
    entry = TOOLS.get(name)
    if entry is None or not _available(entry[0]):
        print(f"josef: unknown tool '{name}' (josef --help lists the tools)", file=sys.stderr)
        return 1
    try:
        return importlib.import_module(entry[0]).main(argv) or 0
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 1
    if argv[0] == "--version":
        from importlib.metadata import version
        print(f"josef {version('josef')}")
        return 0
    return run_tool(argv[0], argv[1:])


def _script(name: str):
    def entry() -> int:
        return run_tool(name, sys.argv[1:])
    entry.__name__ = "kafka_" + name.replace("-", "_")
    return entry


kafka_topics = _script("topics")
kafka_console_producer = _script("console-producer")
kafka_console_consumer = _script("console-consumer")
kafka_get_offsets = _script("get-offsets")
kafka_broker_api_versions = _script("broker-api-versions")
kafka_dump_log = _script("dump-log")
kafka_consumer_groups = _script("consumer-groups")
kafka_configs = _script("configs")
kafka_reassign_partitions = _script("reassign-partitions")
kafka_leader_election = _script("leader-election")
kafka_delete_records = _script("delete-records")
kafka_producer_perf_test = _script("producer-perf-test")
kafka_consumer_perf_test = _script("consumer-perf-test")

if __name__ == "__main__":
    sys.exit(main())
