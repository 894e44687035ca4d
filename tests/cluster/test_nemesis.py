"""Durability under faults (issue 7): acknowledged writes survive SIGKILL, SIGTERM and SIGSTOP
of brokers, leaders and the controller.

One idempotent acks=all producer writes unique keyed values to a topic with RF 3 and
min.insync.replicas=2 while a nemesis, one broker at a time, kills, terminates and pauses
brokers, waiting after each fault until every broker is back and every ISR is full again:
the test is about safety, not liveness. Afterwards every acknowledged value must be read
back exactly once, where it was acknowledged, in production order within its partition;
the three replicas of each partition must hold the same records at the same offsets; and
the high watermark must never have gone back, neither as a client saw it (ListOffsets
LATEST through librdkafka, sampled throughout) nor in the answers of the brokers asked
directly, compared epoch by epoch (see nemesis.EpochProbe). Set NEMESIS_SEED to replay a
run's choice of victims (the timing stays the machine's).
"""
from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.cluster.nemesis import (EpochProbe, Nemesis, WatermarkSampler, Writer, consume_all, key_of, replica_log,
                                   survivor_view, value_of, wait_healthy)
from tests.conftest import wait_for

PARTITIONS = 3
LONG_PAUSE_S = 9.0  # longer than zookeeper.session.timeout.ms=6000: the session expires
SHORT_PAUSE_S = 2.0  # shorter: only replica.lag.time.max.ms=2000 may notice


def _view(cluster, topic):
    md = survivor_view(cluster, -1, topic)
    assert md is not None and topic in md.topics, "no broker answers Metadata"
    return md


def _leaders(md, topic) -> dict[int, int]:
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def _final_ends(cluster, topic: str) -> dict[int, int]:
    """The high watermark of each partition, once the three replicas' files agree on it."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"ends-{uuid.uuid4().hex[:6]}"})
    ends: dict[int, int] = {p: 0 for p in range(PARTITIONS)}
    try:
        def settled(p):
            try:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1]
            except KafkaException:
                return False
            logs = [replica_log(b.data_dir, topic, p) for b in cluster.brokers.values()]
            return all(len(log) == ends[p] for log in logs)
        for p in range(PARTITIONS):
            try:
                wait_for(lambda: settled(p), 30, interval=0.2, what=f"replicas of partition {p} at the high watermark")
            except AssertionError:
                pass  # compared (and reported) below
    finally:
        consumer.close()
    return ends


@pytest.mark.timeout(240)
def test_acknowledged_writes_survive_kills_terms_and_pauses(cluster_factory, tmp_path):
    seed = int(os.environ.get("NEMESIS_SEED", time.time_ns() % 2**31))
    rng = random.Random(seed)
    cluster = cluster_factory(3, {"replica.lag.time.max.ms": "2000"})
    topic = f"nemesis-{uuid.uuid4().hex[:6]}"
    admin = cluster.admin()
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=10)[topic].result(15)
    wait_healthy(cluster, topic, 30, stable_for=0)

    t0 = time.monotonic()
    writer = Writer(cluster.bootstrap, topic)
    sampler = WatermarkSampler(cluster.bootstrap, topic, PARTITIONS)
    probe = EpochProbe(cluster, topic, PARTITIONS)
    nemesis = Nemesis(cluster, topic)
    recoveries: list[float] = []
    writer.start()
    sampler.start()
    probe.start()
    try:
        wait_for(lambda: writer.acknowledged() > 300, 30, interval=0.1, what="traffic flowing")

        # 1. SIGKILL the leader of a partition (one that is not the controller, when there is one)
        md = _view(cluster, topic)
        leaders = _leaders(md, topic)
        candidates = sorted({l for l in leaders.values() if l != md.controller_id}) or sorted(set(leaders.values()))
        victim = rng.choice(candidates)
        nemesis.kill(victim, wait_failover=True, why=f"leader of partitions "
                     f"{sorted(p for p, l in leaders.items() if l == victim)}, controller {md.controller_id}")
        recoveries.append(wait_healthy(cluster, topic))

        # 2. SIGKILL the controller
        md = _view(cluster, topic)
        nemesis.kill(md.controller_id, wait_failover=True, why="the controller")
        recoveries.append(wait_healthy(cluster, topic))

        # 3. SIGTERM one (controlled shutdown), restart it
        nemesis.terminate(rng.choice(sorted(cluster.brokers)))
        recoveries.append(wait_healthy(cluster, topic))

        # 4. SIGSTOP a leader past its ZooKeeper session: it comes back as a deposed zombie
        md = _view(cluster, topic)
        leaders = _leaders(md, topic)
        victim = rng.choice(sorted(set(leaders.values())))
        nemesis.pause(victim, LONG_PAUSE_S, why=f"leader of {sorted(p for p, l in leaders.items() if l == victim)}")
        recoveries.append(wait_healthy(cluster, topic))

        # 5. SIGSTOP one briefly
        nemesis.pause(rng.choice(sorted(cluster.brokers)), SHORT_PAUSE_S)
        recoveries.append(wait_healthy(cluster, topic))

        # 6. SIGKILL one and restart it at once, before its session expires
        nemesis.kill(rng.choice(sorted(cluster.brokers)), wait_failover=False, why="restarted at once")
        recoveries.append(wait_healthy(cluster, topic))

        before = writer.acknowledged()
        wait_for(lambda: writer.acknowledged() > before + 300, 30, interval=0.1,
                 what="writes acknowledged after the last fault")
    finally:
        nemesis.release()
        writer.stop_event.set()
        writer.join(90)
        sampler.stop(30)
        probe.stop(10)
    run_s = time.monotonic() - t0
    assert not writer.is_alive(), "the producer did not finish flushing"
    wait_healthy(cluster, topic, stable_for=0)

    # --- what each replica holds --------------------------------------------------------
    ends = _final_ends(cluster, topic)
    replicas = {p: {i: replica_log(b.data_dir, topic, p) for i, b in cluster.brokers.items()}
                for p in range(PARTITIONS)}
    divergent = []
    for p in range(PARTITIONS):
        logs = replicas[p]
        for i, log in logs.items():
            if [o for o, _, _ in log] != list(range(len(log))):
                divergent.append(f"partition {p} broker {i}: offsets are not 0..{len(log) - 1}")
        reference_id = min(logs)
        for i, log in logs.items():
            if log[:ends[p]] != logs[reference_id][:ends[p]] or len(log) != ends[p]:
                first = next((n for n, (a, b) in enumerate(zip(log, logs[reference_id])) if a != b),
                             min(len(log), len(logs[reference_id])))
                divergent.append(f"partition {p}: broker {i} ({len(log)} records) differs from broker "
                                 f"{reference_id} ({len(logs[reference_id])}) from offset {first}, "
                                 f"high watermark {ends[p]}: {log[first:first + 2]} vs "
                                 f"{logs[reference_id][first:first + 2]}")

    # --- what a consumer reads ----------------------------------------------------------
    records = consume_all(cluster.bootstrap, topic, ends)
    for p in range(PARTITIONS):
        read = [(o, k, v) for q, o, k, v in sorted(records) if q == p]
        if read != replicas[p][min(replicas[p])][:ends[p]]:
            divergent.append(f"partition {p}: the consumer read differs from the replica files")
    index_of = {value_of(i): i for i in range(writer.produced)}
    counts = Counter(v for _, _, _, v in records)
    acked = {i: d for i, d in writer.outcome.items() if d.error is None}
    failed = {i: d for i, d in writer.outcome.items() if d.error is not None}
    where = {v: (p, o, k) for p, o, k, v in records}
    lost = sorted(i for i in acked if value_of(i) not in counts)
    duplicated = sorted(v for v, n in counts.items() if n > 1)
    unknown = sorted(v for v in counts if v not in index_of)
    misplaced = sorted(i for i, d in acked.items() if value_of(i) in where
                       and where[value_of(i)][:2] != (d.partition, d.offset))
    wrong_key = sorted(v for v, (_, _, k) in where.items() if v in index_of and k != key_of(index_of[v]))
    out_of_order = []
    for p in range(PARTITIONS):
        seen: dict[str, int] = {}  # key -> last acknowledged index read
        for q, o, k, v in sorted(records):
            i = index_of.get(v)
            if q != p or i not in acked:
                continue
            if i < seen.get(k, -1):
                out_of_order.append(f"partition {p} offset {o}: {v} after {value_of(seen[k])} (key {k})")
            seen[k] = max(seen.get(k, -1), i)
    regressions = sampler.regressions()
    epoch_regressions = probe.regressions()
    regression_text = [f"partition {p}: {before} -> {low} from t+{first - t0:.2f}s to t+{last - t0:.2f}s "
                       f"({n} samples)" for p, first, last, before, low, n in regressions]
    epoch_regressions = [re.sub(r"(\d+\.\d\d)", lambda m: f"t+{float(m.group(1)) - t0:.2f}s", line)
                         for line in epoch_regressions]

    log_problems = []
    for b in cluster.brokers.values():
        for n, line in enumerate(b.log().splitlines(), 1):
            if re.search(r"ERROR|Traceback", line):
                log_problems.append(f"{b.log_path.name}:{n}: {line[:200]}")
    fault_text = [f"{f.kind}(broker {f.broker}) t+{f.started - t0:.1f}s..t+{f.ended - t0:.1f}s {f.note}"
                  for f in nemesis.faults]
    unacked_read = sum(1 for v in counts if index_of.get(v) not in acked)
    summary = (f"seed {seed}: {len(nemesis.faults)} faults in {run_s:.0f}s; produced {writer.produced}, "
               f"acknowledged {len(acked)}, failed {len(failed)}, unresolved {writer.produced - len(writer.outcome)}, "
               f"read {len(records)} (of which never acknowledged {unacked_read}), "
               f"lost {len(lost)}, duplicated {len(duplicated)}, misplaced {len(misplaced)}, "
               f"out of order {len(out_of_order)}, unknown {len(unknown)}, wrong key {len(wrong_key)}, "
               f"divergent replicas {len(divergent)}, high watermark samples "
               f"{sum(len(s) for s in sampler.samples.values())} ({sampler.failures} failed), "
               f"regressions {len(regressions)}; direct ListOffsets answers {len(probe.answers)}, regressions "
               f"{len(epoch_regressions)}; recoveries (with the 3 s stable window) "
               f"{[round(r, 1) for r in recoveries]}s; "
               f"ends {ends}")
    print("\n" + summary)
    print("faults:\n  " + "\n  ".join(fault_text))
    for line in regression_text + epoch_regressions:
        print("high watermark went back: " + line)
    print(f"broker logs in {tmp_path}: {len(log_problems)} ERROR/Traceback line(s)")
    for line in log_problems[:20]:
        print("  " + line)
    if writer.fatal:
        print(f"producer fatal error: {writer.fatal}")
    if failed:
        print(f"delivery errors: {Counter(str(d.error) for d in failed.values()).most_common(5)}")

    assert writer.fatal is None, f"the idempotent producer failed fatally: {writer.fatal}\n{summary}"
    assert len(acked) > 1000, f"too little was acknowledged to prove anything\n{summary}"
    assert not lost, f"lost {len(lost)} acknowledged value(s), first {[value_of(i) for i in lost[:5]]}\n{summary}"
    assert not duplicated, f"{len(duplicated)} value(s) written twice, first {duplicated[:5]}\n{summary}"
    assert not unknown and not wrong_key, f"values never produced: {unknown[:5]}, {wrong_key[:5]}\n{summary}"
    moved = [(value_of(i), (acked[i].partition, acked[i].offset), where[value_of(i)][:2]) for i in misplaced[:5]]
    assert not misplaced, f"{len(misplaced)} acknowledged value(s) not where acknowledged: {moved}\n{summary}"
    assert not out_of_order, f"order broken within a partition: {out_of_order[:5]}\n{summary}"
    assert not divergent, "replicas differ:\n" + "\n".join(divergent[:10]) + f"\n{summary}"
    assert not regressions, "a client saw the high watermark go back:\n" + "\n".join(regression_text[:5]) + \
        f"\n{summary}"
    assert not epoch_regressions, ("a leader answered a lower high watermark than one already seen in an epoch "
                                   "not newer than its own:\n" + "\n".join(epoch_regressions[:5]) + f"\n{summary}")
