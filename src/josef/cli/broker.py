"""`josef broker`: one broker of a ZooKeeper-coordinated cluster, in the foreground.

    josef broker [--config server.properties] [--override key=value ...]

Settings come from the properties file, then the Confluent images' KAFKA_* environment
variables (KAFKA_BROKER_ID -> broker.id), then --override; later sources win.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from josef.cli.serve import _skip_kio_hypothesis_hooks, run_loop, wait_for_signal
from josef.cluster.listeners import resolve
from josef.config import BrokerConfig, ConfigError, env_overrides, read_properties

PROG = "josef broker"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Run one broker of a ZooKeeper-coordinated cluster.")
    p.add_argument("properties", nargs="?", help="a Kafka server.properties file (as kafka-server-start.sh)")
    p.add_argument("--config", default=None, help="a Kafka server.properties file")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a broker config, as Kafka's --override (repeatable)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def build_config(args: argparse.Namespace, environ=None) -> BrokerConfig:
    props: dict[str, str] = {}
    for path in filter(None, (args.properties, args.config)):
        props.update(read_properties(Path(path)))
    props.update(env_overrides() if environ is None else env_overrides(environ))
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--override expects KEY=VALUE, got {item!r}")
        props[key.strip()] = value.strip()
    config = BrokerConfig(props)
    if not config["zookeeper.connect"]:
        raise ConfigError("zookeeper.connect is required (or KAFKA_ZOOKEEPER_CONNECT); "
                          "`josef serve` runs a broker without ZooKeeper")
    if config.broker_id < 0:
        raise ConfigError("broker.id must be set to a non-negative id (automatic ids are not supported)")
    return config


async def run(config: BrokerConfig) -> int:
    from kazoo.handlers.threading import KazooTimeoutError

    from josef.broker.broker import Broker
    from josef.storage.manager import InconsistentStorage

    try:
        broker = Broker(config, resolve(config.raw))
    except KazooTimeoutError:
        print(f"{PROG}: cannot reach ZooKeeper at {config['zookeeper.connect']}", file=sys.stderr)
        return 1
    except InconsistentStorage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        await broker.start()
        await wait_for_signal()
    except RuntimeError as e:  # e.g. the broker id is held by another live broker
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    finally:
        await broker.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo.client").setLevel(logging.WARNING)
    try:
        config = build_config(args)
        resolve(config.raw)
    except (ConfigError, OSError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    _skip_kio_hypothesis_hooks()
    for key in config.unknown:
        logging.getLogger("josef.config").info("ignoring unknown broker config %s", key)
    return run_loop(run(config), PROG)


if __name__ == "__main__":
    sys.exit(main())
