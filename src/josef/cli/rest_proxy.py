"""`josef rest-proxy`: the Confluent-compatible REST Proxy as a separate client of a cluster.

    josef rest-proxy [kafka-rest.properties] [--config FILE] [--bootstrap-server HOSTS]
                     [--listeners URLS] [--host-name NAME] [--override key=value ...]

Configuration uses kafka-rest's keys; sources, later wins: the properties file,
`KAFKA_REST_*` environment variables (as Confluent's image: KAFKA_REST_BOOTSTRAP_SERVERS,
KAFKA_REST_LISTENERS, KAFKA_REST_HOST_NAME, ...), `--override`, then the flags.
SIGTERM / Ctrl-C stop it cleanly (consumer instances leave their groups).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="josef rest-proxy",
                                description="Run the Confluent-compatible Kafka REST Proxy (API v2).")
    p.add_argument("properties", nargs="?", default=None, help="a kafka-rest.properties file")
    p.add_argument("--config", default=None, help="a kafka-rest.properties file (same as the positional)")
    p.add_argument("--bootstrap-server", "--bootstrap-servers", dest="bootstrap", default=None,
                   help="Kafka brokers, host:port[,host:port] (bootstrap.servers; default localhost:9092)")
    p.add_argument("--listeners", default=None,
                   help="HTTP listeners, e.g. http://0.0.0.0:8082 (listeners; default port 8082)")
    p.add_argument("--host-name", default=None, help="host name used in consumer base_uri (host.name)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set any kafka-rest config key (repeatable)")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    if args.bootstrap:
        out["bootstrap.servers"] = args.bootstrap
    if args.listeners:
        out["listeners"] = args.listeners
    if args.host_name is not None:
        out["host.name"] = args.host_name
    return out


async def run(settings, access_log: bool) -> int:
    from josef.rest.server import RestServer

    server = RestServer(settings, access_log=access_log)
    await server.start()
    for url in server.urls:
        print(f"josef rest-proxy: listening on {url}, Kafka at {settings.bootstrap_servers}",
              file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    await server.stop()
    waiter.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    # librdkafka and uvicorn chatter stays at WARNING unless asked for
    if args.log_level != "DEBUG":
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    from josef.rest.settings import RestSettings, SettingsError
    try:
        settings = RestSettings.load(args.config or args.properties, _overrides(args))
    except (SettingsError, ValueError, OSError) as e:
        print(f"josef rest-proxy: {e}", file=sys.stderr)
        return 2
    if args.access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    from confluent_kafka import KafkaException
    try:
        return (uvloop.run if uvloop else asyncio.run)(run(settings, args.access_log))
    except KafkaException as e:  # librdkafka refused a client property (client.*, producer.*, admin.*)
        err = e.args[0] if e.args else None
        print(f"josef rest-proxy: invalid Kafka client configuration: {err.str() if hasattr(err, 'str') else e}",
              file=sys.stderr)
        return 2
    except OSError as e:
        print(f"josef rest-proxy: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"josef rest-proxy: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
