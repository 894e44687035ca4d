"""The seed's replication walk-through, as its reader runs it: `josef cluster up -d`, the Kafka
scripts, and the four JSON states of `myorders` read from the REST Proxy."""
from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from tests.cluster.test_cluster_cli import BIN, cluster, needs_broker, needs_zookeeper  # noqa: F401 (fixture)
from tests.conftest import wait_for


def replica(broker: int, leader: bool, in_sync: bool) -> dict:
    return {"broker": broker, "leader": leader, "in_sync": in_sync}


# the seed's JSON after each step (partitions only: the rest of the answer is the topic's configs)
CREATED = [{"partition": 0, "leader": 1, "replicas": [replica(1, True, True)]},
           {"partition": 1, "leader": 2, "replicas": [replica(2, True, True)]},
           {"partition": 2, "leader": 3, "replicas": [replica(3, True, True)]}]
REASSIGNED = [{"partition": 0, "leader": 1, "replicas": [replica(1, True, True), replica(2, False, True)]},
              {"partition": 1, "leader": 2, "replicas": [replica(1, False, True), replica(2, True, True)]},
              {"partition": 2, "leader": 2, "replicas": [replica(2, True, True)]}]
BROKER_2_STOPPED = [{"partition": 0, "leader": 1, "replicas": [replica(1, True, True), replica(2, False, False)]},
                    {"partition": 1, "leader": 1, "replicas": [replica(1, True, True), replica(2, False, False)]},
                    {"partition": 2, "leader": -1, "replicas": [replica(2, False, True)]}]
BROKER_2_BACK = [{"partition": 0, "leader": 1, "replicas": [replica(1, True, True), replica(2, False, True)]},
                 {"partition": 1, "leader": 1, "replicas": [replica(1, True, True), replica(2, False, True)]},
                 {"partition": 2, "leader": 2, "replicas": [replica(2, True, True)]}]

INCREASE_REPLICATION = {"version": 1, "partitions": [
    {"topic": "myorders", "partition": 0, "replicas": [1, 2]},
    {"topic": "myorders", "partition": 1, "replicas": [1, 2]},
    {"topic": "myorders", "partition": 2, "replicas": [2]}]}


def rest_partitions(cluster) -> list[dict] | None:
    try:
        url = f"http://127.0.0.1:{cluster.ports['rest']}/topics/myorders"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
    except OSError:
        return None
    assert body["name"] == "myorders"
    return body["partitions"]


def wait_for_json(cluster, expected: list[dict], timeout: float, what: str) -> None:
    seen = []

    def matches():
        seen.append(rest_partitions(cluster))
        return seen[-1] == expected
    try:
        wait_for(matches, timeout, interval=0.2, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer: {json.dumps(seen[-1])}") from None


def script(cluster, name: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(BIN / name), *args], input=stdin, capture_output=True, text=True, timeout=60,
                          cwd=cluster.cwd)
    assert done.returncode == 0, f"{name} {args}: {done.stderr}"
    return done.stdout


@needs_zookeeper
@needs_broker
@pytest.mark.timeout(150)
def test_the_seeds_replication_story(cluster):  # noqa: F811
    cluster.ok("up", "-d", flags=True, timeout=90)
    assert cluster.brokers() == [1, 2, 3]
    bootstrap = f"localhost:{cluster.ports['kafka']}"
    script(cluster, "kafka-topics.sh", "--create", "--bootstrap-server", bootstrap, "--replication-factor", "1",
           "--partitions", "3", "--topic", "myorders")
    wait_for_json(cluster, CREATED, 20, "the seed's first JSON")
    orders = [f"customer-{i % 5}:order-{i}" for i in range(30)]
    script(cluster, "kafka-console-producer.sh", "--bootstrap-server", bootstrap, "--topic", "myorders",
           "--property", "parse.key=true", "--property", "key.separator=:", stdin="\n".join(orders) + "\n")

    plan = cluster.cwd / "increase_replication.json"
    plan.write_text(json.dumps(INCREASE_REPLICATION))
    script(cluster, "kafka-reassign-partitions.sh", "--bootstrap-server", bootstrap,
           "--reassignment-json-file", str(plan), "--execute")
    wait_for_json(cluster, REASSIGNED, 60, "the seed's second JSON")

    cluster.ok("stop", "broker-2")
    wait_for_json(cluster, BROKER_2_STOPPED, 30, "the seed's third JSON")
    # partition 2 cannot take messages; the others can, and everything still readable is read
    more = ["Hello", "again", "from", "Wxk"]
    script(cluster, "kafka-console-producer.sh", "--bootstrap-server", bootstrap, "--topic", "myorders",
           stdin="\n".join(more) + "\n")  # keyless records go to partitions that have a leader

    cluster.ok("start", "broker-2")
    wait_for_json(cluster, BROKER_2_BACK, 60, "the seed's fourth JSON")
    out = script(cluster, "kafka-console-consumer.sh", "--bootstrap-server", bootstrap, "--topic", "myorders",
                 "--from-beginning", "--max-messages", str(len(orders) + len(more)), "--timeout-ms", "20000")
    assert sorted(out.split()) == sorted([o.split(":")[1] for o in orders] + more)
