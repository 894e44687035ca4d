"""`josef serve`: one broker with embedded metadata (no ZooKeeper) and the REST Proxy,
in one process, in the foreground. `--rest-port 0` runs the broker alone.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from josef.cluster.listeners import Endpoint, Listeners
from josef.config import BrokerConfig, ConfigError, env_overrides, read_properties


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="josef serve", description="Run a single josef broker (no ZooKeeper).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9092, help="Kafka port (default 9092)")
    p.add_argument("--advertised-host", default=None, help="host name given to clients (default: --host)")
    p.add_argument("--rest-port", type=int, default=8082,
                   help="REST Proxy port (default 8082; 0 = no REST Proxy)")
    p.add_argument("--data-dir", default=None, help="data directory (default ./josef-data, or log.dirs)")
    p.add_argument("--config", default=None, help="a Kafka server.properties file")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a broker config, as Kafka's --override (repeatable)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


# `josef serve` is a single development broker: groups form at once instead of waiting
# Kafka's 3 s for more members, and the offsets topic is smaller than Kafka's 50 partitions.
SERVE_DEFAULTS = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "10"}


def build_config(args: argparse.Namespace) -> BrokerConfig:
    props: dict[str, str] = dict(SERVE_DEFAULTS)
    if args.config:
        props.update(read_properties(Path(args.config)))
    props.update(env_overrides())
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--override expects KEY=VALUE, got {item!r}")
        props[key.strip()] = value.strip()
    if args.data_dir:
        props["log.dirs"] = args.data_dir
    return BrokerConfig(props)


def _skip_kio_hypothesis_hooks() -> None:
    """kio registers Hypothesis strategies for its types whenever Hypothesis is importable
    (as in a test venv), which costs ~350 ms of start-up; a broker never uses them."""
    sys.modules.setdefault("hypothesis", None)


def listeners_for(args: argparse.Namespace) -> Listeners:
    """One PLAINTEXT listener from --host/--port/--advertised-host."""
    bind = Endpoint("PLAINTEXT", args.host, args.port)
    advertised = Endpoint("PLAINTEXT", args.advertised_host or args.host, args.port)
    return Listeners((bind,), (advertised,), "PLAINTEXT", {"PLAINTEXT": "PLAINTEXT"})


async def run(config: BrokerConfig, args: argparse.Namespace) -> int:
    from josef.broker.broker import Broker

    broker = Broker(config, listeners_for(args))
    await broker.start()  # Kafka answers before the REST Proxy is even imported
    rest = None
    try:
        if args.rest_port:
            from josef.rest.server import serve_rest
            adv = broker.listeners.advertised[0]
            rest = await serve_rest(f"{adv.host}:{adv.port}", args.host, args.rest_port,
                                    host_name=args.advertised_host)
        await wait_for_signal()
    finally:
        if rest is not None:
            await rest.stop()  # its clients flush to the broker, so it goes first
        await broker.shutdown()
    return 0


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_loop(coro, prog: str) -> int:
    """Run `coro` on uvloop where available; OS errors become a message and exit status 1."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    try:
        return (uvloop.run if uvloop else asyncio.run)(coro)
    except OSError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except (ConfigError, OSError) as e:
        print(f"josef serve: {e}", file=sys.stderr)
        return 2
    _skip_kio_hypothesis_hooks()
    for key in config.unknown:
        logging.getLogger("josef.config").info("ignoring unknown broker config %s", key)
    return run_loop(run(config, args), "josef serve")


if __name__ == "__main__":
    sys.exit(main())
