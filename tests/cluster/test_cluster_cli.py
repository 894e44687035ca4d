"""`josef cluster`: the seed's compose topology (3 ZooKeepers, 3 brokers, the REST Proxy) as local
processes, driven through the command line as a user would, on free ports in a temporary dir."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from josef.cluster.launcher import port_free, proc_start_ticks
from josef.cluster.zookeeper_server import ZK_JAR, pid_alive
from tests.conftest import wait_for

BIN = Path(sys.executable).parent
needs_zookeeper = pytest.mark.skipif(not ZK_JAR.exists(), reason="ZooKeeper is not installed (make system-deps)")
needs_broker = pytest.mark.skipif(find_spec("josef.cli.broker") is None, reason="josef broker is not there yet")


def free_bases(count: int, width: int = 3) -> list[int]:
    """`count` port bases, each starting `width` free ports, below the ephemeral range."""
    taken: set[int] = set()
    bases = []
    while len(bases) < count:
        base = random.randrange(20000, 32000 - width)
        ports = set(range(base, base + width))
        if not ports & taken and all(port_free(p) for p in ports):
            taken |= ports
            bases.append(base)
    return bases


class Cluster:
    def __init__(self, cwd: Path, brokers: int = 3, zookeepers: int = 3):
        kafka, internal, zk, quorum, election, rest = free_bases(6)
        self.cwd, self.state = cwd, cwd / "josef-cluster"
        self.seen: set[tuple[int, int]] = set()  # every (pid, start time) ever recorded
        self.ports = {"kafka": kafka, "internal": internal, "zookeeper": zk, "rest": rest}
        self.flags = ["--brokers", str(brokers), "--zookeepers", str(zookeepers),
                      "--kafka-port", str(kafka), "--internal-port", str(internal), "--zookeeper-port", str(zk),
                      "--quorum-port", str(quorum), "--election-port", str(election), "--rest-port", str(rest)]

    def run(self, *args: str, timeout: float = 60.0, flags: bool = False) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "josef"), "cluster", *(self.flags if flags else []), *args]
        try:
            return subprocess.run(cmd, cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        finally:
            self.seen.update(self.recorded())

    def ok(self, *args: str, **kw) -> str:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"josef cluster {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr, r.stderr
        return r.stdout

    def ps(self) -> dict[str, str]:
        """NAME -> the STATUS column."""
        lines = self.ok("ps").splitlines()
        header = lines[0]
        start, end = header.index("STATUS"), header.index("PID")
        return {line.split()[0]: line[start:end].strip() for line in lines[1:]}

    def brokers(self) -> list[int] | None:
        import urllib.request
        try:
            url = f"http://127.0.0.1:{self.ports['rest']}/brokers"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())["brokers"]
        except OSError:
            return None

    def recorded(self) -> list[tuple[int, int]]:
        out = []
        for p in (self.state / "run").glob("*.json"):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            out.append((rec["pid"], rec["start_ticks"]))
        return out

    def cleanup(self) -> None:
        """Whatever the test did: no process of ours stays behind."""
        if self.state.exists():
            self.run("down", "-v", "-t", "5")
        for pid, ticks in self.seen:
            if pid_alive(pid) and proc_start_ticks(pid) == ticks:
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def cluster():
    # not pytest's tmp_path: a concurrent pytest run may prune old basetemp directories, and the
    # state directory is what tells which processes to stop
    cwd = Path(tempfile.mkdtemp(prefix="josef-cluster-test-"))
    c = Cluster(cwd)
    try:
        yield c
    finally:
        c.cleanup()
        shutil.rmtree(cwd, ignore_errors=True)


@needs_zookeeper
@needs_broker
@pytest.mark.timeout(90)
def test_up_ps_stop_start_down(cluster):
    out = cluster.ok("up", "-d", flags=True)
    assert "[+] Running 7/7" in out
    for name in ("zookeeper-1", "zookeeper-2", "zookeeper-3", "broker-1", "broker-2", "broker-3", "rest-proxy"):
        assert f"Container {name}" in out
    # serving when `up -d` returns: no waiting here
    assert cluster.brokers() == [1, 2, 3]
    status = cluster.ps()
    assert sorted(status) == ["broker-1", "broker-2", "broker-3", "rest-proxy",
                              "zookeeper-1", "zookeeper-2", "zookeeper-3"]
    assert all(s.startswith("Up ") for s in status.values()), status
    ps_out = cluster.ok("ps")
    assert f"localhost:{cluster.ports['kafka']}, 127.0.0.1:{cluster.ports['internal']}" in ps_out
    assert '"josef broker"' in ps_out

    # the shape is remembered: no flags from here on
    out = cluster.ok("stop", "broker-2")
    assert "broker-2" in out and "Stopped" in out
    status = cluster.ps()
    assert status["broker-2"].startswith("Exited") and status["broker-1"].startswith("Up"), status
    wait_for(lambda: cluster.brokers() == [1, 3], 20, what="/brokers == [1, 3]")

    cluster.ok("start", "broker-2")
    assert cluster.ps()["broker-2"].startswith("Up")
    wait_for(lambda: cluster.brokers() == [1, 2, 3], 20, what="/brokers == [1, 2, 3]")

    # a killed service is Exited (137); `up` starts what is not running and leaves the rest
    cluster.ok("kill", "rest-proxy")
    assert cluster.ps()["rest-proxy"].startswith("Exited (137)")
    out = cluster.ok("up", "-d")
    assert "rest-proxy" in out and "Started" in out and "broker-1     Running" in out
    assert cluster.brokers() == [1, 2, 3]

    one = cluster.ok("logs", "broker-1")
    assert one.strip() and not one.startswith("broker-1")  # a single service: no prefix
    every = cluster.ok("logs", "--tail", "1")
    assert {line.split("|")[0].strip() for line in every.splitlines()} >= {"broker-1", "rest-proxy",
                                                                            "zookeeper-3"}

    recorded = cluster.recorded()
    assert len(recorded) == 7
    cluster.ok("down", "-v")
    assert not cluster.state.exists()
    wait_for(lambda: not any(pid_alive(pid) for pid, _ in recorded), 10, what="every process gone")


@needs_zookeeper
@pytest.mark.timeout(60)
def test_zookeeper_ensemble_alone(cluster):
    """`up SERVICE` brings only what it needs: the ensemble, here without any broker."""
    out = cluster.ok("up", "-d", "zookeeper-3", flags=True)
    assert "zookeeper-1" in out and "broker" not in out
    with socket.create_connection(("127.0.0.1", cluster.ports["zookeeper"] + 2), timeout=2) as s:
        s.sendall(b"srvr")
        assert b"Mode: " in s.recv(4096)
    cluster.ok("stop", "zookeeper-1")
    assert cluster.ps()["zookeeper-1"].startswith("Exited")
    assert cluster.ps()["zookeeper-2"].startswith("Up")
    cluster.ok("start", "zookeeper-1")  # rejoins the ensemble
    recorded = cluster.recorded()
    cluster.ok("down", "-v")
    assert not cluster.state.exists()
    wait_for(lambda: not any(pid_alive(pid) for pid, _ in recorded), 10, what="every process gone")


@needs_zookeeper
def test_bad_input_never_starts_anything(cluster):
    # a port that another process holds: refused before anything starts
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cluster.ports["kafka"] + 1))
        holder.listen()
        r = cluster.run("up", "-d", flags=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"port {cluster.ports['kafka'] + 1} is already in use" in r.stderr and "broker-2" in r.stderr
    assert not (cluster.state / "run").exists() or not list((cluster.state / "run").iterdir())

    r = cluster.run("stop", "broker-9")
    assert r.returncode == 1 and "no such service: broker-9" in r.stderr
    r = cluster.run("explode")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = cluster.run("ps", "--brokers", "1")  # only `up` changes the remembered shape
    assert r.returncode == 1 and "was set up as --brokers 3" in r.stderr


def test_zookeeper_missing_is_one_message(tmp_path, monkeypatch, capsys):
    from josef.cli import cluster as cli
    from josef.cluster import zookeeper_server

    monkeypatch.setattr(zookeeper_server, "ZK_JAR", tmp_path / "nowhere.jar")
    bases = free_bases(6)
    flags = [f"--{name}-port={b}" for name, b in
             zip(("kafka", "internal", "zookeeper", "quorum", "election", "rest"), bases)]
    assert cli.main(["--dir", str(tmp_path / "c"), *flags, "up", "-d"]) == 1
    assert "ZooKeeper is not installed" in capsys.readouterr().err
    assert not (tmp_path / "c" / "run").exists()
