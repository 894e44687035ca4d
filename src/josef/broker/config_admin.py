"""Describing and changing topic and broker configs, with Kafka's sources and synonyms.

Precedence, highest first: a topic's own override (DYNAMIC_TOPIC_CONFIG), then the broker
setting it defaults from: dynamic for this broker (DYNAMIC_BROKER_CONFIG), dynamic for all
brokers (DYNAMIC_DEFAULT_BROKER_CONFIG), the broker's static config (STATIC_BROKER_CONFIG),
and finally Kafka's default (DEFAULT_CONFIG). Changes apply at once and are persisted.
"""
from __future__ import annotations

from typing import NamedTuple

from josef.cluster.zk_store import MetadataUnavailable
from josef.config import (BROKER_CONFIGS, TOPIC_CONFIGS, TOPIC_SYNONYMS, BrokerConfig, ConfigError,
                          parse_topic_configs)
from josef.protocol.errors import Error

TOPIC, BROKER = 2, 4
DYNAMIC_TOPIC, DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT = 1, 2, 3, 4, 5
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
CONFIG_TYPES = {"bool": 1, "string": 2, "int": 3, "short": 4, "long": 5, "double": 6, "list": 7}
# broker configs that can change without a restart: the log defaults topics inherit
DYNAMIC_BROKER_CONFIGS = frozenset(TOPIC_SYNONYMS.values()) | {
    "log.retention.hours", "log.retention.minutes", "log.retention.ms", "log.roll.hours", "log.roll.ms",
    "log.flush.interval.ms", "log.retention.check.interval.ms", "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size", "log.cleaner.io.buffer.size", "log.cleaner.io.buffer.load.factor",
    "log.cleaner.backoff.ms", "leader.replication.throttled.rate", "follower.replication.throttled.rate"}
SENSITIVE_WORDS = ("password", "secret")


class ConfigEntry(NamedTuple):
    name: str
    value: str | None
    source: int
    read_only: bool
    synonyms: list  # [(name, value, source)], highest precedence first
    config_type: int
    sensitive: bool = False


class ConfigAdminError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


class ConfigAdmin:
    def __init__(self, broker):
        self.broker = broker

    # --- broker-level layers --------------------------------------------------------

    def _layers(self) -> list[tuple[int, dict[str, str]]]:
        """(source, raw values) of every broker layer, highest precedence first."""
        dynamic = self.broker.store.broker_configs
        return [(DYNAMIC_BROKER, dynamic.get(str(self.broker.broker_id), {})),
                (DYNAMIC_DEFAULT_BROKER, dynamic.get("", {})),
                (STATIC_BROKER, self.broker.static_props)]

    def _broker_synonyms(self, names: list[str]) -> list[tuple[str, str, int]]:
        out = []
        for source, layer in self._layers():
            out.extend((n, layer[n], source) for n in names if n in layer)
        for n in names:
            default = BROKER_CONFIGS[n].default if n in BROKER_CONFIGS else None
            if default is not None:
                out.append((n, text(default), DEFAULT))
        return out

    # --- describe ---------------------------------------------------------------------

    def describe(self, resource_type: int, name: str, keys: list[str] | None) -> list[ConfigEntry]:
        if resource_type == TOPIC:
            entries = self._describe_topic(name)
        elif resource_type == BROKER:
            entries = self._describe_broker(name)
        else:
            raise ConfigAdminError(Error.INVALID_REQUEST, f"Unsupported resource type {resource_type}")
        if keys is not None:
            wanted = set(keys)
            entries = [e for e in entries if e.name in wanted]
        return entries

    def _describe_topic(self, name: str) -> list[ConfigEntry]:
        topic = self.broker.store.snapshot.topics.get(name)
        if topic is None:
            raise ConfigAdminError(Error.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist.")
        values = self.broker.topic_configs(topic)
        entries = []
        for key in sorted(TOPIC_CONFIGS):
            synonyms = []
            if key in topic.configs:
                synonyms.append((key, topic.configs[key], DYNAMIC_TOPIC))
            synonyms += self._broker_synonyms(_broker_names_for(key))
            if not synonyms:
                synonyms.append((key, text(TOPIC_CONFIGS[key].default), DEFAULT))
            entries.append(ConfigEntry(key, text(values[key]), synonyms[0][2], False, synonyms,
                                       CONFIG_TYPES.get(TOPIC_CONFIGS[key].type, 0)))
        return entries

    def _describe_broker(self, name: str) -> list[ConfigEntry]:
        self._check_broker_entity(name)
        entries = []
        for key in sorted(BROKER_CONFIGS):
            if name == "":  # the cluster default entity shows only what is set there
                value = self.broker.store.broker_configs.get("", {}).get(key)
                if value is None:
                    continue
                synonyms = [(key, value, DYNAMIC_DEFAULT_BROKER)]
            else:
                synonyms = self._broker_synonyms([key])
            sensitive = any(w in key for w in SENSITIVE_WORDS)
            value = synonyms[0][1] if synonyms else None
            source = synonyms[0][2] if synonyms else DEFAULT
            entries.append(ConfigEntry(key, None if sensitive else value, source,
                                       key not in DYNAMIC_BROKER_CONFIGS, synonyms,
                                       CONFIG_TYPES.get(BROKER_CONFIGS[key].type, 0), sensitive))
        return entries

    def _check_broker_entity(self, name: str) -> None:
        if name not in ("", str(self.broker.broker_id)):
            if not name.lstrip("-").isdigit():
                raise ConfigAdminError(Error.INVALID_REQUEST, f"Invalid broker id {name!r}")
            raise ConfigAdminError(Error.INVALID_REQUEST, f"Broker {name} is not this broker ({self.broker.broker_id})")

    # --- alter ------------------------------------------------------------------------

    def alter(self, resource_type: int, name: str, changes: list[tuple[str, int, str | None]],
              *, incremental: bool, validate_only: bool):
        """Apply [(key, operation, value)]; a legacy (non-incremental) alter replaces every override.

        Validation errors raise ConfigAdminError; the answer is the future of the metadata write
        (which fails with ConfigAdminError), None for validate_only."""
        if resource_type == TOPIC:
            topic = self.broker.store.snapshot.topics.get(name)
            if topic is None:
                raise ConfigAdminError(Error.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist.")
            current = dict(topic.configs) if incremental else {}
            updated = self._merge(current, changes, TOPIC_CONFIGS, self.broker.topic_configs(topic))
            try:
                parse_topic_configs(updated)
            except ConfigError as e:
                raise ConfigAdminError(Error.INVALID_CONFIG, str(e)) from None
            if not validate_only:
                return self._write(self.broker.alter_topic_configs, name, updated)
        elif resource_type == BROKER:
            self._check_broker_entity(name)
            current = dict(self.broker.store.broker_configs.get(name, {})) if incremental else {}
            updated = self._merge(dict(current), changes, BROKER_CONFIGS, self.broker.config.values)
            refused = sorted(k for k in updated if k not in DYNAMIC_BROKER_CONFIGS and current.get(k) != updated[k])
            if refused:
                raise ConfigAdminError(Error.INVALID_REQUEST,
                                       f"Cannot update these configs dynamically: {', '.join(refused)}")
            try:
                BrokerConfig({**self.broker.static_props, **updated})
            except ConfigError as e:
                raise ConfigAdminError(Error.INVALID_CONFIG, str(e)) from None
            if not validate_only:
                return self._write(self.broker.alter_broker_configs, name, updated)
        else:
            raise ConfigAdminError(Error.INVALID_REQUEST, f"Unsupported resource type {resource_type}")
        return None

    def _write(self, fn, *args):
        return self.broker.metadata_writer.submit(_as_config_error, fn, *args)

    @staticmethod
    def _merge(current: dict[str, str], changes, table, effective) -> dict[str, str]:
        for key, op, value in changes:
            if key not in table:
                kind = "topic" if table is TOPIC_CONFIGS else "broker"
                raise ConfigAdminError(Error.INVALID_CONFIG, f"Unknown {kind} config name: {key}")
            if op == SET:
                if value is None:
                    raise ConfigAdminError(Error.INVALID_REQUEST, f"Null value not supported for: {key}")
                current[key] = value
            elif op == DELETE:
                current.pop(key, None)
            elif op in (APPEND, SUBTRACT):
                if table[key].type != "list":
                    raise ConfigAdminError(Error.INVALID_CONFIG,
                                           f"Config value append is not allowed for config key: {key}")
                items = [i for i in (current.get(key) or text(effective.get(key)) or "").split(",") if i]
                given = [i.strip() for i in (value or "").split(",") if i.strip()]
                if op == APPEND:
                    items += [i for i in given if i not in items]
                else:
                    items = [i for i in items if i not in given]
                current[key] = ",".join(items)
            else:
                raise ConfigAdminError(Error.INVALID_REQUEST, f"Unknown config operation {op}")
        return current


def _as_config_error(fn, *args):
    """Run a metadata write (where writes run); ZooKeeper being unreachable is a retriable
    error for the client."""
    try:
        return fn(*args)
    except MetadataUnavailable as e:
        raise ConfigAdminError(Error.REQUEST_TIMED_OUT, str(e)) from None


def _broker_names_for(topic_key: str) -> list[str]:
    """The broker configs a topic config defaults from, most specific first."""
    if topic_key == "retention.ms":
        return ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
    if topic_key == "segment.ms":
        return ["log.roll.ms", "log.roll.hours"]
    if topic_key == "flush.ms":
        return ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]
    synonym = TOPIC_SYNONYMS.get(topic_key)
    return [synonym] if synonym else []
