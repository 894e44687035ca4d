"""Network partitions between hosts (issue 7).

Three simulated hosts (network namespaces, see hosts.py), each running one member of a
three-member ZooKeeper ensemble and one `josef broker` bound to the host's own address; a
fourth host runs the clients and is never cut off. The leader of a partition is isolated
while an idempotent acks=all producer keeps writing: first from the other brokers and
ZooKeeper members only (the client can still reach it, so it takes writes it cannot
replicate and must not acknowledge), then from the client too. The other two brokers
elect a new leader once the isolated broker's ZooKeeper session expires and writes go on.
After the network heals, the old leader must cut its divergent tail, catch up and rejoin
the ISR. Then every acknowledged value is read back exactly once at the offset it was
acknowledged with, and the three replicas' logs are identical.

Needs root, `ip netns` and nftables or iptables; skipped otherwise.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from josef.cluster.zookeeper_server import Peer, ZooKeeperServer
from tests.cluster.hosts import ClientHost, Hosts, unavailable_reason
from tests.conftest import BIN

BROKERS = (1, 2, 3)  # broker i and ZooKeeper member i run on host i
CLIENT = 4
ZK_PORT, ZK_QUORUM_PORT, ZK_ELECTION_PORT = 2181, 2888, 3888
KAFKA_PORT, INTERNAL_PORT = 9092, 29092
SESSION_TIMEOUT_MS = 6000
BROKER_SETTINGS = {
    "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "replica.lag.time.max.ms": "2000",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "offsets.topic.replication.factor": "3",
}
PRODUCER = {
    "acks": "all", "enable.idempotence": True, "linger.ms": 5,
    "request.timeout.ms": 5000,  # also the broker's acks=all wait
    "socket.timeout.ms": 10000, "socket.connection.setup.timeout.ms": 5000,
    "message.timeout.ms": 120000, "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 2000,
}
RATE = 400  # values per second
PROBE = "probe"  # sent to the old leader alone while it is cut off from the other brokers
PROBE_PRODUCER = {"acks": "all", "enable.idempotence": False, "retries": 0, "request.timeout.ms": 2500,
                  "message.timeout.ms": 3000, "socket.connection.setup.timeout.ms": 2000}


def deadline_wait(predicate, timeout: float, what: str, interval: float = 0.2, diagnose=None):
    """Poll until `predicate()` is truthy; on time-out fail with `what` and diagnose()'s text."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f"\n{diagnose()}" if diagnose else ""))
        time.sleep(interval)


@dataclass
class HostCluster:
    hosts: Hosts
    tmp: Path
    client: ClientHost | None = None
    zk: dict[int, subprocess.Popen] = field(default_factory=dict)
    brokers: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def zk_connect(self) -> str:
        return ",".join(f"{self.hosts.addr(i)}:{ZK_PORT}" for i in BROKERS) + "/josef"

    def bootstrap(self, *ids: int) -> str:
        return ",".join(f"{self.hosts.addr(i)}:{KAFKA_PORT}" for i in (ids or BROKERS))

    def data_dir(self, i: int) -> Path:
        return self.tmp / f"broker-{i}-data"

    def broker_log(self, i: int) -> Path:
        return self.tmp / f"broker-{i}.log"

    def start_zookeeper(self) -> None:
        peers = [Peer(i, self.hosts.addr(i), ZK_QUORUM_PORT, ZK_ELECTION_PORT) for i in BROKERS]
        for i in BROKERS:
            server = ZooKeeperServer(self.tmp / f"zookeeper-{i}", ZK_PORT, self.hosts.addr(i), i, peers,
                                     tick_time_ms=500)
            server.write_config()
            with open(self.tmp / f"zookeeper-{i}.log", "ab") as log:
                self.zk[i] = subprocess.Popen(self.hosts.exec_args(i, *server.command()), stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True)

    def start_broker(self, i: int) -> None:
        addr = self.hosts.addr(i)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        endpoints = f"HOST://{addr}:{KAFKA_PORT},INTERNAL://{addr}:{INTERNAL_PORT}"
        env.update({
            "KAFKA_BROKER_ID": str(i),
            "KAFKA_ZOOKEEPER_CONNECT": self.zk_connect,
            "KAFKA_LISTENERS": endpoints,
            "KAFKA_ADVERTISED_LISTENERS": endpoints,
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:PLAINTEXT,INTERNAL:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "KAFKA_LOG_DIRS": str(self.data_dir(i)),
        })
        args = [str(BIN / "josef"), "broker"]
        for key, value in BROKER_SETTINGS.items():
            args += ["--override", f"{key}={value}"]
        with open(self.broker_log(i), "ab") as log:
            self.brokers[i] = subprocess.Popen(self.hosts.exec_args(i, *args), env=env, stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True)

    def stop_all(self) -> None:
        """Kill what this test started, by process group (each was started in its own session)."""
        if self.client is not None:
            self.client.close()
        for proc in [*self.brokers.values(), *self.zk.values()]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in [*self.brokers.values(), *self.zk.values()]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # --- looking at the cluster from the client host -------------------------------------

    def metadata(self, via: int, topic: str | None = None) -> dict | None:
        """Broker `via`'s own view, or None if it does not answer."""
        return self.client.try_call("metadata", timeout=15, bootstrap=self.bootstrap(via), topic=topic)

    def partition(self, via: int, topic: str, partition: int = 0) -> dict | None:
        md = self.metadata(via, topic)
        if md is None or topic not in md["topics"]:
            return None
        return md["topics"][topic].get(str(partition))

    def log_problems(self) -> str:
        """ERROR, Traceback and exception lines of every broker log."""
        lines = []
        for i in BROKERS:
            text = self.broker_log(i).read_text(errors="replace") if self.broker_log(i).exists() else ""
            for line in text.splitlines():
                if re.search(r"ERROR|Traceback|Error:|Exception", line):
                    lines.append(f"broker-{i}: {line}")
        return "\n".join(lines[-60:]) or "(no ERROR or Traceback lines in the broker logs)"

    def dump(self, i: int, topic: str, partition: int = 0) -> list[str]:
        """The partition's batches and records on broker i's disk, without file positions."""
        pdir = self.data_dir(i) / f"{topic}-{partition}"
        segments = sorted(str(p) for p in pdir.glob("*.log"))
        if not segments:
            return []
        out = subprocess.run([str(BIN / "josef"), "dump-log", "--files", ",".join(segments), "--print-data-log"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [re.sub(r" position: \d+", "", line) for line in out.stdout.splitlines()
                if line and not line.startswith(("Dumping ", "Log starting offset"))]


@pytest.fixture
def host_cluster(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"simulated hosts unavailable: {reason}")
    hosts = Hosts(4)
    cluster = HostCluster(hosts, tmp_path)
    try:
        hosts.create()
        cluster.start_zookeeper()
        cluster.client = ClientHost(hosts, CLIENT, tmp_path / "client-agent.log")

        def zk_serving():
            for i, proc in cluster.zk.items():
                assert proc.poll() is None, f"ZooKeeper {i} exited with {proc.returncode}"
            return all(cluster.client.call("zk_mode", host=hosts.addr(i), port=ZK_PORT) for i in BROKERS)
        deadline_wait(zk_serving, 40, "the ZooKeeper ensemble to serve")
        for i in BROKERS:
            cluster.start_broker(i)

        def brokers_ready():
            for i, proc in cluster.brokers.items():
                assert proc.poll() is None, \
                    f"broker {i} exited with {proc.returncode}:\n{cluster.broker_log(i).read_text()[-3000:]}"
            for i in BROKERS:
                md = cluster.metadata(i)
                if md is None or md["brokers"] != list(BROKERS) or md["controller"] < 0:
                    return False
            return True
        deadline_wait(brokers_ready, 40, "three brokers registered with a controller", diagnose=cluster.log_problems)
        yield cluster
    finally:
        cluster.stop_all()
        leaked = hosts.destroy()
        assert not leaked, f"processes left in the simulated hosts: {leaked}"


@pytest.mark.timeout(240)
def test_isolated_leader_is_replaced_and_rejoins_without_losing_acknowledged_writes(host_cluster):
    c = host_cluster
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t0, 1)

    topic = "partitioned"
    c.client.call("create_topic", bootstrap=c.bootstrap(), topic=topic, partitions=1, rf=3,
                  config={"min.insync.replicas": "2"})
    state = deadline_wait(lambda: (s := c.partition(1, topic)) and s["isr"] == [1, 2, 3] and s["leader"] > 0 and s,
                          30, "the new partition's full ISR", diagnose=c.log_problems)
    old = state["leader"]
    others = [i for i in BROKERS if i != old]
    controller = c.metadata(others[0])["controller"]

    def acked() -> int:
        return c.client.call("produce_progress")["acked"]

    def progress() -> str:
        return f"producer: {c.client.call('produce_progress')}\n{c.log_problems()}"

    c.client.call("produce_start", bootstrap=c.bootstrap(), topic=topic, config=PRODUCER, rate=RATE)
    deadline_wait(lambda: acked() >= 300, 30, "writes acknowledged before the partition", diagnose=progress)
    mark("producing")

    # The old leader loses the other brokers and ZooKeeper members first: the client still
    # reaches it, so it appends values it cannot replicate and must not acknowledge.
    c.hosts.isolate(old, keep=(CLIENT,))
    mark("cut from cluster")
    probe = c.client.call("produce_one", timeout=30, bootstrap=c.bootstrap(old), topic=topic, value=PROBE,
                          config=PROBE_PRODUCER, wait_s=10)
    mark("probe answered")
    assert probe["error"] is not None, \
        f"broker {old} acknowledged a write it could not replicate (offset {probe['offset']})"
    c.hosts.isolate(old)
    mark("cut from client")
    acked_at_cut = acked()

    def new_leader():
        s = c.partition(others[0], topic) or c.partition(others[1], topic)
        return s is not None and s["leader"] in others and s
    state = deadline_wait(new_leader, 45, "a new leader among the connected brokers", diagnose=progress)
    mark("new leader")
    deadline_wait(lambda: acked() >= acked_at_cut + 300, 45, "writes acknowledged by the new leader",
                  diagnose=progress)
    mark("writes resumed")
    new = state["leader"]
    isolated_log = c.dump(old, topic)  # what the old leader holds while cut off

    c.hosts.heal()
    mark("healed")

    def rejoined():
        s = c.partition(new, topic)
        return s is not None and s["leader"] == new and s["isr"] == [1, 2, 3]
    deadline_wait(rejoined, 60, f"broker {old} back in the ISR", diagnose=progress)
    mark("rejoined ISR")
    at_rejoin = acked()
    deadline_wait(lambda: acked() >= at_rejoin + 200, 30, "writes acknowledged with the full ISR", diagnose=progress)
    outcome = c.client.call("produce_stop", timeout=90, flush_timeout=60)
    mark("stopped producing")

    acks: dict[str, int] = outcome["acked"]
    assert not outcome["unresolved"], f"{len(outcome['unresolved'])} values never resolved"
    assert not outcome["failed"], \
        f"{len(outcome['failed'])} writes failed: {sorted(set(outcome['failed'].values()))}\n{c.log_problems()}"

    records = c.client.call("read_back", timeout=90, bootstrap=c.bootstrap(), topic=topic, partition=0,
                            expected=len(acks), wait_s=60)
    values = [v for _, v in records]
    by_value = {v: o for o, v in records}
    assert len(values) == len(set(values)), \
        f"values written twice: {sorted(v for v in set(values) if values.count(v) > 1)[:20]}"
    lost = sorted(set(acks) - set(values), key=lambda v: int(v[1:]))
    assert not lost, f"{len(lost)} acknowledged values lost, e.g. {lost[:10]}\n{c.log_problems()}"
    moved = {v: (o, by_value[v]) for v, o in acks.items() if by_value[v] != o}
    assert not moved, f"{len(moved)} values not at the offset they were acknowledged with: {list(moved.items())[:10]}"
    assert set(values) <= set(outcome["sent"]), f"unexpected values: {sorted(set(values) - set(outcome['sent']))[:10]}"
    assert [o for o, _ in records] == list(range(records[0][0], records[0][0] + len(records)))

    # The replicas are identical (the followers may need a moment for the last fetch).
    dumps: dict[int, list[str]] = {}

    def identical():
        dumps.update({i: c.dump(i, topic) for i in BROKERS})
        return dumps[1] == dumps[2] == dumps[3]
    try:
        deadline_wait(identical, 30, "identical replicas", interval=0.5)
    except AssertionError:
        for i in BROKERS:
            (c.tmp / f"dump-{i}.txt").write_text("\n".join(dumps[i]))
        first_diff = next((n for n, lines in enumerate(zip(dumps[1], dumps[2], dumps[3])) if len(set(lines)) > 1),
                          min(len(d) for d in dumps.values()))
        raise AssertionError(f"replicas differ (sizes {[len(d) for d in dumps.values()]}) from line {first_diff}: "
                             f"{[d[first_diff:first_diff + 2] for d in dumps.values()]}; dumps in {c.tmp}")
    payloads = [m.group(1) for m in (re.search(r" payload: (\S+)$", line) for line in dumps[1]) if m]
    assert payloads == values

    # The old leader had a tail the new leader never got (at least the probe): it must have cut it off.
    kept = next((n for n, (a, b) in enumerate(zip(isolated_log, dumps[old])) if a != b), len(isolated_log))
    divergent_tail = isolated_log[kept:]
    probe_appended = any(line.endswith(f" payload: {PROBE}") for line in isolated_log)
    old_log = c.broker_log(old).read_text(errors="replace")
    truncations = [line.split("] ", 1)[-1] for line in old_log.splitlines()
                   if "truncating" in line and f"{topic}-0" in line]
    if divergent_tail:
        assert truncations, f"broker {old} diverged but never logged a truncation"
    print(f"\nold leader {old} (controller was {controller}), new leader {new}; "
          f"acknowledged {len(acks)} of {len(outcome['sent'])} values; probe to the cut-off leader: {probe}, "
          f"appended there: {probe_appended}; divergent tail: {len(divergent_tail)} line(s) of dump; "
          f"truncations: {truncations}; timeline (s): {marks}")
