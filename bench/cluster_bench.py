"""The seed's cluster on this machine: start-up, controller fail-over and a 1 GB reassignment.

    .venv/bin/python bench/cluster_bench.py [--phases up,failover,reassign] [--reps 3]
                                            [--reassign-mb 1024] [--value-kb 100] [--json]
                                            [--json-file PATH] [--work-dir DIR] [--keep-logs DIR]

Everything runs through `josef cluster` (3 ZooKeepers, 3 brokers, the REST Proxy), each phase
in its own state directory under a temporary dir, on free ports away from the defaults; the
brokers run with josef cluster's `zookeeper.session.timeout.ms=6000`.

up        wall time of `josef cluster up -d` (the command, as a user runs it, until it returns
          with the cluster serving: REST Proxy lists brokers 1-3) from an empty state dir, and
          again after `josef cluster stop` with the data kept (a topic of 6 partitions RF 3
          holding a few records).
failover  per repetition: fresh topics (RF1 and RF3, 3 partitions each: every broker leads
          one), every partition produced to; the controller (Metadata controller_id) is
          SIGKILLed; then, polled every 50 ms: when a surviving broker names another live
          controller, when a record to a survivor's RF1 partition is acked, when Metadata shows
          a new leader for the RF3 partition the killed broker led and when a record produced
          to it (acks=1) is acked. The killed broker is started again (`up -d`) between
          repetitions.
reassign  one partition (RF 1) on broker 3 filled with --reassign-mb MB (--value-kb values,
          linger.ms=50, no compression, acks=1; the fill rate is reported too), then moved
          to broker 2 with `kafka-reassign-partitions.sh --execute`; Metadata is polled until
          the replicas are [2], then `--verify` must say completed. Reports seconds and MB/s,
          checks the new leader's high watermark equals the records produced, samples the
          copy's progress and the CPU both brokers used. The topic and the cluster's data are
          deleted afterwards. Needs 3x the size free on disk.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from josef.cluster.launcher import port_free, proc_start_ticks  # noqa: E402
from josef.cluster.zookeeper_server import pid_alive  # noqa: E402

BIN = Path(sys.executable).parent
# never the seed's / josef cluster's default ports (other sessions may use them)
RESERVED = ({*range(9092, 9095), *range(29092, 29095), *range(2181, 2184), *range(2888, 2891),
             *range(3888, 3891), 8082})
SESSION_TIMEOUT_MS = 6000  # josef cluster's broker default (launcher.BROKER_DEFAULTS)
_QUIET_LOGGER = logging.getLogger("cluster_bench.rdkafka")
_QUIET_LOGGER.addHandler(logging.NullHandler())
_QUIET_LOGGER.propagate = False
CLIENT_QUIET = {"logger": _QUIET_LOGGER}  # librdkafka's chatter about the brokers we kill and stop


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_bases(count: int, width: int = 3) -> list[int]:
    taken: set[int] = set()
    bases = []
    while len(bases) < count:
        base = random.randrange(20000, 32000 - width)
        ports = set(range(base, base + width))
        if not ports & (taken | RESERVED) and all(port_free(p) for p in ports):
            taken |= ports
            bases.append(base)
    return bases


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dirty_kb() -> int:
    """Dirty + Writeback of the page cache (/proc/meminfo), kB."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(("Dirty:", "Writeback:")):
                total += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return total


def dir_bytes(path: Path) -> int:
    total = 0
    try:
        for p in path.iterdir():
            try:
                total += p.stat().st_size
            except OSError:
                pass
    except OSError:
        pass
    return total


class Cluster:
    """One `josef cluster` state dir on free ports."""

    def __init__(self, work: Path, name: str):
        self.cwd = work / name
        self.cwd.mkdir(parents=True)
        self.state = self.cwd / "josef-cluster"
        kafka, internal, zk, quorum, election, rest = free_bases(6)
        self.kafka, self.internal, self.rest = kafka, internal, rest
        self.flags = ["--kafka-port", str(kafka), "--internal-port", str(internal), "--zookeeper-port", str(zk),
                      "--quorum-port", str(quorum), "--election-port", str(election), "--rest-port", str(rest)]
        self.seen: set[tuple[int, int]] = set()
        self.last_output = ""

    def run(self, *args: str, timeout: float = 120.0) -> float:
        """`josef cluster ARGS` (the ports with `up`); its wall time; raises when it fails."""
        cmd = [str(BIN / "josef"), "cluster", *args]
        if args and args[0] == "up":
            cmd += self.flags
        began = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        finally:
            self.seen.update(self.records().values())
        took = time.perf_counter() - began
        self.last_output = done.stdout
        if done.returncode != 0:
            raise RuntimeError(f"josef cluster {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return took

    def records(self) -> dict[str, tuple[int, int]]:
        out = {}
        for p in (self.state / "run").glob("*.json"):
            try:
                rec = json.loads(p.read_text())
                out[p.stem] = (rec["pid"], rec["start_ticks"])
            except (OSError, ValueError, KeyError):
                pass
        return out

    def pid(self, service: str) -> int | None:
        rec = self.records().get(service)
        if rec and pid_alive(rec[0]) and proc_start_ticks(rec[0]) == rec[1]:
            return rec[0]
        return None

    def bootstrap(self, *ids: int) -> str:
        return ",".join(f"127.0.0.1:{self.kafka + i - 1}" for i in (ids or (1, 2, 3)))

    def data_dir(self, broker: int) -> Path:
        return self.state / f"broker-{broker}-data"

    def log_findings(self) -> list[str]:
        """Lines of the services' logs that mention an error or a traceback."""
        out = []
        for p in sorted((self.state / "logs").glob("*.log")):
            for line in p.read_text(errors="replace").splitlines():
                low = line.lower()
                if "error" in low or "traceback" in low:
                    out.append(f"{self.cwd.name}/{p.stem}: {line.strip()[:300]}")
        return out

    def down(self, keep_logs: Path | None = None, findings: list[str] | None = None) -> None:
        if findings is not None and (self.state / "logs").exists():
            findings.extend(self.log_findings())
        if keep_logs is not None and (self.state / "logs").exists():
            dest = keep_logs / self.cwd.name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(self.state / "logs", dest)
        try:
            if self.state.exists():
                self.run("down", "-v", "-t", "10")
        finally:
            for pid, ticks in self.seen:  # whatever happened: nothing of ours stays behind
                if pid_alive(pid) and proc_start_ticks(pid) == ticks:
                    os.killpg(pid, signal.SIGKILL)


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def create_topic(admin: AdminClient, name: str, partitions: int = 1, rf: int = 1,
                 assignment: list[list[int]] | None = None) -> None:
    topic = (NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment) if assignment
             else NewTopic(name, num_partitions=partitions, replication_factor=rf))
    admin.create_topics([topic], operation_timeout=30)[name].result(60)


class AckProbe:
    """Keeps one record in flight to a partition; step() is true once one has been acked."""

    def __init__(self, producer: Producer, topic: str, partition: int):
        self.producer, self.topic, self.partition = producer, topic, partition
        self.in_flight, self.acked, self.errors = False, False, []

    def _done(self, err, msg) -> None:
        self.in_flight = False
        if err is None:
            self.acked = True
        else:
            self.errors.append(str(err))

    def step(self) -> bool:
        if not self.in_flight and not self.acked:
            self.producer.produce(self.topic, b"probe", partition=self.partition, on_delivery=self._done)
            self.in_flight = True
        self.producer.poll(0)
        return self.acked


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": [round(v, 3) for v in values]}


# -- phases -----------------------------------------------------------------------------------

def started(output: str) -> dict[str, float]:
    """From `up -d`'s output: the seconds each tier took (the slowest service of the tier)."""
    tiers: dict[str, float] = {}
    for m in re.finditer(r"Container (\S+?)(?:-\d+)?\s+Started\s+([\d.]+)s", output):
        tiers[m.group(1)] = max(tiers.get(m.group(1), 0.0), float(m.group(2)))
    return tiers


def phase_up(work: Path, reps: int, keep_logs: Path | None, findings: list[str]) -> dict:
    cold, warm = [], []
    tiers: dict[str, list[dict[str, float]]] = {"empty": [], "stopped_with_data": []}
    for rep in range(reps):
        c = Cluster(work, f"up-{rep}")
        try:
            cold.append(c.run("up", "-d"))
            tiers["empty"].append(started(c.last_output))
            admin = AdminClient({"bootstrap.servers": c.bootstrap(), **CLIENT_QUIET})
            create_topic(admin, "kept", partitions=6, rf=3)
            p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "linger.ms": 5, **CLIENT_QUIET})
            for i in range(600):
                p.produce("kept", b"v" * 100, partition=i % 6)
            assert p.flush(30) == 0
            del admin, p
            c.run("stop")
            warm.append(c.run("up", "-d"))
            tiers["stopped_with_data"].append(started(c.last_output))
            log(f"up rep {rep + 1}: empty {cold[-1]:.2f}s {tiers['empty'][-1]}, "
                f"stopped-with-data {warm[-1]:.2f}s {tiers['stopped_with_data'][-1]}")
        finally:
            c.down(keep_logs, findings)
    return {"up_empty_s": summary(cold), "up_stopped_with_data_s": summary(warm), "tiers_s": tiers}


def phase_failover(work: Path, reps: int, keep_logs: Path | None, findings: list[str]) -> dict:
    c = Cluster(work, "failover")
    out: dict[str, list[float]] = {"controller_s": [], "rf1_produce_s": [], "controller_and_rf1_s": [],
                                   "rf3_new_leader_s": [], "rf3_produce_s": []}
    killed_ids = []
    try:
        c.run("up", "-d")
        for rep in range(reps):
            admin_all = AdminClient({"bootstrap.servers": c.bootstrap(), **CLIENT_QUIET})
            rf1, rf3 = f"fo-rf1-{rep}", f"fo-rf3-{rep}"
            create_topic(admin_all, rf1, partitions=3, rf=1)
            create_topic(admin_all, rf3, partitions=3, rf=3)
            md = wait(lambda: (m := admin_all.list_topics(timeout=5)) and m.controller_id > 0
                      and all(p.leader > 0 for t in (rf1, rf3) for p in m.topics[t].partitions.values()) and m,
                      30, "leaders and a controller")
            victim = md.controller_id
            survivors = [b for b in (1, 2, 3) if b != victim]
            rf1_part = next(p.id for p in md.topics[rf1].partitions.values() if p.leader in survivors)
            rf3_part = next(p.id for p in md.topics[rf3].partitions.values() if p.leader == victim)
            # warm clients: connections and metadata in place before the kill
            conf = {"bootstrap.servers": c.bootstrap(), "acks": "1", "linger.ms": 0,
                    "retry.backoff.ms": 50, "retry.backoff.max.ms": 200,
                    "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200,
                    "message.timeout.ms": 60000, **CLIENT_QUIET}
            p1, p3 = Producer(conf), Producer(conf)
            for t, prod in ((rf1, p1), (rf3, p3)):
                for part in range(3):
                    probe = AckProbe(prod, t, part)
                    wait(probe.step, 20, f"warm-up produce to {t}-{part}")
            watchers = {b: AdminClient({"bootstrap.servers": c.bootstrap(b), **CLIENT_QUIET}) for b in survivors}
            pid = c.pid(f"broker-{victim}")
            assert pid is not None, f"broker-{victim} not running"

            os.killpg(pid, signal.SIGKILL)
            t0 = time.perf_counter()
            got: dict[str, float] = {}
            acks = {"rf1_produce_s": AckProbe(p1, rf1, rf1_part), "rf3_produce_s": AckProbe(p3, rf3, rf3_part)}
            deadline = t0 + 60
            while len(got) < 4 and time.perf_counter() < deadline:
                for name, probe in acks.items():
                    if name not in got and probe.step():
                        got[name] = time.perf_counter() - t0
                if "controller_s" not in got or "rf3_new_leader_s" not in got:
                    for adm in watchers.values():
                        try:
                            m = adm.list_topics(rf3, timeout=1)
                        except KafkaException:
                            continue
                        now = time.perf_counter() - t0
                        if "controller_s" not in got and m.controller_id in survivors:
                            got["controller_s"] = now
                        if "rf3_new_leader_s" not in got and m.topics[rf3].partitions[rf3_part].leader in survivors:
                            got["rf3_new_leader_s"] = now
                time.sleep(0.02)
            if len(got) < 4:
                raise TimeoutError(f"fail-over of broker {victim} incomplete after 60 s: {got}; "
                                   f"produce errors {[(k, a.errors[:3]) for k, a in acks.items()]}")
            got["controller_and_rf1_s"] = max(got["controller_s"], got["rf1_produce_s"])
            for k, v in got.items():
                out[k].append(v)
            killed_ids.append(victim)
            log(f"failover rep {rep + 1}: killed controller broker-{victim}; "
                + ", ".join(f"{k} {v:.2f}" for k, v in got.items())
                + "".join(f"; {k} errors before the ack: {a.errors}" for k, a in acks.items() if a.errors))
            p1.flush(5)
            p3.flush(5)
            del watchers, p1, p3, acks
            # bring it back (`up` waits until it has registered again), then every broker agrees
            c.run("up", "-d")
            views = [AdminClient({"bootstrap.servers": c.bootstrap(b), **CLIENT_QUIET}) for b in (1, 2, 3)]
            wait(lambda: all(len((m := v.list_topics(timeout=5)).brokers) == 3 and m.controller_id > 0
                             for v in views), 30, "all brokers back with a controller", interval=0.2)
    finally:
        c.down(keep_logs, findings)
    res: dict = {k: summary(v) for k, v in out.items()}
    res["killed"] = killed_ids
    return res


def phase_reassign(work: Path, mb: int, value_kb: int, keep_logs: Path | None, findings: list[str]) -> dict:
    free = shutil.disk_usage(work).free
    need = 3 * mb * 1024 * 1024
    if free < need:
        raise RuntimeError(f"{free / 2**30:.1f} GiB free under {work}, the reassignment of {mb} MB needs "
                           f"{need / 2**30:.1f} GiB")
    c = Cluster(work, "reassign")
    topic, source, target = "reassign-big", 3, 2
    res: dict = {"mb": mb, "value_kb": value_kb, "from": source, "to": target}
    try:
        c.run("up", "-d")
        admin = AdminClient({"bootstrap.servers": c.bootstrap(), **CLIENT_QUIET})
        create_topic(admin, topic, assignment=[[source]])
        md = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
        assert list(md.replicas) == [source] and md.leader == source, (md.replicas, md.leader)

        # fill
        value = random.Random(1).randbytes(value_kb * 1024)
        total = mb * 1024 * 1024
        count = -(-total // len(value))
        producer = Producer({"bootstrap.servers": c.bootstrap(source), "acks": "1", "linger.ms": 50,
                             "compression.type": "none", "batch.size": 1_000_000,
                             "queue.buffering.max.kbytes": 65536, "message.max.bytes": 1_000_000,
                             **CLIENT_QUIET})
        errors: list = []
        acked = [0]

        def on_delivery(err, msg) -> None:
            if err:
                errors.append(err)
            else:
                acked[0] += 1
        fill_progress: list[tuple[float, int, int]] = []  # (s, records acked, kB dirty in the page cache)
        source_pid = c.pid(f"broker-{source}")
        cpu_before = (cpu_seconds(source_pid), time.process_time())
        began = last_sample = time.perf_counter()
        for i in range(count):
            while True:
                try:
                    producer.produce(topic, value, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            if time.perf_counter() - last_sample >= 1.0:
                last_sample = time.perf_counter()
                fill_progress.append((round(last_sample - began, 2), acked[0], dirty_kb()))
        left = producer.flush(300)
        fill_s = time.perf_counter() - began
        assert left == 0 and not errors, (left, errors[:3])
        src_dir = c.data_dir(source) / f"{topic}-0"
        on_disk = dir_bytes(src_dir)
        res.update(records=count, fill_s=fill_s, fill_mb_s=total / 2**20 / fill_s, fill_rec_s=count / fill_s,
                   log_bytes=on_disk, fill_progress=fill_progress,
                   fill_cpu_s={f"broker-{source}": round(cpu_seconds(source_pid) - cpu_before[0], 1),
                               "producer (this process)": round(time.process_time() - cpu_before[1], 1)})
        log(f"fill: {count} records, {total / 2**20:.0f} MB in {fill_s:.1f}s = {res['fill_mb_s']:.1f} MB/s; "
            f"{on_disk / 2**20:.0f} MiB on disk; CPU {res['fill_cpu_s']}")

        # move
        plan = work / "reassign.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": topic, "partition": 0, "replicas": [target]}]}))
        tool = [str(BIN / "kafka-reassign-partitions.sh"), "--bootstrap-server", f"localhost:{c.kafka}",
                "--reassignment-json-file", str(plan)]
        pids = {b: c.pid(f"broker-{b}") for b in (source, target)}
        cpu0 = {b: cpu_seconds(p) for b, p in pids.items()}
        dst_dir = c.data_dir(target) / f"{topic}-0"
        began = time.perf_counter()
        done = subprocess.run([*tool, "--execute"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        execute_s = time.perf_counter() - began
        progress: list[tuple[float, int, int]] = []  # (s, bytes on the target, kB dirty)
        watcher = AdminClient({"bootstrap.servers": c.bootstrap(target), **CLIENT_QUIET})
        last_sample = 0.0
        isr_join_s = None

        def moved() -> bool:
            nonlocal last_sample, isr_join_s
            now = time.perf_counter() - began
            if now - last_sample >= 1.0:
                progress.append((round(now, 2), dir_bytes(dst_dir), dirty_kb()))
                last_sample = now
            try:
                p = watcher.list_topics(topic, timeout=2).topics[topic].partitions[0]
            except KafkaException:
                return False
            if isr_join_s is None and target in p.isrs:
                isr_join_s = time.perf_counter() - began
            return list(p.replicas) == [target] and p.leader == target
        wait(moved, 1800, "the reassignment", interval=0.2)
        move_s = time.perf_counter() - began
        if isr_join_s is None:  # joined and finished between two polls
            isr_join_s = move_s
        cpu1 = {b: cpu_seconds(p) for b, p in pids.items()}
        verify = subprocess.run([*tool, "--verify"], capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0 and "is completed" in verify.stdout, verify.stdout + verify.stderr
        res.update(execute_cmd_s=execute_s, move_s=move_s, move_mb_s=on_disk / 2**20 / move_s,
                   copy_s=isr_join_s, copy_mb_s=on_disk / 2**20 / isr_join_s,
                   cpu_s={f"broker-{b}": round(cpu1[b] - cpu0[b], 1) for b in pids},
                   progress=progress, verify=verify.stdout.strip())
        log(f"move: copied (broker {target} in the ISR) after {isr_join_s:.1f}s = {res['copy_mb_s']:.1f} MB/s, "
            f"reassignment complete after {move_s:.1f}s = {res['move_mb_s']:.1f} MB/s; CPU {res['cpu_s']}")

        # the new leader has every record; the old copy goes away
        consumer = Consumer({"bootstrap.servers": c.bootstrap(target), "group.id": "cluster-bench", **CLIENT_QUIET})
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.close()
        res.update(low=low, high=high, count_ok=(low == 0 and high == count))
        res["old_copy_removed_s"] = None
        try:
            wait(lambda: not src_dir.exists(), 30, "the old copy removed", interval=0.2)
            res["old_copy_removed_s"] = time.perf_counter() - began
        except TimeoutError:
            pass
        res["target_log_bytes"] = dir_bytes(dst_dir)
        log(f"new leader watermarks {low}..{high} (produced {count}); old copy removed: "
            f"{res['old_copy_removed_s'] is not None}")
        admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    finally:
        c.down(keep_logs, findings)
    return res


def fmt(s: dict) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="up,failover,reassign")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--reassign-mb", type=int, default=1024)
    ap.add_argument("--value-kb", type=int, default=100)
    ap.add_argument("--work-dir", help="where the clusters' state dirs go (default: a temporary dir)")
    ap.add_argument("--keep-logs", help="copy every service's log here before `down -v`")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--json-file", help="also write the results as JSON to this file")
    args = ap.parse_args()
    phases = args.phases.split(",")
    work = Path(tempfile.mkdtemp(prefix="josef-cluster-bench-", dir=args.work_dir))
    keep = Path(args.keep_logs) if args.keep_logs else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    findings: list[str] = []
    results: dict = {"reps": args.reps, "session_timeout_ms": SESSION_TIMEOUT_MS, "cpus": os.cpu_count(),
                     "loadavg_before": os.getloadavg()[:3], "log_findings": findings}
    try:
        if "up" in phases:
            results["up"] = phase_up(work, args.reps, keep, findings)
        if "failover" in phases:
            results["failover"] = phase_failover(work, args.reps, keep, findings)
        if "reassign" in phases:
            results["reassign"] = phase_reassign(work, args.reassign_mb, args.value_kb, keep, findings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if findings:
            log(f"{len(findings)} log lines mention an error or a traceback:")
            for line in findings[:40]:
                log("  " + line)
    results["loadavg_after"] = os.getloadavg()[:3]
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    rows = [("measure", "median (min–max), s")]
    if "up" in results:
        u = results["up"]
        rows += [("up -d, empty state dir", fmt(u["up_empty_s"])),
                 ("up -d, stopped with data", fmt(u["up_stopped_with_data_s"]))]
    if "failover" in results:
        f = results["failover"]
        rows += [("controller moved (survivor names a live one)", fmt(f["controller_s"])),
                 ("RF1 produce to a survivor acked", fmt(f["rf1_produce_s"])),
                 ("controller moved AND RF1 produce", fmt(f["controller_and_rf1_s"])),
                 ("RF3 partition of the killed: new leader", fmt(f["rf3_new_leader_s"])),
                 ("RF3 partition of the killed: produce acked", fmt(f["rf3_produce_s"]))]
    width = max(len(r[0]) for r in rows)
    for name, value in rows if len(rows) > 1 else []:
        print(f"{name:<{width}}  {value}")
    if "reassign" in results:
        r = results["reassign"]
        print(f"\nreassign {r['mb']} MB ({r['records']} records of {r['value_kb']} KB), broker {r['from']} -> "
              f"{r['to']}:")
        print(f"  fill    {r['fill_s']:.1f} s  {r['fill_mb_s']:.1f} MB/s  {r['fill_rec_s']:.0f} records/s")
        print(f"  copy    {r['copy_s']:.1f} s  {r['copy_mb_s']:.1f} MB/s  (until broker {r['to']} joins the ISR)")
        print(f"  move    {r['move_s']:.1f} s  {r['move_mb_s']:.1f} MB/s  (until the replicas are [{r['to']}]; "
              f"CPU {r['cpu_s']})")
        print(f"  new leader watermarks {r['low']}..{r['high']}: {'OK' if r['count_ok'] else 'MISMATCH'}; "
              f"old copy removed after {r['old_copy_removed_s'] and round(r['old_copy_removed_s'], 1)} s")
    print(f"\nload average before {results['loadavg_before']}, after {results['loadavg_after']}; "
          f"{len(findings)} log lines mention an error or a traceback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
