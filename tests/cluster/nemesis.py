"""Helpers for the fault-injection test (test_nemesis.py): a keyed idempotent producer, a
high-watermark sampler, the faults themselves, and readers of what ended up where.

Everything that waits has a deadline; the only sleeps are a fault's deliberate duration and
the producer's pacing.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from josef.client.wire import KafkaConnection, WireError
from josef.protocol.entities import to_entity
from josef.protocol.kio_codec import request_class
from josef.records.batch import InvalidRecord, iter_batches
from josef.records.records import iter_records
from tests.conftest import wait_for

KEYS = 7  # values are spread over this many keys, so several keys share a partition


def key_of(index: int) -> str:
    return f"k{index % KEYS}"


def value_of(index: int) -> str:
    return f"{index:08d}"


# --- the workload --------------------------------------------------------------------------

@dataclass
class Delivery:
    error: object  # None when acknowledged
    partition: int
    offset: int


class Writer(threading.Thread):
    """One idempotent acks=all producer writing value i under key i % KEYS, paced to ~`rate`/s."""

    def __init__(self, bootstrap: str, topic: str, rate: int = 800):
        super().__init__(name="writer", daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.stop_event = threading.Event()
        self.produced = 0
        self.outcome: dict[int, Delivery] = {}
        self.client_errors: list[str] = []  # error_cb: transport errors, and fatal ones
        self.fatal: str | None = None
        self.unflushed = -1

    def acknowledged(self) -> int:
        return sum(1 for d in list(self.outcome.values()) if d.error is None)

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 60000,
                             "error_cb": self._on_error})
        step, chunk = 0.02, max(1, self.rate // 50)
        next_at = time.monotonic()
        try:
            while not self.stop_event.is_set() and self.fatal is None:
                for _ in range(chunk):
                    i = self.produced
                    try:
                        producer.produce(self.topic, value_of(i).encode(), key=key_of(i).encode(),
                                         on_delivery=lambda err, msg, i=i: self._delivered(i, err, msg))
                    except BufferError:
                        producer.poll(0.05)
                        break
                    self.produced += 1
                producer.poll(0)
                next_at += step
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing, not synchronisation
                else:
                    next_at = time.monotonic()
        finally:
            self.unflushed = producer.flush(60)

    def _delivered(self, i: int, err, msg) -> None:
        self.outcome[i] = Delivery(err, msg.partition(), msg.offset() if err is None else -1)

    def _on_error(self, err: KafkaError) -> None:
        self.client_errors.append(f"{time.monotonic():.1f} {err}")
        if err.fatal():
            self.fatal = str(err)


class WatermarkSampler:
    """ListOffsets LATEST per partition, as often as the leader answers, one thread and client per
    partition (a partition whose leader is down must not slow the others); errors are tolerated."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.stop_event = threading.Event()
        self.samples: dict[int, list[tuple[float, int]]] = {p: [] for p in range(partitions)}
        self.failures = 0
        self.threads = [threading.Thread(target=self._run, args=(p,), name=f"hw-sampler-{p}", daemon=True)
                        for p in range(partitions)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, timeout: float) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _run(self, partition: int) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 1000})
        tp = TopicPartition(self.topic, partition)
        try:
            while not self.stop_event.is_set():
                try:
                    _, high = consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                except KafkaException:
                    self.failures += 1
                    self.stop_event.wait(0.05)  # sampling period after an error
                    continue
                if high >= 0:
                    self.samples[partition].append((time.monotonic(), high))
                self.stop_event.wait(0.01)  # sampling period
        finally:
            consumer.close()

    def regressions(self) -> list[tuple[int, float, float, int, int, int]]:
        """The dips below the highest value seen before: (partition, first sample, last sample,
        highest before, lowest during, samples during), one per dip."""
        out = []
        for p, samples in self.samples.items():
            highest, dip = -1, None
            for when, high in samples:
                if high < highest:
                    if dip is None:
                        dip = [p, when, when, highest, high, 0]
                    dip[2], dip[4], dip[5] = when, min(dip[4], high), dip[5] + 1
                elif dip is not None:
                    out.append(tuple(dip))
                    dip = None
                highest = max(highest, high)
            if dip is not None:
                out.append(tuple(dip))
        return out


class EpochProbe:
    """ListOffsets LATEST sent straight to every broker (josef's wire client), so each answer
    comes with the broker that gave it and the leader epoch it gave it in.

    A stricter look than a client's: a zombie leader answering in an old epoch is expected to
    lag (Kafka's does too), but an answer in an epoch at least as new must never be below one
    already received (Kafka answers OFFSET_NOT_AVAILABLE, KIP-207, while a new leader's high
    watermark is behind the start of its epoch).
    """

    def __init__(self, cluster, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.stop_event = threading.Event()
        self.answers: list[tuple[float, float, int, int, int, int]] = []  # sent, received, broker, p, epoch, hw
        self.threads = [threading.Thread(target=self._run, args=(i, b.port), name=f"epoch-probe-{i}", daemon=True)
                        for i, b in cluster.brokers.items()]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, timeout: float) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _request(self):
        return to_entity(request_class(2, 7), {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": self.topic, "partitions": [{"partition_index": p, "current_leader_epoch": -1, "timestamp": -1}
                                                for p in range(self.partitions)]}]})

    def _run(self, broker_id: int, port: int) -> None:
        request = self._request()
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = KafkaConnection("127.0.0.1", port, timeout=1.0, client_id="epoch-probe")
                sent = time.monotonic()
                response = conn.request(request)
                received = time.monotonic()
            except (WireError, OSError):
                if conn is not None:
                    conn.close()
                    conn = None
                self.stop_event.wait(0.1)  # retry period while the broker is down or paused
                continue
            for t in response.topics:
                for p in t.partitions:
                    if int(p.error_code) == 0 and p.offset >= 0:
                        self.answers.append((sent, received, broker_id, p.partition_index, p.leader_epoch, p.offset))
            self.stop_event.wait(0.02)  # sampling period
        if conn is not None:
            conn.close()

    def regressions(self) -> list[str]:
        """Answers below an earlier answer (received before they were asked) of an epoch not newer,
        one line per partition, answering broker and epoch."""
        found: dict[tuple[int, int, int], list] = {}
        for partition in range(self.partitions):
            answers = [a for a in self.answers if a[3] == partition]
            by_received = sorted(answers, key=lambda a: a[1])
            best: dict[int, tuple] = {}  # epoch -> the answer with the highest hw received so far
            i = 0
            for b in sorted(answers, key=lambda a: a[0]):
                while i < len(by_received) and by_received[i][1] < b[0]:
                    a = by_received[i]
                    if a[4] not in best or a[5] > best[a[4]][5]:
                        best[a[4]] = a
                    i += 1
                top = max((a for epoch, a in best.items() if epoch <= b[4]), key=lambda a: a[5], default=None)
                if top is not None and b[5] < top[5]:
                    group = found.setdefault((partition, b[2], b[4]), [b, b, top, 0])
                    group[1], group[3] = b, group[3] + 1
        return [f"partition {p}: broker {broker} in epoch {epoch} answered {first[5]}..{last[5]} "
                f"({n} answers, {first[0]:.2f}-{last[0]:.2f}) after broker {top[2]} had answered {top[5]} "
                f"in epoch {top[4]} at {top[1]:.2f}"
                for (p, broker, epoch), (first, last, top, n) in sorted(found.items())]


# --- cluster state -------------------------------------------------------------------------

def own_view(broker, topic: str | None = None, timeout: float = 5.0):
    """The broker's own Metadata answer (a fresh client only knows its bootstrap broker); None if
    it does not answer in time."""
    try:
        return AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic, timeout=timeout)
    except KafkaException:
        return None


def healthy(cluster, topic: str) -> bool:
    """Every broker up and registered, a controller, and every partition led with a full ISR,
    in every broker's own view."""
    ids = set(cluster.brokers)
    for b in cluster.brokers.values():
        if not b.running:
            return False
        md = own_view(b, topic)
        if md is None or set(md.brokers) != ids or md.controller_id not in ids or topic not in md.topics:
            return False
        for p in md.topics[topic].partitions.values():
            if p.leader not in ids or sorted(p.isrs) != sorted(p.replicas) or len(p.replicas) != len(ids):
                return False
    return True


def wait_healthy(cluster, topic: str, timeout: float = 60.0, stable_for: float = 3.0) -> float:
    """Wait until `healthy` has held for `stable_for` seconds without a break; the time it took.

    The window matters after a pause: a leader may drop the resumed follower from the ISR up to
    replica.lag.time.max.ms (2 s) plus one ISR check (1 s) after it wakes, while the metadata
    still shows the ISR full. Without the window the next fault could take a second replica.
    """
    started = time.monotonic()
    since: list[float] = []  # when the current unbroken healthy stretch began

    def stable():
        if not healthy(cluster, topic):
            since.clear()
            return False
        if not since:
            since.append(time.monotonic())
        return time.monotonic() - since[0] >= stable_for
    wait_for(stable, timeout, interval=0.2,
             what=f"all brokers registered and every ISR full for {stable_for}s in a row")
    return time.monotonic() - started


def survivor_view(cluster, victim: int, topic: str):
    for i, b in cluster.brokers.items():
        if i != victim and b.running:
            md = own_view(b, topic)
            if md is not None:
                return md
    return None


# --- faults --------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str
    broker: int
    started: float
    ended: float = 0.0
    note: str = ""

    def __str__(self) -> str:
        return f"{self.kind}(broker {self.broker}) at {self.started:.1f}-{self.ended:.1f} {self.note}".strip()


@dataclass
class Nemesis:
    cluster: object
    topic: str
    faults: list[Fault] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)

    def _record(self, kind: str, broker: int) -> Fault:
        fault = Fault(kind, broker, time.monotonic())
        self.faults.append(fault)
        return fault

    def kill(self, victim: int, *, wait_failover: bool, why: str = "") -> None:
        """SIGKILL, optionally wait until the others no longer count on the victim, restart."""
        fault = self._record("SIGKILL", victim)
        fault.note = why
        self.cluster.brokers[victim].kill()
        if wait_failover:
            def moved_on():
                md = survivor_view(self.cluster, victim, self.topic)
                return md is not None and self.topic in md.topics and victim not in md.brokers \
                    and md.controller_id not in (victim, -1) \
                    and all(p.leader not in (victim, -1) for p in md.topics[self.topic].partitions.values())
            wait_for(moved_on, 30, interval=0.2, what=f"the cluster to fail over from killed broker {victim}")
        self.cluster.brokers[victim].start()
        fault.ended = time.monotonic()

    def terminate(self, victim: int) -> None:
        fault = self._record("SIGTERM", victim)
        code = self.cluster.brokers[victim].stop()
        fault.note = f"exit {code}"
        self.cluster.brokers[victim].start()
        fault.ended = time.monotonic()

    def pause(self, victim: int, seconds: float, why: str = "") -> None:
        fault = self._record("SIGSTOP", victim)
        fault.note = f"{seconds}s {why}".strip()
        proc = self.cluster.brokers[victim].proc
        os.killpg(proc.pid, signal.SIGSTOP)
        self.paused.add(victim)
        try:
            time.sleep(seconds)  # the fault's deliberate duration
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
            self.paused.discard(victim)
        fault.ended = time.monotonic()

    def release(self) -> None:
        for victim in list(self.paused):
            proc = self.cluster.brokers[victim].proc
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
        self.paused.clear()


# --- reading back --------------------------------------------------------------------------

def consume_all(bootstrap: str, topic: str, ends: dict[int, int],
                timeout: float = 60.0) -> list[tuple[int, int, str, str]]:
    """(partition, offset, key, value) of every record below `ends[p]`, read from offset 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    records: list[tuple[int, int, str, str]] = []
    next_offset = {p: 0 for p in ends}
    deadline = time.monotonic() + timeout
    try:
        while any(next_offset[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise AssertionError(f"read back timed out at {next_offset}, ends {ends}")
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            p = msg.partition()
            if msg.offset() < ends[p]:
                records.append((p, msg.offset(), (msg.key() or b"").decode(), msg.value().decode()))
            next_offset[p] = max(next_offset[p], msg.offset() + 1)
    finally:
        consumer.close()
    return records


def replica_log(data_dir: Path, topic: str, partition: int) -> list[tuple[int, str, str]]:
    """(offset, key, value) of every record in one replica's segment files, in file order."""
    directory = Path(data_dir) / f"{topic}-{partition}"
    out = []
    for path in sorted(directory.glob("*.log"), key=lambda f: int(f.stem)):
        buf = path.read_bytes()
        try:
            for pos, header in iter_batches(buf):
                if header.is_control:
                    continue
                for r in iter_records(buf[pos:pos + header.size]):
                    out.append((r.offset, (r.key or b"").decode(), (r.value or b"").decode()))
        except InvalidRecord:
            pass  # a tail being written; the caller waits for the replicas to converge
    return out
