"""kafka-leader-election.sh (LeaderElectionCommand): elect preferred or unclean leaders.

    josef leader-election --bootstrap-server H:P --election-type PREFERRED --all-topic-partitions
    josef leader-election --bootstrap-server H:P --election-type preferred --topic t --partition 0
    josef leader-election --bootstrap-server H:P --election-type UNCLEAN --path-to-json-file f.json
        f.json: {"partitions": [{"topic": "foo", "partition": 1}, {"topic": "foobar", "partition": 2}]}

Flags, checks, output lines and exit status follow Kafka 3.x's tool:

    Successfully completed leader election (PREFERRED) for partitions t-0, t-2
    Valid replica already elected for partitions t-1
    Error completing leader election (PREFERRED) for partition: t-3: org.apache.kafka.common.errors.<Exception>: <message>

and, when any partition failed, "<n> replica(s) could not be elected" on stderr with status 1.
Partitions are listed sorted (Kafka prints them in hash order). As in Kafka, an election over all
partitions (--all-topic-partitions) reports only the partitions that changed or failed: a broker
leaves out those whose leader is already the right one.

ElectLeaders (API 43) travels over josef's wire client to the bootstrap broker, and to the
controller named by Metadata when a broker answers NOT_CONTROLLER.
"""
from __future__ import annotations

import argparse
import sys

from josef.cli.common import ArgParser, ToolError, parse_servers, run
from josef.cli.reassign_partitions import (
    Admin, KafkaFailure, _array, _field, _int, _object, _str, parse_json, read_file, set_text, tp_text,
)

ELECTION_TYPES = {"PREFERRED": 0, "UNCLEAN": 1}
ELECTION_NOT_NEEDED = 84
CLUSTER_AUTHORIZATION_FAILED = 31
REQUEST_TIMED_OUT = 7


def parser() -> ArgParser:
    p = ArgParser("leader-election", "This tool attempts to elect a new leader for a set of topic partitions. The "
                                     "type of elections supported are preferred replicas and unclean replicas.")
    a = p.add_argument
    a("--bootstrap-server", metavar="host:port",
      help="A hostname and port for the broker to connect to, in the form host:port. Multiple comma separated URLs "
           "can be given. REQUIRED.")
    a("--admin.config", dest="admin_config", metavar="config file",
      help="Configuration properties files to pass to the admin client")
    a("--path-to-json-file", metavar="Path to JSON file",
      help='The JSON file with the list of partition for which leader elections should be performed. This is an '
           'example format. {"partitions": [{"topic": "foo", "partition": 1}, {"topic": "foobar", "partition": 2}]} '
           "Not allowed if --all-topic-partitions or --topic flags are specified.")
    a("--topic", metavar="topic name",
      help="Name of topic for which to perform an election. Not allowed if --path-to-json-file or "
           "--all-topic-partitions is specified.")
    a("--partition", metavar="partition id", type=int,
      help="Partition id for which to perform an election. REQUIRED if --topic is specified.")
    a("--all-topic-partitions", action="store_true",
      help="Perform election on all of the eligible topic partitions based on the type of election (see the "
           "--election-type flag). Not allowed if --topic or --path-to-json-file is specified.")
    a("--election-type", metavar="election type",
      help='Type of election to attempt. Possible values are "preferred" for preferred leader election or '
           '"unclean" for unclean leader election. If preferred election is selection, the election is only '
           "performed if the current leader is not the preferred leader for the topic partition. If unclean "
           "election is selected, the election is only performed if there are no leader for the topic partition. "
           "REQUIRED.")
    return p


def check_args(args: argparse.Namespace) -> str:
    """LeaderElectionCommandOptions.validate; returns the election type's name (PREFERRED or UNCLEAN)."""
    missing = [name for name, value in (("bootstrap-server", args.bootstrap_server),
                                        ("election-type", args.election_type)) if value is None]
    if missing:
        raise ToolError("Missing required option(s): " + ", ".join(missing))
    exclusive = (args.topic is not None) + bool(args.all_topic_partitions) + (args.path_to_json_file is not None)
    if exclusive != 1:
        raise ToolError("One and only one of the following options is required: "
                        "topic, all-topic-partitions, path-to-json-file")
    if args.topic is not None and args.partition is None:
        raise ToolError("Missing required option(s): partition")
    if args.topic is None and args.partition is not None:
        raise ToolError("Option partition is only allowed if topic is used")
    election = args.election_type.strip().upper()
    if election not in ELECTION_TYPES:
        raise ToolError(f"Value [{args.election_type}] for option [election-type] is not one of "
                        "[PREFERRED, UNCLEAN]")
    parse_servers(args.bootstrap_server)
    return election


def parse_election_json(text: str) -> set[tuple[str, int]]:
    """parseReplicaElectionData: {"partitions": [{"topic": ..., "partition": ...}, ...]} without duplicates."""
    js = _object(parse_json(text))
    if js.get("partitions") is None:
        raise ToolError('Replica election data is missing "partitions" field')
    partitions = [(_str(_field(_object(p), "topic")), _int(_field(p, "partition"))) for p in _array(js["partitions"])]
    seen, dups = set(), set()
    for tp in partitions:
        (dups if tp in seen else seen).add(tp)
    if dups:
        raise ToolError("Replica election data contains duplicate partitions: "
                        + set_text(tp_text(tp) for tp in sorted(dups)))
    return seen


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    election = check_args(args)
    partitions = None  # all of them
    if args.path_to_json_file is not None:
        partitions = parse_election_json(read_file(args.path_to_json_file))
    elif args.topic is not None:
        partitions = {(args.topic, args.partition)}
    try:
        with Admin(args.bootstrap_server, args.admin_config, client_id="leader-election-tool") as admin:
            results = admin.elect_leaders(ELECTION_TYPES[election], partitions)
    except KafkaFailure as e:
        if e.code == REQUEST_TIMED_OUT:
            print("Timeout waiting for election results")
            raise ToolError("Timeout waiting for election results") from None
        if e.code == CLUSTER_AUTHORIZATION_FAILED:
            print("Not authorized to perform leader election")
            raise ToolError("Not authorized to perform leader election") from None
        raise ToolError(f"Error: {e}") from None
    return report(election, results)


def report(election: str, results: dict[tuple[str, int], KafkaFailure | None]) -> int:
    """electLeaders' output: elected, already elected (ELECTION_NOT_NEEDED), then one line per failure."""
    succeeded = sorted(tp for tp, error in results.items() if error is None)
    noop = sorted(tp for tp, error in results.items() if error is not None and error.code == ELECTION_NOT_NEEDED)
    failed = sorted(tp for tp, error in results.items() if error is not None and error.code != ELECTION_NOT_NEEDED)
    if succeeded:
        print(f"Successfully completed leader election ({election}) for partitions "
              + ", ".join(map(tp_text, succeeded)))
    if noop:
        print("Valid replica already elected for partitions " + ", ".join(map(tp_text, noop)))
    for tp in failed:
        print(f"Error completing leader election ({election}) for partition: {tp_text(tp)}: {results[tp]}")
    if failed:
        sys.stdout.flush()
        raise ToolError(f"{len(failed)} replica(s) could not be elected")
    return 0
