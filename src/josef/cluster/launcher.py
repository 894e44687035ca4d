"""Process bookkeeping for `josef cluster`: the seed's compose topology as local processes.

The topology (services, their command lines, environment and ports) is built in one place,
`Topology.services()`. Every process is started detached (own session, output appended to
`<state>/logs/<service>.log`) and recorded in `<state>/run/<service>.json` with its pid and
its kernel start time, so a later `josef cluster stop` only ever signals the process it
started, never a recycled pid.

State directory layout (the seed's volume names):

    cluster.json                   shape and ports, written by `up`
    run/<service>.json             pid, start time, command of the last start
    logs/<service>.log             stdout + stderr, appended on every start
    zookeeper-i_data/ zookeeper-i_log/   snapshots (and zoo.cfg, myid) / transaction log
    broker-i-data/                 the broker's log.dirs
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from josef.cluster.zookeeper_server import Peer, ZooKeeperMissing, ZooKeeperServer, pid_alive

HOST = "127.0.0.1"
ADVERTISED_HOST = "localhost"  # the seed's HOST listener: what clients on the host are told
ZK_TICK_MS = 500
# Defaults `josef cluster` adds to every broker on top of the seed's variables; friendlier to
# tests and laptops than Kafka's: a broker that dies leaves the cluster after 6 s, not 18 s.
BROKER_DEFAULTS = {"KAFKA_ZOOKEEPER_SESSION_TIMEOUT_MS": "6000"}
# inherited variables that would silently change the topology are not passed to services
_SCRUBBED_ENV = ("KAFKA_", "ZOO_", "ZOOKEEPER_")


class ClusterError(Exception):
    """A failure reported as one message on stderr."""


@dataclass(frozen=True)
class Ports:
    """Port bases: service i (1-based) uses base + i - 1."""

    kafka: int = 9092       # HOST listener, what clients use (localhost:9092..)
    internal: int = 29092   # INTERNAL listener, inter-broker and the REST Proxy
    zookeeper: int = 2181   # ZooKeeper client port
    quorum: int = 2888      # ZooKeeper quorum (follower -> leader)
    election: int = 3888    # ZooKeeper leader election
    rest: int = 8082        # REST Proxy


@dataclass(frozen=True)
class Shape:
    brokers: int = 3
    zookeepers: int = 3
    ports: Ports = field(default_factory=Ports)

    def to_json(self) -> dict:
        return {"brokers": self.brokers, "zookeepers": self.zookeepers, "ports": asdict(self.ports)}

    @classmethod
    def from_json(cls, data: dict) -> "Shape":
        known = {f.name for f in fields(Ports)}
        ports = Ports(**{k: int(v) for k, v in data.get("ports", {}).items() if k in known})
        return cls(int(data["brokers"]), int(data["zookeepers"]), ports)


@dataclass
class Service:
    name: str
    kind: str                      # zookeeper | broker | rest-proxy
    index: int                     # 1-based within its kind (0 for rest-proxy)
    tier: int                      # start order: 0 zookeepers, 1 brokers, 2 rest-proxy
    command: list[str]
    env: dict[str, str]            # on top of the (scrubbed) inherited environment
    listen: list[int]              # ports this service binds (checked free before a start)
    ports_label: str               # the PORTS column of `ps`
    short_command: str             # the COMMAND column of `ps`
    volumes: list[Path]            # data directories (`down -v` removes them)
    zookeeper: ZooKeeperServer | None = None

    @property
    def client_port(self) -> int:
        return self.listen[0]


class _ZooKeeper(ZooKeeperServer):
    """ZooKeeperServer with the transaction log in its own directory, as the seed's volumes
    (`zookeeper-i_data` for snapshots, `zookeeper-i_log` for the transaction log)."""

    def write_config(self) -> None:
        super().write_config()
        if self.log_dir is not None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            with open(self.config_path, "a") as f:
                f.write(f"dataLogDir={Path(self.log_dir).resolve()}\n")


def josef_command(tool: str) -> list[str]:
    """`josef TOOL` from the running interpreter's environment (venv bin dir)."""
    exe = Path(sys.executable).parent / "josef"
    if exe.exists():
        return [str(exe), tool]
    return [sys.executable, "-m", "josef.cli.main", tool]


@dataclass
class Topology:
    state_dir: Path
    shape: Shape

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    # -- the services: every command line, variable and port is decided here --------------

    def zookeeper_connect(self) -> str:
        p = self.shape.ports
        return ",".join(f"{HOST}:{p.zookeeper + i}" for i in range(self.shape.zookeepers))

    def broker_env(self, i: int) -> dict[str, str]:
        p = self.shape.ports
        host_port, internal_port = p.kafka + i - 1, p.internal + i - 1
        env = {
            "KAFKA_BROKER_ID": str(i),
            "KAFKA_ZOOKEEPER_CONNECT": self.zookeeper_connect(),
            "KAFKA_LISTENERS": f"HOST://{HOST}:{host_port},INTERNAL://{HOST}:{internal_port}",
            "KAFKA_ADVERTISED_LISTENERS":
                f"HOST://{ADVERTISED_HOST}:{host_port},INTERNAL://{HOST}:{internal_port}",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:PLAINTEXT,INTERNAL:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "KAFKA_LOG_DIRS": str(self.state_dir / f"broker-{i}-data"),
            **BROKER_DEFAULTS,
        }
        if self.shape.brokers < 3:
            # Kafka refuses to create __consumer_offsets with fewer brokers than its factor
            env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] = str(self.shape.brokers)
        return env

    def rest_env(self) -> dict[str, str]:
        p = self.shape.ports
        return {
            "KAFKA_REST_BOOTSTRAP_SERVERS":
                ",".join(f"{HOST}:{p.internal + i}" for i in range(self.shape.brokers)),
            "KAFKA_REST_LISTENERS": f"http://{HOST}:{p.rest}",
        }

    def zookeeper_server(self, i: int) -> _ZooKeeper:
        p, n = self.shape.ports, self.shape.zookeepers
        peers = [Peer(k + 1, HOST, p.quorum + k, p.election + k) for k in range(n)] if n > 1 else []
        return _ZooKeeper(self.state_dir / f"zookeeper-{i}_data", p.zookeeper + i - 1, HOST, i, peers,
                          ZK_TICK_MS, self.state_dir / f"zookeeper-{i}_log")

    def services(self) -> list[Service]:
        p, out = self.shape.ports, []
        for i in range(1, self.shape.zookeepers + 1):
            zk = self.zookeeper_server(i)
            listen = [zk.client_port]
            if self.shape.zookeepers > 1:
                listen += [p.quorum + i - 1, p.election + i - 1]
            out.append(Service(
                f"zookeeper-{i}", "zookeeper", i, 0, [], {}, listen,
                ", ".join([f"{HOST}:{listen[0]}", *(f"{port}/tcp" for port in listen[1:])]),
                "java … QuorumPeerMain", [Path(zk.data_dir), Path(zk.log_dir)], zk))
        for i in range(1, self.shape.brokers + 1):
            listen = [p.kafka + i - 1, p.internal + i - 1]
            out.append(Service(
                f"broker-{i}", "broker", i, 1, josef_command("broker"), self.broker_env(i), listen,
                f"{ADVERTISED_HOST}:{listen[0]}, {HOST}:{listen[1]}", "josef broker",
                [self.state_dir / f"broker-{i}-data"]))
        if self.shape.brokers:
            out.append(Service(
                "rest-proxy", "rest-proxy", 0, 2, josef_command("rest-proxy"), self.rest_env(), [p.rest],
                f"{HOST}:{p.rest}", "josef rest-proxy", []))
        return out

    def service(self, name: str) -> Service:
        for s in self.services():
            if s.name == name:
                return s
        raise ClusterError(f"no such service: {name}")

    # -- records -------------------------------------------------------------------------

    def record(self, name: str) -> "Record | None":
        path = self.run_dir / f"{name}.json"
        try:
            return Record(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save_record(self, rec: "Record") -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / f".{rec.name}.json.tmp"
        tmp.write_text(json.dumps(asdict(rec)))
        tmp.replace(self.run_dir / f"{rec.name}.json")

    def running(self, name: str) -> "Record | None":
        rec = self.record(name)
        return rec if rec is not None and rec.alive() else None

    def lock(self) -> "StateLock":
        return StateLock(self.state_dir / ".lock")


@dataclass
class Record:
    """What `josef cluster` knows of the last process it started for a service."""

    name: str
    pid: int
    start_ticks: int               # /proc/<pid>/stat field 22: identifies the process
    started_at: float              # wall clock, for "Up 3 minutes"
    command: list[str]
    stopped_at: float | None = None
    how: str | None = None         # "stopped" or "killed" when josef cluster ended it

    def alive(self) -> bool:
        """The recorded process still runs (not a zombie, not a recycled pid)."""
        return pid_alive(self.pid) and proc_start_ticks(self.pid) == self.start_ticks


def proc_start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class StateLock:
    """An exclusive flock on the state directory: one `josef cluster` changes it at a time."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self) -> "StateLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- starting ---------------------------------------------------------------------------------

def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def check_can_start(topo: Topology, services: list[Service]) -> None:
    """Refuse before anything starts: a port taken by another process, ZooKeeper missing."""
    seen: dict[int, str] = {}
    for s in services:
        for port in s.listen:
            if port in seen:
                raise ClusterError(f"port {port} is used by both {seen[port]} and {s.name}; "
                                   "choose port bases that do not overlap")
            seen[port] = s.name
            if not port_free(port):
                raise ClusterError(f"cannot start {s.name}: port {port} is already in use by another process "
                                   "(stop it, or move the cluster with --kafka-port/--internal-port/"
                                   "--zookeeper-port/--quorum-port/--election-port/--rest-port)")
        if s.zookeeper is not None:
            try:
                s.zookeeper.command()
            except ZooKeeperMissing as e:
                raise ClusterError(str(e)) from None
        elif not Path(s.command[0]).exists():
            raise ClusterError(f"cannot start {s.name}: {s.command[0]} not found")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(topo: Topology, s: Service) -> Record:
    """Start a service detached: its own session, output appended to its log file."""
    topo.logs_dir.mkdir(parents=True, exist_ok=True)
    if s.zookeeper is not None:
        s.zookeeper.write_config()
        command = s.zookeeper.command()
    else:
        for v in s.volumes:
            v.mkdir(parents=True, exist_ok=True)
        command = s.command
    with open(topo.log_path(s.name), "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=topo.state_dir, env=child_env(s.env), start_new_session=True)
    ticks = proc_start_ticks(proc.pid)
    # the Popen object is dropped on purpose: the process outlives this command
    proc.returncode = 0  # keep Popen.__del__ from warning about a running child
    rec = Record(s.name, proc.pid, ticks if ticks is not None else -1, time.time(), command)
    topo.save_record(rec)
    return rec


def rest_brokers(port: int, timeout: float = 1.0) -> list[int] | None:
    """GET /brokers from the REST Proxy: the broker ids, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/brokers", timeout=timeout) as resp:
            return sorted(int(b) for b in json.loads(resp.read())["brokers"])
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError):
        return None


class RegistrationProbe:
    """Reads /brokers/ids/<id> from ZooKeeper: a broker serves once the process we started has
    registered, not while the registration of a killed predecessor awaits its session expiry."""

    def __init__(self, connect: str):
        self.connect, self.client = connect, None
        self.log = logging.getLogger("josef.cluster.probe")
        self.log.propagate = False
        self.log.addHandler(logging.NullHandler())

    def registered_since(self, broker_id: int, since: float) -> bool:
        try:
            if self.client is None:
                from kazoo.client import KazooClient
                self.client = KazooClient(hosts=self.connect, timeout=5.0, logger=self.log)
                self.client.start(timeout=3.0)
            stat = self.client.exists(f"/brokers/ids/{broker_id}")
        except Exception:  # noqa: BLE001 - not reachable yet: not registered yet
            self.close()
            return False
        return stat is not None and stat.ctime / 1000.0 >= since

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.stop()
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
            self.client = None


def ready(topo: Topology, s: Service, want_brokers: list[int] | None = None,
          probe: RegistrationProbe | None = None) -> bool:
    """The service serves: ZooKeeper answers (in quorum); a broker's listeners accept and the
    process we started registered in ZooKeeper; the REST Proxy lists the brokers in
    `want_brokers` (any answer when None)."""
    if s.zookeeper is not None:
        return s.zookeeper.serving()
    if s.kind == "broker":
        if not all(port_open(p) for p in s.listen):
            return False
        rec = topo.record(s.name)
        return probe is None or (rec is not None and probe.registered_since(s.index, rec.started_at))
    ids = rest_brokers(s.client_port)
    if ids is None:
        return False
    return want_brokers is None or set(want_brokers) <= set(ids)


def log_tail(topo: Topology, name: str, lines: int = 20) -> str:
    path = topo.log_path(name)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"last lines of {path}:\n" + "\n".join("    " + line for line in tail)


# -- stopping ---------------------------------------------------------------------------------

def send(rec: Record, sig: int) -> bool:
    """Signal the recorded process (and its session's group) if it is still the one we started."""
    if not rec.alive():
        return False
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(rec.pid, sig)
    return True


def _reap(pid: int) -> None:
    """Collect our own child's exit (an attached `up` is the parent); others are init's."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate(topo: Topology, recs: list[Record], timeout: float = 10.0, on_stopped=None) -> None:
    """SIGTERM the processes together, SIGKILL what still runs after `timeout` seconds."""
    pending = [r for r in recs if send(r, signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    how = "stopped"
    while pending:
        still = []
        for r in pending:
            _reap(r.pid)
            if r.alive():
                still.append(r)
            else:
                r.stopped_at, r.how = time.time(), how
                topo.save_record(r)
                if on_stopped:
                    on_stopped(r)
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            if how == "killed":
                raise ClusterError("could not stop " + ", ".join(r.name for r in pending))
            for r in pending:
                send(r, signal.SIGKILL)
            how, deadline = "killed", time.monotonic() + 10.0
        time.sleep(0.05)


def remove_tree(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False
