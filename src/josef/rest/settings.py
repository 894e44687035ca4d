"""REST Proxy configuration with Confluent's keys.

Sources, later wins: defaults, a `kafka-rest.properties` file, `KAFKA_REST_*` environment
variables (mapped as Confluent's images map them: strip the prefix, lower-case, `_` -> `.`,
`__` -> `_`, `___` -> `-`; so KAFKA_REST_BOOTSTRAP_SERVERS -> bootstrap.servers), then
explicit overrides (command-line flags).

Keys prefixed `client.`, `producer.`, `consumer.` and `admin.` (other than the REST Proxy's own
`consumer.*` settings) are handed to the Kafka clients with the prefix removed, as kafka-rest
does; they must be librdkafka property names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ENV_PREFIX = "KAFKA_REST_"
# environment variables of Confluent's image that are not configuration keys
_ENV_NOT_CONFIG = {"HEAP_OPTS", "JMX_OPTS", "JMX_PORT", "JMX_HOSTNAME", "LOG4J_OPTS", "OPTS",
                   "LOG4J_ROOT_LOGLEVEL", "LOG4J_LOGGERS", "LOG4J_TOOLS_LOGLEVEL", "LOG4J_TOOLS_ROOT_LOGLEVEL",
                   "PERFORMANCE_OPTS", "GC_LOG_OPTS", "CLASSPATH", "LOG_DIR"}

DEFAULTS: dict[str, str] = {
    "bootstrap.servers": "localhost:9092",
    "listeners": "",
    "port": "8082",
    "host.name": "",
    "advertised.listeners": "",
    "id": "",
    "consumer.request.timeout.ms": "1000",
    "consumer.instance.timeout.ms": "300000",
    "consumer.request.max.bytes": str(64 * 1024 * 1024),
    "consumer.iterator.backoff.ms": "50",
    "consumer.threads": "50",
    "fetch.min.bytes": "-1",
    "client.timeout.ms": "10000",
    "max.poll.records": "500",
    "request.max.bytes": str(64 * 1024 * 1024),
    "api.v3.produce.batch.maximum.entries": "10",  # kafka-rest's key: at least 1, at most 50
}

# `consumer.*` keys that configure the proxy itself, not the Kafka consumer
_PROXY_CONSUMER_KEYS = {"consumer.request.timeout.ms", "consumer.instance.timeout.ms",
                        "consumer.request.max.bytes", "consumer.iterator.backoff.ms",
                        "consumer.iterator.timeout.ms", "consumer.threads"}


class SettingsError(ValueError):
    pass


def read_properties(path: Path) -> dict[str, str]:
    """Java .properties: `key=value` or `key: value`, `#`/`!` comments, `\\` line continuation."""
    props: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip() if not pending else raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        cut = len(line)
        for i, ch in enumerate(line):
            if ch in "=:" or ch.isspace():
                cut = i
                break
        key = line[:cut].strip()
        rest = line[cut:].lstrip()
        if rest[:1] in ("=", ":"):
            rest = rest[1:]
        if key:
            props[key] = rest.strip()
    return props


def env_to_key(name: str) -> str | None:
    if not name.startswith(ENV_PREFIX):
        return None
    tail = name[len(ENV_PREFIX):]
    if not tail or tail in _ENV_NOT_CONFIG:
        return None
    return (tail.lower().replace("___", "\0").replace("__", "\1").replace("_", ".")
            .replace("\0", "-").replace("\1", "_"))


def env_properties(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    out = {}
    for name, value in environ.items():
        key = env_to_key(name)
        if key:
            out[key] = value
    return out


@dataclass(frozen=True)
class Listener:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_listeners(value: str, default_port: int) -> list[Listener]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        if "://" not in item:
            item = "http://" + item
        parts = urlsplit(item)
        scheme = parts.scheme.lower()
        if scheme != "http":
            raise SettingsError(f"listener {item!r}: only http listeners are supported")
        try:
            port = parts.port if parts.port is not None else default_port
        except ValueError:
            raise SettingsError(f"listener {item!r}: bad port") from None
        host = parts.hostname if parts.hostname is not None else "0.0.0.0"
        out.append(Listener(scheme, host, port))
    return out or [Listener("http", "0.0.0.0", default_port)]


def _bootstrap(value: str) -> str:
    """librdkafka wants host:port; accept Java's `PLAINTEXT://host:port` form too."""
    servers = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        if "://" in item:
            scheme, _, item = item.partition("://")
            if scheme.upper() not in ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"):
                raise SettingsError(f"bootstrap.servers: unknown protocol {scheme!r}")
        servers.append(item)
    if not servers:
        raise SettingsError("bootstrap.servers is empty")
    return ",".join(servers)


@dataclass
class RestSettings:
    """Typed view of the properties the proxy uses, plus the raw map."""

    props: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        merged = dict(DEFAULTS)
        merged.update({k: str(v) for k, v in self.props.items()})
        self.props = merged
        self.bootstrap_servers = _bootstrap(merged["bootstrap.servers"])
        self.port = self._int("port", minimum=0)
        self.listeners = parse_listeners(merged["listeners"], self.port)
        self.host_name = merged["host.name"].strip()
        self.advertised_listeners = [v.strip() for v in merged["advertised.listeners"].split(",") if v.strip()]
        self.id = merged["id"].strip()
        self.consumer_request_timeout_ms = self._int("consumer.request.timeout.ms", minimum=0)
        self.consumer_instance_timeout_ms = self._int("consumer.instance.timeout.ms", minimum=1)
        self.consumer_request_max_bytes = self._int("consumer.request.max.bytes", minimum=0)
        self.consumer_iterator_backoff_ms = self._int("consumer.iterator.backoff.ms", minimum=1)
        self.consumer_threads = self._int("consumer.threads", minimum=-1)
        self.fetch_min_bytes = self._int("fetch.min.bytes", minimum=-1)
        self.client_timeout_ms = self._int("client.timeout.ms", minimum=1)
        self.max_poll_records = self._int("max.poll.records", minimum=1)
        self.request_max_bytes = self._int("request.max.bytes", minimum=1)
        # validated here, with the rest, so a bad value stops the proxy before it starts
        self.produce_batch_maximum_entries = self._int("api.v3.produce.batch.maximum.entries",
                                                       minimum=1, maximum=50)

    def _int(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.props[key]
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{key}: expected an integer, got {raw!r}") from None
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise SettingsError(f"{key}: must be between {minimum} and {maximum}, got {value}")
        if minimum is not None and value < minimum:
            raise SettingsError(f"{key}: must be at least {minimum}, got {value}")
        return value

    def client_config(self, kind: str) -> dict[str, str]:
        """librdkafka properties for a `producer`, `consumer` or `admin` client."""
        conf: dict[str, str] = {"bootstrap.servers": self.bootstrap_servers}
        for prefix in ("client.", kind + "."):
            for key, value in self.props.items():
                if not key.startswith(prefix) or key in _PROXY_CONSUMER_KEYS or key == "client.timeout.ms":
                    continue
                if key.startswith("client.") and key[len("client."):].split(".")[0] in (
                        "init", "zk", "timeout"):
                    continue
                conf[key[len(prefix):]] = value
        return conf

    @classmethod
    def load(cls, config_file: str | Path | None = None, overrides: dict[str, str] | None = None,
             environ: dict[str, str] | None = None) -> "RestSettings":
        props: dict[str, str] = {}
        if config_file:
            props.update(read_properties(Path(config_file)))
        props.update(env_properties(environ))
        props.update(overrides or {})
        return cls(props)
