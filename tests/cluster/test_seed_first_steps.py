"""The seed's first steps ("Deploy Kafka", then "Demo: Interaction with Kafka via the CLI") on
`josef cluster`: three ZooKeepers, three brokers and the REST Proxy, on free ports, driven
through the command line and the console tools as the seed's reader would."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from josef.cluster.zookeeper_server import pid_alive
from tests.cluster import test_cluster_cli
from tests.cluster.test_cluster_cli import BIN, Cluster, free_bases, needs_broker, needs_zookeeper
from tests.conftest import wait_for

LINES = ["Hello", "Kafka", "I'm Xinkang"]
# the seed's (and josef cluster's) default ports: a developer's own cluster may be using them
DEFAULT_PORTS = {*range(9092, 9095), *range(29092, 29095), *range(2181, 2184), *range(2888, 2891),
                 *range(3888, 3891), 8082}


def bases_off_defaults(count: int, width: int = 3) -> list[int]:
    while True:
        bases = free_bases(count, width)
        if not any(DEFAULT_PORTS & set(range(b, b + width)) for b in bases):
            return bases


@pytest.fixture
def cluster(monkeypatch):
    """test_cluster_cli's fixture, never on a default port."""
    monkeypatch.setattr(test_cluster_cli, "free_bases", bases_off_defaults)
    cwd = Path(tempfile.mkdtemp(prefix="josef-cluster-test-"))
    c = Cluster(cwd)
    try:
        yield c
    finally:
        c.cleanup()
        shutil.rmtree(cwd, ignore_errors=True)


def logs(cluster) -> str:
    return cluster.run("logs", "--tail", "15").stdout


def rest_get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def tool(name: str, *args: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


@needs_zookeeper
@needs_broker
@pytest.mark.timeout(90)
def test_seed_first_steps(cluster):
    # docker compose up -d
    out = cluster.ok("up", "-d", flags=True)
    assert "[+] Running 7/7" in out
    rest = cluster.ports["rest"]
    bootstrap = f"localhost:{cluster.ports['kafka']}"  # broker-1's HOST listener, as 9092 in the seed

    # curl localhost:8082/brokers, serving as soon as `up -d` returns
    assert rest_get(rest, "/brokers") == {"brokers": [1, 2, 3]}

    # kafka-console-producer.sh --bootstrap-server localhost:9092 --topic first_topic
    # (the topic does not exist yet: it is created on first use)
    produced = tool("kafka-console-producer.sh", "--bootstrap-server", bootstrap, "--topic", "first_topic",
                    stdin="".join(line + "\n" for line in LINES))
    assert produced.returncode == 0, f"{produced.stderr}\n{logs(cluster)}"
    assert "Traceback" not in produced.stderr, produced.stderr

    # kafka-console-consumer.sh --bootstrap-server localhost:9092 --topic first_topic --from-beginning
    consumed = tool("kafka-console-consumer.sh", "--bootstrap-server", bootstrap, "--topic", "first_topic",
                    "--from-beginning", "--max-messages", "3")
    assert consumed.returncode == 0, f"{consumed.stderr}\n{logs(cluster)}"
    assert consumed.stdout.splitlines() == LINES, f"{consumed.stdout!r}\n{consumed.stderr}\n{logs(cluster)}"

    # curl localhost:8082/topics
    assert rest_get(rest, "/topics") == ["first_topic"]

    # docker compose down -v: nothing left running, no state left behind
    recorded = cluster.recorded()
    assert len(recorded) == 7
    cluster.ok("down", "-v")
    assert not cluster.state.exists()
    wait_for(lambda: not any(pid_alive(pid) for pid, _ in recorded), 10, what="every process gone")
