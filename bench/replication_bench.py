"""Replication on this machine (issue 7): acks=all RF 3 vs a single broker, fail-over, healing.

    .venv/bin/python bench/replication_bench.py [--phases kbench,latency,partitions,failover,profile,catchup]
        [--reps 3] [--rounds 2] [--kbench-phases produce_acks1,produce_acksall,consume,latency]
        [--lat-samples 500] [--fill-mb 50] [--signals KILL,TERM] [--override KEY=VALUE ...]
        [--json] [--json-file PATH] [--work-dir DIR] [--keep-logs] [-- KBENCH-ARGS...]

Every cluster is one standalone ZooKeeper (josef.cluster.zookeeper_server) and 3 `josef broker`
processes on free loopback ports (never 9092-9094, 29092-29094, 2181-2183, 8082), started as
tests/cluster/conftest.py does, with `zookeeper.session.timeout.ms=6000` (josef cluster's
default), `min.insync.replicas=2` and `offsets.topic.replication.factor=3` (`--override` adds more).

kbench    compare.py style, alternating A B A B for --rounds rounds, each run on a fresh start:
          A = the 3-broker cluster, kbench through bench/kbench_rf.py --replication-factor 3
          (bootstrap = all three brokers, --broker-pgid = the brokers' shared process group, so
          broker CPU is the sum of the three), B = a single `josef serve --rest-port 0` with the
          plain kbench.py; both with the harness interpreter (/tmp/benchvenv). After kbench, the
          same run also measures acks=all latency (below) on a fresh topic: RF 3 on A, RF 1 on B.
          The headline ratio is A's produce_acksall over B's produce_acks1, per round and of the
          medians.
latency   acks=all produce latency on a fresh cluster: one record (100 bytes) at a time, linger 0,
          a flush per record, 50 warm-up records then --lat-samples timed ones, round robin over
          the 6 partitions of an RF 3 topic (so over all three leaders); p50/p90/p99/max. acks=1
          on the same topic for reference. --reps times.
failover  one cluster; per repetition a fresh RF 3 topic of 3 partitions (each broker leads one)
          and a producer thread writing acks=all to every partition (one record per partition
          every 5 ms, linger 5 ms, retry/reconnect backoff 50-200 ms, message.timeout.ms 60 s).
          The leader of one partition (a broker that is not the controller) gets SIGKILL (--reps
          times), then SIGTERM, controlled shutdown (--reps times; --signals picks). Measured from the
          signal: the first acked record sent after the signal on the victim's partition, the
          longest gap between acks on every partition, when Metadata (asked of a survivor) shows
          the new leader and the victim out of the ISRs, when the process exited, and every
          failed produce. Then, with the broker still down, --fill-mb MB (10 KB values,
          acks=all) are written to the topic, the broker is started again and the time from its
          start to being back in the ISR of every partition it hosts (Metadata isrs, all topics)
          is measured. A broker that has not exited --dump-after s after SIGTERM is dumped with
          py-spy (the stacks go into the JSON).
partitions acks=all (and acks=1) latency as above on one cluster while idle RF 3 partitions are
          added (--idle-partitions, default 0,50,100,200 on top of the 6 measured).
profile   (not in the default phases; needs py-spy) broker 1 leads all 6 partitions of an RF 3
          topic and brokers 2, 3 follow; a kbench-like acks=all producer runs for --profile-secs
          while py-spy samples broker 1 (leader) and broker 2 (follower): top functions by own
          and by inclusive busy samples, and each broker's CPU.
catchup   (not in the default phases) follower CPU seconds per GB replicated: broker 1 leads
          --catchup-partitions partitions of an RF 3 topic, --fill-mb MB (--fill-value-kb values)
          are written acks=1; "stream" = followers running during the write, "catchup" = followers
          paused (SIGSTOP) during the write and measured from their resume until caught up (log
          bytes equal to the leader's). --reps times; --catchup-profile adds a py-spy'd catch-up.

Prints a table of medians (min-max) on stdout, everything with --json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from josef.cluster.zookeeper_server import ZooKeeperServer, pid_alive  # noqa: E402

JOSEF = Path(sys.executable).parent / "josef"
HARNESS_PY = "/tmp/benchvenv/bin/python"
KBENCH = "/work/shared/bench/kbench.py"
KBENCH_RF = ROOT / "bench" / "kbench_rf.py"
RESERVED = ({*range(9092, 9095), *range(29092, 29095), *range(2181, 2184), *range(2888, 2891),
             *range(3888, 3891), 8082})
SESSION_TIMEOUT_MS = 6000
CLUSTER_SETTINGS = {
    "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "group.initial.rebalance.delay.ms": "0",
}
_QUIET = logging.getLogger("replication_bench.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
QUIET = {"logger": _QUIET}  # librdkafka's complaints about the brokers we kill


def log(text: str) -> None:
    print(f"[replication_bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


_taken: set[int] = set()


def free_port() -> int:
    while True:
        p = random.randrange(20000, 32000)
        if p not in RESERVED and p not in _taken and port_free(p):
            _taken.add(p)
            return p


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds of a process, all its live threads, from schedstat (ns), as kbench counts."""
    total, found = 0, False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    found = True
            except OSError:
                pass
    except OSError:
        return None
    return total / 1e9 if found else None


_TICK = os.sysconf("SC_CLK_TCK")


def proc_user_sys_s(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process from /proc/PID/stat (exited threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def summary(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values), "values": [round(v, 4) for v in values]}


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        if v["n"] == 1:
            return fmt(v["median"])
        return f"{fmt(v['median'])} ({fmt(v['min'])}-{fmt(v['max'])})"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# -- processes --------------------------------------------------------------------------------

class Process:
    """A child in its own session (or in a given process group); stopped by its id only."""

    def __init__(self, name: str, log_path: Path):
        self.name, self.log_path = name, log_path
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def spawn(self, args: list[str], env: dict | None = None, pgid: int | None = None) -> None:
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            out.flush()
            kw = {"process_group": pgid} if pgid is not None else {"start_new_session": True}
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **kw)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.running:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for {timeout:.0f}s: SIGKILL")
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


class Broker(Process):
    def __init__(self, broker_id: int, zk_connect: str, work: Path, overrides: dict[str, str]):
        super().__init__(f"broker-{broker_id}", work / f"broker-{broker_id}.log")
        self.broker_id, self.zk_connect, self.overrides = broker_id, zk_connect, overrides
        self.data_dir = work / f"broker-{broker_id}-data"
        self.port, self.internal_port = free_port(), free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZOO"))}
        listeners = f"HOST://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port}"
        env.update({
            "KAFKA_BROKER_ID": str(self.broker_id),
            "KAFKA_ZOOKEEPER_CONNECT": self.zk_connect,
            "KAFKA_LISTENERS": listeners,
            "KAFKA_ADVERTISED_LISTENERS": listeners,
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:PLAINTEXT,INTERNAL:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "KAFKA_LOG_DIRS": str(self.data_dir),
        })
        return env

    def start(self, pgid: int | None = None) -> None:
        args = [str(JOSEF), "broker"]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        self.spawn(args, self.env(), pgid)

    def wait_port(self, timeout: float = 30.0) -> float:
        wait(lambda: not self.running or port_open(self.port), timeout, f"{self.name}'s port")
        if not self.running:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}, see {self.log_path}")
        return time.perf_counter() - self.started_at


class Cluster:
    """One ZooKeeper and n brokers; shared_group puts the brokers in one process group."""

    def __init__(self, work: Path, n: int = 3, overrides: dict[str, str] | None = None,
                 shared_group: bool = False):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.zk_server = ZooKeeperServer(work / "zookeeper", free_port(), tick_time_ms=500)
        self.zk = Process("zookeeper", work / "zookeeper.log")
        settings = {**CLUSTER_SETTINGS, **(overrides or {})}
        self.brokers = {i: Broker(i, self.zk_server.connect + "/josef", work, settings) for i in range(1, n + 1)}
        self.shared_group = shared_group
        self.pgid: int | None = None

    def start(self) -> float:
        began = time.perf_counter()
        self.zk_server.write_config()
        self.zk.spawn(self.zk_server.command())
        self.zk_server.wait_serving(60, self.zk.proc)
        for b in self.brokers.values():
            # a process group of our session (setpgid cannot join a group of another session)
            b.start((self.pgid or 0) if self.shared_group else None)
            if self.shared_group and self.pgid is None:
                self.pgid = b.pid
        for b in self.brokers.values():
            b.wait_port()
        self.wait_ready()
        return time.perf_counter() - began

    def bootstrap(self, *ids: int) -> str:
        return ",".join(self.brokers[i].bootstrap for i in (ids or self.brokers))

    def admin(self, *ids: int) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap(*ids), **QUIET})

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every running broker sees every running broker and a controller."""
        running = {i for i, b in self.brokers.items() if b.running}
        views = {i: self.admin(i) for i in running}

        def ready():
            for adm in views.values():
                try:
                    md = adm.list_topics(timeout=2)
                except KafkaException:
                    return False
                if set(md.brokers) != running or md.controller_id < 0:
                    return False
            return True
        wait(ready, timeout, f"brokers {sorted(running)} registered with a controller", 0.1)

    def stop(self) -> None:
        for b in self.brokers.values():
            if b.running:
                b.signal(signal.SIGTERM)
        for b in self.brokers.values():
            if b.proc is not None:
                try:
                    b.proc.wait(20)
                except subprocess.TimeoutExpired:
                    b.signal(signal.SIGKILL)
                    b.proc.wait(10)
        self.zk.stop()

    def kill_all(self) -> None:
        for p in (*self.brokers.values(), self.zk):
            if p.running:
                p.signal(signal.SIGKILL)
                p.proc.wait(10)

    def log_findings(self) -> list[str]:
        out = []
        for b in self.brokers.values():
            if b.log_path.exists():
                for line in b.log_path.read_text(errors="replace").splitlines():
                    low = line.lower()
                    if "traceback" in low or " error" in low or "exception" in low:
                        out.append(f"{b.name}: {line.strip()[:300]}")
        return out


def create_topic(admin: AdminClient, name: str, partitions: int, rf: int) -> None:
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                        operation_timeout=30)[name].result(60)

    def ready():
        t = admin.list_topics(name, timeout=5).topics.get(name)
        return (t is not None and t.error is None and len(t.partitions) == partitions
                and all(p.leader >= 0 and len(p.isrs) == rf for p in t.partitions.values()) and t)
    return wait(ready, 30, f"{name} with leaders and full ISRs", 0.1)


def topic_min_isr(admin: AdminClient, topic: str) -> str | None:
    try:
        res = admin.describe_configs([ConfigResource("topic", topic)])
        entries = next(iter(res.values())).result(15)
        return entries["min.insync.replicas"].value
    except Exception as e:  # noqa: BLE001 -- reported, not fatal
        return f"? ({e})"


# -- 1b: acks=all latency ---------------------------------------------------------------------

def pctl(sorted_vals: list[float], q: float) -> float:
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def produce_latency(bootstrap: str, topic: str, partitions: int, acks: str, samples: int,
                    warmup: int = 50, size: int = 100) -> dict:
    """One record at a time, flushed: ms from produce() to the delivery report."""
    state = {"t": 0, "err": None}

    def done(err, msg):
        state["t"] = time.perf_counter_ns()
        state["err"] = err

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0, "compression.type": "none",
                  "socket.nagle.disable": True, "enable.idempotence": False, "message.timeout.ms": 10000,
                  "on_delivery": done, **QUIET})
    p.list_topics(topic, timeout=10)
    value = os.urandom(size)
    lat = []
    for i in range(warmup + samples):
        state["t"], state["err"] = 0, None
        t0 = time.perf_counter_ns()
        p.produce(topic, value, partition=i % partitions)
        if p.flush(10) or state["err"] is not None or not state["t"]:
            raise RuntimeError(f"latency: record {i} (acks={acks}) not delivered: {state['err']}")
        if i >= warmup:
            lat.append((state["t"] - t0) / 1e6)
    lat.sort()
    return {"acks": acks, "n": len(lat), "p50_ms": round(pctl(lat, 50), 3), "p90_ms": round(pctl(lat, 90), 3),
            "p99_ms": round(pctl(lat, 99), 3), "max_ms": round(lat[-1], 3),
            "mean_ms": round(statistics.fmean(lat), 3)}


def phase_latency(work: Path, args) -> dict:
    runs = {"all": [], "1": []}
    loads = []
    for rep in range(args.reps):
        c = Cluster(work / f"latency-{rep}", overrides=args.overrides)
        try:
            c.start()
            admin = c.admin()
            topic = f"lat-{rep}"
            create_topic(admin, topic, 6, 3)
            loads.append(loadavg())
            for acks in ("all", "1"):
                r = produce_latency(c.bootstrap(), topic, 6, acks, args.lat_samples)
                runs[acks].append(r)
                log(f"latency rep {rep + 1} acks={acks}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                    f"max {r['max_ms']} ms (load {loads[-1]})")
        finally:
            c.stop()
            shutil.rmtree(c.work, ignore_errors=True)
    out = {"loadavg": loads}
    for acks, rs in runs.items():
        for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            out[f"acks{acks}_{k}"] = summary([r[k] for r in rs])
    out["runs"] = runs
    return out


def phase_partitions(work: Path, args) -> dict:
    """acks=all latency (6-partition RF 3 topic) as idle RF 3 partitions are added to the cluster:
    shows what each follower round trip pays per partition it follows (before fetch sessions, the
    cost grew ~2.5-3 ms per 50 partitions). Idle broker CPU is measured over 3 s before each step."""
    c = Cluster(work / "partitions", overrides=args.overrides)
    steps = []
    try:
        c.start()
        admin = c.admin()
        create_topic(admin, "lat", 6, 3)
        total = 6
        for want in args.idle_partitions:
            if want > total - 6:
                create_topic(admin, f"idle-{want}", want - (total - 6), 3)
                total = 6 + want
            time.sleep(1.0)
            cpu0 = {i: proc_cpu_s(b.pid) for i, b in c.brokers.items()}
            t0 = time.perf_counter()
            time.sleep(3.0)
            idle = sum((proc_cpu_s(b.pid) or 0) - (cpu0[i] or 0) for i, b in c.brokers.items())
            step = {"partitions": total, "idle_broker_cores": round(idle / (time.perf_counter() - t0), 3),
                    "loadavg": loadavg()}
            for acks in ("all", "1"):
                r = produce_latency(c.bootstrap(), "lat", 6, acks, args.lat_samples)
                step[f"acks{acks}_p50_ms"], step[f"acks{acks}_p99_ms"] = r["p50_ms"], r["p99_ms"]
            steps.append(step)
            log(f"partitions: {step}")
    finally:
        c.stop()
        if not args.keep_logs:
            shutil.rmtree(c.work, ignore_errors=True)
    return {"steps": steps}


# -- 1: kbench, cluster (RF 3) vs single broker -------------------------------------------------

KEY_METRICS = ["produce_acks1_rec_s", "produce_acks1_mb_s", "produce_acksall_rec_s", "produce_acksall_mb_s",
               "consume_rec_s", "consume_mb_s", "latency_p50_ms", "latency_p99_ms",
               "produce_acks1_broker_cpu_us_per_rec", "produce_acksall_broker_cpu_us_per_rec",
               "consume_broker_cpu_us_per_rec"]
PHASE_EXTRAS = [("produce_acks1", "client_cpu_util"), ("produce_acksall", "client_cpu_util")]


def run_kbench(cmd: list[str], timeout: float, out_dir: Path, tag: str) -> dict | None:
    t0 = time.perf_counter()
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout)
        stdout, stderr, rc = cp.stdout, cp.stderr, cp.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, rc = e.stdout or b"", e.stderr or b"", "timeout"
    (out_dir / f"{tag}.stderr").write_bytes(stderr or b"")
    try:
        res = json.loads(stdout)
    except ValueError:
        log(f"{tag}: kbench gave no JSON (rc={rc}), see {out_dir / (tag + '.stderr')}")
        return None
    (out_dir / f"{tag}.json").write_text(json.dumps(res, indent=1))
    log(f"{tag}: kbench rc={rc} in {time.perf_counter() - t0:.1f}s"
        + (f"; failures {res.get('failures')}" if res.get("failures") else ""))
    return res


def phase_kbench(work: Path, args) -> dict:
    out_dir = work / "kbench"
    out_dir.mkdir(parents=True, exist_ok=True)
    common = ["--phases", args.kbench_phases, *args.kbench_args]
    sides = {"cluster": [], "single": []}
    for r in range(args.rounds):
        for side in ("cluster", "single"):
            tag = f"r{r + 1}-{'A' if side == 'cluster' else 'B'}-{side}"
            run_work = work / tag
            entry: dict = {"tag": tag, "loadavg_start": loadavg()}
            res = None
            if side == "cluster":
                c = Cluster(run_work, overrides=args.overrides, shared_group=True)
                try:
                    entry["start_s"] = round(c.start(), 2)
                    cpu0 = {i: proc_cpu_s(b.pid) for i, b in c.brokers.items()}
                    cmd = [args.kbench_python, str(KBENCH_RF), "--kbench", args.kbench, "--replication-factor", "3",
                           "--bootstrap", c.bootstrap(), "--broker-pgid", str(c.pgid), "--label", tag, *common]
                    log(f"{tag}: cluster up in {entry['start_s']}s (load {entry['loadavg_start']}), kbench RF 3")
                    res = run_kbench(cmd, args.kbench_timeout, out_dir, tag)
                    entry["broker_cpu_s_each"] = {i: round((proc_cpu_s(b.pid) or 0) - (cpu0[i] or 0), 2)
                                                  for i, b in c.brokers.items()}
                    admin = c.admin()
                    topic = f"lat-all-{r}"
                    create_topic(admin, topic, 6, 3)
                    entry["min_insync_replicas"] = topic_min_isr(admin, topic)
                    entry["acksall_latency"] = produce_latency(c.bootstrap(), topic, 6, "all", args.lat_samples)
                    entry["findings"] = c.log_findings()
                    entry["alive_at_end"] = all(b.running for b in c.brokers.values())
                finally:
                    c.stop()
            else:
                run_work.mkdir(parents=True, exist_ok=True)
                port = free_port()
                b = Process("serve", run_work / "serve.log")
                b.spawn([str(JOSEF), "serve", "--port", str(port), "--rest-port", "0",
                         "--data-dir", str(run_work / "data"), *sum((["--override", f"{k}={v}"]
                                                                     for k, v in args.overrides.items()), [])])
                try:
                    wait(lambda: not b.running or port_open(port), 30, "josef serve's port")
                    entry["start_s"] = round(time.perf_counter() - b.started_at, 2)
                    cpu0 = proc_cpu_s(b.pid)
                    cmd = [args.kbench_python, args.kbench, "--bootstrap", f"127.0.0.1:{port}",
                           "--broker-pgid", str(b.pid), "--label", tag, *common]
                    log(f"{tag}: josef serve up in {entry['start_s']}s (load {entry['loadavg_start']}), kbench")
                    res = run_kbench(cmd, args.kbench_timeout, out_dir, tag)
                    entry["broker_cpu_s_each"] = {1: round((proc_cpu_s(b.pid) or 0) - (cpu0 or 0), 2)}
                    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", **QUIET})
                    topic = f"lat-all-{r}"
                    create_topic(admin, topic, 6, 1)
                    entry["acksall_latency"] = produce_latency(f"127.0.0.1:{port}", topic, 6, "all",
                                                               args.lat_samples)
                    entry["alive_at_end"] = b.running
                finally:
                    b.stop()
            entry["kbench"] = res
            if res is not None:
                entry["metrics"] = res.get("metrics", {})
                entry["failures"] = res.get("failures", [])
                entry["warnings"] = res.get("warnings", [])
                entry["interference"] = res.get("interference", {})
                for ph, key in PHASE_EXTRAS:
                    v = res.get("phases", {}).get(ph, {}).get(key)
                    if v is not None:
                        entry["metrics"][f"{ph}_{key}"] = v
                for ph in ("produce_acks1", "produce_acksall"):
                    r_ = res.get("phases", {}).get(ph, {})
                    if r_.get("broker_cpu_s") is not None and r_.get("wall_s"):
                        entry["metrics"][f"{ph}_broker_cores"] = round(r_["broker_cpu_s"] / r_["wall_s"], 2)
                    if r_.get("other_cpu_s") is not None and r_.get("wall_s"):
                        entry["metrics"][f"{ph}_other_cores"] = round(r_["other_cpu_s"] / r_["wall_s"], 2)
            lat = entry.get("acksall_latency") or {}
            for k in ("p50_ms", "p99_ms"):
                if k in lat:
                    entry.setdefault("metrics", {})[f"acksall_latency_{k}"] = lat[k]
            log(f"{tag}: " + ", ".join(f"{k} {fmt(v)}" for k, v in entry.get("metrics", {}).items()
                                         if k in ("produce_acks1_rec_s", "produce_acksall_rec_s",
                                                  "acksall_latency_p50_ms", "acksall_latency_p99_ms")))
            if not args.keep_logs:
                shutil.rmtree(run_work, ignore_errors=True)
            sides[side].append(entry)
            time.sleep(1.0)

    names = KEY_METRICS + [f"{ph}_{key}" for ph, key in PHASE_EXTRAS] + [
        f"{ph}_{k}" for ph in ("produce_acks1", "produce_acksall") for k in ("broker_cores", "other_cores")] + [
        "acksall_latency_p50_ms", "acksall_latency_p99_ms"]
    table = {}
    for name in names:
        a = [e.get("metrics", {}).get(name) for e in sides["cluster"]]
        b = [e.get("metrics", {}).get(name) for e in sides["single"]]
        if all(x is None for x in a + b):
            continue
        table[name] = {"cluster": summary([x for x in a if x is not None]),
                       "single": summary([x for x in b if x is not None])}
    ratios = {}
    for unit in ("rec_s", "mb_s"):
        per_round = []
        for ea, eb in zip(sides["cluster"], sides["single"]):
            x = ea.get("metrics", {}).get(f"produce_acksall_{unit}")
            y = eb.get("metrics", {}).get(f"produce_acks1_{unit}")
            per_round.append(round(x / y, 3) if x and y else None)
        med_a = (table.get(f"produce_acksall_{unit}") or {}).get("cluster")
        med_b = (table.get(f"produce_acks1_{unit}") or {}).get("single")
        ratios[f"cluster_acksall_over_single_acks1_{unit}"] = {
            "per_round": per_round,
            "of_medians": round(med_a["median"] / med_b["median"], 3) if med_a and med_b else None}
    return {"rounds": args.rounds, "kbench_phases": args.kbench_phases, "kbench_args": args.kbench_args,
            "table": table, "ratios": ratios,
            "runs": {s: [{k: v for k, v in e.items() if k != "kbench"} for e in es] for s, es in sides.items()},
            "out": str(out_dir)}


# -- 2 and 3: fail-over and healing ------------------------------------------------------------

class Load:
    """A producer thread: acks=all, one record per partition every `interval` s; every ack timed."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, interval: float = 0.005):
        self.topic, self.partitions, self.interval = topic, partitions, interval
        self.acks: dict[int, list[tuple[float, float]]] = {p: [] for p in range(partitions)}  # (sent, acked)
        self.errors: list[tuple[float, int, str]] = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                           "enable.idempotence": False, "message.timeout.ms": 60000,
                           "retry.backoff.ms": 50, "retry.backoff.max.ms": 200,
                           "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200, **QUIET})
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _done(self, err, msg, sent: float) -> None:
        now = time.perf_counter()
        if err is None:
            self.acks[msg.partition()].append((sent, now))
        else:
            self.errors.append((now, msg.partition(), err.name()))

    def _run(self) -> None:
        value = b"x" * 100
        nxt = time.perf_counter()
        while not self.stop_flag.is_set():
            now = time.perf_counter()
            if now >= nxt:
                for part in range(self.partitions):
                    self.p.produce(self.topic, value, partition=part,
                                   on_delivery=lambda e, m, s=now: self._done(e, m, s))
                    self.sent += 1
                nxt = max(nxt + self.interval, now)
            self.p.poll(max(0.0, min(0.002, nxt - time.perf_counter())))
        self.p.flush(65)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(70)

    def acked(self, part: int) -> int:
        return len(self.acks[part])


def max_gap(acks: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The longest time without an ack in [start, end] (from the last ack before start)."""
    times = sorted(a for _s, a in acks)
    before = [t for t in times if t <= start]
    inside = [t for t in times if start < t <= end]
    if not inside:
        return None
    points = ([before[-1]] if before else [start]) + inside
    return max(b - a for a, b in zip(points, points[1:]))


def fill(bootstrap: str, topic: str, partitions: int, mb: int, value_kb: int, acks: str = "all",
         linger_ms: int = 20) -> dict:
    value = os.urandom(value_kb * 1024)
    count = -(-mb * 1024 * 1024 // len(value))
    errors, acked = [], [0]

    def done(err, msg):
        if err is None:
            acked[0] += 1
        else:
            errors.append(err.name())
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": linger_ms, "batch.size": 1_000_000,
                  "compression.type": "none", "queue.buffering.max.kbytes": 65536, **QUIET})
    began = time.perf_counter()
    for i in range(count):
        while True:
            try:
                p.produce(topic, value, partition=i % partitions, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    left = p.flush(120)
    took = time.perf_counter() - began
    return {"mb": round(acked[0] * len(value) / 2**20, 1), "records": acked[0], "s": round(took, 2),
            "mb_s": round(acked[0] * len(value) / 2**20 / took, 1), "errors": len(errors) + left,
            "error_names": sorted(set(errors))}


def hosted_isr_state(admin: AdminClient, broker: int) -> tuple[int, int]:
    """(partitions that list `broker` as a replica, of those with it in the ISR)."""
    md = admin.list_topics(timeout=2)
    hosted = in_isr = 0
    for t in md.topics.values():
        for p in t.partitions.values():
            if broker in p.replicas:
                hosted += 1
                in_isr += broker in p.isrs
    return hosted, in_isr


def one_failover(c: Cluster, topic: str, sig: int, args, rep: int) -> dict:
    admin = c.admin()
    create_topic(admin, topic, 3, 3)
    md = admin.list_topics(topic, timeout=10)
    controller = md.controller_id
    leaders = {p.id: p.leader for p in md.topics[topic].partitions.values()}
    candidates = [(part, b) for part, b in sorted(leaders.items()) if b != controller]
    part, victim = candidates[rep % len(candidates)]
    survivors = [i for i in c.brokers if i != victim]
    broker = c.brokers[victim]
    res = {"signal": signal.Signals(sig).name, "topic": topic, "victim": victim, "controller": controller,
           "partition": part, "leaders_before": leaders, "loadavg": loadavg()}

    load = Load(c.bootstrap(), topic, 3)
    load.start()
    wait(lambda: all(load.acked(p) >= 20 for p in range(3)), 30, "acks on every partition before the signal")
    watcher = c.admin(*survivors)
    time.sleep(0.5)

    t0 = time.perf_counter()
    broker.signal(sig)
    got: dict[str, float] = {}
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if "exited_s" not in got and not broker.running:
            got["exited_s"] = now - t0
        if ("exited_s" not in got and now - t0 > args.dump_after and "dump" not in res and args.py_spy
                and shutil.which(args.py_spy)):  # what a broker that does not exit is doing
            res["dump_at_s"] = round(now - t0, 2)
            res["dump"] = subprocess.run([args.py_spy, "dump", "--native", "--pid", str(broker.pid)],
                                         capture_output=True, text=True, timeout=30).stdout[-8000:]
        if "first_ack_s" not in got:
            after = [a for s, a in list(load.acks[part]) if s > t0]
            if after:
                got["first_ack_s"] = min(after) - t0
        if "new_leader_s" not in got or "isr_without_victim_s" not in got:
            try:
                m = watcher.list_topics(topic, timeout=1).topics[topic].partitions
                now = time.perf_counter() - t0
                if "new_leader_s" not in got and m[part].leader in survivors:
                    got["new_leader_s"] = now
                    res["new_leader"] = m[part].leader
                if "isr_without_victim_s" not in got and all(victim not in p.isrs for p in m.values()):
                    got["isr_without_victim_s"] = now
            except KafkaException:
                pass
        if len(got) == 4:
            break
        time.sleep(0.02)
    # every partition must have taken acks again; keep the load on a little to see it
    try:
        wait(lambda: all(any(a > t0 + got.get("first_ack_s", 0) for _s, a in list(load.acks[p]))
                         for p in range(3)), 30, "acks on every partition after the fail-over")
    except TimeoutError as e:
        res["error"] = str(e)
    time.sleep(1.0)
    t_end = time.perf_counter()
    load.stop()
    res.update({k: round(v, 3) for k, v in got.items()})
    res["stall_victim_partition_s"] = round(max_gap(load.acks[part], t0, t_end) or float("nan"), 3)
    res["stall_other_partitions_s"] = {p: round(max_gap(load.acks[p], t0, t_end) or float("nan"), 3)
                                       for p in range(3) if p != part}
    res["produced"], res["acked"] = load.sent, sum(len(v) for v in load.acks.values())
    res["failed"] = len(load.errors)
    res["failed_names"] = sorted({e[2] for e in load.errors})
    if len(got) < 4:
        res["incomplete"] = f"only {sorted(got)} within 60 s"
    if broker.running:  # SIGTERM that did not finish
        broker.proc.wait(30)
    log(f"failover rep {rep + 1} {res['signal']} broker-{victim} (leader of {topic}-{part}; controller "
        f"{controller}): " + ", ".join(f"{k} {v:.2f}" for k, v in got.items())
        + f", stall {res['stall_victim_partition_s']} s (others {res['stall_other_partitions_s']}), "
        f"failed produces {res['failed']} {res['failed_names']}, load {res['loadavg']}")
    del watcher

    # 3: healing -- data written while it is down, then restart
    res["fill"] = fill(c.bootstrap(*survivors), topic, 3, args.fill_mb, args.fill_value_kb)
    log(f"  filled {res['fill']['mb']} MB in {res['fill']['s']} s with broker-{victim} down "
        f"(errors {res['fill']['errors']})")
    watcher = c.admin(*survivors)
    hosted, in_isr = hosted_isr_state(watcher, victim)
    res["in_isr_before_restart"] = f"{in_isr}/{hosted}"  # should be 0/N: the ISRs shrank without it
    t_start = time.perf_counter()
    broker.start()
    heal: dict[str, float] = {}
    deadline = t_start + 120
    while time.perf_counter() < deadline:
        now = time.perf_counter() - t_start
        if "port_s" not in heal and port_open(broker.port):
            heal["port_s"] = now
        try:
            md = watcher.list_topics(timeout=2)
        except KafkaException:
            time.sleep(0.05)
            continue
        now = time.perf_counter() - t_start
        if "registered_s" not in heal and victim in md.brokers:
            heal["registered_s"] = now
        parts = [p for t in md.topics.values() for p in t.partitions.values() if victim in p.replicas]
        if "isr_first_s" not in heal and any(victim in p.isrs for p in parts):
            heal["isr_first_s"] = now
        if parts and all(victim in p.isrs for p in parts):
            heal["isr_all_s"] = now
            res["hosted_partitions"] = len(parts)
            break
        time.sleep(0.05)
    res["heal"] = {k: round(v, 3) for k, v in heal.items()}
    res["hosted_partitions_before"] = hosted
    if "isr_all_s" not in heal:
        res["heal_incomplete"] = True
    log(f"  restarted broker-{victim}: " + ", ".join(f"{k} {v:.2f}" for k, v in heal.items())
        + f" ({res.get('hosted_partitions', hosted)} partitions hosted)")
    c.wait_ready()
    return res


def phase_failover(work: Path, args) -> dict:
    c = Cluster(work / "failover", overrides=args.overrides)
    runs = []
    try:
        c.start()
        admin = c.admin()
        create_topic(admin, "fo-check", 1, 3)
        min_isr = topic_min_isr(admin, "fo-check")
        for sig in args.signals:
            for rep in range(args.reps):
                topic = f"fo-{signal.Signals(sig).name.lower()}-{rep}"
                runs.append(one_failover(c, topic, sig, args, rep))
        findings = c.log_findings()
    finally:
        c.stop()
        if not args.keep_logs:
            shutil.rmtree(c.work, ignore_errors=True)
    out: dict = {"session_timeout_ms": SESSION_TIMEOUT_MS, "min_insync_replicas": min_isr, "fill_mb": args.fill_mb,
                 "log_findings": findings[:50]}
    for name in ("SIGKILL", "SIGTERM"):
        rs = [r for r in runs if r["signal"] == name]
        if not rs:
            continue
        s = {}
        for k in ("first_ack_s", "new_leader_s", "isr_without_victim_s", "exited_s", "stall_victim_partition_s"):
            s[k] = summary([r.get(k) for r in rs])
        s["stall_other_partitions_s"] = summary([max(r["stall_other_partitions_s"].values()) for r in rs])
        s["failed_produces"] = [r["failed"] for r in rs]
        s["failed_names"] = sorted({n for r in rs for n in r["failed_names"]})
        for k in ("port_s", "registered_s", "isr_first_s", "isr_all_s"):
            s[f"heal_{k}"] = summary([r["heal"].get(k) for r in rs])
        s["fill_mb_s"] = summary([r["fill"]["mb_s"] for r in rs])
        out[name] = s
    out["runs"] = runs
    return out


# -- catchup: follower CPU per GB replicated ----------------------------------------------------

GIB = 1 << 30


def topic_log_bytes(data_dir: Path, topic: str) -> int:
    """Bytes in the .log segments of `topic` under a broker's data dir (not dirs being deleted)."""
    total = 0
    for d in data_dir.glob(f"{topic}-*"):
        if d.name.rpartition("-")[2].isdigit():
            for f in d.glob("*.log"):
                try:
                    total += f.stat().st_size
                except OSError:
                    pass
    return total


def wait_caught_up(c: Cluster, topic: str, followers: tuple[int, ...], timeout: float = 180.0) -> float:
    """Seconds until every follower's logs of `topic` hold as many bytes as the leader's (broker 1)."""
    began = time.perf_counter()
    target = topic_log_bytes(c.brokers[1].data_dir, topic)
    wait(lambda: all(topic_log_bytes(c.brokers[f].data_dir, topic) >= target for f in followers),
         timeout, f"followers {followers} caught up on {topic}", 0.01)
    return time.perf_counter() - began


def phase_catchup(work: Path, args) -> dict:
    """Broker 1 leads --catchup-partitions partitions of an RF 3 topic (replicas [1, 2, 3]); brokers 2
    and 3 only follow. Two measurements per repetition, each --fill-mb MB of --fill-value-kb KB values
    written acks=1 (linger 5 ms, 1 MB batches) to broker 1:

    stream    followers running while the producer writes: CPU of each broker from the first
              record until both followers' logs hold as many bytes as the leader's.
    catchup   followers paused (SIGSTOP) during the write, then resumed (SIGCONT): CPU of each
              broker from the resume until both have caught up (the fetcher's full-size responses).

    Per GB (2^30 bytes) replicated: each follower's CPU s over the bytes it copied, and the leader's.
    ZooKeeper's session timeout is raised to 10 s (its maximum at a 500 ms tick) so that a pause
    shorter than that keeps the followers registered. With --catchup-profile, one more catch-up
    (not counted) runs with py-spy sampling broker 2.
    """
    overrides = {**args.overrides, "zookeeper.session.timeout.ms": "10000"}
    parts = args.catchup_partitions
    runs: dict[str, list[dict]] = {"stream": [], "catchup": []}
    out: dict = {"partitions": parts, "fill_mb": args.fill_mb, "value_kb": args.fill_value_kb}
    profile_run = bool(args.catchup_profile)
    for rep in range(args.reps + profile_run):
        profiling = profile_run and rep == args.reps
        c = Cluster(work / f"catchup-{rep}", overrides=overrides)
        try:
            c.start()
            admin = c.admin()
            for mode in ("stream", "catchup"):
                if profiling and mode == "stream":
                    continue
                topic = f"{mode}-{rep}"
                admin.create_topics([NewTopic(topic, num_partitions=parts, replica_assignment=[[1, 2, 3]] * parts)],
                                    operation_timeout=30)[topic].result(60)
                wait(lambda: all(p.leader == 1 and len(p.isrs) == 3
                                 for p in admin.list_topics(topic, timeout=5).topics[topic].partitions.values()),
                     30, "broker 1 leading every partition with a full ISR", 0.1)
                pids = {i: b.pid for i, b in c.brokers.items()}
                idle0 = {i: proc_cpu_s(pid) for i, pid in pids.items()}
                time.sleep(2.0)
                idle = {i: round(((proc_cpu_s(pid) or 0) - (idle0[i] or 0)) / 2.0, 4) for i, pid in pids.items()}
                load = loadavg()
                if mode == "catchup":
                    for f in (2, 3):
                        c.brokers[f].signal(signal.SIGSTOP)
                cpu0 = {i: proc_cpu_s(pid) for i, pid in pids.items()}
                split0 = {i: proc_user_sys_s(pid) for i, pid in pids.items()}
                began = time.perf_counter()
                try:
                    filled = fill(c.bootstrap(1), topic, parts, args.fill_mb, args.fill_value_kb, acks="1",
                                  linger_ms=5)
                    if mode == "catchup":
                        paused_s = time.perf_counter() - began
                        time.sleep(0.2)  # the leader settles
                        cpu0 = {i: proc_cpu_s(pid) for i, pid in pids.items()}
                        split0 = {i: proc_user_sys_s(pid) for i, pid in pids.items()}
                        began = time.perf_counter()
                        spy = None
                        if profiling:
                            spy = subprocess.Popen([args.py_spy, "record", "--pid", str(pids[2]), "--rate", "200",
                                                    "--duration", "60", "--format", "raw", "--nonblocking",
                                                    "-o", str(work / "catchup-profile-broker-2.txt")],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                            time.sleep(0.5)  # py-spy attaches
                            cpu0 = {i: proc_cpu_s(pid) for i, pid in pids.items()}
                            split0 = {i: proc_user_sys_s(pid) for i, pid in pids.items()}
                            began = time.perf_counter()
                finally:
                    if mode == "catchup":
                        for f in (2, 3):
                            c.brokers[f].signal(signal.SIGCONT)
                wait_caught_up(c, topic, (2, 3))
                wall = time.perf_counter() - began
                cpu = {i: round((proc_cpu_s(pid) or 0) - (cpu0[i] or 0), 3) for i, pid in pids.items()}
                split = {i: tuple(round(b - a, 2) for a, b in zip(split0[i], proc_user_sys_s(pid)))
                         for i, pid in pids.items()}
                copied = topic_log_bytes(c.brokers[1].data_dir, topic)
                if profiling:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                    out["profile"] = {"wall_s": round(wall, 2), "cpu_s": cpu, "user_sys_s": split,
                                      "follower": aggregate_raw(work / "catchup-profile-broker-2.txt",
                                                                args.profile_top)}
                    log(f"catchup profile: {copied / 2**20:.0f} MB in {wall:.2f} s, CPU s {cpu}, (user, sys) s {split}")
                    continue
                gib = copied / GIB
                r = {"bytes": copied, "wall_s": round(wall, 2), "cpu_s": cpu, "idle_cores": idle, "loadavg": load,
                     "user_sys_s": split, "fill": filled,
                     "follower_cpu_s_per_gb": round((cpu[2] + cpu[3]) / 2 / gib, 3),
                     "follower_user_s_per_gb": round((split[2][0] + split[3][0]) / 2 / gib, 3),
                     "follower_sys_s_per_gb": round((split[2][1] + split[3][1]) / 2 / gib, 3),
                     "leader_cpu_s_per_gb": round(cpu[1] / gib, 3),
                     "follower_mb_s": round(copied / 2**20 / wall, 1)}
                if mode == "catchup":
                    r["paused_s"] = round(paused_s, 2)
                    r["registered_after"] = sorted(
                        b.id for b in admin.list_topics(timeout=10).brokers.values())
                runs[mode].append(r)
                log(f"catchup rep {rep + 1} {mode}: {copied / 2**20:.0f} MB in {wall:.2f} s "
                    f"({r['follower_mb_s']} MB/s), CPU s per GB: followers {r['follower_cpu_s_per_gb']} "
                    f"({cpu[2]}, {cpu[3]} s; user {r['follower_user_s_per_gb']}, sys {r['follower_sys_s_per_gb']}), "
                    f"leader {r['leader_cpu_s_per_gb']} (load {load})")
                admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
            out.setdefault("findings", []).extend(c.log_findings())
        finally:
            c.stop()
            if not args.keep_logs:
                shutil.rmtree(c.work, ignore_errors=True)
    for mode, rs in runs.items():
        out[mode] = {k: summary([r[k] for r in rs])
                     for k in ("follower_cpu_s_per_gb", "follower_user_s_per_gb", "follower_sys_s_per_gb",
                               "leader_cpu_s_per_gb", "follower_mb_s", "wall_s")}
    out["runs"] = runs
    return out


# -- profile: where a leader and a follower spend their time under acks=all -----------------------

def aggregate_raw(path: Path, top: int) -> dict:
    """py-spy's raw (collapsed) output: the busiest functions, by own and by inclusive samples."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"samples": 0}
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n

    def best(d):
        return [(round(v / total, 3), k) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]] if total else []
    return {"samples": total, "own": best(own), "inclusive": best(incl)}


def phase_profile(work: Path, args) -> dict:
    """All 6 partitions led by broker 1 (replicas [1, 2, 3]): broker 1 is only a leader, broker 2
    only a follower. A kbench-like acks=all producer (linger 5 ms, batch.size 1 MB, 100-byte
    values) runs for --profile-secs while py-spy samples brokers 1 and 2 (busy samples only)."""
    if not shutil.which(args.py_spy):
        raise RuntimeError(f"py-spy not found at {args.py_spy}")
    c = Cluster(work / "profile", overrides=args.overrides)
    out: dict = {"secs": args.profile_secs, "native": args.profile_native}
    try:
        c.start()
        admin = c.admin()
        topic = "profile"
        admin.create_topics([NewTopic(topic, num_partitions=6, replica_assignment=[[1, 2, 3]] * 6)], operation_timeout=30)[topic].result(60)
        wait(lambda: all(p.leader == 1 and len(p.isrs) == 3
                         for p in admin.list_topics(topic, timeout=5).topics[topic].partitions.values()),
             30, "broker 1 leading every partition with a full ISR", 0.1)
        acked = [0]
        errors: list[str] = []

        def done(err, msg):
            if err is None:
                acked[0] += 1
            elif len(errors) < 5:
                errors.append(str(err))
        p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "linger.ms": 5, "batch.size": 1_000_000,
                      "batch.num.messages": 100000, "compression.type": "none",
                      "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1048576,
                      "enable.idempotence": False, "on_delivery": done, **QUIET})
        p.list_topics(topic, timeout=10)
        value = os.urandom(100)
        for i in range(20000):  # warm
            p.produce(topic, value, partition=i % 6)
        p.flush(30)
        acked[0] = 0
        spies = {i: subprocess.Popen([args.py_spy, "record", "--pid", str(c.brokers[i].pid), "--rate", "100",
                                      "--duration", str(int(args.profile_secs)), "--format", "raw", "--nonblocking",
                                      *(["--native"] if args.profile_native else []),
                                      "-o", str(work / f"profile-broker-{i}.txt")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in (1, 2)}
        cpu0 = {i: proc_cpu_s(b.pid) for i, b in c.brokers.items()}
        began = time.perf_counter()
        i = 0
        while time.perf_counter() - began < args.profile_secs:
            try:
                p.produce(topic, value, partition=i % 6)
                i += 1
            except BufferError:
                p.poll(0.005)
                continue
            if not i & 4095:
                p.poll(0)
        p.flush(60)
        took = time.perf_counter() - began
        cpu = {i: round((proc_cpu_s(b.pid) or 0) - (cpu0[i] or 0), 2) for i, b in c.brokers.items()}
        for s in spies.values():
            s.wait(60)
        out.update({"rec_s": round(acked[0] / took), "mb_s": round(acked[0] * 100 / 2**20 / took, 1),
                    "errors": errors, "broker_cpu_s": cpu, "wall_s": round(took, 2), "loadavg": loadavg(),
                    "leader": aggregate_raw(work / "profile-broker-1.txt", args.profile_top),
                    "follower": aggregate_raw(work / "profile-broker-2.txt", args.profile_top)})
        log(f"profile: {out['rec_s']:,} rec/s acks=all, broker CPU s {cpu} in {out['wall_s']} s")
    finally:
        c.stop()
    return out


# -- main ---------------------------------------------------------------------------------------

def print_tables(result: dict) -> None:
    if "kbench" in result:
        k = result["kbench"]
        print(f"\n== kbench: A = 3-broker cluster, RF 3, min.insync.replicas=2; B = josef serve "
              f"(medians (min-max) of {k['rounds']} runs each)")
        print(f"{'metric':44} {'cluster RF3':>28} {'single':>28}")
        for name, v in k["table"].items():
            print(f"{name:44} {fmt(v['cluster']):>28} {fmt(v['single']):>28}")
        for name, v in k["ratios"].items():
            print(f"{name}: per round {v['per_round']}, of medians {v['of_medians']}")
        for side, es in k["runs"].items():
            for e in es:
                print(f"  {e['tag']:18} load {e['loadavg_start']:5} start {e.get('start_s')} s, broker CPU s "
                      f"{e.get('broker_cpu_s_each')}, other cores {e.get('interference', {}).get('max_other_cores')} "
                      f"({e.get('interference', {}).get('max_phase')}), failures {e.get('failures')}")
    if "profile" in result:
        pr = result["profile"]
        print(f"\n== profile: broker 1 leads all 6 partitions, broker 2 follows; acks=all for {pr['secs']} s: "
              f"{pr['rec_s']:,} rec/s, {pr['mb_s']} MB/s, broker CPU s {pr['broker_cpu_s']}")
        for role in ("leader", "follower"):
            prof = pr[role]
            print(f"-- {role}: {prof['samples']} busy samples; own time")
            for share, name in prof.get("own", [])[:15]:
                print(f"  {share:6.1%}  {name[:110]}")
            print(f"-- {role}: inclusive")
            for share, name in prof.get("inclusive", [])[:30]:
                print(f"  {share:6.1%}  {name[:110]}")
    if "catchup" in result:
        cu = result["catchup"]
        print(f"\n== follower CPU per GB (2^30 B) replicated: broker 1 leads {cu['partitions']} partitions, "
              f"{cu['fill_mb']} MB of {cu['value_kb']} KB values acks=1; median (min-max)")
        for mode in ("stream", "catchup"):
            for k, v in cu[mode].items():
                print(f"{mode + ' ' + k:40} {fmt(v):>28}")
        if "profile" in cu:
            prof = cu["profile"]["follower"]
            print(f"-- catch-up follower (broker 2): {prof['samples']} busy samples; own time")
            for share, name in prof.get("own", [])[:15]:
                print(f"  {share:6.1%}  {name[:110]}")
            print("-- inclusive")
            for share, name in prof.get("inclusive", [])[:30]:
                print(f"  {share:6.1%}  {name[:110]}")
    if "latency" in result:
        lat = result["latency"]
        print(f"\n== produce latency, one record at a time, RF 3 cluster (median (min-max) of reps; load {lat['loadavg']})")
        for k, v in lat.items():
            if k.startswith("acks"):
                print(f"{k:28} {fmt(v):>28}")
    if "partitions" in result:
        print("\n== acks=all / acks=1 latency (ms, one record at a time) vs replicated partitions in the cluster")
        print(f"{'partitions':>10} {'idle cores':>10} {'all p50':>8} {'all p99':>8} {'1 p50':>8} {'1 p99':>8} {'load':>5}")
        for st in result["partitions"]["steps"]:
            print(f"{st['partitions']:>10} {st['idle_broker_cores']:>10} {st['acksall_p50_ms']:>8} "
                  f"{st['acksall_p99_ms']:>8} {st['acks1_p50_ms']:>8} {st['acks1_p99_ms']:>8} {st['loadavg']:>5}")
    if "failover" in result:
        fo = result["failover"]
        print(f"\n== fail-over and healing (zookeeper.session.timeout.ms={fo['session_timeout_ms']}, "
              f"min.insync.replicas={fo['min_insync_replicas']}, RF 3, 3 partitions, {fo['fill_mb']} MB "
              f"written while down); seconds, median (min-max)")
        kinds = [k for k in ("SIGKILL", "SIGTERM") if k in fo]
        print(f"{'measure':36}" + "".join(f" {k:>26}" for k in kinds))
        keys = [k for k in fo[kinds[0]] if k not in ("failed_produces", "failed_names")]
        for k in keys:
            print(f"{k:36}" + "".join(f" {fmt(fo[kind][k]):>26}" for kind in kinds))
        for k in ("failed_produces", "failed_names"):
            print(f"{k:36}" + "".join(f" {str(fo[kind][k]):>26}" for kind in kinds))
        if fo["log_findings"]:
            print(f"broker log lines with error/exception/traceback: {len(fo['log_findings'])}, e.g.")
            for line in fo["log_findings"][:5]:
                print("  " + line)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthru: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthru = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", default="kbench,latency,partitions,failover",
                    help="any of kbench, latency, partitions, failover, profile (needs py-spy), catchup")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of latency and of each fail-over kind")
    ap.add_argument("--rounds", type=int, default=2, help="A/B rounds of the kbench phase")
    ap.add_argument("--kbench-phases", default="produce_acks1,produce_acksall,consume,latency")
    ap.add_argument("--kbench-python", default=HARNESS_PY)
    ap.add_argument("--kbench", default=KBENCH)
    ap.add_argument("--kbench-timeout", type=float, default=400.0)
    ap.add_argument("--lat-samples", type=int, default=500)
    ap.add_argument("--idle-partitions", default="0,50,100,200",
                    help="partitions phase: idle RF 3 partitions added before each latency step")
    ap.add_argument("--fill-mb", type=int, default=50)
    ap.add_argument("--fill-value-kb", type=int, default=10)
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra broker setting (cluster and single broker)")
    ap.add_argument("--py-spy", default="/tmp/benchvenv/bin/py-spy",
                    help="py-spy, to dump a signalled broker still running after --dump-after s")
    ap.add_argument("--dump-after", type=float, default=3.0)
    ap.add_argument("--profile-secs", type=float, default=10.0)
    ap.add_argument("--profile-top", type=int, default=40)
    ap.add_argument("--profile-native", action="store_true", help="py-spy --native (C frames of uvloop etc.)")
    ap.add_argument("--catchup-partitions", type=int, default=3, help="catchup phase: partitions led by broker 1")
    ap.add_argument("--catchup-profile", action="store_true",
                    help="catchup phase: one more catch-up with py-spy on broker 2 (not counted)")
    ap.add_argument("--signals", default="KILL,TERM", help="fail-over kinds, in order (KILL, TERM)")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--keep-logs", action="store_true", help="keep the work dir (broker logs, kbench JSON)")
    ap.add_argument("--json", action="store_true", help="print everything as JSON on stdout too")
    ap.add_argument("--json-file", default=None)
    args = ap.parse_args(argv)
    args.kbench_args = passthru
    args.overrides = dict(kv.split("=", 1) for kv in args.override)
    args.idle_partitions = [int(x) for x in args.idle_partitions.split(",") if x.strip()]
    args.signals = [signal.Signals["SIG" + x.strip().upper().removeprefix("SIG")] for x in args.signals.split(",")]
    funcs = {"kbench": phase_kbench, "latency": phase_latency, "partitions": phase_partitions,
             "failover": phase_failover, "profile": phase_profile, "catchup": phase_catchup}
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    for p in phases:
        if p not in funcs:
            ap.error(f"unknown phase {p}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="replication-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
                    "loadavg_start": os.getloadavg(), "work_dir": str(work), "settings": CLUSTER_SETTINGS,
                    "overrides": args.overrides}
    try:
        for p in phases:
            began = time.perf_counter()
            log(f"phase {p} (load {loadavg()})")
            result[p] = funcs[p](work, args)
            result[p]["took_s"] = round(time.perf_counter() - began, 1)
    finally:
        result["loadavg_end"] = os.getloadavg()
        if args.json_file:
            Path(args.json_file).write_text(json.dumps(result, indent=1, default=str))
    print_tables(result)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    if not args.keep_logs and not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
