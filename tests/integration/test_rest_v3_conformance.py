"""REST v3 as Confluent's kafka-rest (7.x) answers it: `records:batch` and the not-found and
bad-input answers of the v3 resources, against a real broker and `josef rest-proxy`.

The broker runs with `auto.create.topics.enable=false`, as the answers for unknown topics need.
Every record a test produces is read back with a confluent-kafka consumer; a refused request is
checked to have produced nothing.
"""
from __future__ import annotations

import json

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.conftest import BrokerProcess, wait_for
from tests.integration.test_clients import consume_all, create_topic
from tests.integration.test_rest_proxy import (  # noqa: F401  (fixtures)
    RestProxyProcess, assert_error, b64, groups_supported, http, proxy, uniq, v3_base)

pytestmark = pytest.mark.timeout(60)

JSON_H = {"Content-Type": "application/json"}
BATCH_ERR = 42208


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """This module's broker: topics are never created by producing to them."""
    broker = BrokerProcess(data_dir=tmp_path_factory.mktemp("v3-broker") / "data",
                           extra=["--override", "auto.create.topics.enable=false"]).start()
    yield broker
    broker.kill()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def batch(http, base: str, topic: str, entries, **kw):
    return http.post(f"{base}/topics/{topic}/records:batch", json={"entries": entries}, **kw)


# -- records:batch ------------------------------------------------------------------------------------
def test_records_batch_produces_every_entry_and_answers_207(kafka, http):
    cid, base = v3_base(http)
    topic = uniq("batch")
    create_topic(kafka.bootstrap, topic, partitions=2)
    entries = [
        {"id": "bin-1", "partition_id": 0, "key": {"type": "BINARY", "data": b64(b"k\x00")},
         "value": {"type": "BINARY", "data": b64(b"\x01\x02v")}},
        {"id": "STR_2", "partition_id": 1, "key": {"type": "STRING", "data": "k2"},
         "value": {"type": "STRING", "data": "hello"}, "headers": [{"name": "h", "value": b64(b"hv")},
                                                                   {"name": "nil", "value": None}],
         "timestamp": "2024-01-02T03:04:05.678Z"},
        {"id": "json3", "partition_id": 1, "value": {"type": "JSON", "data": {"n": [1, 2], "s": "x"}}},
        {"id": "4", "partition_id": 0, "value": {"data": b64(b"untyped is binary")}},
        {"id": "null-5", "partition_id": 0, "key": {"type": "STRING", "data": "only-key"}},
    ]
    r = batch(http, base, topic, entries)
    assert r.status_code == 207, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"successes", "failures"} and body["failures"] == [], body
    got = body["successes"]
    assert [s["id"] for s in got] == [e["id"] for e in entries]
    for s, e in zip(got, entries):
        assert (s["cluster_id"], s["topic_name"], s["partition_id"]) == (cid, topic, e["partition_id"])
        assert "error_code" not in s and isinstance(s["offset"], int) and s["timestamp"].endswith("Z")
    assert got[0]["key"] == {"type": "BINARY", "size": 2} and got[0]["value"] == {"type": "BINARY", "size": 3}
    assert got[1]["value"] == {"type": "STRING", "size": 5} and got[1]["timestamp"] == "2024-01-02T03:04:05.678Z"
    assert got[2]["value"]["type"] == "JSON" and "key" not in got[2]
    assert "value" not in got[4] and got[4]["key"] == {"type": "STRING", "size": 8}
    assert [(s["partition_id"], s["offset"]) for s in got] == [(0, 0), (1, 0), (1, 1), (0, 1), (0, 2)]

    msgs = {(m.partition(), m.offset()): m for m in consume_all(kafka.bootstrap, topic, 2, len(entries))}
    assert set(msgs) == {(s["partition_id"], s["offset"]) for s in got}
    m = msgs[(0, 0)]
    assert (m.key(), m.value()) == (b"k\x00", b"\x01\x02v")
    m = msgs[(1, 0)]
    assert (m.key(), m.value(), m.headers(), m.timestamp()[1]) == (
        b"k2", b"hello", [("h", b"hv"), ("nil", None)], 1704164645678)
    assert json.loads(msgs[(1, 1)].value()) == {"n": [1, 2], "s": "x"}
    assert msgs[(0, 1)].value() == b"untyped is binary"
    assert (msgs[(0, 2)].key(), msgs[(0, 2)].value()) == (b"only-key", None)


def test_records_batch_failures_are_answered_per_entry(kafka, http):
    cid, base = v3_base(http)
    topic = uniq("batch-partial")
    create_topic(kafka.bootstrap, topic, partitions=2)
    entries = [
        {"id": "ok-1", "value": {"type": "STRING", "data": "first"}, "partition_id": 0},
        {"id": "bad-b64", "value": {"type": "BINARY", "data": "fooba"}},
        {"id": "not-a-string", "value": {"type": "STRING", "data": 12}},
        {"id": "negative", "partition_id": -1, "value": {"type": "STRING", "data": "x"}},
        {"id": "beyond", "partition_id": 7, "value": {"type": "STRING", "data": "x"}},
        {"id": "avro", "value": {"type": "AVRO", "schema": '"string"', "data": "x"}},
        {"id": "ok-2", "value": {"type": "JSON", "data": [1, "two"]}, "partition_id": 1},
    ]
    r = batch(http, base, topic, entries)
    assert r.status_code == 207, r.text
    body = r.json()
    assert [s["id"] for s in body["successes"]] == ["ok-1", "ok-2"]
    failures = {f["id"]: f for f in body["failures"]}
    assert [f["id"] for f in body["failures"]] == ["bad-b64", "not-a-string", "negative", "beyond", "avro"]
    assert all(set(f) == {"id", "error_code", "message"} for f in body["failures"])
    assert failures["bad-b64"]["error_code"] == 400
    assert failures["bad-b64"]["message"] == 'Bad Request: data="fooba" is not a valid base64 string.'
    assert (failures["not-a-string"]["error_code"], failures["not-a-string"]["message"]) == (
        400, "Bad Request: data=12 is not a string.")
    assert (failures["negative"]["error_code"], failures["negative"]["message"]) == (40402, "Partition not found.")
    assert failures["beyond"]["error_code"] == 40401
    assert failures["beyond"]["message"] == (
        f"Partition 7 of topic {topic} with partition count 2 is not present in metadata.")
    assert failures["avro"] == {"id": "avro", "error_code": 422, "message": (
        "Error: 42206 : Payload error. Schema Registry must be configured when using schemas.")}

    got = consume_all(kafka.bootstrap, topic, 2, 2)
    assert sorted((m.partition(), m.value()) for m in got) == [(0, b"first"), (1, b'[1,"two"]')]
    assert end_offsets(kafka.bootstrap, topic, 2) == [1, 1]  # nothing else was produced


def test_records_batch_refused_as_a_whole(kafka, http):
    cid, base = v3_base(http)
    topic = uniq("batch-refused")
    create_topic(kafka.bootstrap, topic)
    path = f"{base}/topics/{topic}/records:batch"

    def entry(i, **kw):
        return {"id": str(i), "value": {"type": "STRING", "data": f"v{i}"}, **kw}

    # kafka-rest's batch checks: 422 with 42208
    assert_error(http.post(path, headers=JSON_H), 422, BATCH_ERR, "Request body is empty. Data is required.")
    assert_error(http.post(path, content=b"null", headers=JSON_H), 422, BATCH_ERR)
    assert_error(http.post(path, json={}), 422, BATCH_ERR, "Empty batch.")
    assert_error(http.post(path, json={"entries": None}), 422, BATCH_ERR, "Empty batch.")
    assert_error(http.post(path, json={"entries": []}), 422, BATCH_ERR, "Empty batch.")
    assert_error(http.post(path, json={"entries": [entry(1), entry(2), entry(1)]}), 422, BATCH_ERR,
                 "Batch entry IDs are not distinct.")
    assert_error(http.post(path, json={"entries": [entry(i) for i in range(11)]}), 422, BATCH_ERR,
                 "Too many entries in batch.")
    for bad_id in (7, None, "", "x" * 81, "a b", "é", "a.b", ["1"], {"a": 1}, True):
        assert_error(http.post(path, json={"entries": [entry(0), {**entry(1), "id": bad_id}]}), 422, BATCH_ERR,
                     "Batch entry identifier is not a valid string.")
    assert batch(http, base, topic, [{**entry(1), "id": "x" * 80}]).status_code == 207  # 80 is the limit
    # fields the entities do not have: 422 (rest-utils' provider)
    assert_error(http.post(path, json={"records": [entry(1)]}), 422, 422, "Unrecognized field: records")
    assert_error(http.post(path, json={"entries": [{**entry(1), "partition": 0}]}), 422, 422,
                 "Unrecognized field: partition")
    assert_error(http.post(path, json={"entries": [{"id": "1", "value": {"type": "STRING", "data": "v",
                                                                         "format": "x"}}]}),
                 422, 422, "Unrecognized field: format")
    # bodies that do not read as the entity: 400, whatever else is wrong later in the batch
    for raw in (b'{"entries": [', b"\xff\xfe", b"[]", b'"entries"', b'{"entries": {}}', b'{"entries": [1]}',
                b'{"entries": [{"id": "1", "partition_id": "one"}]}',
                b'{"entries": [{"id": "1", "partition_id": 2147483648}]}',
                b'{"entries": [{"id": "1", "headers": [{"name": "h", "value": "!!"}]}]}',
                b'{"entries": [{"id": "1", "headers": {"name": "h"}}]}',
                b'{"entries": [{"id": "1", "value": {"type": "XML", "data": "x"}}]}',
                b'{"entries": [{"id": "1", "value": {"type": "AVRO", "data": "x"}}]}',
                b'{"entries": [{"id": "1", "value": "not an object"}]}',
                b'{"entries": [{"id": "1", "timestamp": "yesterday"}]}',
                b'{"entries": [{"id": "1", "value": {"data": NaN}}]}',
                b'{"entries": [{"value": {"type": "STRING", "data": "no id"}}]}',
                b'{"entries": [{"id": "1"}, {"id": "1", "partition_id": []}]}'):
        assert_error(http.post(path, content=raw, headers=JSON_H), 400, 400)
    # media types
    assert_error(http.post(path, content=json.dumps({"entries": [entry(1)]}), headers={"Content-Type": "text/plain"}),
                 415, 415, "HTTP 415 Unsupported Media Type")
    assert_error(http.post(path, json={"entries": [entry(1)]}, headers={"Accept": "text/html"}), 406, 406)

    assert end_offsets(kafka.bootstrap, topic, 1) == [1]  # only the 80-character id's record


def test_records_batch_malformed_fields_never_fail_the_server(kafka, http):
    """Every field of a batch entry replaced by every kind of JSON value: the answer is a 207 or
    a 4xx error body, never a 500."""
    cid, base = v3_base(http)
    topic = uniq("batch-fuzz")
    create_topic(kafka.bootstrap, topic)
    path = f"{base}/topics/{topic}/records:batch"
    good = {"id": "e", "partition_id": 0, "headers": [{"name": "h", "value": b64(b"v")}],
            "key": {"type": "STRING", "data": "k"}, "value": {"type": "BINARY", "data": b64(b"v")},
            "timestamp": "2024-01-02T03:04:05Z"}
    oddities = [None, 0, -1, 1.5, 2 ** 70, -(2 ** 70), 1e300, "", "x", "!!", [], [1], {}, {"a": 1}, True]
    spots = [(), ("partition_id",), ("headers",), ("headers", 0), ("headers", 0, "name"), ("headers", 0, "value"),
             ("key",), ("key", "type"), ("key", "data"), ("value", "data"), ("value", "schema_id"),
             ("value", "subject"), ("timestamp",), ("id",)]
    seen = set()
    for spot in spots:
        for odd in oddities:
            entry = json.loads(json.dumps(good))
            if spot:
                holder = entry
                for step in spot[:-1]:
                    holder = holder[step]
                holder[spot[-1]] = odd
            else:
                entry = odd
            r = http.post(path, json={"entries": [entry, {**good, "id": "f"}]})
            assert r.status_code in (207, 400, 422), (spot, odd, r.status_code, r.text)
            assert "Traceback" not in r.text and set(r.json()) in ({"successes", "failures"},
                                                                    {"error_code", "message"}), (spot, odd, r.text)
            seen.add(r.status_code)
    for raw in (b"1e999", b'{"entries": [{"id": "a", "timestamp": 1e999}]}', b'{"entries": 1e999}',
                b'{"entries": [{"id": "a", "partition_id": 1e999}]}', b"[" * 100_000, b'{"entries": [' + b"[" * 5000):
        r = http.post(path, content=raw, headers=JSON_H)
        assert r.status_code in (400, 422), (raw[:60], r.status_code, r.text)
    assert seen == {207, 400, 422}
    assert http.get(f"{base}/topics/{topic}").json()["partitions_count"] == 1  # the proxy still answers


def test_records_batch_unknown_topic_illegal_name_and_cluster_id(kafka, http):
    cid, base = v3_base(http)
    missing = uniq("no-such-topic")
    r = batch(http, base, missing, [{"id": "a", "value": {"type": "STRING", "data": "x"}},
                                    {"id": "b", "value": {"type": "BINARY", "data": "!!"}}])
    assert r.status_code == 207, r.text
    assert r.json() == {"successes": [], "failures": [
        {"id": "a", "error_code": 40401, "message": f"Topic {missing} not present in metadata."},
        {"id": "b", "error_code": 400, "message": 'Bad Request: data="!!" is not a valid base64 string.'}]}
    assert_error(http.get(f"{base}/topics/{missing}"), 404, 40403)  # and it was not created

    r = batch(http, base, "bad%20name!", [{"id": "a", "value": {"type": "STRING", "data": "x"}}])
    assert r.status_code == 207 and r.json()["failures"] == [
        {"id": "a", "error_code": 40002, "message": "Invalid topics: [bad name!]"}], r.text

    # kafka-rest does not look the cluster id up when producing: it is echoed back
    topic = uniq("batch-cid")
    create_topic(kafka.bootstrap, topic)
    r = batch(http, "/v3/clusters/not-this-one", topic, [{"id": "a", "value": {"type": "STRING", "data": "x"}}])
    assert r.status_code == 207, r.text
    assert [(s["cluster_id"], s["topic_name"]) for s in r.json()["successes"]] == [("not-this-one", topic)]
    assert [m.value() for m in consume_all(kafka.bootstrap, topic, 1, 1)] == [b"x"]


def test_records_batch_maximum_entries_setting(kafka, tmp_path):
    p = RestProxyProcess(kafka.bootstrap, tmp_path / "rest-proxy.log",
                         env={"KAFKA_REST_API_V3_PRODUCE_BATCH_MAXIMUM_ENTRIES": "3"}).start()
    try:
        with httpx.Client(base_url=p.url, timeout=30) as http:
            cid, base = v3_base(http)
            topic = uniq("batch-max")
            create_topic(kafka.bootstrap, topic)
            entries = [{"id": f"e{i}", "value": {"type": "STRING", "data": f"v{i}"}} for i in range(4)]
            assert_error(batch(http, base, topic, entries), 422, BATCH_ERR, "Too many entries in batch.")
            r = batch(http, base, topic, entries[:3])
            assert r.status_code == 207 and [s["id"] for s in r.json()["successes"]] == ["e0", "e1", "e2"]
            assert sorted(m.value() for m in consume_all(kafka.bootstrap, topic, 1, 3)) == [b"v0", b"v1", b"v2"]
    finally:
        p.stop()
    bad = RestProxyProcess(kafka.bootstrap, tmp_path / "bad.log",
                           env={"KAFKA_REST_API_V3_PRODUCE_BATCH_MAXIMUM_ENTRIES": "51"})
    try:  # refused at startup, as kafka-rest's config validation does
        bad.start()
    except AssertionError as e:  # exited before its port answered
        assert "must be between 1 and 50, got 51" in str(e)
    else:  # the port is bound before the app is built: it exits right after
        wait_for(lambda: bad.proc.poll() is not None, 20, what="the misconfigured proxy to exit")
        assert bad.proc.returncode != 0 and "must be between 1 and 50, got 51" in bad.log()
    finally:
        bad.kill()


# -- the single-record produce, as the batch answers ---------------------------------------------------
def test_v3_produce_unknown_topic_partition_and_fields_are_answered_per_record(kafka, http):
    cid, base = v3_base(http)
    missing = uniq("nope")
    r = http.post(f"{base}/topics/{missing}/records", json={"value": {"type": "STRING", "data": "x"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"error_code": 40401, "message": f"Topic {missing} not present in metadata."}

    topic = uniq("single")
    create_topic(kafka.bootstrap, topic, partitions=2)
    stream = "\n".join(json.dumps(x) for x in [
        {"partition_id": 2, "value": {"type": "STRING", "data": "beyond"}},
        {"partition_id": 1, "value": {"type": "STRING", "data": "ok"}, "records": []},
        {"partition_id": 1, "value": {"type": "AVRO", "schema": '"string"', "data": "x"}},
        {"partition_id": 1, "value": {"type": "STRING", "data": "ok"}}])
    r = http.post(f"/v3/clusters/elsewhere/topics/{topic}/records", content=stream, headers=JSON_H)
    assert r.status_code == 200, r.text
    answers = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert [a["error_code"] for a in answers] == [40401, 400, 422, 200]
    assert answers[0]["message"] == f"Partition 2 of topic {topic} with partition count 2 is not present in metadata."
    assert answers[1]["message"].startswith('Unrecognized field "records"')
    assert answers[2]["message"] == (
        "Error: 42206 : Payload error. Schema Registry must be configured when using schemas.")
    assert (answers[3]["cluster_id"], answers[3]["partition_id"], answers[3]["offset"]) == ("elsewhere", 1, 0)
    assert [m.value() for m in consume_all(kafka.bootstrap, topic, 2, 1)] == [b"ok"]
    # malformed records are answered in the stream, never as a server error
    for raw in (b"[" * 100_000, b'{"timestamp": 1e999}', b'{"partition_id": 2147483648}', b'{"key": []}'):
        r = http.post(f"{base}/topics/{topic}/records", content=raw, headers=JSON_H)
        assert r.status_code == 200 and r.json()["error_code"] == 400, (raw[:40], r.text)
    assert end_offsets(kafka.bootstrap, topic, 2) == [0, 1]


# -- not-found answers of the v3 resources ------------------------------------------------------------
def test_v3_not_found_answers_match_kafka_rest(kafka, http):
    cid, base = v3_base(http)
    topic = uniq("nf")
    create_topic(kafka.bootstrap, topic, partitions=2)
    missing = uniq("missing")
    bid = http.get(f"{base}/brokers").json()["data"][0]["broker_id"]
    none = "HTTP 404 Not Found"
    utp = "This server does not host this topic-partition."
    value = {"value": "1"}
    cases = [
        # unknown cluster: the resources' own lookup, or Jersey's text where kafka-rest rewraps it
        ("GET", "/v3/clusters/foo", None, 404, 404, none),
        ("GET", "/v3/clusters/foo/brokers", None, 404, 404, "Cluster foo cannot be found."),
        ("GET", "/v3/clusters/foo/topics", None, 404, 404, "Cluster foo cannot be found."),
        ("GET", f"/v3/clusters/foo/topics/{topic}", None, 404, 404, "Cluster foo cannot be found."),
        ("GET", f"/v3/clusters/foo/topics/{topic}/partitions", None, 404, 404, "Cluster foo cannot be found."),
        ("GET", f"/v3/clusters/foo/topics/{topic}/partitions/0", None, 404, 404, none),
        ("GET", f"/v3/clusters/foo/topics/{topic}/partitions/0/replicas", None, 404, 404, none),
        ("GET", f"/v3/clusters/foo/topics/{topic}/configs", None, 404, 404, none),
        ("GET", f"/v3/clusters/foo/topics/{topic}/configs/retention.ms", None, 404, 404, none),
        ("PUT", f"/v3/clusters/foo/topics/{topic}/configs/retention.ms", value, 404, 404, none),
        ("GET", "/v3/clusters/foo/consumer-groups", None, 404, 404, "Cluster foo could not be found."),
        ("GET", "/v3/clusters/foo/consumer-groups/g", None, 404, 404, "Cluster foo could not be found."),
        ("GET", f"/v3/clusters/foo/brokers/{bid}/configs", None, 404, 404, none),
        ("GET", "/v3/clusters/foo/brokers/-/configs", None, 404, 404, "Cluster foo cannot be found."),
        ("GET", "/v3/clusters/foo/broker-configs", None, 404, 404, none),
        ("PUT", "/v3/clusters/foo/broker-configs/log.retention.ms", value, 404, 404, "Cluster foo cannot be found."),
        # unknown broker, replica, partition
        ("GET", f"{base}/brokers/{bid + 100}", None, 404, 404, none),
        ("GET", f"{base}/brokers/abc", None, 404, 404, none),
        ("GET", f"{base}/topics/{topic}/partitions/5", None, 404, 404, none),
        ("GET", f"{base}/topics/{topic}/partitions/-1", None, 404, 404, none),
        ("GET", f"{base}/topics/{topic}/partitions/5/replicas", None, 404, 404,
         f"Partition 5 of topic {topic} could not be found on cluster {cid}."),
        ("GET", f"{base}/topics/{topic}/partitions/5/replicas/{bid}", None, 404, 404,
         f"Partition 5 of topic {topic} could not be found on cluster {cid}."),
        ("GET", f"{base}/topics/{topic}/partitions/0/replicas/{bid + 100}", None, 404, 404, none),
        # unknown topic: the Admin client's UnknownTopicOrPartitionException, 40403
        ("GET", f"{base}/topics/{missing}", None, 404, 40403, utp),
        ("DELETE", f"{base}/topics/{missing}", None, 404, 40403, utp),
        ("PATCH", f"{base}/topics/{missing}", {"partitions_count": 3}, 404, 40403, utp),
        ("GET", f"{base}/topics/{missing}/partitions", None, 404, 40403, utp),
        ("GET", f"{base}/topics/{missing}/partitions/0", None, 404, 40403,
         f"This server does not host topic-partition 0 for topic {missing}"),
        ("GET", f"{base}/topics/{missing}/partitions/0/replicas", None, 404, 40403,
         f"This server does not host topic-partition 0 for topic {missing}"),
        ("GET", f"{base}/topics/{missing}/configs", None, 404, 40403, utp),
        ("GET", f"{base}/topics/{missing}/configs/retention.ms", None, 404, 40403, utp),
        ("PUT", f"{base}/topics/{missing}/configs/retention.ms", value, 404, 40403, utp),
        ("DELETE", f"{base}/topics/{missing}/configs/retention.ms", None, 404, 40403, utp),
        ("POST", f"{base}/topics/{missing}/configs:alter", {"data": [{"name": "retention.ms", "value": "1"}]},
         404, 40403, utp),
        # unknown config name
        ("GET", f"{base}/topics/{topic}/configs/no.such.config", None, 404, 404, none),
        ("PUT", f"{base}/topics/{topic}/configs/no.such.config", value, 404, 404,
         f"Config no.such.config cannot be found for TOPIC {topic} in cluster {cid}."),
        ("DELETE", f"{base}/topics/{topic}/configs/no.such.config", None, 404, 404,
         f"Config no.such.config cannot be found for TOPIC {topic} in cluster {cid}."),
        ("POST", f"{base}/topics/{topic}/configs:alter", {"data": [{"name": "retention.ms", "value": "1"},
                                                                  {"name": "no.such.config", "value": "1"}]},
         404, 404, none),
        # unknown consumer group
        ("GET", f"{base}/consumer-groups/{missing}", None, 404, 404, none),
        ("GET", f"{base}/consumer-groups/{missing}/consumers", None, 404, 404,
         f"Consumer Group {missing} does not exist."),
        ("GET", f"{base}/consumer-groups/{missing}/lag-summary", None, 404, 404,
         f"Consumer Group {missing} could not be found."),
    ]
    for method, path, body, status, code, message in cases:
        r = http.request(method, path, json=body) if body is not None else http.request(method, path)
        try:
            assert_error(r, status, code, message)
        except AssertionError as e:
            raise AssertionError(f"{method} {path}: {e}") from None
    # nothing was changed by the refused calls
    assert http.get(f"{base}/topics/{topic}/configs/retention.ms").json()["is_default"]
    assert http.get(f"{base}/topics/{topic}").json()["partitions_count"] == 2


def test_v3_request_entities_refuse_unknown_fields(kafka, http):
    cid, base = v3_base(http)
    topic = uniq("fields")
    create_topic(kafka.bootstrap, topic)
    bid = http.get(f"{base}/brokers").json()["data"][0]["broker_id"]
    acl = {"resource_type": "TOPIC", "resource_name": "t", "pattern_type": "LITERAL", "principal": "User:a",
           "host": "*", "operation": "READ", "permission": "ALLOW"}
    new = uniq("never")
    cases = [
        ("POST", f"{base}/topics", {"topic_name": new, "partitions": 3}, "partitions"),
        ("POST", f"{base}/topics", {"topic_name": new, "configs": [{"name": "retention.ms", "val": "1"}]}, "val"),
        ("PATCH", f"{base}/topics/{topic}", {"partitions_count": 3, "force": True}, "force"),
        ("PUT", f"{base}/topics/{topic}/configs/retention.ms", {"value": "1000", "data": {}}, "data"),
        ("POST", f"{base}/topics/{topic}/configs:alter", {"data": [], "dry_run": True}, "dry_run"),
        ("POST", f"{base}/topics/{topic}/configs:alter", {"data": [{"name": "retention.ms", "op": "SET"}]}, "op"),
        ("PUT", f"{base}/brokers/{bid}/configs/log.retention.ms", {"value": "1", "v": 2}, "v"),
        ("POST", f"{base}/brokers/{bid}/configs:alter", {"data": [{"name": "log.retention.ms", "x": 1}]}, "x"),
        ("PUT", f"{base}/broker-configs/log.retention.ms", {"Value": "1"}, "Value"),
        ("POST", f"{base}/broker-configs:alter", {"entries": []}, "entries"),
        ("POST", f"{base}/acls", {**acl, "comment": "x"}, "comment"),
        ("POST", f"{base}/acls:batch", {"data": [acl], "more": 1}, "more"),
    ]
    for method, path, body, field in cases:
        try:
            assert_error(http.request(method, path, json=body), 422, 422, f"Unrecognized field: {field}")
        except AssertionError as e:
            raise AssertionError(f"{method} {path}: {e}") from None
    # none of them did anything
    assert_error(http.get(f"{base}/topics/{new}"), 404, 40403)
    t = http.get(f"{base}/topics/{topic}").json()
    assert t["partitions_count"] == 1
    assert http.get(f"{base}/topics/{topic}/configs/retention.ms").json()["is_default"]
    assert http.get(f"{base}/brokers/{bid}/configs/log.retention.ms").json()["source"] != "DYNAMIC_BROKER_CONFIG"
    assert http.get(f"{base}/broker-configs").json()["data"] == []


def test_v3_lag_summary_of_a_group_without_committed_offsets(kafka, http, groups_supported):
    cid, base = v3_base(http)
    topic = uniq("lag")
    create_topic(kafka.bootstrap, topic)
    group = uniq("no-commits")
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    try:
        c.subscribe([topic])

        def joined():
            c.poll(0.1)
            return c.assignment()
        wait_for(joined, 20, interval=0, what="the consumer joins its group")
        assert http.get(f"{base}/consumer-groups/{group}").json()["consumer_group_id"] == group
        assert_error(http.get(f"{base}/consumer-groups/{group}/lag-summary"), 404, 404,
                     "Consumer group offsets could not be found.")
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        lag = http.get(f"{base}/consumer-groups/{group}/lag-summary").json()
        assert (lag["max_lag_topic_name"], lag["total_lag"]) == (topic, 0)
    finally:
        c.close()


# -- consumers, assignments and lags of a consumer group -------------------------------------------------
def _produce_to(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """`counts[p]` records to partition p of `topic`, all delivered before it returns."""
    from confluent_kafka import Producer
    failed = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, value=b"v%d" % i, partition=partition,
                      on_delivery=lambda err, msg: err is not None and failed.append(err))
    assert p.flush(20) == 0 and not failed, failed


def test_v3_consumers_assignments_and_lags_of_a_live_group(kafka, http, groups_supported):
    """Two confluent-kafka consumers (one static, one dynamic) hold the partitions of two topics
    and commit chosen offsets; the REST answers are checked against the consumers' own member
    ids, client ids and assignments, the committed offsets and the produced end offsets."""
    cid, base = v3_base(http)
    ta, tb = uniq("lag-a"), uniq("lag-b")
    create_topic(kafka.bootstrap, ta, partitions=3)
    create_topic(kafka.bootstrap, tb)
    _produce_to(kafka.bootstrap, ta, {0: 5, 1: 3})
    _produce_to(kafka.bootstrap, tb, {0: 4})
    group = uniq("members")
    conf = {"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "latest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    one = Consumer({**conf, "client.id": "client-one", "group.instance.id": uniq("static")})
    two = Consumer({**conf, "client.id": "client-two"})
    everything = {(ta, 0), (ta, 1), (ta, 2), (tb, 0)}
    try:
        one.subscribe([ta, tb])
        two.subscribe([ta, tb])

        def held(c) -> set:
            return {(tp.topic, tp.partition) for tp in c.assignment()}

        def rest_members() -> dict:
            r = http.get(f"{base}/consumer-groups/{group}/consumers")
            return {m["consumer_id"]: m for m in r.json()["data"]} if r.status_code == 200 else {}

        def settled():
            one.poll(0.05)
            two.poll(0.05)
            a, b = held(one), held(two)
            if not (a and b and a | b == everything and not a & b):
                return False
            ids = {one.memberid(), two.memberid()}
            if set(rest_members()) != ids:
                return False
            return http.get(f"{base}/consumer-groups/{group}").json()["state"] == "STABLE"
        wait_for(settled, 40, interval=0, what="both consumers to hold their partitions in a stable group")
        owner = {tp: c for c in (one, two) for tp in held(c)}

        # committed: a0=2 (lag 3), a1=3 (lag 0), a2=0 (empty partition, lag 0), b0=2 (lag 2)
        committed = {(ta, 0): 2, (ta, 1): 3, (ta, 2): 0, (tb, 0): 2}
        for c in (one, two):
            mine = [TopicPartition(t, p, committed[(t, p)]) for t, p in sorted(held(c))]
            c.commit(offsets=mine, asynchronous=False)
        ends = {(ta, 0): 5, (ta, 1): 3, (ta, 2): 0, (tb, 0): 4}

        # -- consumers
        members = http.get(f"{base}/consumer-groups/{group}/consumers").json()
        assert [m["consumer_id"] for m in members["data"]] == sorted([one.memberid(), two.memberid()])
        for c, client_id in ((one, "client-one"), (two, "client-two")):
            mid = c.memberid()
            r = http.get(f"{base}/consumer-groups/{group}/consumers/{mid}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
            m = r.json()
            assert m == next(x for x in members["data"] if x["consumer_id"] == mid)
            assert m["kind"] == "KafkaConsumer" and (m["cluster_id"], m["consumer_group_id"]) == (cid, group)
            assert m["client_id"] == client_id
            assert m["metadata"]["self"].endswith(f"{base}/consumer-groups/{group}/consumers/{mid}")
            assert m["metadata"]["resource_name"] == f"crn:///kafka={cid}/consumer-group={group}/consumer={mid}"
            assert m["assignments"]["related"].endswith(f"{base}/consumer-groups/{group}/consumers/{mid}/assignments")
        assert http.get(f"{base}/consumer-groups/{group}/consumers/{one.memberid()}").json()["instance_id"] \
            .startswith("static-")
        assert http.get(f"{base}/consumer-groups/{group}/consumers/{two.memberid()}").json()["instance_id"] is None

        # -- assignments
        for c in (one, two):
            mid = c.memberid()
            path = f"{base}/consumer-groups/{group}/consumers/{mid}/assignments"
            body = http.get(path).json()
            assert body["kind"] == "KafkaConsumerAssignmentList" and body["metadata"]["self"].endswith(path)
            assert [(a["topic_name"], a["partition_id"]) for a in body["data"]] == sorted(held(c))
            for a in body["data"]:
                t, p = a["topic_name"], a["partition_id"]
                assert a["kind"] == "KafkaConsumerAssignment"
                assert (a["cluster_id"], a["consumer_group_id"], a["consumer_id"]) == (cid, group, mid)
                assert a["metadata"]["self"].endswith(f"{path}/{t}/partitions/{p}")
                assert a["metadata"]["resource_name"] == (
                    f"crn:///kafka={cid}/consumer-group={group}/consumer={mid}/assignment={t}/partition={p}")
                assert a["partition"]["related"].endswith(f"{base}/topics/{t}/partitions/{p}")
                assert a["lag"]["related"].endswith(f"{base}/consumer-groups/{group}/lags/{t}/partitions/{p}")
                assert http.get(f"{path}/{t}/partitions/{p}").json() == a
            elsewhere = sorted(everything - held(c))[0]
            assert_error(http.get(f"{path}/{elsewhere[0]}/partitions/{elsewhere[1]}"), 404, 404, "HTTP 404 Not Found")

        # -- lags: largest first, then by topic and partition
        lags = http.get(f"{base}/consumer-groups/{group}/lags").json()
        assert lags["kind"] == "KafkaConsumerLagList"
        assert lags["metadata"]["self"].endswith(f"{base}/consumer-groups/{group}/lags")
        assert [(x["topic_name"], x["partition_id"]) for x in lags["data"]] == [(ta, 0), (tb, 0), (ta, 1), (ta, 2)]
        for x in lags["data"]:
            tp = (x["topic_name"], x["partition_id"])
            c = owner[tp]
            assert x["kind"] == "KafkaConsumerLag" and (x["cluster_id"], x["consumer_group_id"]) == (cid, group)
            assert (x["current_offset"], x["log_end_offset"], x["lag"]) == (
                committed[tp], ends[tp], ends[tp] - committed[tp]), x
            assert (x["consumer_id"], x["client_id"]) == (
                c.memberid(), "client-one" if c is one else "client-two")
            assert (x["instance_id"] is None) == (c is two)
            assert x["metadata"]["self"].endswith(f"{base}/consumer-groups/{group}/lags/{tp[0]}/partitions/{tp[1]}")
            assert x["metadata"]["resource_name"] == (
                f"crn:///kafka={cid}/consumer-group={group}/lag={tp[0]}/partition={tp[1]}")
            assert http.get(f"{base}/consumer-groups/{group}/lags/{tp[0]}/partitions/{tp[1]}").json() == x
        summary = http.get(f"{base}/consumer-groups/{group}/lag-summary").json()
        assert (summary["total_lag"], summary["max_lag"], summary["max_lag_topic_name"]) == (5, 3, ta)

        # new records move the log end offset, not the committed offset
        _produce_to(kafka.bootstrap, ta, {2: 2})

        def a2():
            x = http.get(f"{base}/consumer-groups/{group}/lags/{ta}/partitions/2").json()
            return x if x["log_end_offset"] == 2 else None
        x = wait_for(a2, 20, interval=0.1, what="the new end offset of the lag")
        assert (x["current_offset"], x["lag"]) == (0, 2)

        # not found
        lag_path = f"{base}/consumer-groups/{group}/lags"
        mid = one.memberid()
        missing = uniq("no-group")
        none = "HTTP 404 Not Found"
        cases = [
            (f"{lag_path}/{ta}/partitions/9", 404, none),
            (f"{lag_path}/{uniq('t')}/partitions/0", 404, none),
            (f"{lag_path}/{ta}/partitions/x", 404, none),
            (f"{base}/consumer-groups/{group}/consumers/nobody", 404, none),
            (f"{base}/consumer-groups/{group}/consumers/nobody/assignments", 404, "Consumer nobody does not exist."),
            (f"{base}/consumer-groups/{group}/consumers/nobody/assignments/{ta}/partitions/0", 404,
             "Consumer nobody does not exist."),
            (f"{base}/consumer-groups/{group}/consumers/{mid}/assignments/{ta}/partitions/2147483648", 404, none),
            (f"{base}/consumer-groups/{missing}/consumers/{mid}", 404, f"Consumer Group {missing} does not exist."),
            (f"{base}/consumer-groups/{missing}/consumers/{mid}/assignments", 404,
             f"Consumer Group {missing} does not exist."),
            (f"{base}/consumer-groups/{missing}/lags", 404, f"Consumer Group {missing} could not be found."),
            (f"{base}/consumer-groups/{missing}/lags/{ta}/partitions/0", 404,
             f"Consumer Group {missing} could not be found."),
            (f"/v3/clusters/foo/consumer-groups/{group}/consumers/{mid}", 404, "Cluster foo could not be found."),
            (f"/v3/clusters/foo/consumer-groups/{group}/consumers/{mid}/assignments", 404,
             "Cluster foo could not be found."),
            (f"/v3/clusters/foo/consumer-groups/{group}/lags", 404, "Cluster foo could not be found."),
        ]
        for path, status, message in cases:
            try:
                assert_error(http.get(path), status, 404, message)
            except AssertionError as e:
                raise AssertionError(f"GET {path}: {e}") from None
        assert_error(http.get(lag_path, headers={"Accept": "text/html"}), 406, 406)
    finally:
        one.close()
        two.close()


def test_v3_lags_of_a_group_without_committed_offsets(kafka, http, groups_supported):
    cid, base = v3_base(http)
    topic = uniq("nolag")
    create_topic(kafka.bootstrap, topic)
    group = uniq("no-commits")
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    try:
        c.subscribe([topic])

        def joined():
            c.poll(0.1)
            return c.assignment()
        wait_for(joined, 20, interval=0, what="the consumer joins its group")
        mid = c.memberid()
        assignments = http.get(f"{base}/consumer-groups/{group}/consumers/{mid}/assignments").json()["data"]
        assert [(a["topic_name"], a["partition_id"]) for a in assignments] == [(topic, 0)]
        lags = f"{base}/consumer-groups/{group}/lags"
        for path in (lags, f"{lags}/{topic}/partitions/0"):
            assert_error(http.get(path), 404, 404, "Consumer group offsets could not be found.")
    finally:
        c.close()


# -- Kafka errors as kafka-rest's exception mapper answers them -------------------------------------------
def test_kafka_error_mapping_follows_kafka_exception_mapper():
    """rest-utils' KafkaExceptionMapper (v3 and Admin answers) and kafka-rest's v2 produce
    classification (per record) for the Java exceptions of these Kafka errors."""
    from confluent_kafka import KafkaError

    from josef.rest import errors
    mapper = {
        KafkaError.MSG_SIZE_TOO_LARGE: (413, 413),  # RecordTooLargeException
        KafkaError.THROTTLING_QUOTA_EXCEEDED: (429, 42901),  # ThrottlingQuotaExceededException
        KafkaError.UNKNOWN_TOPIC_OR_PART: (404, 40403),
        KafkaError.SECURITY_DISABLED: (400, 40002),
        KafkaError.TOPIC_DELETION_DISABLED: (400, 40002),
        KafkaError.TOPIC_ALREADY_EXISTS: (400, 40002),
        KafkaError.BROKER_NOT_AVAILABLE: (503, 50302),
        KafkaError.TOPIC_AUTHORIZATION_FAILED: (403, 40301),
        KafkaError.SASL_AUTHENTICATION_FAILED: (401, 40101),
        KafkaError.REQUEST_TIMED_OUT: (500, 50003),
        KafkaError.RECORD_LIST_TOO_LARGE: (500, 50002),  # RecordBatchTooLargeException: not in the table
    }
    for code, want in mapper.items():
        err = KafkaError(code)
        assert errors.kafka_error_code(err) == want, (err.name(), want)
        rest = errors.from_kafka_error(err)
        assert (rest.status, rest.error_code, rest.message) == (*want, err.str())
    producer = {KafkaError.MSG_SIZE_TOO_LARGE: 50002, KafkaError.THROTTLING_QUOTA_EXCEEDED: 50003,
                KafkaError.UNKNOWN_TOPIC_OR_PART: 50003, KafkaError._MSG_TIMED_OUT: 50003,
                KafkaError.TOPIC_AUTHORIZATION_FAILED: 40301, KafkaError.INVALID_CONFIG: 50002}
    for code, want in producer.items():
        assert errors.producer_error_code(KafkaError(code)) == want, KafkaError(code).name()


def test_v3_record_too_large_is_413_and_v2_50002(kafka, http):
    """A record over the producer's message.max.bytes: the Java producer's RecordTooLargeException,
    which v3 answers per record with 413 and v2's produce classifies as 50002."""
    cid, base = v3_base(http)
    topic = uniq("too-large")
    create_topic(kafka.bootstrap, topic)
    big = "x" * 1_100_000
    r = http.post(f"{base}/topics/{topic}/records", json={"value": {"type": "STRING", "data": big}})
    assert r.status_code == 200, r.text
    assert r.json()["error_code"] == 413, r.text
    r = batch(http, base, topic, [{"id": "big", "value": {"type": "STRING", "data": big}},
                                  {"id": "small", "value": {"type": "STRING", "data": "fits"}}])
    assert r.status_code == 207, r.text
    assert [s["id"] for s in r.json()["successes"]] == ["small"]
    assert [(f["id"], f["error_code"]) for f in r.json()["failures"]] == [("big", 413)]
    r = http.post(f"/topics/{topic}", json={"records": [{"value": b64(big.encode())}, {"value": b64(b"ok")}]},
                  headers={"Content-Type": "application/vnd.kafka.binary.v2+json",
                           "Accept": "application/vnd.kafka.v2+json"})
    assert r.status_code == 200, r.text
    offsets = r.json()["offsets"]
    assert offsets[0]["error_code"] == 50002 and offsets[0]["partition"] is None and offsets[0]["error"]
    assert offsets[1]["error_code"] is None
    assert sorted(m.value() for m in consume_all(kafka.bootstrap, topic, 1, 2)) == [b"fits", b"ok"]
    assert end_offsets(kafka.bootstrap, topic, 1) == [2]


# -- settings refused at startup ----------------------------------------------------------------------------
def test_rest_proxy_refuses_bad_settings_with_one_line(kafka, tmp_path):
    import os
    import subprocess

    from tests.conftest import BIN, free_port
    cases = [
        ({"KAFKA_REST_API_V3_PRODUCE_BATCH_MAXIMUM_ENTRIES": "51"}, [],
         "api.v3.produce.batch.maximum.entries: must be between 1 and 50, got 51"),
        ({}, ["--override", "api.v3.produce.batch.maximum.entries=0"],
         "api.v3.produce.batch.maximum.entries: must be between 1 and 50, got 0"),
        ({}, ["--override", "api.v3.produce.batch.maximum.entries=ten"],
         "api.v3.produce.batch.maximum.entries: expected an integer, got 'ten'"),
        ({"KAFKA_REST_CLIENT_TIMEOUT_MS": "0"}, [], "client.timeout.ms: must be at least 1, got 0"),
        ({}, ["--override", "producer.no.such.property=1"],
         'invalid Kafka client configuration: No such configuration property: "no.such.property"'),
    ]
    for env, args, message in cases:
        port = free_port()
        proc = subprocess.run([str(BIN / "josef"), "rest-proxy", "--bootstrap-server", kafka.bootstrap,
                               "--listeners", f"http://127.0.0.1:{port}", *args],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("josef rest-proxy:")]
        assert proc.returncode == 2, (env, args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert lines == [f"josef rest-proxy: {message}"], proc.stderr
