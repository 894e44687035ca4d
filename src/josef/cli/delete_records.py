"""kafka-delete-records.sh (DeleteRecordsCommand): delete records below an offset per partition.

    $ kafka-delete-records.sh --bootstrap-server localhost:9092 --offset-json-file offsets.json
    Executing records delete operation
    Records delete operation completed:
    partition: t-0	low_watermark: 5
    partition: t-1	error: org.apache.kafka.common.errors.OffsetOutOfRangeException: The requested offset ...

The JSON file is Kafka's: {"partitions": [{"topic": "t", "partition": 0, "offset": 5}], "version": 1};
offset -1 means the high watermark. As in Kafka, a partition the broker refuses is reported on
its line and the tool still exits 0; a bad file or flag is one line on stderr and exit 1.
Unlike Kafka's admin client, which retries an unknown topic until its timeout, a partition that
is not in the cluster's metadata is reported at once (UnknownTopicOrPartitionException).
"""
from __future__ import annotations

import json
import sys

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, add_bootstrap, bootstrap, check_reachable, fetch_metadata, make_client,
    merged_config, require, run,
)
from josef.cli.configs import exception_text, librdkafka_exception_text

TIMEOUT = 30.0
EARLIEST_VERSION = 1


def parser() -> ArgParser:
    p = ArgParser("kafka-delete-records.sh", "This tool helps to delete records of the given partitions down to "
                  "the specified offset.")
    add_bootstrap(p)
    p.add_argument("--offset-json-file", metavar="FILE",
                   help='REQUIRED: The JSON file with offset per partition. The format to use is: '
                        '{"partitions": [{"topic": "foo", "partition": 1, "offset": 1}], "version":1}')
    p.add_argument("--command-config", metavar="FILE",
                   help="A property file containing configs to be passed to Admin Client.")
    return p


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    require(args, "bootstrap-server", "offset-json-file")
    servers = bootstrap(args)
    try:
        with open(args.offset_json_file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ToolError(f"cannot read offset json file {args.offset_json_file}: {e.strerror or e}") from None
    offsets = parse_offset_json(text)
    check_reachable(servers)
    from confluent_kafka.admin import AdminClient
    errors = ClientErrors()
    conf = merged_config(args, ["command_config"], [])
    conf["bootstrap.servers"] = servers
    admin = make_client(AdminClient, conf, errors)
    metadata = fetch_metadata(admin, servers, errors=errors)
    execute(admin, metadata, offsets)
    return 0


def _field(entry: dict, name: str, kind: type, kind_name: str):
    if name not in entry:
        raise ToolError(f"No such field exists: `{name}`")
    value = entry[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ToolError(f"Expected `{kind_name}` value, received {json.dumps(value)}")
    return value


def parse_offset_json(text: str) -> list[tuple[str, int, int]]:
    """[(topic, partition, offset)] in file order; Kafka's messages for a file it would refuse."""
    try:
        js = json.loads(text)
    except ValueError:
        raise ToolError("The input string is not a valid JSON") from None
    if not isinstance(js, dict):
        raise ToolError(f"Expected JSON object, received {json.dumps(js)}")
    version = js.get("version", EARLIEST_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ToolError(f"Expected `Int` value, received {json.dumps(version)}")
    if version != 1:
        raise ToolError(f"Not supported version field value {version}")
    if "partitions" not in js:
        raise ToolError("Missing partitions field")
    partitions = js["partitions"]
    if not isinstance(partitions, list):
        raise ToolError(f"Expected JSON array, received {json.dumps(partitions)}")
    result: list[tuple[str, int, int]] = []
    for entry in partitions:
        if not isinstance(entry, dict):
            raise ToolError(f"Expected JSON object, received {json.dumps(entry)}")
        result.append((_field(entry, "topic", str, "String"), _field(entry, "partition", int, "Int"),
                       _field(entry, "offset", int, "Long")))
    seen, dupes = set(), []
    for topic, partition, _ in result:
        if (topic, partition) in seen and f"{topic}-{partition}" not in dupes:
            dupes.append(f"{topic}-{partition}")
        seen.add((topic, partition))
    if dupes:
        raise ToolError(f"Offset json file contains duplicate topic partitions: {','.join(dupes)}")
    return result


def execute(admin, metadata, offsets: list[tuple[str, int, int]]) -> None:
    from confluent_kafka import KafkaException, TopicPartition
    out = sys.stdout
    out.write("Executing records delete operation\n")
    out.flush()
    known = {(t, p) for t, tm in metadata.topics.items() if tm.error is None for p in tm.partitions}
    wanted = [TopicPartition(t, p, o) for t, p, o in offsets if (t, p) in known]
    results: dict[tuple[str, int], str] = {}
    if wanted:
        futures = admin.delete_records(wanted, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
        for tp, future in futures.items():
            try:
                results[(tp.topic, tp.partition)] = f"low_watermark: {future.result().low_watermark}"
            except KafkaException as e:
                results[(tp.topic, tp.partition)] = f"error: {librdkafka_exception_text(e.args[0])}"
    out.write("Records delete operation completed:\n")
    for topic, partition, _ in offsets:
        line = results.get((topic, partition), f"error: {exception_text(3)}")
        out.write(f"partition: {topic}-{partition}\t{line}\n")
    out.flush()
