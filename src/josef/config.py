"""Broker and topic configuration: Kafka's names, types and defaults, with validation.

A broker config comes from a `server.properties` file, then `--override k=v`, then the
flags of `josef serve`; later sources win. Topic configs default to the broker's
`log.*` synonyms, as in Kafka.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A config value Kafka would refuse (INVALID_CONFIG on the wire, a message in the CLI)."""


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: str  # int | long | bool | string | list | double | class
    default: object
    doc: str = ""
    choices: tuple = ()
    minimum: int | None = None


def _parse(defn: ConfigDef, raw) -> object:
    if raw is None:
        return None
    if defn.type in ("int", "long", "short"):
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: Not a number of type {defn.type.upper()}") from None
        limit = {"int": INT_MAX, "short": 2**15 - 1, "long": LONG_MAX}[defn.type]
        if not -limit - 1 <= value <= limit:
            raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: Not a number of type {defn.type.upper()}")
        if defn.minimum is not None and value < defn.minimum:
            raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: Value must be at least {defn.minimum}")
        return value
    if defn.type == "double":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: Not a number of type DOUBLE") from None
    if defn.type == "bool":
        text = str(raw).strip().lower()
        if text not in ("true", "false"):
            raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: Expected value to be either true or false")
        return text == "true"
    if defn.type == "list":
        items = [part.strip() for part in str(raw).split(",") if part.strip()]
        for item in items:
            if defn.choices and item not in defn.choices:
                raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: String must be one of: {', '.join(defn.choices)}")
        return items
    text = str(raw).strip()
    if defn.choices and text not in defn.choices:
        raise ConfigError(f"Invalid value {raw} for configuration {defn.name}: String must be one of: {', '.join(defn.choices)}")
    return text


def _table(*defs: ConfigDef) -> dict[str, ConfigDef]:
    return {d.name: d for d in defs}


# Topic configs this broker honours, each with the broker config it defaults from.
TOPIC_CONFIGS = _table(
    ConfigDef("cleanup.policy", "list", "delete", choices=("delete", "compact")),
    ConfigDef("compression.type", "string", "producer",
              choices=("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
    ConfigDef("delete.retention.ms", "long", 86400000, minimum=0),
    ConfigDef("file.delete.delay.ms", "long", 60000, minimum=0),
    ConfigDef("flush.messages", "long", LONG_MAX, minimum=1),
    ConfigDef("flush.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("follower.replication.throttled.replicas", "list", ""),
    ConfigDef("leader.replication.throttled.replicas", "list", ""),
    ConfigDef("local.retention.bytes", "long", -2),
    ConfigDef("local.retention.ms", "long", -2),
    ConfigDef("message.downconversion.enable", "bool", True),
    ConfigDef("message.format.version", "string", "3.0-IV1"),
    ConfigDef("message.timestamp.difference.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("remote.storage.enable", "bool", False),
    ConfigDef("index.interval.bytes", "int", 4096, minimum=0),
    ConfigDef("max.compaction.lag.ms", "long", LONG_MAX, minimum=1),
    ConfigDef("max.message.bytes", "int", 1048588, minimum=0),
    ConfigDef("message.timestamp.type", "string", "CreateTime", choices=("CreateTime", "LogAppendTime")),
    ConfigDef("message.timestamp.before.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("message.timestamp.after.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("min.cleanable.dirty.ratio", "double", 0.5),
    ConfigDef("min.compaction.lag.ms", "long", 0, minimum=0),
    ConfigDef("min.insync.replicas", "int", 1, minimum=1),
    ConfigDef("preallocate", "bool", False),
    ConfigDef("retention.bytes", "long", -1),
    ConfigDef("retention.ms", "long", 604800000, minimum=-1),
    ConfigDef("segment.bytes", "int", 1073741824, minimum=14),
    ConfigDef("segment.index.bytes", "int", 10485760, minimum=4),
    ConfigDef("segment.jitter.ms", "long", 0, minimum=0),
    ConfigDef("segment.ms", "long", 604800000, minimum=1),
    ConfigDef("unclean.leader.election.enable", "bool", False),
)

# topic config -> the broker config whose value is its default
TOPIC_SYNONYMS = {
    "cleanup.policy": "log.cleanup.policy",
    "compression.type": "compression.type",
    "delete.retention.ms": "log.cleaner.delete.retention.ms",
    "file.delete.delay.ms": "log.segment.delete.delay.ms",
    "flush.messages": "log.flush.interval.messages",
    "flush.ms": "log.flush.interval.ms",
    "index.interval.bytes": "log.index.interval.bytes",
    "max.compaction.lag.ms": "log.cleaner.max.compaction.lag.ms",
    "max.message.bytes": "message.max.bytes",
    "message.timestamp.type": "log.message.timestamp.type",
    "message.timestamp.after.max.ms": "log.message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms": "log.message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms": "log.message.timestamp.difference.max.ms",
    "message.downconversion.enable": "log.message.downconversion.enable",
    "message.format.version": "log.message.format.version",
    "local.retention.bytes": "log.local.retention.bytes",
    "local.retention.ms": "log.local.retention.ms",
    "min.cleanable.dirty.ratio": "log.cleaner.min.cleanable.ratio",
    "min.compaction.lag.ms": "log.cleaner.min.compaction.lag.ms",
    "min.insync.replicas": "min.insync.replicas",
    "preallocate": "log.preallocate",
    "retention.bytes": "log.retention.bytes",
    "retention.ms": "log.retention.ms",
    "segment.bytes": "log.segment.bytes",
    "segment.index.bytes": "log.index.size.max.bytes",
    "segment.jitter.ms": "log.roll.jitter.ms",
    "segment.ms": "log.roll.ms",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
}

BROKER_CONFIGS = _table(
    ConfigDef("broker.id", "int", 1, minimum=-1),
    ConfigDef("node.id", "int", None),
    ConfigDef("listeners", "string", "PLAINTEXT://127.0.0.1:9092"),
    ConfigDef("advertised.listeners", "string", None),
    ConfigDef("listener.security.protocol.map", "string", "PLAINTEXT:PLAINTEXT"),
    ConfigDef("inter.broker.listener.name", "string", None),
    ConfigDef("log.dirs", "string", None),
    ConfigDef("log.dir", "string", "./josef-data"),
    ConfigDef("zookeeper.connect", "string", None),
    ConfigDef("zookeeper.session.timeout.ms", "int", 18000, minimum=1),
    ConfigDef("zookeeper.connection.timeout.ms", "int", None),
    ConfigDef("broker.rack", "string", None),
    ConfigDef("auto.create.topics.enable", "bool", True),
    ConfigDef("delete.topic.enable", "bool", True),
    ConfigDef("num.partitions", "int", 1, minimum=1),
    ConfigDef("default.replication.factor", "int", 1, minimum=1),
    ConfigDef("socket.request.max.bytes", "int", 104857600, minimum=1),
    ConfigDef("message.max.bytes", "int", 1048588, minimum=0),
    ConfigDef("compression.type", "string", "producer",
              choices=("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
    ConfigDef("min.insync.replicas", "int", 1, minimum=1),
    ConfigDef("unclean.leader.election.enable", "bool", False),
    ConfigDef("log.cleanup.policy", "list", ["delete"], choices=("delete", "compact")),
    ConfigDef("log.retention.hours", "int", 168),
    ConfigDef("log.retention.minutes", "int", None),
    ConfigDef("log.retention.ms", "long", None),
    ConfigDef("log.retention.bytes", "long", -1),
    ConfigDef("log.retention.check.interval.ms", "long", 300000, minimum=1),
    ConfigDef("log.segment.bytes", "int", 1073741824, minimum=14),
    ConfigDef("log.roll.hours", "int", 168, minimum=1),
    ConfigDef("log.roll.ms", "long", None),
    ConfigDef("log.roll.jitter.ms", "long", 0),
    ConfigDef("log.index.interval.bytes", "int", 4096, minimum=0),
    ConfigDef("log.index.size.max.bytes", "int", 10485760, minimum=4),
    ConfigDef("log.flush.interval.messages", "long", LONG_MAX, minimum=1),
    ConfigDef("log.flush.interval.ms", "long", None),
    ConfigDef("log.flush.scheduler.interval.ms", "long", LONG_MAX),
    ConfigDef("log.flush.offset.checkpoint.interval.ms", "int", 60000, minimum=0),
    ConfigDef("log.segment.delete.delay.ms", "long", 60000, minimum=0),
    ConfigDef("log.message.timestamp.type", "string", "CreateTime", choices=("CreateTime", "LogAppendTime")),
    ConfigDef("log.message.timestamp.after.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("log.message.timestamp.before.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("log.message.timestamp.difference.max.ms", "long", LONG_MAX, minimum=0),
    ConfigDef("log.message.downconversion.enable", "bool", True),
    ConfigDef("log.message.format.version", "string", "3.0-IV1"),
    ConfigDef("log.local.retention.bytes", "long", -2),
    ConfigDef("log.local.retention.ms", "long", -2),
    ConfigDef("log.preallocate", "bool", False),
    ConfigDef("log.cleaner.enable", "bool", True),
    ConfigDef("log.cleaner.threads", "int", 1, minimum=0),
    ConfigDef("log.cleaner.dedupe.buffer.size", "long", 134217728, minimum=1),
    ConfigDef("log.cleaner.io.buffer.size", "int", 524288, minimum=0),
    ConfigDef("log.cleaner.io.buffer.load.factor", "double", 0.9),
    ConfigDef("log.cleaner.backoff.ms", "long", 15000, minimum=0),
    ConfigDef("log.cleaner.delete.retention.ms", "long", 86400000),
    ConfigDef("log.cleaner.max.compaction.lag.ms", "long", LONG_MAX),
    ConfigDef("log.cleaner.min.compaction.lag.ms", "long", 0),
    ConfigDef("log.cleaner.min.cleanable.ratio", "double", 0.5),
    ConfigDef("offsets.topic.num.partitions", "int", 50, minimum=1),
    ConfigDef("offsets.topic.replication.factor", "short", 3, minimum=1),
    ConfigDef("group.initial.rebalance.delay.ms", "int", 3000, minimum=0),
    ConfigDef("group.max.size", "int", 2147483647, minimum=1),
    ConfigDef("group.min.session.timeout.ms", "int", 6000, minimum=0),
    ConfigDef("group.max.session.timeout.ms", "int", 1800000, minimum=0),
    ConfigDef("offsets.retention.minutes", "int", 10080, minimum=1),
    ConfigDef("offsets.retention.check.interval.ms", "long", 600000, minimum=1),
    ConfigDef("replica.lag.time.max.ms", "long", 30000),
    ConfigDef("leader.replication.throttled.rate", "long", LONG_MAX, minimum=0),
    ConfigDef("follower.replication.throttled.rate", "long", LONG_MAX, minimum=0),
    ConfigDef("max.incremental.fetch.session.cache.slots", "int", 1000, minimum=0),
    ConfigDef("auto.leader.rebalance.enable", "bool", True),
    ConfigDef("leader.imbalance.check.interval.seconds", "long", 300, minimum=1),
    ConfigDef("leader.imbalance.per.broker.percentage", "int", 10, minimum=0),
    ConfigDef("controlled.shutdown.enable", "bool", True),
    ConfigDef("connections.max.idle.ms", "long", 600000),
    ConfigDef("cluster.id", "string", None),
)

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249


def validate_topic_name(name: str | None) -> str | None:
    """Kafka's topic-name rules; the reason a name is refused, or None when it is fine."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return "Topic name cannot be \".\" or \"..\""
    if len(name) > MAX_TOPIC_NAME:
        return f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME} characters, topic name: {name}"
    if not _TOPIC_NAME.match(name):
        return f"Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    return None


def read_properties(path: Path) -> dict[str, str]:
    """A Java-style .properties file: `k=v` or `k: v` lines, # and ! comments."""
    props: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match:
            props[match.group(1)] = match.group(2).strip()
        else:
            props[line] = ""
    return props


def env_overrides(environ=os.environ) -> dict[str, str]:
    """The Confluent images' mapping: KAFKA_LOG_RETENTION_MS -> log.retention.ms (__ -> _, _ -> .)."""
    out = {}
    for key, value in environ.items():
        if not key.startswith("KAFKA_") or key.startswith("KAFKA_REST_") or key in ("KAFKA_HOME", "KAFKA_OPTS"):
            continue
        name = key[6:].lower().replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")
        out[name] = value
    return out


class BrokerConfig:
    """Parsed broker settings; unknown keys are kept (and logged) but not validated."""

    def __init__(self, props: dict[str, str] | None = None):
        self.raw = dict(props or {})
        self.values: dict[str, object] = {}
        for name, defn in BROKER_CONFIGS.items():
            self.values[name] = _parse(defn, self.raw[name]) if name in self.raw else defn.default
        self.unknown = sorted(k for k in self.raw if k not in BROKER_CONFIGS)

    def __getitem__(self, name: str):
        return self.values[name]

    @property
    def broker_id(self) -> int:
        node_id = self.values["node.id"]
        return node_id if node_id is not None and "broker.id" not in self.raw else self.values["broker.id"]

    @property
    def log_dir(self) -> Path:
        dirs = self.values["log.dirs"] or self.values["log.dir"]
        return Path(dirs.split(",")[0].strip())

    def retention_ms(self) -> int:
        if self.values["log.retention.ms"] is not None:
            return self.values["log.retention.ms"]
        if self.values["log.retention.minutes"] is not None:
            return self.values["log.retention.minutes"] * 60_000
        return self.values["log.retention.hours"] * 3_600_000

    def roll_ms(self) -> int:
        if self.values["log.roll.ms"] is not None:
            return self.values["log.roll.ms"]
        return self.values["log.roll.hours"] * 3_600_000

    def topic_default(self, name: str):
        """The broker-level default of topic config `name`, honouring the hours/minutes/ms precedence."""
        if name == "retention.ms":
            return self.retention_ms()
        if name == "segment.ms":
            return self.roll_ms()
        if name == "flush.ms":
            value = self.values["log.flush.interval.ms"]
            return LONG_MAX if value is None else value
        synonym = TOPIC_SYNONYMS.get(name)
        if synonym in self.values and self.values[synonym] is not None:
            value = self.values[synonym]
            return ",".join(value) if isinstance(value, list) else value
        return TOPIC_CONFIGS[name].default


def parse_topic_configs(configs: dict[str, str | None]) -> dict[str, object]:
    """Validate topic config overrides; ConfigError names the first bad one."""
    parsed = {}
    for name, raw in configs.items():
        defn = TOPIC_CONFIGS.get(name)
        if defn is None:
            raise ConfigError(f"Unknown topic config name: {name}")
        if raw is None:
            raise ConfigError(f"Null value not supported for topic configs: {name}")
        value = _parse(defn, raw)
        parsed[name] = ",".join(value) if isinstance(value, list) else value
    return parsed


def effective_topic_configs(broker: BrokerConfig, overrides: dict[str, str]) -> dict[str, object]:
    """Every topic config with its value: the override if set, else the broker default."""
    parsed = parse_topic_configs(overrides)
    return {name: parsed[name] if name in parsed else broker.topic_default(name) for name in TOPIC_CONFIGS}
