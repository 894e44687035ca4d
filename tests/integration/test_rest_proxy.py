"""The REST Proxy (`josef rest-proxy`) against a real broker, driven over HTTP with httpx.

Every produced record is cross-checked with an independent confluent-kafka consumer, every
consumed record against what was produced. One broker and one proxy serve the whole module
(topics and groups get unique names); tests that need other proxy settings start their own.
`JOSEF_TEST_BROKER=tansu` runs the same tests against Tansu.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.conftest import BIN, BrokerProcess, free_port, port_open, wait_for
from tests.integration.test_clients import consume_all, create_topic

pytestmark = pytest.mark.timeout(180)

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSONV2 = "application/vnd.kafka.json.v2+json"
AVRO = "application/vnd.kafka.avro.v2+json"
TANSU = os.environ.get("JOSEF_TEST_BROKER") == "tansu"  # some checks need APIs Tansu lacks


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class RestProxyProcess:
    bootstrap: str
    log_path: Path
    env: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "RestProxyProcess":
        env = {**os.environ, "KAFKA_REST_BOOTSTRAP_SERVERS": self.bootstrap,
               "KAFKA_REST_LISTENERS": f"http://127.0.0.1:{self.port}", **self.env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(BIN / "josef"), "rest-proxy"], stdout=log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or port_open(self.port), timeout, what="REST Proxy port")
        if self.proc.poll() is not None:
            raise AssertionError(f"rest-proxy exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"rest-proxy did not stop within {timeout}s after SIGTERM")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    broker = BrokerProcess(data_dir=tmp_path_factory.mktemp("rest-broker") / "data").start()
    yield broker
    broker.kill()


@pytest.fixture(scope="module")
def proxy(kafka, tmp_path_factory):
    p = RestProxyProcess(kafka.bootstrap, tmp_path_factory.mktemp("rest") / "rest-proxy.log",
                         env={"KAFKA_REST_HOST_NAME": "rest-proxy"}).start()
    yield p
    p.kill()


@pytest.fixture
def http(proxy):
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def groups_supported(kafka):
    """Consumer-API tests need the group coordinator; skip them on a broker without it."""
    from josef.client.wire import KafkaConnection
    host, port = kafka.bootstrap.rsplit(":", 1)
    with KafkaConnection(host, int(port), timeout=10) as conn:
        versions = conn.api_versions()
    if 10 not in versions:  # FindCoordinator
        pytest.skip("the broker answers FindCoordinator as unsupported: no consumer groups yet")


def produce_v2(http, topic, records, fmt=BINARY, partition=None):
    path = f"/topics/{topic}" + (f"/partitions/{partition}" if partition is not None else "")
    r = http.post(path, json={"records": records}, headers={"Content-Type": fmt, "Accept": V2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(V2)
    body = r.json()
    assert set(body) == {"offsets", "key_schema_id", "value_schema_id"}
    assert all(o["error_code"] is None and o["error"] is None for o in body["offsets"]), body
    return body["offsets"]


def assert_error(r, status, code, message=None):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    assert "Traceback" not in r.text


# -- the seed's calls --------------------------------------------------------------------------------

def test_seed_calls_brokers_topics_and_topic_shape(kafka, http):
    brokers = sorted(n.id for n in AdminClient({"bootstrap.servers": kafka.bootstrap})
                     .list_topics(timeout=10).brokers.values())
    r = http.get("/brokers")
    assert r.status_code == 200 and r.headers["content-type"].startswith(V2)
    assert r.json() == {"brokers": brokers}

    # the seed's console producer writes to first_topic; the proxy then lists it
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for line in (b"Hello", b"Kafka", b"I'm Xinkang"):
        p.produce("first_topic", line)
    assert p.flush(20) == 0
    create_topic(kafka.bootstrap, "myorders", partitions=3)
    topics = http.get("/topics").json()
    assert isinstance(topics, list) and {"first_topic", "myorders"} <= set(topics)
    assert not any(t.startswith("__") for t in topics)  # no __consumer_offsets

    r = http.get("/topics/myorders")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"name", "configs", "partitions"} and body["name"] == "myorders"
    assert isinstance(body["configs"], dict)
    if not TANSU:
        assert body["configs"]["cleanup.policy"] == "delete"
    assert [p["partition"] for p in body["partitions"]] == [0, 1, 2]
    for part in body["partitions"]:
        assert set(part) == {"partition", "leader", "replicas"}
        assert part["leader"] in brokers
        assert part["replicas"] == [{"broker": part["leader"], "leader": True, "in_sync": True}]

    assert http.get("/topics/myorders/partitions").json() == body["partitions"]
    assert http.get("/topics/myorders/partitions/1").json() == body["partitions"][1]
    assert http.get("/").json() == {}
    # trailing slashes match as in Jersey; plain JSON is accepted too
    r = http.get("/topics/", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")


# -- produce --------------------------------------------------------------------------------------

def test_produce_binary_cross_checked_with_a_kafka_consumer(kafka, http):
    topic = uniq("bin")
    create_topic(kafka.bootstrap, topic, partitions=3)
    sent = [(None, b"no key"), (b"k1", b"\x00\x01\xff binary"), (b"k2", b""), (b"k1", b"same key")]
    records = [{"value": b64(v)} if k is None else {"key": b64(k), "value": b64(v)} for k, v in sent]
    records.append({"key": b64(b"k3")})  # a null value (tombstone)
    offsets = produce_v2(http, topic, records)
    assert len(offsets) == 5
    assert offsets[1]["partition"] == offsets[3]["partition"]  # same key, same partition
    got = consume_all(kafka.bootstrap, topic, 3, 5)
    by_pos = {(m.partition(), m.offset()): (m.key(), m.value()) for m in got}
    for (k, v), o in zip(sent + [(b"k3", None)], offsets):
        assert by_pos[(o["partition"], o["offset"])] == (k, v)


def test_produce_json_cross_checked_with_a_kafka_consumer(kafka, http):
    topic = uniq("json")
    create_topic(kafka.bootstrap, topic, partitions=1)
    values = [{"id": 1, "name": "ünïcode", "tags": ["a", "b"]}, [1, 2.5, None], "text", 42, True]
    records = [{"key": {"k": i}, "value": v} for i, v in enumerate(values)]
    offsets = produce_v2(http, topic, records, fmt=JSONV2)
    assert [o["offset"] for o in offsets] == [0, 1, 2, 3, 4]
    got = sorted(consume_all(kafka.bootstrap, topic, 1, 5), key=lambda m: m.offset())
    assert [json.loads(m.value()) for m in got] == values
    assert [json.loads(m.key()) for m in got] == [{"k": i} for i in range(5)]


def test_produce_front_door_answers_as_the_routed_app(kafka, http, proxy):
    """v2 produce skips FastAPI's routing (josef.rest.front_door): trailing slashes, big JSON
    numbers, errors and other methods on the same paths answer as everywhere else, and the
    OpenAPI document still lists both produce routes."""
    topic = uniq("front")
    create_topic(kafka.bootstrap, topic, partitions=2)
    big = 123456789012345678901234567890
    records = [{"value": {"n": big}}, {"key": "k", "value": "é"}]
    r = http.post(f"/topics/{topic}/", content=json.dumps({"records": records}),
                  headers={"Content-Type": JSONV2, "Accept": V2})
    assert r.status_code == 200, r.text
    first = r.json()["offsets"]
    second = produce_v2(http, topic, [{"value": 7}], fmt=JSONV2, partition=1)
    got = consume_all(kafka.bootstrap, topic, 2, 3)
    by_pos = {(m.partition(), m.offset()): m.value() for m in got}
    assert by_pos[(first[0]["partition"], first[0]["offset"])] == f'{{"n":{big}}}'.encode()
    assert by_pos[(first[1]["partition"], first[1]["offset"])] == '"é"'.encode()
    assert by_pos[(1, second[0]["offset"])] == b"7"

    assert_error(http.post(f"/topics/{topic}/partitions/x", json={"records": [{"value": 1}]},
                           headers={"Content-Type": JSONV2}), 404, 404)
    assert_error(http.post(f"/topics/{topic}/partitions/9", json={"records": [{"value": 1}]},
                           headers={"Content-Type": JSONV2}), 404, 40402)
    assert_error(http.post(f"/topics/{topic}", content=b"{not json", headers={"Content-Type": JSONV2}), 400, 400)
    assert_error(http.post(f"/topics/{topic}", json={"records": []}, headers={"Content-Type": JSONV2}), 422, 422)
    assert_error(http.put(f"/topics/{topic}", json={}), 405, 405)
    paths = http.get("/openapi.json").json()["paths"]
    assert "post" in paths["/topics/{topic}"] and "post" in paths["/topics/{topic}/partitions/{partition}"]


def test_produce_to_a_partition_and_the_offsets_endpoint(kafka, http):
    topic = uniq("part")
    create_topic(kafka.bootstrap, topic, partitions=3)
    offsets = produce_v2(http, topic, [{"value": b64(b"a%d" % i)} for i in range(4)], partition=2)
    assert [(o["partition"], o["offset"]) for o in offsets] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    # the seed's rest_proxy.yaml produces to a partition as application/vnd.kafka.v2+json (binary)
    offsets = produce_v2(http, topic, [{"value": b64(b"a4")}], fmt=V2, partition=2)
    assert offsets[0]["partition"] == 2
    # a record's own partition wins over the URL's, as in kafka-rest
    offsets = produce_v2(http, topic, [{"value": b64(b"b"), "partition": 0}], partition=2)
    assert offsets[0]["partition"] == 0
    offsets = produce_v2(http, topic, [{"value": b64(b"c"), "partition": 1}])
    assert offsets[0]["partition"] == 1

    r = http.get(f"/topics/{topic}/partitions/2/offsets")
    assert r.status_code == 200 and set(r.json()) == {"beginning_offset", "end_offset"}
    # Tansu answers ListOffsets(latest) with the last batch's base offset + 1 (its own bug)
    if not TANSU:
        assert r.json() == {"beginning_offset": 0, "end_offset": 5}
        assert http.get(f"/topics/{topic}/partitions/0/offsets").json() == {"beginning_offset": 0, "end_offset": 1}
    got = consume_all(kafka.bootstrap, topic, 3, 7)
    assert sorted(m.value() for m in got if m.partition() == 2) == [b"a0", b"a1", b"a2", b"a3", b"a4"]


def test_concurrent_produce_gets_distinct_offsets(kafka, proxy):
    topic = uniq("conc")
    create_topic(kafka.bootstrap, topic, partitions=2)
    threads, requests_each, per_request = 16, 10, 5

    def worker(n):
        out = []
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            for i in range(requests_each):
                records = [{"value": b64(f"{n}-{i}-{j}".encode()), "partition": (n + j) % 2}
                           for j in range(per_request)]
                r = client.post(f"/topics/{topic}", json={"records": records},
                                headers={"Content-Type": BINARY})
                assert r.status_code == 200, r.text
                for rec, off in zip(records, r.json()["offsets"]):
                    assert off["error_code"] is None, off
                    out.append((off["partition"], off["offset"], base64.b64decode(rec["value"])))
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = [x for part in pool.map(worker, range(threads)) for x in part]
    total = threads * requests_each * per_request
    assert len(results) == total
    positions = [(p, o) for p, o, _ in results]
    assert len(set(positions)) == total  # every record its own offset
    for partition in (0, 1):
        offs = sorted(o for p, o in positions if p == partition)
        assert offs == list(range(len(offs)))  # and no gaps
    got = consume_all(kafka.bootstrap, topic, 2, total)
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    assert all(stored[(p, o)] == v for p, o, v in results)


# -- bad input ------------------------------------------------------------------------------------

def test_bad_input_gets_confluent_status_and_error_codes(kafka, http):
    topic = uniq("bad")
    create_topic(kafka.bootstrap, topic, partitions=2)
    path = f"/topics/{topic}"
    bin_h = {"Content-Type": BINARY}
    # malformed JSON, wrong shapes: 400
    assert_error(http.post(path, content=b'{"records": [', headers=bin_h), 400, 400)
    assert_error(http.post(path, content=b'\xff\xfe', headers=bin_h), 400, 400)
    assert_error(http.post(path, json={"records": {"value": "x"}}, headers=bin_h), 400, 400)
    assert_error(http.post(path, json=[1, 2], headers=bin_h), 400, 400)
    assert_error(http.post(path, json={"records": [{"value": "aGk=", "partition": "one"}]}, headers=bin_h), 400, 400)
    # bad base64 / not a string for the binary format: 400
    r = http.post(path, json={"records": [{"value": "!!not base64!!"}]}, headers=bin_h)
    assert_error(r, 400, 400)
    assert "is not a valid base64 string" in r.json()["message"]
    assert_error(http.post(path, json={"records": [{"value": 12}]}, headers=bin_h), 400, 400)
    # only an empty (or missing) records list is 422
    assert_error(http.post(path, json={"records": []}, headers=bin_h), 422, 422)
    assert_error(http.post(path, json={}, headers=bin_h), 422, 422)
    assert_error(http.post(path, content=b"", headers=bin_h), 422, 422)
    # media types: 415 for what produce does not consume, 406 for what it cannot answer
    for ct in ("application/json", "text/plain", V2):
        assert_error(http.post(path, json={"records": [{"value": "aGk="}]}, headers={"Content-Type": ct}),
                     415, 415, "HTTP 415 Unsupported Media Type")
    # (no Content-Type at all is binary, as in kafka-rest: see test_v2_produce_matches_kafka_rest_parsing)
    assert_error(http.get("/topics", headers={"Accept": "text/html"}), 406, 406, "HTTP 406 Not Acceptable")
    # schema formats without a Schema Registry
    assert_error(http.post(path, json={"records": [{"value": {"a": 1}}]}, headers={"Content-Type": AVRO}),
                 422, 42207)
    assert_error(http.post(path, json={"value_schema": '{"type":"int"}', "records": [{"value": 1}]},
                           headers={"Content-Type": AVRO}), 422, 42206)
    # unknown topics and partitions
    missing = uniq("missing")
    # kafka-rest's Admin lookup fails first: 40403, as its MetadataApiTest asserts (not 40401)
    assert_error(http.get(f"/topics/{missing}"), 404, 40403, "This server does not host this topic-partition.")
    assert_error(http.get(f"/topics/{missing}/partitions"), 404, 40403)
    assert_error(http.get(f"/topics/{missing}/partitions/0"), 404, 40403)
    assert_error(http.get(f"/topics/{missing}/partitions/0/offsets"), 404, 40403)
    assert missing not in http.get("/topics").json()  # looking did not auto-create it
    assert_error(http.get(f"/topics/{topic}/partitions/7"), 404, 40402, "Partition not found.")
    assert_error(http.get(f"/topics/{topic}/partitions/7/offsets"), 404, 40402)
    assert_error(http.post(f"/topics/{topic}/partitions/7", json={"records": [{"value": "aGk="}]},
                           headers=bin_h), 404, 40402)
    assert_error(http.post(path, json={"records": [{"value": "aGk=", "partition": 5}]}, headers=bin_h),
                 404, 40402)
    assert_error(http.post("/topics/bad%20name!", json={"records": [{"value": "aGk="}]}, headers=bin_h),
                 404, 40401)
    # not a route, not an int, not a method: Jersey's plain codes
    assert_error(http.get(f"/topics/{topic}/partitions/abc"), 404, 404)
    assert_error(http.get("/no/such/path"), 404, 404)
    assert_error(http.put("/topics"), 405, 405)
    # nothing above produced a record
    assert http.get(f"/topics/{topic}/partitions/0/offsets").json()["end_offset"] == 0


# -- consumers ------------------------------------------------------------------------------------

def create_consumer(http, group, **config):
    r = http.post(f"/consumers/{group}", json=config, headers={"Content-Type": V2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"instance_id", "base_uri"}
    return body


def read_until(http, path, want, accept=BINARY, timeout=30.0):
    """GET records until `want` records arrived (each call bounded by the proxy's timeout)."""
    got = []

    def step():
        r = http.get(path, headers={"Accept": accept})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(accept)
        got.extend(r.json())
        return len(got) >= want

    wait_for(step, timeout, interval=0, what=f"{want} records over REST")
    return got


def test_consumer_api_end_to_end(kafka, http, proxy, groups_supported):
    topic = uniq("cons")
    create_topic(kafka.bootstrap, topic, partitions=2)
    values = [b"v%d" % i for i in range(20)]
    offsets = produce_v2(http, topic, [{"key": b64(b"k%d" % (i % 4)), "value": b64(v)} for i, v in enumerate(values)])
    group = uniq("g")
    created = create_consumer(http, group, name="one", format="binary", **{
        "auto.offset.reset": "earliest", "auto.commit.enable": "false", "fetch.min.bytes": 1})
    assert created["instance_id"] == "one"
    # base_uri is built from host.name (KAFKA_REST_HOST_NAME) and the listener's port
    assert created["base_uri"] == f"http://rest-proxy:{proxy.port}/consumers/{group}/instances/one"
    base = f"/consumers/{group}/instances/one"

    assert_error(http.post(f"/consumers/{group}", json={"name": "one"}, headers={"Content-Type": V2}), 409, 40902)
    r = http.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2})
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/subscription").json() == {"topics": [topic]}

    got = read_until(http, f"{base}/records", 20)
    assert len(got) == 20
    assert sorted(base64.b64decode(m["value"]) for m in got) == sorted(values)
    for m in got:
        assert set(m) == {"topic", "key", "value", "partition", "offset"} and m["topic"] == topic
    assert {(m["partition"], m["offset"]) for m in got} == {(o["partition"], o["offset"]) for o in offsets}
    assert sorted(http.get(f"{base}/assignments").json()["partitions"], key=lambda p: p["partition"]) == [
        {"topic": topic, "partition": 0}, {"topic": topic, "partition": 1}]

    # explicit commit names the last record consumed; the proxy commits offset + 1
    last = {p: max(m["offset"] for m in got if m["partition"] == p) for p in (0, 1) if any(
        m["partition"] == p for m in got)}
    r = http.post(f"{base}/offsets", headers={"Content-Type": V2},
                  json={"offsets": [{"topic": topic, "partition": p, "offset": o} for p, o in last.items()]})
    assert r.status_code == 200 and r.json() == []
    r = http.request("GET", f"{base}/offsets", headers={"Content-Type": V2},
                     json={"partitions": [{"topic": topic, "partition": p} for p in (0, 1)]})
    assert r.status_code == 200
    committed = {c["partition"]: c["offset"] for c in r.json()["offsets"]}
    assert committed == {p: o + 1 for p, o in last.items()}
    # an independent client sees the same committed offsets
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [
        TopicPartition(topic, p) for p in last])])[group]
    assert {tp.partition: tp.offset for tp in fut.result(20).topic_partitions} == committed

    # positions: seek back, to the beginning, to the end
    p0 = got[0]["partition"]
    r = http.post(f"{base}/positions", headers={"Content-Type": V2},
                  json={"offsets": [{"topic": topic, "partition": p0, "offset": 1}]})
    assert r.status_code == 204, r.text
    again = read_until(http, f"{base}/records", 1)
    assert min(m["offset"] for m in again if m["partition"] == p0) == 1
    r = http.post(f"{base}/positions/beginning", headers={"Content-Type": V2},
                  json={"partitions": [{"topic": topic, "partition": p0}]})
    assert r.status_code == 204, r.text
    again = read_until(http, f"{base}/records", 1)
    assert min(m["offset"] for m in again if m["partition"] == p0) == 0
    # (the seed's rest_proxy.yaml spells it without "positions/"; both work)
    r = http.post(f"{base}/end", headers={"Content-Type": V2},
                  json={"partitions": [{"topic": topic, "partition": p} for p in (0, 1)]})
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/records?timeout=200", headers={"Accept": BINARY}).json() == []
    # seeking a partition that is not assigned is an illegal state
    assert_error(http.post(f"{base}/positions", headers={"Content-Type": V2},
                           json={"offsets": [{"topic": topic, "partition": 9, "offset": 0}]}), 409, 40903)
    # a subscribed consumer cannot also assign
    assert_error(http.post(f"{base}/assignments", headers={"Content-Type": V2},
                           json={"partitions": [{"topic": topic, "partition": 0}]}), 409, 40903)

    assert http.delete(f"{base}/subscription").status_code == 204
    assert http.get(f"{base}/subscription").json() == {"topics": []}
    assert http.delete(base).status_code == 204
    assert_error(http.get(f"{base}/records", headers={"Accept": BINARY}), 404, 40403, "Consumer instance not found.")
    assert_error(http.delete(base), 404, 40403)


def test_consumer_json_format_assign_commit_all_and_resume(kafka, http, groups_supported):
    topic = uniq("cjson")
    create_topic(kafka.bootstrap, topic, partitions=1)
    docs = [{"n": i, "s": "x" * i} for i in range(10)]
    produce_v2(http, topic, [{"value": d} for d in docs], fmt=JSONV2)
    group = uniq("gj")
    inst = create_consumer(http, group, format="json", **{"auto.offset.reset": "earliest",
                                                          "auto.commit.enable": False, "fetch.min.bytes": 1})
    base = f"/consumers/{group}/instances/{inst['instance_id']}"
    assert inst["instance_id"].startswith("rest-consumer-")
    r = http.post(f"{base}/assignments", json={"partitions": [{"topic": topic, "partition": 0}]},
                  headers={"Content-Type": V2})
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/assignments").json() == {"partitions": [{"topic": topic, "partition": 0}]}
    # the Accept header picks the reader: binary for a json consumer is a format mismatch
    assert_error(http.get(f"{base}/records", headers={"Accept": BINARY}), 406, 40601)
    assert_error(http.get(f"{base}/records"), 406, 40601)
    first = read_until(http, f"{base}/records?max_bytes=100", 1, accept=JSONV2)
    assert first[0] == {"topic": topic, "key": None, "value": docs[0], "partition": 0, "offset": 0}
    assert len(first) < 10  # max_bytes capped the first response
    rest = read_until(http, f"{base}/records", 10 - len(first), accept=JSONV2)
    assert [m["value"] for m in first + rest] == docs

    # commit everything returned so far (no body), then a new instance resumes after it
    r = http.post(f"{base}/offsets", headers={"Content-Type": V2})
    assert r.status_code == 200 and r.json() == []
    r = http.request("GET", f"{base}/offsets", headers={"Content-Type": V2},
                     json={"partitions": [{"topic": topic, "partition": 0}]})
    assert r.json() == {"offsets": [{"topic": topic, "partition": 0, "offset": 10, "metadata": ""}]}
    assert http.delete(base).status_code == 204
    produce_v2(http, topic, [{"value": {"n": 10}}], fmt=JSONV2)
    inst2 = create_consumer(http, group, format="json", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1})
    base2 = f"/consumers/{group}/instances/{inst2['instance_id']}"
    http.post(f"{base2}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2})
    got = read_until(http, f"{base2}/records", 1, accept=JSONV2)
    assert [m["value"] for m in got] == [{"n": 10}]
    assert http.delete(base2).status_code == 204


def test_consumer_bad_input(http, groups_supported):
    group = uniq("gbad")
    h = {"Content-Type": V2}
    assert_error(http.post(f"/consumers/{group}", json={"format": "xml"}, headers=h), 422, 422)
    assert_error(http.post(f"/consumers/{group}", json={"auto.offset.reset": "sideways"}, headers=h), 422, 42204)
    assert_error(http.post(f"/consumers/{group}", json={"auto.commit.enable": "maybe"}, headers=h), 422, 42204)
    assert_error(http.post(f"/consumers/{group}", json={"fetch.min.bytes": -5}, headers=h), 422, 40001)
    assert_error(http.post(f"/consumers/{group}", content=b"{oops", headers=h), 400, 400)
    assert_error(http.post(f"/consumers/{group}", json={}, headers={"Content-Type": "text/plain"}), 415, 415)
    base = f"/consumers/{group}/instances/nobody"
    for method, path, body in [("GET", "/records", None), ("GET", "/subscription", None),
                               ("POST", "/subscription", {"topics": ["x"]}), ("DELETE", "/subscription", None),
                               ("GET", "/assignments", None), ("POST", "/offsets", None),
                               ("POST", "/positions/end", {"partitions": []}), ("DELETE", "", None)]:
        r = http.request(method, base + path, json=body, headers={"Content-Type": V2, "Accept": BINARY})
        assert_error(r, 404, 40403)
    inst = create_consumer(http, group)
    ibase = f"/consumers/{group}/instances/{inst['instance_id']}"
    assert_error(http.post(f"{ibase}/subscription", content=b"", headers=h), 422, 422)
    assert_error(http.post(f"{ibase}/subscription", json={"topics": "notalist"}, headers=h), 400, 400)
    assert_error(http.request("GET", f"{ibase}/offsets", headers=h), 404, 40402)
    assert_error(http.get(f"{ibase}/records?timeout=abc", headers={"Accept": BINARY}), 404, 404)
    assert http.delete(ibase).status_code == 204


def test_slow_poll_does_not_block_other_requests(kafka, http, proxy, groups_supported):
    topic = uniq("slow")
    create_topic(kafka.bootstrap, topic)
    group = uniq("gs")
    inst = create_consumer(http, group, **{"consumer.request.timeout.ms": 3000})
    base = f"/consumers/{group}/instances/{inst['instance_id']}"
    http.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2})
    result = {}

    def long_read():
        with httpx.Client(base_url=proxy.url, timeout=30) as c:
            t0 = time.monotonic()
            result["status"] = c.get(f"{base}/records", headers={"Accept": BINARY}).status_code
            result["took"] = time.monotonic() - t0

    t = threading.Thread(target=long_read)
    t.start()
    latencies = []
    while t.is_alive() or not latencies:  # other requests keep flowing during the long poll
        t0 = time.monotonic()
        assert http.get("/brokers").status_code == 200
        assert http.get(f"/topics/{topic}").status_code == 200
        latencies.append(time.monotonic() - t0)
    t.join(30)
    assert result["status"] == 200 and result["took"] >= 2.5
    assert len(latencies) >= 2 and max(latencies) < 2.0, latencies  # never held behind the 3 s poll
    http.delete(base)


def test_env_settings_and_idle_instance_expiry(kafka, tmp_path, groups_supported):
    p = RestProxyProcess(kafka.bootstrap, tmp_path / "rest.log", env={
        "KAFKA_REST_CONSUMER_INSTANCE_TIMEOUT_MS": "1000", "KAFKA_REST_CONSUMER_REQUEST_TIMEOUT_MS": "2500"}).start()
    try:
        with httpx.Client(base_url=p.url, timeout=30) as http:
            group = uniq("gexp")
            inst = create_consumer(http, group, name="idle")
            # no host.name: base_uri names the Host the client used
            assert inst["base_uri"] == f"{p.url}/consumers/{group}/instances/idle"
            t0 = time.monotonic()
            assert http.get(f"/consumers/{group}/instances/idle/records").json() == []
            assert time.monotonic() - t0 >= 2.4  # consumer.request.timeout.ms=2500 from the environment

            def gone():
                return http.get(f"/consumers/{group}/instances/idle/subscription").status_code == 404

            # each check touches the instance, so poll slowly enough to let it expire
            wait_for(gone, 15, interval=1.5, what="the idle instance to expire")
            assert_error(http.get(f"/consumers/{group}/instances/idle/subscription"), 404, 40403)
        assert p.stop() == 0
    finally:
        p.kill()


# -- v3 -------------------------------------------------------------------------------------------

def test_v3_cluster_brokers_topics_configs_partitions(kafka, http):
    r = http.get("/v3/clusters")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    listing = r.json()
    assert listing["kind"] == "KafkaClusterList" and len(listing["data"]) == 1
    cluster = listing["data"][0]
    cid = cluster["cluster_id"]
    assert cluster["kind"] == "KafkaCluster"
    assert cluster["metadata"]["resource_name"] == f"crn:///kafka={cid}"
    assert cluster["topics"]["related"].endswith(f"/v3/clusters/{cid}/topics")
    base = f"/v3/clusters/{cid}"
    assert_error(http.get("/v3/clusters/nope"), 404, 404)
    brokers = http.get(f"{base}/brokers").json()["data"]
    assert brokers and all(b["kind"] == "KafkaBroker" and b["port"] for b in brokers)
    assert http.get(f"{base}/brokers/{brokers[0]['broker_id']}").json()["broker_id"] == brokers[0]["broker_id"]

    name = uniq("v3")
    r = http.post(f"{base}/topics", json={"topic_name": name, "partitions_count": 2,
                                          "configs": [{"name": "retention.ms", "value": "3600000"}]})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"{base}/topics/{name}")
    assert r.json()["partitions_count"] == 2 and r.json()["kind"] == "KafkaTopic"
    assert_error(http.post(f"{base}/topics", json={"topic_name": name}), 400, 40002)
    placed = uniq("v3-placed")  # an explicit replica assignment, one broker per partition
    r = http.post(f"{base}/topics", json={"topic_name": placed, "replicas_assignments": {"0": [1], "1": [1]}})
    assert r.status_code == 201, r.text
    assert http.get(f"{base}/topics/{placed}").json()["partitions_count"] == 2
    assert_error(http.post(f"{base}/topics", json={"topic_name": "no spaces"}), 422, 42206)
    assert name in [t["topic_name"] for t in http.get(f"{base}/topics").json()["data"]]
    topic = http.get(f"{base}/topics/{name}").json()
    assert (topic["topic_name"], topic["is_internal"], topic["partitions_count"]) == (name, False, 2)
    if not TANSU:  # Tansu has no CreatePartitions
        r = http.patch(f"{base}/topics/{name}", json={"partitions_count": 3})
        assert r.status_code == 200 and r.json()["partitions_count"] == 3
    parts = http.get(f"{base}/topics/{name}/partitions").json()["data"]
    assert [p["partition_id"] for p in parts] == ([0, 1] if TANSU else [0, 1, 2])
    replicas = http.get(f"{base}/topics/{name}/partitions/1/replicas").json()["data"]
    assert replicas[0]["is_leader"] and replicas[0]["is_in_sync"] and replicas[0]["partition_id"] == 1
    assert_error(http.get(f"{base}/topics/{name}/partitions/9"), 404, 404)

    if not TANSU:  # Tansu has no DescribeConfigs
        cfg = http.get(f"{base}/topics/{name}/configs/retention.ms").json()
        assert (cfg["kind"], cfg["value"], cfg["source"]) == ("KafkaTopicConfig", "3600000", "DYNAMIC_TOPIC_CONFIG")
        assert http.put(f"{base}/topics/{name}/configs/retention.ms", json={"value": "7200000"}).status_code == 204
        assert http.get(f"{base}/topics/{name}/configs/retention.ms").json()["value"] == "7200000"
        r = http.post(f"{base}/topics/{name}/configs:alter", json={"data": [
            {"name": "retention.ms", "operation": "DELETE"}, {"name": "max.message.bytes", "value": "500000"}]})
        assert r.status_code == 204, r.text
        configs = {c["name"]: c for c in http.get(f"{base}/topics/{name}/configs").json()["data"]}
        assert configs["retention.ms"]["is_default"] and configs["max.message.bytes"]["value"] == "500000"
        # v2 shows the same configs
        assert http.get(f"/topics/{name}").json()["configs"]["max.message.bytes"] == "500000"

    assert http.delete(f"{base}/topics/{name}").status_code == 204
    assert_error(http.get(f"{base}/topics/{name}"), 404, 40403)  # UnknownTopicOrPartition, as kafka-rest
    assert_error(http.delete(f"{base}/topics/{name}"), 404, 40403)


def test_v3_produce_single_and_streamed_records(kafka, http):
    cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
    topic = uniq("v3p")
    create_topic(kafka.bootstrap, topic, partitions=2)
    path = f"/v3/clusters/{cid}/topics/{topic}/records"
    r = http.post(path, json={"partition_id": 1, "key": {"type": "STRING", "data": "k1"},
                              "value": {"type": "JSON", "data": {"n": 1}},
                              "headers": [{"name": "h", "value": b64(b"hv")}],
                              "timestamp": "2024-01-02T03:04:05.678Z"})
    assert r.status_code == 200, r.text
    one = r.json()
    assert one["error_code"] == 200 and (one["partition_id"], one["offset"]) == (1, 0)
    assert one["timestamp"] == "2024-01-02T03:04:05.678Z"
    assert one["key"] == {"type": "STRING", "size": 2} and one["value"] == {"type": "JSON", "size": 7}
    # a stream of records in one request: one answer each, errors inside the 200
    stream = "\n".join(json.dumps(x) for x in [
        {"partition_id": 0, "value": {"data": b64(b"bin")}},
        {"value": {"type": "BINARY", "data": "!!"}},
        {"partition_id": 7, "value": {"data": b64(b"x")}},
        {"partition_id": 0, "value": {"type": "STRING", "data": "text"}}])
    r = http.post(path, content=stream, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    answers = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert [a["error_code"] for a in answers] == [200, 400, 40401, 200]  # kafka-rest: "not present in metadata"
    assert [(a["partition_id"], a["offset"]) for a in (answers[0], answers[3])] == [(0, 0), (0, 1)]
    got = consume_all(kafka.bootstrap, topic, 2, 3)
    by_pos = {(m.partition(), m.offset()): m for m in got}
    m = by_pos[(1, 0)]
    assert (m.key(), json.loads(m.value()), m.headers(), m.timestamp()[1]) == (
        b"k1", {"n": 1}, [("h", b"hv")], 1704164645678)
    assert by_pos[(0, 0)].value() == b"bin" and by_pos[(0, 1)].value() == b"text"
    r = http.post(path, json={"value": {"type": "AVRO", "data": 1}})
    assert r.status_code == 200 and r.json()["error_code"] == 400


def test_v3_streamed_produce_answers_each_record_while_the_request_is_open(kafka, http, proxy):
    """Confluent's streaming mode: one chunked request, a delivery report per record as it
    happens (the client waits for each answer before sending the next record)."""
    import socket
    cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
    topic = uniq("v3s")
    create_topic(kafka.bootstrap, topic)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        s.sendall(f"POST /v3/clusters/{cid}/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        got = b""
        for i in range(3):
            data = json.dumps({"value": {"type": "STRING", "data": f"s{i}"}}).encode()
            s.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            while got.count(b'"error_code":200') < i + 1:  # answered before the request ends
                more = s.recv(65536)
                assert more, got
                got += more
        s.sendall(b"0\r\n\r\n")
        while not got.endswith(b"0\r\n\r\n"):
            more = s.recv(65536)
            assert more, got
            got += more
    assert got.startswith(b"HTTP/1.1 200")
    assert [m.value() for m in sorted(consume_all(kafka.bootstrap, topic, 1, 3), key=lambda m: m.offset())] == [
        b"s0", b"s1", b"s2"]


def test_v3_consumer_groups_read_only(kafka, http, groups_supported):
    cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
    topic = uniq("v3g")
    create_topic(kafka.bootstrap, topic)
    produce_v2(http, topic, [{"value": b64(b"m%d" % i)} for i in range(5)])
    group = uniq("g3")
    inst = create_consumer(http, group, **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1,
                                           "auto.commit.enable": "false"})
    base = f"/consumers/{group}/instances/{inst['instance_id']}"
    http.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2})
    got = read_until(http, f"{base}/records", 2)
    last = max(m["offset"] for m in got[:2])
    http.post(f"{base}/offsets", json={"offsets": [{"topic": topic, "partition": 0, "offset": last}]},
              headers={"Content-Type": V2})
    groups = http.get(f"/v3/clusters/{cid}/consumer-groups").json()
    assert groups["kind"] == "KafkaConsumerGroupList"
    assert group in [g["consumer_group_id"] for g in groups["data"]]
    g = http.get(f"/v3/clusters/{cid}/consumer-groups/{group}").json()
    assert g["kind"] == "KafkaConsumerGroup"
    if TANSU:  # Tansu's DescribeGroups lists no members
        http.delete(base)
        return
    assert g["state"] == "STABLE"
    members = http.get(f"/v3/clusters/{cid}/consumer-groups/{group}/consumers").json()["data"]
    assert len(members) == 1 and members[0]["kind"] == "KafkaConsumer"
    lag = http.get(f"/v3/clusters/{cid}/consumer-groups/{group}/lag-summary").json()
    assert lag["total_lag"] == 5 - (last + 1) and lag["max_lag_topic_name"] == topic
    assert_error(http.get(f"/v3/clusters/{cid}/consumer-groups/{uniq('nogroup')}"), 404, 404)
    http.delete(base)


def v3_base(http) -> tuple[str, str]:
    cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
    return cid, f"/v3/clusters/{cid}"


def describe_configs(bootstrap: str, rtype, name: str) -> dict:
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(rtype, name)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the answer is in
    return admin.describe_configs([res])[res].result(10)


@pytest.mark.skipif(TANSU, reason="Tansu has no DescribeConfigs")
def test_v3_broker_configs_list_get_set_reset_alter(kafka, http):
    from confluent_kafka.admin import ResourceType
    cid, base = v3_base(http)
    bid = http.get(f"{base}/brokers").json()["data"][0]["broker_id"]
    r = http.get(f"{base}/brokers/{bid}/configs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    listing = r.json()
    assert listing["kind"] == "KafkaBrokerConfigList"
    assert listing["metadata"] == {"self": f"http://rest-proxy:{http.base_url.port}{base}/brokers/{bid}/configs",
                                   "next": None}
    configs = {c["name"]: c for c in listing["data"]}
    assert [c["name"] for c in listing["data"]] == sorted(configs)
    ours = describe_configs(kafka.bootstrap, ResourceType.BROKER, str(bid))
    assert set(configs) == set(ours)  # the same configs an independent client sees
    c = configs["compression.type"]
    assert set(c) == {"kind", "metadata", "cluster_id", "broker_id", "name", "value", "is_default", "is_read_only",
                      "is_sensitive", "source", "synonyms"}
    assert c["kind"] == "KafkaBrokerConfig" and (c["cluster_id"], c["broker_id"]) == (cid, bid)
    assert c["metadata"]["self"].endswith(f"{base}/brokers/{bid}/configs/compression.type")
    assert c["metadata"]["resource_name"] == f"crn:///kafka={cid}/broker={bid}/config=compression.type"
    assert (c["value"], c["is_default"], c["source"]) == (ours["compression.type"].value, True, "DEFAULT_CONFIG")
    assert configs["broker.id"]["is_read_only"] and configs["broker.id"]["value"] == str(bid)
    assert http.get(f"{base}/brokers/{bid}/configs/compression.type").json() == c

    try:
        # set: the broker reports it as its own dynamic config, with the default as a synonym
        r = http.put(f"{base}/brokers/{bid}/configs/compression.type", json={"value": "gzip"})
        assert r.status_code == 204, r.text
        c = http.get(f"{base}/brokers/{bid}/configs/compression.type").json()
        assert (c["value"], c["is_default"], c["source"]) == ("gzip", False, "DYNAMIC_BROKER_CONFIG")
        assert c["synonyms"][0] == {"name": "compression.type", "value": "gzip", "source": "DYNAMIC_BROKER_CONFIG"}
        entry = describe_configs(kafka.bootstrap, ResourceType.BROKER, str(bid))["compression.type"]
        assert entry.value == "gzip"
        # reset
        assert http.delete(f"{base}/brokers/{bid}/configs/compression.type").status_code == 204
        c = http.get(f"{base}/brokers/{bid}/configs/compression.type").json()
        assert (c["value"], c["source"]) == ("producer", "DEFAULT_CONFIG")
        # several at once
        r = http.post(f"{base}/brokers/{bid}/configs:alter", json={"data": [
            {"name": "log.retention.bytes", "value": "1099511627776"},
            {"name": "compression.type", "value": "lz4", "operation": "SET"}]})
        assert r.status_code == 204, r.text
        ours = describe_configs(kafka.bootstrap, ResourceType.BROKER, str(bid))
        assert (ours["log.retention.bytes"].value, ours["compression.type"].value) == ("1099511627776", "lz4")
        # validate_only changes nothing
        r = http.post(f"{base}/brokers/{bid}/configs:alter", json={
            "validate_only": True, "data": [{"name": "compression.type", "value": "snappy"}]})
        assert r.status_code == 204, r.text
        assert http.get(f"{base}/brokers/{bid}/configs/compression.type").json()["value"] == "lz4"
        r = http.post(f"{base}/brokers/{bid}/configs:alter", json={"data": [
            {"name": "log.retention.bytes", "operation": "DELETE"},
            {"name": "compression.type", "operation": "DELETE"}]})
        assert r.status_code == 204, r.text
        ours = describe_configs(kafka.bootstrap, ResourceType.BROKER, str(bid))
        assert ours["compression.type"].value == "producer" and ours["log.retention.bytes"].value == "-1"

        # every broker at once
        everything = http.get(f"{base}/brokers/-/configs").json()
        assert everything["kind"] == "KafkaBrokerConfigList"
        assert everything["metadata"]["self"].endswith(f"{base}/brokers/-/configs")
        assert {c["name"] for c in everything["data"] if c["broker_id"] == bid} == set(configs)

        # errors as kafka-rest's
        assert_error(http.get(f"{base}/brokers/{bid}/configs/no.such.config"), 404, 404, "HTTP 404 Not Found")
        assert_error(http.put(f"{base}/brokers/{bid}/configs/no.such.config", json={"value": "1"}), 404, 404,
                     f"Config no.such.config cannot be found for BROKER {bid} in cluster {cid}.")
        assert_error(http.delete(f"{base}/brokers/{bid}/configs/no.such.config"), 404, 404)
        assert_error(http.post(f"{base}/brokers/{bid}/configs:alter",
                               json={"data": [{"name": "no.such.config", "value": "1"}]}), 404, 404)
        assert_error(http.get(f"{base}/brokers/{bid + 100}/configs"), 404, 404, f"Broker {bid + 100} cannot be found.")
        assert_error(http.put(f"{base}/brokers/{bid + 100}/configs/compression.type", json={"value": "gzip"}),
                     404, 404)
        assert_error(http.get(f"{base}/brokers/foobar/configs"), 404, 404)
        assert_error(http.get(f"/v3/clusters/foobar/brokers/{bid}/configs"), 404, 404,
                     "HTTP 404 Not Found")  # BrokerConfigManager rewraps the unknown cluster
        assert_error(http.put(f"{base}/brokers/{bid}/configs/compression.type", json={"value": "bogus"}), 400, 40002)
        assert_error(http.put(f"{base}/brokers/{bid}/configs/broker.id", json={"value": "7"}), 400, 40002)
        assert_error(http.put(f"{base}/brokers/{bid}/configs/compression.type",
                              headers={"Content-Type": "application/json"}), 422, 42206)
        assert_error(http.post(f"{base}/brokers/{bid}/configs:alter", content=b"{nope",
                               headers={"Content-Type": "application/json"}), 400, 400)
        assert_error(http.put(f"{base}/brokers/{bid}/configs/compression.type", content=b'{"value":"gzip"}',
                              headers={"Content-Type": "text/plain"}), 415, 415)
        assert http.get(f"{base}/brokers/{bid}/configs/compression.type").json()["value"] == "producer"
    finally:
        http.post(f"{base}/brokers/{bid}/configs:alter", json={"data": [
            {"name": "compression.type", "operation": "DELETE"},
            {"name": "log.retention.bytes", "operation": "DELETE"}]})


@pytest.mark.skipif(TANSU, reason="Tansu has no DescribeConfigs")
def test_v3_cluster_wide_broker_config_defaults(kafka, http):
    from confluent_kafka.admin import ConfigSource, ResourceType
    cid, base = v3_base(http)
    bid = http.get(f"{base}/brokers").json()["data"][0]["broker_id"]
    topic = uniq("v3d")
    create_topic(kafka.bootstrap, topic)
    proxy_url = f"http://rest-proxy:{http.base_url.port}"  # host.name of the module's proxy
    big = "1099511627776"  # 1 TiB: changes nothing for the other tests sharing this broker
    listing = http.get(f"{base}/broker-configs").json()
    assert listing["kind"] == "KafkaClusterConfigList"
    assert listing["metadata"]["self"].endswith(f"{base}/broker-configs")
    assert "log.retention.bytes" not in [c["name"] for c in listing["data"]]  # only defaults that are set
    try:
        assert http.put(f"{base}/broker-configs/log.retention.bytes", json={"value": big}).status_code == 204
        c = http.get(f"{base}/broker-configs/log.retention.bytes").json()
        assert c == {"kind": "KafkaClusterConfig",
                     "metadata": {"self": f"{proxy_url}{base}/broker-configs/log.retention.bytes",
                                  "resource_name": f"crn:///kafka={cid}/broker-config=log.retention.bytes"},
                     "cluster_id": cid, "config_type": "BROKER", "name": "log.retention.bytes", "value": big,
                     "is_default": False, "is_read_only": False, "is_sensitive": False,
                     "source": "DYNAMIC_DEFAULT_BROKER_CONFIG",
                     "synonyms": [{"name": "log.retention.bytes", "value": big,
                                   "source": "DYNAMIC_DEFAULT_BROKER_CONFIG"}]}
        assert c in http.get(f"{base}/broker-configs").json()["data"]
        # an independent client sees it as the default of every topic and every broker
        entry = describe_configs(kafka.bootstrap, ResourceType.TOPIC, topic)["retention.bytes"]
        assert (entry.value, entry.source) == (big, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        b = http.get(f"{base}/brokers/{bid}/configs/log.retention.bytes").json()
        assert (b["value"], b["source"]) == (big, "DYNAMIC_DEFAULT_BROKER_CONFIG")
        # several at once (kafka-rest does not check names here: Kafka does)
        r = http.post(f"{base}/broker-configs:alter", json={"data": [
            {"name": "log.retention.bytes", "operation": "DELETE"},
            {"name": "log.segment.bytes", "value": "536870912"}]})
        assert r.status_code == 204, r.text
        assert [c["name"] for c in http.get(f"{base}/broker-configs").json()["data"]] == ["log.segment.bytes"]
        entry = describe_configs(kafka.bootstrap, ResourceType.TOPIC, topic)["segment.bytes"]
        assert (entry.value, entry.source) == ("536870912", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        assert http.delete(f"{base}/broker-configs/log.segment.bytes").status_code == 204
        assert http.get(f"{base}/broker-configs").json()["data"] == []
        entry = describe_configs(kafka.bootstrap, ResourceType.TOPIC, topic)["segment.bytes"]
        assert entry.source == ConfigSource.DEFAULT_CONFIG.value

        assert_error(http.get(f"{base}/broker-configs/log.segment.bytes"), 404, 404, "HTTP 404 Not Found")
        assert_error(http.delete(f"{base}/broker-configs/log.segment.bytes"), 404, 404,
                     f"Config log.segment.bytes cannot be found for BROKER  in cluster {cid}.")
        assert_error(http.put(f"{base}/broker-configs/log.retention.bytes", json={"value": "lots"}), 400, 40002)
        assert_error(http.put(f"{base}/broker-configs/broker.id", json={"value": "3"}), 400, 40002)
        assert_error(http.post(f"{base}/broker-configs:alter", headers={"Content-Type": "application/json"}),
                     422, 42206, "Payload error. Null input provided. Data is required.")
        assert_error(http.get("/v3/clusters/foobar/broker-configs"), 404, 404)
        assert_error(http.get(f"{base}/topic-configs"), 404, 404)  # only the broker type exists
    finally:
        http.post(f"{base}/broker-configs:alter", json={"data": [
            {"name": "log.retention.bytes", "operation": "DELETE"},
            {"name": "log.segment.bytes", "operation": "DELETE"}]})


@pytest.mark.skipif(TANSU, reason="Tansu has no ListPartitionReassignments")
def test_v3_reassignments_of_a_single_broker(kafka, http):
    """Nothing moves on one broker: empty lists, 404 for a partition (cluster tests show a move)."""
    cid, base = v3_base(http)
    topic = uniq("v3r")
    create_topic(kafka.bootstrap, topic, partitions=2)
    proxy_url = f"http://rest-proxy:{http.base_url.port}"  # host.name of the module's proxy
    cluster = http.get(base).json()
    listing = http.get(cluster["partition_reassignments"]["related"].split(str(http.base_url.port), 1)[1])
    assert listing.status_code == 200, listing.text
    assert listing.json() == {"kind": "KafkaReassignmentList",
                              "metadata": {"self": f"{proxy_url}{base}/topics/-/partitions/-/reassignments",
                                           "next": None},
                              "data": []}
    part = http.get(f"{base}/topics/{topic}/partitions/1").json()
    assert part["reassignment"]["related"].endswith(f"{base}/topics/{topic}/partitions/1/reassignment")
    by_topic = http.get(f"{base}/topics/{topic}/partitions/-/reassignment").json()
    assert by_topic["kind"] == "KafkaReassignmentList" and by_topic["data"] == []
    assert http.get(f"{base}/topics/{topic}").json()["partition_reassignments"]["related"].endswith(
        f"{base}/topics/{topic}/partitions/-/reassignment")
    assert_error(http.get(f"{base}/topics/{topic}/partitions/1/reassignment"), 404, 404, "HTTP 404 Not Found")
    assert_error(http.get(f"{base}/topics/{topic}/partitions/x/reassignment"), 404, 404)
    assert http.get(f"{base}/topics/{uniq('none')}/partitions/-/reassignment").json()["data"] == []
    assert_error(http.get("/v3/clusters/foobar/topics/-/partitions/-/reassignment"), 404, 404,
                 "Cluster foobar cannot be found.")


ACL = {"resource_type": "TOPIC", "resource_name": "orders", "pattern_type": "LITERAL", "principal": "User:alice",
       "host": "*", "operation": "READ", "permission": "ALLOW"}


def test_v3_acls_without_an_authorizer(kafka, http):
    """Kafka without an authorizer answers SECURITY_DISABLED, kafka-rest 400 40002; josef has
    no ACL APIs at all and is answered the same way. Bad requests are refused first."""
    cid, base = v3_base(http)
    no_authorizer = "No Authorizer is configured on the broker"
    assert_error(http.get(f"{base}/acls"), 400, 40002, no_authorizer)
    assert_error(http.get(f"{base}/acls", params={"resource_type": "topic", "principal": "User:alice"}),
                 400, 40002, no_authorizer)
    assert_error(http.post(f"{base}/acls", json=ACL), 400, 40002, no_authorizer)
    assert_error(http.post(f"{base}/acls:batch", json={"data": [ACL, {**ACL, "operation": "WRITE"}]}),
                 400, 40002, no_authorizer)
    assert_error(http.delete(f"{base}/acls", params={"resource_type": "TOPIC", "pattern_type": "LITERAL",
                                                     "operation": "READ", "permission": "ALLOW"}),
                 400, 40002, no_authorizer)
    # the request is judged before Kafka is asked
    assert_error(http.get(f"{base}/acls", params={"resource_type": "table"}), 404, 404,
                 "The valid values for ResourceType do not include 'table'")
    assert_error(http.get(f"{base}/acls", params={"operation": "unknown"}), 400, 400,
                 "Bad Request: operation cannot be UNKNOWN")
    assert_error(http.delete(f"{base}/acls"), 400, 400, "Bad Request: resource_type cannot be unspecified or UNKNOWN")
    assert_error(http.post(f"{base}/acls", json={**ACL, "resource_type": "ANY"}), 400, 400,
                 "Bad Request: resource_type cannot be ANY")
    assert_error(http.post(f"{base}/acls", json={**ACL, "pattern_type": "MATCH"}), 400, 400,
                 "Bad Request: pattern_type cannot be MATCH")
    assert_error(http.post(f"{base}/acls", json={**ACL, "permission": "ANY"}), 400, 400)
    assert_error(http.post(f"{base}/acls", json={**ACL, "operation": "FLY"}), 400, 400)
    assert_error(http.post(f"{base}/acls", json={k: v for k, v in ACL.items() if k != "host"}), 400, 400)
    assert_error(http.post(f"{base}/acls", headers={"Content-Type": "application/json"}), 422, 42206,
                 "Payload error. Null input provided. Data is required.")
    assert_error(http.post(f"{base}/acls:batch", json={}), 422, 42206,
                 "Payload error. Empty input provided. Data is required.")
    assert_error(http.post(f"{base}/acls", content=json.dumps(ACL), headers={"Content-Type": "text/plain"}),
                 415, 415)
    assert_error(http.get("/v3/clusters/foobar/acls"), 404, 404, "Cluster foobar cannot be found.")
    assert_error(http.post("/v3/clusters/foobar/acls", json=ACL), 404, 404)
    # an empty batch asks Kafka nothing
    assert http.post(f"{base}/acls:batch", json={"data": []}).status_code == 204


def test_v3_acl_shapes_from_a_kafka_with_an_authorizer():
    """What the resources render when Kafka has ACLs (josef has none to show): a fake backend."""
    from josef.rest.app import create_app
    from josef.rest.kafka import AclSpec
    from josef.rest.settings import RestSettings

    stored = [AclSpec("TOPIC", "orders", "LITERAL", "User:bob", "*", "WRITE", "ALLOW"),
              AclSpec("CLUSTER", "kafka-cluster", "LITERAL", "User:alice", "10.0.0.1", "ALTER_CONFIGS", "DENY"),
              AclSpec("TOPIC", "orders", "LITERAL", "User:alice", "*", "READ", "ALLOW")]

    class FakeBackend:
        async def run(self, fn, *args):
            return fn(*args)

        def cluster(self):
            return "c1", 1, [(1, "127.0.0.1", 9092, None)]

        def describe_acls(self, spec):
            self.searched = spec
            return stored

        def create_acls(self, specs):
            self.created = specs

        def delete_acls(self, spec):
            self.deleted = spec
            return stored[:1]

        def close(self):
            pass

    class NoConsumers:
        async def start(self):
            pass

        async def close(self):
            pass

    backend = FakeBackend()
    app = create_app(RestSettings({"host.name": "proxy"}), backend=backend, consumers=NoConsumers())

    async def calls():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy:8082") as client:
            r = await client.get("/v3/clusters/c1/acls",
                                 params={"resource_type": "topic", "principal": "User:alice"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert backend.searched == AclSpec("TOPIC", None, "ANY", "User:alice", None, "ANY", "ANY")
            assert body["kind"] == "KafkaAclList"
            assert body["metadata"] == {
                "self": "http://proxy:8082/v3/clusters/c1/acls?resource_type=TOPIC&resource_name=&pattern_type=ANY"
                        "&principal=User%3Aalice&host=&operation=ANY&permission=ANY", "next": None}
            # kafka-rest's order: resource type, name, pattern, principal, host, operation, permission
            assert [(a["resource_type"], a["principal"]) for a in body["data"]] == [
                ("TOPIC", "User:alice"), ("TOPIC", "User:bob"), ("CLUSTER", "User:alice")]
            assert body["data"][0] == {
                "kind": "KafkaAcl",
                "metadata": {"self": "http://proxy:8082/v3/clusters/c1/acls?resource_type=TOPIC"
                                     "&resource_name=orders&pattern_type=LITERAL&principal=User%3Aalice&host=*"
                                     "&operation=READ&permission=ALLOW"},
                "cluster_id": "c1", "resource_type": "TOPIC", "resource_name": "orders", "pattern_type": "LITERAL",
                "principal": "User:alice", "host": "*", "operation": "READ", "permission": "ALLOW"}
            r = await client.post("/v3/clusters/c1/acls",
                                  json={**ACL, "operation": "read", "principal": "User:a b"})
            assert r.status_code == 201 and r.content == b""
            assert r.headers["location"].endswith("principal=User%3Aa+b&host=*&operation=READ&permission=ALLOW")
            assert backend.created == [AclSpec("TOPIC", "orders", "LITERAL", "User:a b", "*", "READ", "ALLOW")]
            r = await client.delete("/v3/clusters/c1/acls", params={
                "resource_type": "TOPIC", "pattern_type": "ANY", "operation": "ANY", "permission": "ANY"})
            assert r.status_code == 200 and list(r.json()) == ["data"]
            assert r.json()["data"][0]["principal"] == "User:bob"
            assert backend.deleted == AclSpec("TOPIC", None, "ANY", None, None, "ANY", "ANY")

    asyncio.run(asyncio.wait_for(calls(), 30))


# -- running inside another asyncio program (josef serve) ----------------------------------------

def test_serve_rest_inside_a_running_loop(kafka):
    from josef.rest.server import serve_rest

    async def main():
        server = await serve_rest(kafka.bootstrap, "127.0.0.1", 0, host_name="rest-proxy")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                r = await client.get("/brokers")
                assert r.status_code == 200 and r.json()["brokers"]
                r = await client.get("/topics")
                assert r.status_code == 200
                r = await client.post("/consumers/g-inproc", json={"name": "c"},
                                      headers={"Content-Type": V2})
                assert r.json()["base_uri"] == f"http://rest-proxy:{server.port}/consumers/g-inproc/instances/c"
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_rest_server_module_does_not_import_fastapi():
    code = ("import sys, josef.rest.server, josef.rest.settings; "
            "sys.exit(1 if {'fastapi', 'uvicorn', 'confluent_kafka'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- configuration and negotiation (no sockets) ----------------------------------------------------

def test_settings_from_properties_env_and_overrides(tmp_path):
    from josef.rest.settings import RestSettings, env_to_key
    assert env_to_key("KAFKA_REST_BOOTSTRAP_SERVERS") == "bootstrap.servers"
    assert env_to_key("KAFKA_REST_HOST_NAME") == "host.name"
    assert env_to_key("KAFKA_REST_CONSUMER_REQUEST_TIMEOUT_MS") == "consumer.request.timeout.ms"
    assert env_to_key("KAFKA_REST_CLIENT_SASL__MECHANISM") == "client.sasl_mechanism"
    assert env_to_key("KAFKA_REST_HEAP_OPTS") is None and env_to_key("KAFKA_BROKER_ID") is None
    props = tmp_path / "kafka-rest.properties"
    props.write_text("# comment\nbootstrap.servers=PLAINTEXT://b1:29092,b2:29093\nlisteners=http://0.0.0.0:8082\n"
                     "consumer.request.timeout.ms = 500\nhost.name: from-file\n")
    s = RestSettings.load(props, {"consumer.instance.timeout.ms": "1000"},
                          environ={"KAFKA_REST_HOST_NAME": "rest-proxy", "KAFKA_REST_PRODUCER_LINGER_MS": "7"})
    assert s.bootstrap_servers == "b1:29092,b2:29093"
    assert [(x.host, x.port) for x in s.listeners] == [("0.0.0.0", 8082)]
    assert s.host_name == "rest-proxy"  # the environment wins over the file
    assert s.consumer_request_timeout_ms == 500 and s.consumer_instance_timeout_ms == 1000
    assert s.client_config("producer")["linger.ms"] == "7"
    assert "request.timeout.ms" not in s.client_config("consumer")
    assert RestSettings().listeners[0].port == 8082


def test_content_negotiation_rules():
    from josef.rest import media
    from josef.rest.errors import RestError
    assert media.negotiate(None, media.PLAIN_OFFERS) == media.V2
    assert media.negotiate("*/*", media.PLAIN_OFFERS) == media.V2
    assert media.negotiate("application/json", media.PLAIN_OFFERS) == media.JSON
    assert media.negotiate(None, media.RECORDS_OFFERS) == media.BINARY
    assert media.negotiate(f"{media.V2}", media.RECORDS_OFFERS) == media.V2
    assert media.negotiate(f"{media.BINARY};q=0.2, {media.JSON_EMBEDDED}", media.RECORDS_OFFERS) == media.JSON_EMBEDDED
    with pytest.raises(RestError) as e:
        media.negotiate("text/html, application/vnd.kafka.v1+json", media.PLAIN_OFFERS)
    assert e.value.status == 406
    with pytest.raises(RestError) as e:
        media.require_content_type("application/json", media.CONSUMES_PRODUCE)
    assert e.value.status == 415
    assert media.require_content_type(f"{media.BINARY}; charset=utf-8", media.CONSUMES_PRODUCE) == media.BINARY


def test_josef_serve_runs_the_rest_proxy_beside_the_broker(broker_factory):
    """The seed's `curl localhost:8082/...` calls against `josef serve` itself."""
    from tests.conftest import free_port, port_open, wait_for as wait
    rest_port = free_port()
    b = broker_factory("--rest-port", str(rest_port))
    wait(lambda: port_open(rest_port), 20, what="the REST Proxy of josef serve")
    base = f"http://127.0.0.1:{rest_port}"
    assert httpx.get(f"{base}/brokers", timeout=10).json() == {"brokers": [1]}
    from tests.integration.test_clients import create_topic
    create_topic(b.bootstrap, "first_topic")
    assert httpx.get(f"{base}/topics", timeout=10).json() == ["first_topic"]
    detail = httpx.get(f"{base}/topics/first_topic", timeout=10).json()
    assert detail["partitions"] == [{"partition": 0, "leader": 1,
                                     "replicas": [{"broker": 1, "leader": True, "in_sync": True}]}]
    assert b.stop() == 0


# -- v2 audit against kafka-rest 7.x (Jersey negotiation, Jackson entities, KafkaConsumer semantics) --

def test_v2_negotiation_ranks_accept_pairs_as_jersey_and_json_only_as_a_fallback():
    from josef.rest import media
    # Jersey ranks every (Accept range, offer) pair by q, then qs: */* at q 0.5 beats binary's own q 0.1
    assert media.negotiate(f"{media.BINARY};q=0.1, */*;q=0.5", media.RECORDS_OFFERS) == media.BINARY
    assert media.negotiate(f"{media.JSON_EMBEDDED};q=0.1, */*;q=0.5", media.RECORDS_OFFERS) == media.BINARY
    # plain JSON never wins over a type kafka-rest produces, but still answers where it would 406
    assert media.negotiate(f"{media.V2};q=0.5, application/json", media.PLAIN_OFFERS) == media.V2
    assert media.negotiate("application/json", media.PLAIN_OFFERS) == media.JSON
    assert media.negotiate("application/json", media.RECORDS_OFFERS) == media.JSON
    # rest-utils' 415 error type: an exactly accepted application/json or v2 type, else application/json
    assert media.unsupported_media_error_type(None) == media.JSON
    assert media.unsupported_media_error_type("*/*") == media.JSON
    assert media.unsupported_media_error_type(f"text/html, {media.V2}") == media.V2


def test_v2_content_negotiation_and_error_types_over_http(kafka, http, groups_supported):
    topic = uniq("neg")
    create_topic(kafka.bootstrap, topic)
    r = http.get("/topics", headers={"Accept": f"{V2};q=0.5, application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    r = http.get(f"/topics/{topic}", headers={"Accept": "application/*"})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    # records written by an independent client, read back with a q-weighted wildcard Accept
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(3):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert p.flush(20) == 0
    group = uniq("gneg")
    inst = create_consumer(http, group, **{"auto.offset.reset": "earliest", "responseMinBytes": 1,
                                           "consumer.request.timeout.ms": 300})
    base = f"/consumers/{group}/instances/{inst['instance_id']}"
    r = http.post(f"{base}/assignments", json={"partitions": [{"topic": topic, "partition": 0}]},
                  headers={"Content-Type": V2})
    assert r.status_code == 204, r.text
    got = read_until(http, f"{base}/records", 3, accept=BINARY)
    got += read_until(http, f"{base}/records", 0, accept=BINARY)
    assert [(base64.b64decode(m["key"]), base64.b64decode(m["value"]), m["offset"]) for m in got] == [
        (b"k%d" % i, b"v%d" % i, i) for i in range(3)]
    r = http.get(f"{base}/records", headers={"Accept": f"{JSONV2};q=0.1, */*;q=0.5"})
    assert r.status_code == 200 and r.headers["content-type"] == BINARY  # not a 40601 for json
    # an error after negotiation comes in the negotiated type (a records read: binary)
    missing = f"/consumers/{group}/instances/nobody"
    r = http.get(f"{missing}/records")
    assert_error(r, 404, 40403)
    assert r.headers["content-type"] == BINARY
    r = http.post(f"/consumers/{group}", json={"nme": "typo"}, headers={"Content-Type": V2, "Accept": BINARY})
    assert_error(r, 422, 422, "Unrecognized field: nme")
    assert r.headers["content-type"] == BINARY
    # 415 before negotiation: rest-utils' rule (application/json unless the v2 type is accepted)
    r = http.post(f"/consumers/{group}", content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, 415)
    assert r.headers["content-type"] == "application/json"
    r = http.post(f"/consumers/{group}", content=b"{}", headers={"Content-Type": "text/plain", "Accept": V2})
    assert r.status_code == 415 and r.headers["content-type"] == V2
    assert http.delete(base).status_code == 204


def test_v2_produce_matches_kafka_rest_parsing(kafka, http):
    topic = uniq("parse")
    create_topic(kafka.bootstrap, topic)
    path = f"/topics/{topic}"
    # no Content-Type at all: binary, as Jersey picks kafka-rest's binary method (httpx sends none)
    r = http.post(path, content=b'{"records":[{"key":"aw","value":"aGk"}]}')
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == V2 and r.json()["offsets"][0]["offset"] == 0
    # Guava's base64: padding optional (even in excess), nothing outside the alphabet
    produce_v2(http, topic, [{"value": "aGk=="}, {"value": "YQ"}, {"value": ""}])
    r = http.post(path, json={"records": [{"value": "a"}]}, headers={"Content-Type": BINARY})
    assert_error(r, 400, 400, 'Bad Request: data="a" is not a valid base64 string.')
    # fields the entities do not declare: 422, as Jackson + rest-utils answer (nothing produced)
    bin_h = {"Content-Type": BINARY}
    assert_error(http.post(path, json={"records": [{"value": "aGk="}], "foo": 1}, headers=bin_h),
                 422, 422, "Unrecognized field: foo")
    assert_error(http.post(path, json={"records": [{"value": "aGk=", "headers": []}]}, headers=bin_h),
                 422, 422, "Unrecognized field: headers")
    assert_error(http.post(path, json={"records": [{"value": {"a": 1}, "timestamp": 1}]},
                           headers={"Content-Type": JSONV2}), 422, 422, "Unrecognized field: timestamp")
    # a null record: kafka-rest's ImmutableList refuses it (400), josef used to produce a null record
    assert_error(http.post(path, json={"records": [None]}, headers=bin_h), 400, 400)
    # Jackson reads a number as a String field's text
    produce_v2(http, topic, [{"value": b64(b"s")}])
    r = http.post(path, json={"records": [{"value": b64(b"t")}], "value_schema": 5}, headers=bin_h)
    assert r.status_code == 200, r.text
    got = sorted(consume_all(kafka.bootstrap, topic, 1, 6), key=lambda m: m.offset())
    assert [(m.key(), m.value()) for m in got] == [
        (b"k", b"hi"), (None, b"hi"), (None, b"a"), (None, b""), (None, b"s"), (None, b"t")]
    # the liveness POST takes Map<String,String>: scalars are coerced, objects are not
    assert http.post("/", json={"a": 1, "b": True, "c": None}, headers={"Content-Type": V2}).json() == {}
    assert_error(http.post("/", json={"a": {"b": 1}}, headers={"Content-Type": V2}), 400, 400)


def test_v2_consumer_requests_match_kafka_rest(kafka, http, proxy, groups_supported):
    topic = uniq("creq")
    create_topic(kafka.bootstrap, topic, partitions=2)
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(5):
        p.produce(topic, value=b"r%d" % i, partition=0)
    assert p.flush(20) == 0
    h = {"Content-Type": V2}
    group = uniq("gq")
    assert_error(http.post(f"/consumers/{group}", json={"enable.auto.commit": "false"}, headers=h),
                 422, 422, "Unrecognized field: enable.auto.commit")
    inst = create_consumer(http, group, name="c", **{"auto.offset.reset": "earliest", "requestWaitMs": 500,
                                                      "fetch.min.bytes": 1})
    base = f"/consumers/{group}/instances/c"
    for sub, body in [("/subscription", {"topics": [topic], "topic": topic}),
                      ("/assignments", {"partitions": [{"topic": topic, "partition": 0, "offset": 1}]}),
                      ("/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 1, "x": 1}]}),
                      ("/positions/end", {"partition": []}),
                      ("/offsets", {"offsets": [], "async": True})]:
        assert_error(http.post(base + sub, json=body, headers=h), 422, 422)
    # an empty subscribe or assign unsubscribes whatever the mode (KafkaConsumer semantics)
    part0 = {"partitions": [{"topic": topic, "partition": 0}]}
    assert http.post(f"{base}/assignments", json=part0, headers=h).status_code == 204
    r = http.post(f"{base}/subscription", json={"topics": []}, headers=h)
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/assignments").json() == {"partitions": []}
    assert http.post(f"{base}/subscription", json={"topics": [topic]}, headers=h).status_code == 204
    assert len(read_until(http, f"{base}/records", 5)) == 5  # joined the group, got its partitions
    r = http.post(f"{base}/assignments", json={"partitions": []}, headers=h)
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/subscription").json() == {"topics": []}
    # ... and a manual assignment made next is not undone by the group's leftover rebalance
    # (librdkafka's unsubscribe is asynchronous, Java's is not)
    assert http.post(f"{base}/assignments", json=part0, headers=h).status_code == 204
    # PartitionOffset's int partition and long offset default to 0 when missing; no topic is 400
    r = http.post(f"{base}/positions", json={"offsets": [{"topic": topic, "offset": 3}]}, headers=h)
    assert r.status_code == 204, r.text
    got = read_until(http, f"{base}/records", 2)
    assert [(m["offset"], base64.b64decode(m["value"])) for m in got] == [(3, b"r3"), (4, b"r4")]
    r = http.post(f"{base}/positions", json={"offsets": [{"topic": topic, "partition": None}]}, headers=h)
    assert r.status_code == 204, r.text
    got = read_until(http, f"{base}/records", 5)
    assert [m["offset"] for m in got] == [0, 1, 2, 3, 4]
    assert_error(http.post(f"{base}/positions", json={"offsets": [{"partition": 0, "offset": 1}]}, headers=h),
                 400, 400)
    # seeking no partitions in particular seeks every assigned one (KafkaConsumer.seekToBeginning)
    r = http.post(f"{base}/positions/beginning", json={"partitions": []}, headers=h)
    assert r.status_code == 204, r.text
    got = read_until(http, f"{base}/records", 5)
    assert [base64.b64decode(m["value"]) for m in got] == [b"r%d" % i for i in range(5)]
    assert http.delete(base).status_code == 204
    # base_uri: characters a path segment may hold stay as they are (kafka-rest escapes nothing)
    for grp, shown in [("a:b@c=d", "a:b@c=d"), ("g x", "g%20x")]:
        inst = create_consumer(http, grp, name="u")
        assert inst["base_uri"] == f"http://rest-proxy:{proxy.port}/consumers/{shown}/instances/u"
        assert http.delete(f"/consumers/{grp}/instances/u").status_code == 204


def test_v2_topic_pattern_is_a_java_regex_without_internal_topics(kafka, http, groups_supported):
    prefix = uniq("pat")
    h = {"Content-Type": V2}
    for name in (f"{prefix}-1", f"{prefix}-22", f"{prefix}-x"):
        create_topic(kafka.bootstrap, name)
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for name in (f"{prefix}-1", f"{prefix}-22", f"{prefix}-x"):
        p.produce(name, value=name.encode())
    assert p.flush(20) == 0
    group = uniq("gp")
    inst = create_consumer(http, group, **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1})
    base = f"/consumers/{group}/instances/{inst['instance_id']}"
    # `\d` is Java (and Python) regex; librdkafka's POSIX dialect would match nothing
    r = http.post(f"{base}/subscription", json={"topic_pattern": prefix + r"-\d+"}, headers=h)
    assert r.status_code == 204, r.text
    assert http.get(f"{base}/subscription").json() == {"topics": [f"{prefix}-1", f"{prefix}-22"]}
    got = read_until(http, f"{base}/records", 2)
    assert sorted((m["topic"], base64.b64decode(m["value"])) for m in got) == [
        (f"{prefix}-1", f"{prefix}-1".encode()), (f"{prefix}-22", f"{prefix}-22".encode())]
    # a topic created later joins the subscription while the instance reads
    create_topic(kafka.bootstrap, f"{prefix}-333")
    p.produce(f"{prefix}-333", value=b"late")
    assert p.flush(20) == 0
    late = read_until(http, f"{base}/records", 1, timeout=40)
    assert [(m["topic"], base64.b64decode(m["value"])) for m in late] == [(f"{prefix}-333", b"late")]
    assert f"{prefix}-333" in http.get(f"{base}/subscription").json()["topics"]
    assert_error(http.post(f"{base}/assignments", json={"partitions": [{"topic": f"{prefix}-x", "partition": 0}]},
                           headers=h), 409, 40903)
    assert http.delete(base).status_code == 204
    # Java's consumer leaves internal topics out of a pattern subscription (exclude.internal.topics)
    inst = create_consumer(http, uniq("gall"))
    base = f"/consumers/{inst['base_uri'].split('/consumers/', 1)[1]}"
    assert http.post(f"{base}/subscription", json={"topic_pattern": ".*"}, headers=h).status_code == 204
    topics = http.get(f"{base}/subscription").json()["topics"]
    assert f"{prefix}-x" in topics and not any(t.startswith("__") for t in topics), topics
    assert http.delete(base).status_code == 204
    # an invalid pattern is refused without a 500
    inst = create_consumer(http, uniq("gbadpat"))
    base = f"/consumers/{inst['base_uri'].split('/consumers/', 1)[1]}"
    assert_error(http.post(f"{base}/subscription", json={"topic_pattern": "("}, headers=h), 422, 422)
    assert http.delete(base).status_code == 204
