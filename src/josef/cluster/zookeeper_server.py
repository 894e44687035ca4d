"""Running Apache ZooKeeper (the Debian package's jar) as a plain child process.

Used by `josef cluster` and by the cluster tests. The JVM is called directly, as
zkServer.sh on Debian ignores a custom config and log directory; the flags keep one
server near 60 MB.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ZK_JAR = Path("/usr/share/java/zookeeper.jar")
CLASSPATH = ":".join(str(ZK_JAR.parent / j) for j in ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar"))
LOG4J = "/etc/zookeeper/conf/log4j.properties"
JVM_FLAGS = ["-Xmx128m", "-Xms16m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


class ZooKeeperMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Peer:
    my_id: int
    host: str
    quorum_port: int
    election_port: int


@dataclass
class ZooKeeperServer:
    """One ZooKeeper server: standalone when `peers` is empty, else a member of an ensemble."""

    data_dir: Path
    client_port: int
    host: str = "127.0.0.1"
    my_id: int = 1
    peers: list[Peer] = field(default_factory=list)
    tick_time_ms: int = 500
    log_dir: Path | None = None  # default: data_dir

    @property
    def connect(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return Path(self.data_dir) / "zoo.cfg"

    def write_config(self) -> None:
        data = Path(self.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"dataDir={data.resolve()}",
            f"clientPort={self.client_port}",
            f"clientPortAddress={self.host}",
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            "syncLimit=5",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
        ]
        for p in self.peers:
            lines.append(f"server.{p.my_id}={p.host}:{p.quorum_port}:{p.election_port}")
        if self.peers:
            (data / "myid").write_text(f"{self.my_id}\n")
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        if not ZK_JAR.exists() or shutil.which("java") is None:
            raise ZooKeeperMissing("ZooKeeper is not installed: apt-get install -y zookeeper (needs Java)")
        log_dir = Path(self.log_dir or self.data_dir).resolve()
        return ["java", *JVM_FLAGS, f"-Dzookeeper.log.dir={log_dir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
                f"-Dlog4j.configuration=file:{LOG4J}", "-cp", CLASSPATH,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.config_path.resolve())]

    def start(self, log_file) -> subprocess.Popen:
        """Write the config and start the server in its own session; output goes to `log_file`."""
        self.write_config()
        return subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def four_letter(self, word: str, timeout: float = 1.0) -> str:
        try:
            with socket.create_connection((self.host, self.client_port), timeout=timeout) as s:
                s.sendall(word.encode())
                chunks = []
                while chunk := s.recv(4096):
                    chunks.append(chunk)
                return b"".join(chunks).decode(errors="replace")
        except OSError:
            return ""

    def serving(self) -> bool:
        """True once the server answers requests (for an ensemble member: quorum formed)."""
        return "Mode:" in self.four_letter("srvr")

    def wait_serving(self, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.serving():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ZooKeeper on {self.connect} not serving after {timeout:.0f}s")
            time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (PID 1 on these machines reaps late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False



