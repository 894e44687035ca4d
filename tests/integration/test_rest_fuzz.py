"""Hostile HTTP against every route of the REST Proxy: no answer may be an internal error or a
traceback, every error is a JSON `{"error_code", "message"}` body, and afterwards the proxy
still produces and consumes correctly. The routes come from the proxy's own OpenAPI document,
so a route added later is fuzzed too. `JOSEF_REST_FUZZ_SEED` replays one run.
"""
from __future__ import annotations

import json
import os
import random
import re
import uuid

import httpx
import pytest

from tests.integration.test_clients import consume_all, create_topic
from tests.integration.test_rest_proxy import kafka, proxy  # noqa: F401  (module-scoped fixtures)

pytestmark = pytest.mark.timeout(240)

REQUESTS = 1500
MEDIA = ["application/vnd.kafka.v2+json", "application/vnd.kafka.binary.v2+json",
         "application/vnd.kafka.json.v2+json", "application/vnd.kafka.avro.v2+json",
         "application/vnd.kafka.protobuf.v2+json", "application/json", "text/plain", "*/*",
         "application/vnd.kafka.v2+json; q=0", "application/vnd.kafka.json.v2+json;q=abc",
         "application/*, application/json;q=0.5", "garbage/", ";;;", ""]
HOSTILE_SEGMENTS = ["-1", "0", "2147483648", "99999999999999999999", "1.5", "abc", "-", "é€", "a" * 300,
                    "%00", "..", ".", "__consumer_offsets", "no.such.config", "null", " "]


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2 ** 31, 2 ** 63, -(2 ** 64), 10 ** 30, 1.5, -0.0, 1e308])
    if kind == 3:
        return rng.choice(["", "x", "aGVsbG8=", "not base64!", "é" * 5, "\u0000", "\ud800", "2024-01-02T03:04:05Z",
                           "records", "BINARY", "JSON", "STRING", "AVRO", "earliest", "latest"])
    if kind == 4:
        return rng.choice(["t", "0", "-1", "retention.ms"])
    if kind == 5:
        return rng.randrange(-3, 5)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["records", "key", "value", "partition", "partition_id", "type", "data", "headers", "name", "format",
            "topics", "topic_pattern", "partitions", "offsets", "topic", "offset", "timestamp", "entries", "id",
            "topic_name", "partitions_count", "replication_factor", "configs", "value_schema", "auto.offset.reset",
            "operation", "validate_only", "timestamps", "metadata", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_body(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.choice([b"{", b"[1,", b'{"records":', b"\xff\xfe\x00", b"NaN", b"{'a':1}", b'{"a":1}{"b":2}',
                           b"[" * 5000 + b"]" * 5000, b'{"records":[' + b'{"value":"eA=="},' * 300 + b"]}",
                           b'{"value": {"type": "JSON", "data": 1}}\n{"value":'])
    return json.dumps(random_json(rng), ensure_ascii=False).encode("utf-8", "surrogatepass")


def fill(path: str, rng: random.Random, known: dict) -> str:
    def one(match):
        name = match.group(1)
        if rng.random() < 0.7 and name in known:
            return rng.choice(known[name])
        return rng.choice(HOSTILE_SEGMENTS)
    return re.sub(r"\{(\w+)\}", one, path)


def test_every_route_survives_hostile_requests(kafka, proxy):  # noqa: F811
    seed = int(os.environ.get("JOSEF_REST_FUZZ_SEED", random.randrange(2 ** 32)))
    rng = random.Random(seed)
    topic = f"fuzz-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
        assert http.post("/consumers/fuzzgroup", headers={"Content-Type": MEDIA[0]},
                         json={"name": "c1", "format": "binary"}).status_code == 200
        spec = http.get("/openapi.json").json()["paths"]
        routes = [(method.upper(), path) for path, ops in spec.items() for method in ops
                  if not path.startswith(("/docs", "/openapi"))]
        assert len(routes) > 60, routes
        known = {"topic": [topic], "topic_name": [topic], "name": [topic, "retention.ms"], "partition": ["0", "1"],
                 "partition_id": ["0"], "pid": ["0", "1"], "cid": [cid], "cluster_id": [cid], "group": ["fuzzgroup"],
                 "instance": ["c1"], "gid": ["fuzzgroup"], "bid": ["1"], "broker_id": ["1"], "key": ["retention.ms"]}
        failures = []
        for i in range(REQUESTS):
            method, template = rng.choice(routes)
            if rng.random() < 0.1:
                method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
            path = fill(template, rng, known)
            if path.rstrip("/") == f"/v3/clusters/{cid}/broker-configs" or "/brokers/" in path and "/configs" in path:
                if method in ("PUT", "POST", "DELETE"):
                    continue  # a random broker setting may legitimately stop the broker serving this test
            headers = {}
            if rng.random() < 0.8:
                headers["Content-Type"] = rng.choice(MEDIA)
            if rng.random() < 0.6:
                headers["Accept"] = rng.choice(MEDIA)
            params = {}
            if rng.random() < 0.2:
                params = {rng.choice(["timeout", "max_bytes", "validate_only"]): rng.choice(HOSTILE_SEGMENTS)}
            body = random_body(rng) if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            try:
                r = http.request(method, path, content=body, headers=headers, params=params)
            except httpx.HTTPError as e:
                failures.append((method, path, headers, body[:200], f"transport error {e!r}"))
                continue
            text = r.text
            bad = r.status_code >= 500 and not (r.status_code == 500 and '"error_code":5000' in text)
            if bad or "Traceback" in text or "Internal Server Error" in text:
                failures.append((method, path, headers, body[:200], r.status_code, text[:300]))
            elif r.status_code >= 400 and method != "HEAD" and r.status_code != 406:
                error = r.json()
                assert set(error) == {"error_code", "message"} and isinstance(error["error_code"], int), (
                    seed, method, path, r.status_code, text[:300])
        assert not failures, f"seed {seed}: {failures[:5]}"
        assert proxy.proc.poll() is None

        # still a working proxy: a produce cross-checked by a Kafka consumer
        after = f"after-{uuid.uuid4().hex[:8]}"
        create_topic(kafka.bootstrap, after, partitions=1)
        r = http.post(f"/topics/{after}", json={"records": [{"value": {"n": i}} for i in range(5)]},
                      headers={"Content-Type": "application/vnd.kafka.json.v2+json"})
        assert r.status_code == 200, r.text
        got = consume_all(kafka.bootstrap, after, 1, 5)
        assert sorted(json.loads(m.value())["n"] for m in got) == [0, 1, 2, 3, 4]


def test_what_used_to_break_the_proxy(kafka, proxy):  # noqa: F811
    """Requests the fuzzer found: librdkafka aborted the process (confluent-kafka asserts) on a
    blank or NUL group id, a NUL topic name came back as a 500, an empty `:alter` as a 500."""
    topic = f"fuzz-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    v2 = {"Content-Type": "application/vnd.kafka.v2+json"}
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        cid = http.get("/v3/clusters").json()["data"][0]["cluster_id"]
        for group in ("%20", "%09", "%00", "g%00x"):
            r = http.post(f"/consumers/{group}", headers=v2, json={"name": "c1"})
            assert r.status_code in (404, 422), (group, r.status_code, r.text)
            assert r.json()["error_code"] in (404, 42204), r.text
        r = http.post("/consumers/g", headers=v2, json={"name": "c\x00"})
        assert (r.status_code, r.json()["error_code"]) == (422, 42204), r.text
        r = http.delete(f"/v3/clusters/{cid}/topics/%00")
        assert (r.status_code, r.json()["error_code"]) == (404, 404), r.text
        r = http.post(f"/v3/clusters/{cid}/topics/{topic}/configs:alter", json={"data": []})
        assert r.status_code == 204, r.text
        r = http.post(f"/v3/clusters/{cid}/brokers/1/configs:alter", json={"data": []})
        assert r.status_code == 204, r.text
        assert http.get("/").status_code == 200
    assert proxy.proc.poll() is None
