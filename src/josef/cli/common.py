"""What every Kafka tool shares: argument parsing, property files, client setup, error exits.

The promise to users: a bad flag, an unreachable broker or a broker error ends the tool with
one readable line on stderr and a non-zero status, never a traceback (JOSEF_DEBUG=1 shows it).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import time
import traceback
from typing import Callable, Iterable, Sequence

CONNECT_TIMEOUT = 10.0  # seconds before an unreachable cluster is reported
DEBUG = bool(os.environ.get("JOSEF_DEBUG"))


class ToolError(Exception):
    """A failure to report as a single line on stderr."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# -- argument parsing ---------------------------------------------------------------------------

class ArgParser(argparse.ArgumentParser):
    """argparse that reports mistakes as one line (ToolError) instead of usage + exit 2.

    Options are spelled as Kafka's (joptsimple) ones: `--opt value` or `--opt=value`, and
    unambiguous prefixes work as they do there.
    """

    def __init__(self, prog: str, description: str, **kw):
        super().__init__(prog=prog, description=description, **kw)
        self.add_argument("--version", action="store_true", help="Display Kafka version.")

    def error(self, message: str):
        raise ToolError(f"{self.prog}: {message} (see --help)")

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        if not argv:
            raise ToolError(f"{self.prog}: {self.description} (see --help)")
        args = self.parse_args(list(argv))
        if args.version:
            print(_version())
            raise SystemExit(0)
        return args


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"josef {version('josef')}"
    except PackageNotFoundError:
        return "josef"


def require(args: argparse.Namespace, *names: str) -> None:
    """Kafka's "Missing required argument" check, done after parsing so --help needs nothing."""
    for name in names:
        if getattr(args, name.replace("-", "_")) is None:
            raise ToolError(f'Missing required argument "[{name}]"')


def add_bootstrap(parser: argparse.ArgumentParser, broker_list: bool = False) -> None:
    parser.add_argument("--bootstrap-server", metavar="HOST1:PORT1,...",
                        help="REQUIRED: The server(s) to connect to.")
    if broker_list:
        parser.add_argument("--broker-list", metavar="HOST1:PORT1,...",
                            help="DEPRECATED, use --bootstrap-server instead.")


def bootstrap(args: argparse.Namespace) -> str:
    """The validated bootstrap list from --bootstrap-server (or the old --broker-list)."""
    value = getattr(args, "bootstrap_server", None) or getattr(args, "broker_list", None)
    if not value:
        raise ToolError('Missing required argument "[bootstrap-server]"')
    parse_servers(value)
    return value


def parse_servers(value: str) -> list[tuple[str, int]]:
    servers = []
    for item in value.split(","):
        item = item.strip()
        m = re.fullmatch(r"(?:[A-Za-z]+://)?(\[[^\]]+\]|[^:\s]+):(\d+)", item)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ToolError(f"Please provide valid host:port like host1:9091,host2:9092 (got {item!r})")
        servers.append((m.group(1).strip("[]"), int(m.group(2))))
    return servers


# -- properties ---------------------------------------------------------------------------------

def load_properties(path: str) -> dict[str, str]:
    """A Java .properties file: key=value, key:value or key value; # and ! comments; \\ continues."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ToolError(f"cannot read property file {path}: {e.strerror or e}") from None
    props: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.lstrip() if pending else raw.strip()
        if not pending and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        pending = ""
        m = re.match(r"((?:\\.|[^=:\s\\])+)\s*(?:[=:]\s*|\s+|$)(.*)", line)
        if m:
            props[_unescape(m.group(1))] = _unescape(m.group(2).strip())
    return props


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), s)


def parse_key_values(items: Iterable[str] | None) -> dict[str, str]:
    """--xxx-property k=v arguments, split at the first '=' as Kafka does."""
    props: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ToolError(f"Invalid command line properties: {item}")
        props[key.strip()] = value
    return props


def merged_config(args: argparse.Namespace, file_attrs: Sequence[str], prop_attrs: Sequence[str]) -> dict[str, str]:
    """Client properties: property files first, then --xxx-property flags override them."""
    conf: dict[str, str] = {}
    for attr in file_attrs:
        path = getattr(args, attr, None)
        if path:
            conf.update(load_properties(path))
    for attr in prop_attrs:
        conf.update(parse_key_values(getattr(args, attr, None)))
    return conf


# -- librdkafka clients ---------------------------------------------------------------------------

# Java client settings with no librdkafka meaning that Kafka's own configs commonly carry.
_JAVA_ONLY = {"key.serializer", "value.serializer", "key.deserializer", "value.deserializer",
              "partitioner.class", "interceptor.classes", "max.block.ms", "buffer.memory"}


class ClientErrors:
    """error_cb sink: remembers librdkafka's last complaint, for a better 'cannot connect' line."""

    def __init__(self):
        self.last = None

    def __call__(self, err) -> None:
        self.last = err


def quiet_logger() -> logging.Logger:
    """librdkafka logs every failed connect to stderr; tools report failures themselves."""
    logger = logging.getLogger("josef.cli.librdkafka")
    if not logger.handlers:
        if DEBUG:
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = logging.NullHandler()
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


def make_client(cls, conf: dict, errors: ClientErrors | None = None):
    """Build a confluent_kafka client, dropping properties librdkafka does not know.

    Kafka's clients warn and carry on when given an unknown config; so do we.
    """
    from confluent_kafka import KafkaException
    conf = dict(conf)
    for key in list(conf):
        if key in _JAVA_ONLY:
            del conf[key]
    conf.setdefault("logger", quiet_logger())
    if errors is not None:
        conf.setdefault("error_cb", errors)
    for _ in range(len(conf) + 1):
        try:
            return cls(conf)
        except (KafkaException, ValueError, TypeError) as e:
            message = str(e.args[0].str() if e.args and hasattr(e.args[0], "str") else e)
            m = re.search(r'No such configuration property: "([^"]+)"', message)
            if not m or m.group(1) not in conf:
                raise ToolError(f"Invalid client configuration: {message}") from None
            warn(f"The configuration '{m.group(1)}' was supplied but isn't a known config.")
            del conf[m.group(1)]
    raise ToolError("Invalid client configuration")


def check_reachable(servers: str, timeout: float = 3.0) -> None:
    """Fail fast, with a clear line, when no bootstrap server accepts a TCP connection.

    librdkafka would retry quietly until its timeout; one direct connect attempt per server
    tells a refused or unroutable address apart within seconds.
    """
    reasons = []
    deadline = time.monotonic() + CONNECT_TIMEOUT
    for host, port in parse_servers(servers):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(timeout, left)):
                return
        except OSError as e:
            reasons.append(e.strerror or str(e) or type(e).__name__)
    reason = reasons[-1] if reasons else "timed out"
    raise ToolError(f"could not connect to {servers}: {reason}")


def fetch_metadata(client, servers: str, topic: str | None = None, errors: ClientErrors | None = None,
                   timeout: float = CONNECT_TIMEOUT):
    """Cluster metadata, or ToolError('could not connect ...') within `timeout` seconds."""
    from confluent_kafka import KafkaException
    try:
        return client.list_topics(topic, timeout=timeout)
    except KafkaException as e:
        detail = errors.last.str() if errors is not None and errors.last is not None else e.args[0].str()
        raise ToolError(f"could not connect to {servers}: {detail}") from None


def kafka_error_text(e: BaseException) -> str:
    """The message of a KafkaException / KafkaError, without librdkafka's wrapping."""
    err = e.args[0] if getattr(e, "args", None) else None
    if err is not None and hasattr(err, "str"):
        return err.str()
    return str(e)


def warn(message: str) -> None:
    print(f"WARN {message}", file=sys.stderr)


# -- running a tool -------------------------------------------------------------------------------

class Terminated(BaseException):
    """SIGTERM, turned into an exception so `finally` blocks (flush, final counts) still run."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run(tool: Callable[[list[str]], int | None], argv: Sequence[str]) -> int:
    """Run a tool's body and turn every failure into a status code plus at most one line."""
    import signal
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tools called from tests or embedding code)
        pass
    try:
        return tool(list(argv)) or 0
    except Terminated:
        return 143
    except ToolError as e:
        _err_line(str(e))
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Reader went away (e.g. `| head`); silence the interpreter's flush at exit too.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # last resort: still one line
        from_kafka = type(e).__name__ == "KafkaException"
        _err_line(f"Error: {kafka_error_text(e)}" if from_kafka else f"Error: {type(e).__name__}: {e}")
        return 1


def _err_line(message: str) -> None:
    if DEBUG:
        traceback.print_exc()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(" ".join(message.splitlines()), file=sys.stderr)
