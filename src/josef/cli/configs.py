"""kafka-configs.sh (ConfigCommand): describe and alter topic and broker configs.

Flags, argument checks, messages and the --describe layout follow Kafka 3.x's ConfigCommand
with --bootstrap-server:

    Dynamic configs for topic t are:
      retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, DEFAULT_CONFIG:log.retention.hours=168}

Entity types topics and brokers (with --entity-default for the cluster-wide broker default);
the quota and SCRAM types (users, clients, ips) and broker-loggers, client-metrics and groups
are refused with one line.

Two things librdkafka cannot do, so DescribeConfigs and the default-entity alter travel over
josef's own wire client (josef.client.wire): confluent-kafka keys synonyms by name, losing all
but one when a broker config has the same name at several levels (DYNAMIC_BROKER_CONFIG and
DYNAMIC_DEFAULT_BROKER_CONFIG log.retention.ms), and it refuses a broker resource named ""
(the <default> entity). Named entities are altered with AdminClient.incremental_alter_configs.

Broker errors end the tool with one line on stderr, naming the Java exception Kafka's tool
shows (org.apache.kafka.common.errors.InvalidConfigurationException: <broker's message>);
unlike Kafka it does not echo the command line, which may carry passwords.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

from josef.cli.common import (
    ArgParser, ClientErrors, ToolError, check_reachable, fetch_metadata, load_properties, make_client,
    merged_config, run,
)

TIMEOUT = 30.0  # seconds for one admin request

TOPICS, BROKERS = "topics", "brokers"
CLIENTS, USERS, IPS = "clients", "users", "ips"
BROKER_LOGGERS, CLIENT_METRICS, GROUPS = "broker-loggers", "client-metrics", "groups"
# Kafka's BrokerSupportedConfigTypes, in its order (for its "Invalid entity type" message)
KAFKA_ENTITY_TYPES = (TOPICS, CLIENTS, USERS, BROKERS, IPS, BROKER_LOGGERS, CLIENT_METRICS, GROUPS)
SUPPORTED_ENTITY_TYPES = (TOPICS, BROKERS)

# ConfigResource types on the wire
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
# IncrementalAlterConfigs operations
OP_SET, OP_DELETE = 0, 1

# DescribeConfigs config_source ids -> the names of Java's ConfigEntry.ConfigSource, which the tool prints
SOURCE_NAMES = {
    0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
    7: "DYNAMIC_CLIENT_METRICS_CONFIG", 8: "DYNAMIC_GROUP_CONFIG",
}
DYNAMIC_TOPIC_CONFIG, DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG = 1, 2, 3

# Kafka error code -> (Java exception the admin client raises, Kafka's message when the broker sends none)
_E = "org.apache.kafka.common.errors."
KAFKA_ERRORS: dict[int, tuple[str, str]] = {
    -1: (_E + "UnknownServerException", "The server experienced an unexpected error when processing the request."),
    1: (_E + "OffsetOutOfRangeException",
        "The requested offset is not within the range of offsets maintained by the server."),
    3: (_E + "UnknownTopicOrPartitionException", "This server does not host this topic-partition."),
    5: (_E + "LeaderNotAvailableException",
        "There is no leader for this topic-partition as we are in the middle of a leadership election."),
    6: (_E + "NotLeaderOrFollowerException",
        "For requests intended only for the leader, this error indicates that the broker is not the current "
        "leader. For requests intended for any replica, this error indicates that the broker is not a replica "
        "of the topic partition."),
    7: (_E + "TimeoutException", "The request timed out."),
    8: (_E + "BrokerNotAvailableException", "The broker is not available."),
    13: (_E + "NetworkException", "The server disconnected before a response was received."),
    17: (_E + "InvalidTopicException", "The request attempted to perform an operation on an invalid topic."),
    19: (_E + "NotEnoughReplicasException",
         "Messages are rejected since there are fewer in-sync replicas than required."),
    29: (_E + "TopicAuthorizationException", "Topic authorization failed."),
    31: (_E + "ClusterAuthorizationException", "Cluster authorization failed."),
    35: (_E + "UnsupportedVersionException", "The version of API is not supported."),
    40: (_E + "InvalidConfigurationException", "Configuration is invalid."),
    41: (_E + "NotControllerException", "This is not the correct controller for this cluster."),
    42: (_E + "InvalidRequestException",
         "This most likely occurs because of a request being malformed by the client library or the message "
         "was sent to an incompatible broker. See the broker logs for more details."),
    44: (_E + "PolicyViolationException", "Request parameters do not satisfy the configured policy."),
    56: (_E + "KafkaStorageException", "Disk error when trying to access log file on the disk."),
    100: (_E + "UnknownTopicIdException", "This server does not host this topic ID."),
}


def exception_text(code: int, message: str | None = None) -> str:
    """What Java's ExecutionException.getMessage() shows for a broker error: 'Class: message'."""
    cls, default = KAFKA_ERRORS.get(code, (_E + "UnknownServerException", f"Unexpected error code: {code}."))
    return f"{cls}: {message or default}"


def librdkafka_exception_text(err) -> str:
    """exception_text for a confluent_kafka KafkaError (broker codes >= -1, librdkafka's own below)."""
    code, text = err.code(), err.str()
    if code >= -1:
        return exception_text(code, None if text.startswith("Broker: ") else text)
    if err.name() in ("_TIMED_OUT", "_TIMED_OUT_QUEUE"):
        return f"{_E}TimeoutException: {text}"
    return f"org.apache.kafka.common.KafkaException: {text}"


class CommandFailed(ToolError):
    def __init__(self, detail: str):
        super().__init__(f"Error while executing config command: {detail}")


# -- arguments ------------------------------------------------------------------------------------

class _EntityName(argparse.Action):
    """--entity-name N / --entity-default: one list in command-line order ("" for the default entity),
    as Kafka pairs names with --entity-type values; entity_name / entity_default record which was used."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.entity_names = [*namespace.entity_names, values if self.const is None else self.const]
        setattr(namespace, "entity_default" if self.const is not None else "entity_name", True)


# Kafka's shorthand flags: --topic NAME etc. and --broker-defaults etc., with the entity type each stands for
ENTITY_FLAGS = (("topic", TOPICS), ("client", CLIENTS), ("user", USERS), ("broker", BROKERS),
                ("broker-logger", BROKER_LOGGERS), ("ip", IPS), ("client-metrics", CLIENT_METRICS), ("group", GROUPS))
ENTITY_DEFAULT_FLAGS = (("client-defaults", CLIENTS), ("user-defaults", USERS), ("broker-defaults", BROKERS),
                        ("ip-defaults", IPS))


def parser() -> ArgParser:
    p = ArgParser("kafka-configs.sh", "This tool helps to manipulate and describe entity config for a topic, "
                  "client, user, broker, ip, client-metrics or group")
    p.add_argument("--bootstrap-server", metavar="HOST1:PORT1,...", help="The Kafka servers to connect to.")
    p.add_argument("--bootstrap-controller", metavar="HOST1:PORT1,...",
                   help="The Kafka controllers to connect to (not supported: josef has no KRaft controllers).")
    p.add_argument("--zookeeper", metavar="URLS", help="DEPRECATED (not supported: use --bootstrap-server).")
    p.add_argument("--command-config", metavar="FILE",
                   help="Property file containing configs to be passed to Admin Client.")
    p.add_argument("--alter", action="store_true", help="Alter the configuration for the entity.")
    p.add_argument("--describe", action="store_true", help="List configs for the given entity.")
    p.add_argument("--all", action="store_true",
                   help="List all configs for the given entity, including static configs if available.")
    p.add_argument("--entity-type", action="append", default=[],
                   help="Type of entity (topics/clients/users/brokers/broker-loggers/ips/client-metrics/groups)")
    p.set_defaults(entity_name=False, entity_default=False)
    p.add_argument("--entity-name", action=_EntityName, dest="entity_names", default=[], metavar="NAME",
                   help="Name of entity (topic name/client id/user principal name/broker id/ip/client metrics/group id)")
    p.add_argument("--entity-default", action=_EntityName, nargs=0, const="", dest="entity_names",
                   help="Default entity name for clients/users/brokers/ips (applies to corresponding entity type)")
    p.add_argument("--add-config", metavar="k1=v1,k2=[v1,v2],k3=v3",
                   help="Key Value pairs of configs to add. Square brackets can be used to group values which "
                        "contain commas: 'k1=v1,k2=[v1,v2,v2],k3=v3'.")
    p.add_argument("--add-config-file", metavar="FILE",
                   help="Path to a properties file with configs to add. See add-config for a list of valid configurations.")
    p.add_argument("--delete-config", action="append", metavar="k1,k2", help="config keys to remove 'k1,k2'")
    p.add_argument("--force", action="store_true", help="Suppress console prompts")
    for flag, etype in ENTITY_FLAGS:
        p.add_argument(f"--{flag}", metavar="NAME", help=f"The {etype[:-1]} to configure.")
    for flag, etype in ENTITY_DEFAULT_FLAGS:
        p.add_argument(f"--{flag}", action="store_true", help=f"The config defaults for all {etype}.")
    p.add_argument("--zk-tls-config-file", metavar="FILE", help="Accepted for compatibility; only with --zookeeper.")
    return p


def _attr(flag: str) -> str:
    return flag.replace("-", "_")


def entity_types(args) -> list[str]:
    return (list(args.entity_type)
            + [t for f, t in ENTITY_FLAGS if getattr(args, _attr(f)) is not None]
            + [t for f, t in ENTITY_DEFAULT_FLAGS if getattr(args, _attr(f))])


def entity_names(args) -> list[str]:
    return (list(args.entity_names)
            + [getattr(args, _attr(f)) for f, _ in ENTITY_FLAGS if getattr(args, _attr(f)) is not None]
            + ["" for f, _ in ENTITY_DEFAULT_FLAGS if getattr(args, _attr(f))])


def check_args(args) -> None:
    """ConfigCommandOptions.checkArgs, in Kafka's order and with its messages."""
    if int(args.alter) + int(args.describe) != 1:
        raise ToolError("Command must include exactly one action: --describe, --alter")
    if args.describe:
        for attr, flag in (("add_config", "add-config"), ("delete_config", "delete-config")):
            if getattr(args, attr):
                raise ToolError(f'Option "[describe]" can\'t be used with option "[{flag}]"')
    types = entity_types(args)
    dupes = sorted({t for t in types if types.count(t) > 1})
    if dupes:
        raise ToolError(f"Duplicate entity type(s) specified: {','.join(dupes)}")
    # Kafka lists fewer types when --bootstrap-server is missing (its --zookeeper mode); josef has
    # only the bootstrap mode, so a missing --bootstrap-server is reported as such further down.
    for t in types:
        if t not in KAFKA_ENTITY_TYPES:
            raise ToolError(f"Invalid entity type {t}, the entity type must be one of {', '.join(KAFKA_ENTITY_TYPES)} "
                            "with a --bootstrap-server or --bootstrap-controller argument")
    if not types:
        raise ToolError("At least one entity type must be specified")
    if len(types) > 1 and set(types) != {USERS, CLIENTS}:
        raise ToolError(f"Only '{USERS}' and '{CLIENTS}' entity types may be specified together")
    specific = [f for f, _ in ENTITY_FLAGS if getattr(args, _attr(f)) is not None] + \
               [f for f, _ in ENTITY_DEFAULT_FLAGS if getattr(args, _attr(f))]
    if (args.entity_name or args.entity_type or args.entity_default) and specific:
        raise ToolError("--entity-{type,name,default} should not be used in conjunction with specific entity flags")
    names = entity_names(args)
    has_name = any(n != "" for n in names)
    has_default = any(n == "" for n in names)
    connects = sum(x is not None for x in (args.bootstrap_server, args.bootstrap_controller, args.zookeeper))
    if connects == 0:
        raise ToolError("One of the required --bootstrap-server, --bootstrap-controller, or --zookeeper arguments "
                        "must be specified")
    if connects > 1:
        raise ToolError("Only one of --bootstrap-server, --bootstrap-controller, and --zookeeper can be specified")
    if args.all and args.zookeeper is not None:
        raise ToolError("--bootstrap-server must be specified for --all")
    if args.zk_tls_config_file is not None and args.zookeeper is None:
        raise ToolError("Only the --zookeeper option can be used with the --zk-tls-config-file option.")
    if has_name and (BROKERS in types or BROKER_LOGGERS in types):
        for broker_id in [n for n in args.entity_names if n] + [v for v in (args.broker, args.broker_logger) if v]:
            if not re.fullmatch(r"[+-]?\d+", broker_id):
                raise ToolError(f"The entity name for {types[0]} must be a valid integer broker id, but it is: {broker_id}")
    if args.describe:
        if not {USERS, CLIENTS, BROKERS, IPS} & set(types) and args.entity_default:
            raise ToolError(f"--entity-default must not be specified with --describe of {','.join(types)}")
        if BROKER_LOGGERS in types and not has_name:
            raise ToolError(f"An entity name must be specified with --describe of {','.join(types)}")
    if args.alter:
        if {USERS, CLIENTS, BROKERS, IPS} & set(types):
            if not has_name and not has_default:
                raise ToolError("An entity-name or default entity must be specified with --alter of users, clients, "
                                "brokers or ips")
        elif not has_name:
            raise ToolError(f"An entity name must be specified with --alter of {','.join(types)}")
        if args.add_config is not None and args.add_config_file is not None:
            raise ToolError("Only one of --add-config or --add-config-file must be specified")
        if args.add_config is None and args.add_config_file is None and not args.delete_config:
            raise ToolError("At least one of --add-config, --add-config-file, or --delete-config must be specified "
                            "with --alter")


# Kafka splits --add-config at commas outside [...] and each pair at the first '=' outside [...]
_OUTSIDE_BRACKETS = r"(?=[^\]]*(?:\[|$))"


def parse_add_config(text: str | None, path: str | None) -> dict[str, str]:
    """--add-config / --add-config-file as ConfigCommand.parseConfigsToBeAdded reads them."""
    props: dict[str, str] = {}
    if path is not None:
        props.update(load_properties(path))
    if text is not None:
        pairs = [re.split(r"\s*=\s*" + _OUTSIDE_BRACKETS, item) for item in re.split("," + _OUTSIDE_BRACKETS, text)]
        if not all(len(pair) == 2 for pair in pairs):
            raise ToolError('requirement failed: Invalid entity config: all configs to be added must be in the '
                            'format "key=val".')
        for key, value in pairs:
            props[key.strip()] = re.sub(r"[\[\]]", "", value).strip()
    if "message.format.version" in props:
        print(f"WARNING: The configuration message.format.version={props['message.format.version']} is specified. "
              "This configuration will be ignored if the version is newer than the inter.broker.protocol.version "
              "specified in the broker or if the inter.broker.protocol.version is 3.0 or newer. This configuration "
              "is deprecated and it will be removed in Apache Kafka 4.0.")
    for key in props:
        if not re.fullmatch(r"[a-zA-Z0-9._-]*", key):
            raise ToolError(f"Invalid character found for config key: {key}")
    return props


def parse_delete_config(items: list[str] | None) -> list[str]:
    return [k.strip() for item in items or () for k in item.split(",")]


def validate_topic_name(name: str) -> None:
    """Kafka's Topic.validate, which the tool applies before asking the broker."""
    if not name:
        raise ToolError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise ToolError('Topic name cannot be "." or ".."')
    if len(name) > 249:
        raise ToolError(f"Topic name is illegal, it can't be longer than 249 characters, topic name: {name}")
    if not re.fullmatch(r"[a-zA-Z0-9._-]+", name):
        raise ToolError(f'Topic name "{name}" is illegal, it contains a character other than ASCII alphanumerics, '
                        "'.', '_' and '-'")


# -- talking to the cluster -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: int  # DescribeConfigs config_source id (SOURCE_NAMES)
    sensitive: bool
    read_only: bool
    synonyms: list[tuple[int, str, str | None]]  # (source, name, value), most specific first


class Cluster:
    """AdminClient for metadata and named alters; josef's wire client for what librdkafka cannot say."""

    def __init__(self, args, servers: str):
        from confluent_kafka.admin import AdminClient
        self.servers = servers
        errors = ClientErrors()
        conf = merged_config(args, ["command_config"], [])
        conf["bootstrap.servers"] = servers
        self.admin = make_client(AdminClient, conf, errors)
        metadata = fetch_metadata(self.admin, servers, errors=errors)
        self.nodes = {b.id: (b.host, b.port) for b in metadata.brokers.values()}
        self.controller = metadata.controller_id
        self.topics = sorted(metadata.topics)
        self._conns: dict[int, tuple] = {}

    def close(self) -> None:
        for conn, _ in self._conns.values():
            conn.close()

    def broker_ids(self) -> list[int]:
        return sorted(self.nodes)

    def _node_for(self, rtype: int, name: str) -> int:
        if rtype == RESOURCE_BROKER and name:
            node = int(name)
            if node not in self.nodes:
                raise CommandFailed(f"{_E}BrokerNotAvailableException: Broker {node} is not in the cluster "
                                    f"(brokers: {', '.join(map(str, self.broker_ids())) or 'none'})")
            return node
        if self.controller in self.nodes:
            return self.controller
        if not self.nodes:
            raise CommandFailed(f"{_E}BrokerNotAvailableException: no broker is available")
        return min(self.nodes)

    def _connection(self, node: int):
        from josef.client.wire import KafkaConnection, WireError
        if node not in self._conns:
            host, port = self.nodes[node]
            try:
                conn = KafkaConnection(host, port, timeout=TIMEOUT)
                self._conns[node] = (conn, conn.api_versions())
            except WireError as e:
                raise CommandFailed(f"{_E}NetworkException: {e}") from None
        return self._conns[node]

    def _request(self, node: int, api_key: int, body: dict):
        """Send `body` (nested dicts with Kafka's field names) in the best common version."""
        from josef.client.wire import KafkaConnection, WireError, request_class
        from josef.protocol.entities import to_entity
        conn, versions = self._connection(node)
        try:
            version = KafkaConnection.best_version(api_key, versions)
        except WireError:
            raise CommandFailed(exception_text(35, f"Broker {node} does not support API key {api_key}.")) from None
        try:
            return conn.request(to_entity(request_class(api_key, version), body))
        except WireError as e:
            raise CommandFailed(f"{_E}NetworkException: {e}") from None

    def describe(self, rtype: int, name: str, synonyms: bool = True) -> list[ConfigEntry]:
        """DescribeConfigs for one resource; entries sorted by name as the tool prints them."""
        response = self._request(self._node_for(rtype, name), 32, {
            "resources": [{"resource_type": rtype, "resource_name": name, "configuration_keys": None}],
            "include_synonyms": synonyms, "include_documentation": False})
        if len(response.results) != 1:
            raise CommandFailed(exception_text(-1, "DescribeConfigs answered no result for the resource"))
        result = response.results[0]
        if int(result.error_code):
            raise CommandFailed(exception_text(int(result.error_code), result.error_message))
        entries = []
        for c in result.configs:
            source = getattr(c, "config_source", None)
            if source is None:  # v0 has only is_default
                source = 5 if c.is_default else (DYNAMIC_TOPIC_CONFIG if rtype == RESOURCE_TOPIC else 4)
            entries.append(ConfigEntry(c.name, c.value, int(source), bool(c.is_sensitive), bool(c.read_only),
                                       [(int(s.source), s.name, s.value) for s in getattr(c, "synonyms", ())]))
        return sorted(entries, key=lambda e: e.name)

    def alter(self, rtype: int, name: str, sets: dict[str, str], deletes: list[str]) -> None:
        """IncrementalAlterConfigs SET/DELETE: AdminClient for named resources, the wire for <default>."""
        if name:
            self._alter_admin(rtype, name, sets, deletes)
        else:
            self._alter_wire(rtype, name, sets, deletes)

    def _alter_admin(self, rtype, name, sets, deletes) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry as Entry, ConfigResource, ResourceType
        ops = [Entry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sets.items()]
        ops += [Entry(k, "", incremental_operation=AlterConfigOpType.DELETE) for k in deletes]
        rt = ResourceType.TOPIC if rtype == RESOURCE_TOPIC else ResourceType.BROKER
        resource = ConfigResource(rt, name, incremental_configs=ops)
        try:
            futures = self.admin.incremental_alter_configs([resource], request_timeout=TIMEOUT)
            for future in futures.values():
                future.result()
        except KafkaException as e:
            raise CommandFailed(librdkafka_exception_text(e.args[0])) from None

    def _alter_wire(self, rtype, name, sets, deletes) -> None:
        configs = [{"name": k, "config_operation": OP_SET, "value": v} for k, v in sets.items()]
        configs += [{"name": k, "config_operation": OP_DELETE, "value": None} for k in deletes]
        response = self._request(self._node_for(rtype, name), 44, {
            "resources": [{"resource_type": rtype, "resource_name": name, "configs": configs}],
            "validate_only": False})
        for r in response.responses:
            if int(r.error_code):
                raise CommandFailed(exception_text(int(r.error_code), r.error_message))


# -- the tool ---------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    check_args(args)
    if args.zookeeper is not None:
        raise ToolError("--zookeeper is not supported by josef: use --bootstrap-server")
    if args.bootstrap_controller is not None:
        raise ToolError("--bootstrap-controller is not supported by josef (it has no KRaft controllers): "
                        "use --bootstrap-server")
    types, names = entity_types(args), entity_names(args)
    if args.alter and len(types) != len(names):
        raise ToolError("An entity name must be specified for every entity type")
    etype = types[0]
    if etype not in SUPPORTED_ENTITY_TYPES:
        raise ToolError(f"Entity type {etype} is not supported by josef; supported: {', '.join(SUPPORTED_ENTITY_TYPES)}")
    name = names[0] if names else None
    sets: dict[str, str] = {}
    deletes: list[str] = []
    if args.alter:  # parsed before connecting, so mistakes cost no round trip
        sets = parse_add_config(args.add_config, args.add_config_file)
        deletes = parse_delete_config(args.delete_config)
    if etype == TOPICS and name:
        validate_topic_name(name)
    check_reachable(args.bootstrap_server)
    cluster = Cluster(args, args.bootstrap_server)
    try:
        if args.alter:
            alter(cluster, etype, name, sets, deletes)
        else:
            describe(cluster, etype, name, args.all)
    finally:
        cluster.close()
    return 0


def _resource(etype: str) -> int:
    return RESOURCE_TOPIC if etype == TOPICS else RESOURCE_BROKER


def _dynamic_source(etype: str, name: str) -> int:
    if etype == TOPICS:
        return DYNAMIC_TOPIC_CONFIG
    return DYNAMIC_BROKER_CONFIG if name else DYNAMIC_DEFAULT_BROKER_CONFIG


def resource_configs(cluster: Cluster, etype: str, name: str, synonyms: bool, describe_all: bool) -> list[ConfigEntry]:
    """ConfigCommand.getResourceConfig: the entity's entries, only its dynamic ones unless --all."""
    entries = cluster.describe(_resource(etype), name, synonyms)
    if describe_all:
        return entries
    source = _dynamic_source(etype, name)
    return [e for e in entries if e.source == source]


def _text(value) -> str:
    return "null" if value is None else str(value)


def describe(cluster: Cluster, etype: str, name: str | None, describe_all: bool) -> None:
    if name is not None:
        entities = [name]
    elif etype == TOPICS:
        entities = cluster.topics
    else:
        entities = [str(b) for b in cluster.broker_ids()] + [""]
    out = sys.stdout
    for entity in entities:
        entries = resource_configs(cluster, etype, entity, True, describe_all)
        if etype == BROKERS and entity == "":
            out.write(f"Default configs for {etype} in the cluster are:\n")
        else:
            out.write(f"{'All' if describe_all else 'Dynamic'} configs for {etype[:-1]} {entity} are:\n")
        for e in entries:
            synonyms = ", ".join(f"{SOURCE_NAMES.get(s, 'UNKNOWN')}:{n}={_text(v)}" for s, n, v in e.synonyms)
            out.write(f"  {e.name}={_text(e.value)} sensitive={'true' if e.sensitive else 'false'} "
                      f"synonyms={{{synonyms}}}\n")
        out.flush()


def alter(cluster: Cluster, etype: str, name: str, sets: dict[str, str], deletes: list[str]) -> None:
    current = {e.name for e in resource_configs(cluster, etype, name, False, False)}
    missing = [k for k in deletes if k not in current]
    if missing:
        raise ToolError(f"Invalid config(s): {','.join(missing)}")
    cluster.alter(_resource(etype), name, sets, deletes)
    if name:
        print(f"Completed updating config for {etype[:-1]} {name}.")
    else:
        print(f"Completed updating default config for {etype} in the cluster.")
