"""Cluster fixtures: a real ZooKeeper and several `josef broker` processes on loopback.

One standalone ZooKeeper serves the whole session; every cluster gets its own chroot, so
clusters of different tests never see each other.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from josef.cluster.zookeeper_server import ZooKeeperServer
from tests.conftest import BIN, BrokerControl, free_port, wait_for

# test-friendly settings: fast session expiry, groups form at once, a small offsets topic
CLUSTER_DEFAULTS = {
    "zookeeper.session.timeout.ms": "6000",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "6",
}


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), free_port(), tick_time_ms=500)
    with open(Path(server.data_dir) / "zookeeper.log", "wb") as log:
        proc = server.start(log)
    try:
        server.wait_serving(30, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class ClusterBroker(BrokerControl):
    broker_id: int
    zk_connect: str
    data_dir: Path
    overrides: dict[str, str]
    port: int = field(default_factory=free_port)  # HOST listener: clients
    internal_port: int = field(default_factory=free_port)  # INTERNAL listener: brokers
    proc: subprocess.Popen | None = None
    STOP_TIMEOUT = 20.0

    @property
    def label(self) -> str:
        return f"broker {self.broker_id}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"broker-{self.broker_id}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        env.update({
            "KAFKA_BROKER_ID": str(self.broker_id),
            "KAFKA_ZOOKEEPER_CONNECT": self.zk_connect,
            "KAFKA_LISTENERS": f"HOST://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port}",
            "KAFKA_ADVERTISED_LISTENERS": f"HOST://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port}",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:PLAINTEXT,INTERNAL:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "KAFKA_LOG_DIRS": str(self.data_dir),
        })
        return env

    def start(self, timeout: float = 20.0) -> "ClusterBroker":
        args = [str(BIN / "josef"), "broker"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        return self.launch(args, env=self.env(), timeout=timeout)


@dataclass
class Cluster:
    brokers: dict[int, ClusterBroker]
    zk_connect: str

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def admin(self, broker_id: int | None = None) -> AdminClient:
        servers = self.brokers[broker_id].bootstrap if broker_id else self.bootstrap
        return AdminClient({"bootstrap.servers": servers})

    def metadata(self, broker_id: int, topic: str | None = None):
        """One broker's own view (librdkafka asks the bootstrap broker it connected to)."""
        return self.admin(broker_id).list_topics(topic, timeout=10)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every running broker sees every running broker and a controller."""
        running = {i for i, b in self.brokers.items() if b.running}

        def ready():
            for i in running:
                md = self.metadata(i)
                if set(md.brokers) != running or md.controller_id < 0:
                    return False
            return True
        wait_for(ready, timeout, interval=0.1, what=f"brokers {sorted(running)} registered with a controller")

    def leaders(self, topic: str, broker_id: int | None = None) -> dict[int, int]:
        md = self.metadata(broker_id or next(i for i, b in self.brokers.items() if b.running), topic)
        return {p.id: p.leader for p in md.topics[topic].partitions.values()}


@pytest.fixture
def cluster_factory(zookeeper, tmp_path):
    made: list[Cluster] = []

    def make(n: int = 3, overrides: dict[str, str] | None = None) -> Cluster:
        zk_connect = f"{zookeeper.connect}/josef-{uuid.uuid4().hex[:8]}"
        settings = {**CLUSTER_DEFAULTS, "offsets.topic.replication.factor": str(min(n, 3)), **(overrides or {})}
        brokers = {i: ClusterBroker(i, zk_connect, tmp_path / f"c{len(made)}-broker-{i}", settings)
                   for i in range(1, n + 1)}
        cluster = Cluster(brokers, zk_connect)
        made.append(cluster)
        for b in brokers.values():
            b.start()
        cluster.wait_ready()
        return cluster

    yield make
    for cluster in made:
        for b in cluster.brokers.values():
            b.kill()
