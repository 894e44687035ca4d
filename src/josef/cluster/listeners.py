"""Named listeners: where a broker binds, what it advertises, and which one brokers use.

Kafka's rules, with the Confluent images' convenience: when `listeners` is not set but
`advertised.listeners` is, the broker binds each advertised listener's port on every
interface (the seed's compose file sets only the advertised ones).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from josef.config import ConfigError

SUPPORTED_PROTOCOLS = ("PLAINTEXT",)
DEFAULT_PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"


@dataclass(frozen=True)
class Endpoint:
    name: str  # the listener name, e.g. HOST or INTERNAL
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Listeners:
    bind: tuple[Endpoint, ...]
    advertised: tuple[Endpoint, ...]
    inter_broker: str
    protocols: dict[str, str]

    def advertised_for(self, name: str) -> Endpoint:
        return next(e for e in self.advertised if e.name == name)


def parse_protocol_map(value: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, protocol = item.partition(":")
        if not sep or not name or not protocol:
            raise ConfigError(f"Invalid value {value} for configuration listener.security.protocol.map: "
                              f"entry {item!r} is not NAME:PROTOCOL")
        out[name.strip().upper()] = protocol.strip().upper()
    return out


def parse_endpoints(value: str, key: str) -> list[Endpoint]:
    endpoints = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not name or not colon:
            raise ConfigError(f"Invalid value {value} for configuration {key}: "
                              f"listener {item!r} is not NAME://HOST:PORT")
        try:
            port_number = int(port)
        except ValueError:
            raise ConfigError(f"Invalid value {value} for configuration {key}: bad port in {item!r}") from None
        if not 0 <= port_number <= 65535:
            raise ConfigError(f"Invalid value {value} for configuration {key}: port {port_number} out of range")
        endpoints.append(Endpoint(name.upper(), host.strip("[]"), port_number))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError(f"Invalid value {value} for configuration {key}: each listener must have a distinct name")
    return endpoints


def resolve(raw: dict[str, str], default_bind: str = "PLAINTEXT://127.0.0.1:9092") -> Listeners:
    """The listeners of a broker from its raw properties (`raw` = config keys as strings)."""
    protocols = parse_protocol_map(raw.get("listener.security.protocol.map") or DEFAULT_PROTOCOL_MAP)
    advertised_raw = raw.get("advertised.listeners")
    if raw.get("listeners"):
        bind = parse_endpoints(raw["listeners"], "listeners")
    elif advertised_raw:
        bind = [Endpoint(e.name, "0.0.0.0", e.port) for e in parse_endpoints(advertised_raw, "advertised.listeners")]
    else:
        bind = parse_endpoints(default_bind, "listeners")
    if not bind:
        raise ConfigError("listeners must name at least one listener")
    for e in bind:
        protocol = protocols.get(e.name)
        if protocol is None:
            raise ConfigError(f"No security protocol defined for listener {e.name} "
                              f"(listener.security.protocol.map)")
        if protocol not in SUPPORTED_PROTOCOLS:
            raise ConfigError(f"Listener {e.name} uses security protocol {protocol}: josef supports PLAINTEXT only")
    if advertised_raw:
        advertised = parse_endpoints(advertised_raw, "advertised.listeners")
        unknown = {e.name for e in advertised} - {e.name for e in bind}
        if unknown:
            raise ConfigError(f"advertised.listeners names listener(s) {sorted(unknown)} "
                              f"that are not in listeners")
    else:
        advertised = [Endpoint(e.name, _advertised_host(e.host), e.port) for e in bind]
    names = {e.name for e in advertised}
    inter_broker = (raw.get("inter.broker.listener.name") or "").upper()
    if inter_broker and inter_broker not in names:
        raise ConfigError(f"inter.broker.listener.name {inter_broker} must be an advertised listener")
    if not inter_broker:
        inter_broker = "PLAINTEXT" if "PLAINTEXT" in names else advertised[0].name
    return Listeners(tuple(bind), tuple(advertised), inter_broker, protocols)


def with_bound_ports(listeners: Listeners, bound: dict[str, int]) -> Listeners:
    """Advertise the ports actually bound where the config asked for port 0."""
    advertised = tuple(Endpoint(e.name, e.host, bound.get(e.name, e.port) if e.port == 0 else e.port)
                       for e in listeners.advertised)
    return Listeners(listeners.bind, advertised, listeners.inter_broker, listeners.protocols)


def _advertised_host(bind_host: str) -> str:
    """Kafka advertises the machine's name for a listener bound to every interface."""
    return socket.getfqdn() if bind_host in ("", "0.0.0.0", "::") else bind_host
