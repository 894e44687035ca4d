"""v3 produce: `POST /v3/clusters/{cid}/topics/{t}/records` (one record, or a stream of them on
one chunked request, a delivery report each, errors per record inside the HTTP 200) and
`.../records:batch` (entries with ids, one 207 answer of successes and failures).

Producing never looks the cluster up; an unknown topic or partition is answered per record as
the Java producer's "not present in metadata" (40401).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import json
import logging
import re
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import Response

from josef.rest import errors, jsoncodec, media
from josef.rest.errors import RestError
from josef.rest.kafka import ProduceBatch
from josef.rest.util import expect_int, expect_list, expect_object, expect_str, parse_json_body

TAGS = ["v3"]
log = logging.getLogger("josef.rest")

# -- produce: the fields of kafka-rest's request entities (any other field is refused) ----------
_SCHEMA_FORMATS = ("AVRO", "JSONSCHEMA", "PROTOBUF")
_RECORD_FIELDS = frozenset({"partition_id", "headers", "key", "value", "timestamp"})
_BATCH_ENTRY_FIELDS = _RECORD_FIELDS | {"id"}
_DATA_FIELDS = frozenset({"type", "subject", "subject_name_strategy", "schema_id", "schema_version", "schema",
                          "data"})
_SCHEMA_KEYS = frozenset({"schema", "schema_id", "schema_version", "subject", "subject_name_strategy"})
_HEADER_FIELDS = frozenset({"name", "value"})
_BATCH_ID = re.compile(r"[0-9A-Za-z_-]{1,80}")  # ProduceBatchRequestEntry: 1 to 80 of these


class _Unrecognized(RestError):
    """A field the entity does not have. Inside a produce stream this answers the one record
    (400, Jackson's text); a `records:batch` request is refused whole (422, rest-utils' text)."""

    def __init__(self, entity: str, name: str):
        super().__init__(400, 400, f'Unrecognized field "{name}" (class {entity}), not marked as ignorable')
        self.field = name


def _check_fields(obj: dict, known: frozenset, entity: str) -> None:
    for key in obj:
        if key not in known:
            raise _Unrecognized(entity, key)



@functools.lru_cache(maxsize=1024)  # asked for every produced record
def _legal_topic_name(name: str) -> bool:
    return bool(name) and len(name) <= 249 and name not in (".", "..") and all(
        c.isascii() and (c.isalnum() or c in "._-") for c in name)


def _batch_max_entries(settings) -> int:
    """kafka-rest's `api.v3.produce.batch.maximum.entries` (default 10, at least 1, at most 50),
    checked with the other settings when RestSettings is built."""
    return settings.produce_batch_maximum_entries


@functools.lru_cache(maxsize=256)
def _iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    text = _iso_seconds(ms // 1000)  # the records of a stream mostly share their second
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def _parse_instant(value, where: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                raise ValueError
            return int(dt.timestamp() * 1000)
        except ValueError:
            raise RestError(400, 400, f"Bad Request: {where}: not an ISO-8601 instant") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = value * 1000
        if not -2 ** 63 <= ms < 2 ** 63:  # also NaN and the infinities
            raise RestError(400, 400, f"Bad Request: {where}: instant out of range")
        return int(ms)
    raise RestError(400, 400, f"Bad Request: {where}: not an instant")


class _RecordStream(Response):
    """A chunked JSON answer written while the request body is still being read.

    Starlette's StreamingResponse listens for a client disconnect with receive() at the
    same time, which would steal the request body the producer loop is reading."""

    media_type = media.JSON

    def __init__(self, chunks):
        super().__init__(status_code=200, media_type=media.JSON)
        self.chunks = chunks
        self.raw_headers = [h for h in self.raw_headers if h[0] != b"content-length"]

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def register_v3_produce(app: FastAPI, ctx, h) -> None:
    """The produce routes; `h` holds the v3 helpers josef.rest.v3.register_v3 shares."""
    backend = ctx.backend
    accept, body, reply = h.accept, h.body, h.reply

    # -- produce records -----------------------------------------------------------------------------
    def data_shape(data, where: str):
        """A ProduceRequestData as kafka-rest reads it from the request: (type or "", object), or
        None. Errors here are the request's own (400), as Jackson's when it reads the entity."""
        if data is None:
            return None
        data = expect_object(data, "ProduceRequestData")
        _check_fields(data, _DATA_FIELDS, "ProduceRequestData")
        fmt = (expect_str(data.get("type"), f"{where}.type") or "").upper()
        if fmt and fmt not in ("BINARY", "JSON", "STRING") + _SCHEMA_FORMATS:
            raise errors.RestError(400, 400, f"Bad Request: {where}.type: unknown format {fmt}")
        if fmt in _SCHEMA_FORMATS and (data.get("schema") is None or data.get("schema_id") is not None
                                       or data.get("schema_version") is not None):
            # a serializer type wants its raw schema (ProduceRequestData's own checks)
            raise errors.RestError(400, 400, "Bad Request: Schema Registry must be configured when using schemas.")
        return fmt, data

    def serialize(shape, where: str):
        """(type name or None, bytes or None) for a data_shape(); errors here are the record's."""
        if shape is None:
            return None, None
        fmt, data = shape
        schema_given = (not _SCHEMA_KEYS.isdisjoint(data)  # usually: the generator is the slow part
                        and any(data.get(k) is not None for k in _SCHEMA_KEYS))
        if fmt in _SCHEMA_FORMATS or (not fmt and schema_given):
            # kafka-rest without a Schema Registry (SchemaManagerThrowing), answered per record
            raise errors.in_stream_constraint(errors.schema_registry_required())
        fmt = fmt or "BINARY"
        value = data.get("data")
        if value is None:
            return fmt, None
        if fmt == "BINARY":
            if not isinstance(value, str):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a base64 string.")
            try:
                return fmt, base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a valid base64 string.") from None
        if fmt == "STRING":
            if not isinstance(value, str):
                raise errors.bad_request(f"data={json.dumps(value)[:200]} is not a string.")
            return fmt, value.encode("utf-8")
        return fmt, jsoncodec.dumps(value)

    def parse_record(obj, fields: frozenset = _RECORD_FIELDS, entity: str = "ProduceRequest"):
        """A v3 ProduceRequest (or records:batch entry) as (record, key type, value type, error).

        What kafka-rest finds reading the request raises (a field of the wrong type or unknown,
        bad header base64, ...); what it finds producing the record (a negative partition, data
        its type cannot take, a schema) is returned as `error`, an answer for this record alone."""
        obj = expect_object(obj, entity)
        _check_fields(obj, fields, entity)
        partition = obj.get("partition_id")
        if partition is not None:
            partition = expect_int(partition, "partition_id")
        headers = []
        for i, h in enumerate(expect_list(obj.get("headers"), "headers")):
            h = expect_object(h, "ProduceRequestHeader")
            _check_fields(h, _HEADER_FIELDS, "ProduceRequestHeader")
            hname = expect_str(h.get("name"), f"headers[{i}].name")
            hvalue = h.get("value")
            if hvalue is not None:
                if not isinstance(hvalue, str):
                    raise errors.bad_request(f"headers[{i}].value is not a base64 string.")
                try:
                    hvalue = base64.b64decode(hvalue.encode("ascii"), validate=True)
                except (binascii.Error, ValueError, UnicodeEncodeError):
                    raise errors.bad_request(f"headers[{i}].value is not a valid base64 string.") from None
            headers.append((hname or "", hvalue))
        key_shape = data_shape(obj.get("key"), "key")
        value_shape = data_shape(obj.get("value"), "value")
        ts = obj.get("timestamp")
        ts = _parse_instant(ts, "timestamp") if ts is not None else None
        try:
            if partition is not None and partition < 0:
                raise errors.partition_not_found()
            key_fmt, key = serialize(key_shape, "key")
            value_fmt, value = serialize(value_shape, "value")
        except RestError as e:
            return None, None, None, e
        return (partition, key, value, headers, ts), key_fmt, value_fmt, None

    def placement_error(name: str, partition: int | None, count: int | None) -> RestError | None:
        """Where kafka-rest's Java producer gives up on a record's topic or partition (after
        max.block.ms; josef does not wait): a TimeoutException "not present in metadata", which
        it answers 40401; an illegal topic name is an InvalidTopicException, 40002."""
        if not _legal_topic_name(name):
            return RestError(400, errors.KAFKA_BAD_REQUEST, f"Invalid topics: [{name}]")
        if count is None:
            return RestError(404, errors.TOPIC_NOT_FOUND, f"Topic {name} not present in metadata.")
        if partition is not None and partition >= count:
            return RestError(404, errors.TOPIC_NOT_FOUND, f"Partition {partition} of topic {name} with partition "
                                                          f"count {count} is not present in metadata.")
        return None

    async def topic_partitions(name: str, wanted: int = -1) -> int | None:
        """The topic's partition count for producing (None: no such topic), asked again when a
        record names a partition beyond a cached count (partitions may have been added)."""
        if not _legal_topic_name(name):
            return None
        count = await backend.run(backend.partition_count, name)
        if count is not None and wanted >= count:
            count = await backend.run(backend._refresh_partition_count, name)
        return count

    @app.post("/v3/clusters/{cid}/topics/{name}/records", tags=TAGS,
              summary="Produce records: one JSON record, or a stream of them on one (chunked) request")
    async def produce(request: Request, cid: str, name: str):
        media.require_content_type(request.headers.get("content-type"), {media.JSON})
        accept(request)
        # as kafka-rest: the cluster id is not looked up (it is echoed in the answers), and an
        # unknown topic or partition is answered for each record inside the 200
        count = await topic_partitions(name)
        return _RecordStream(_produce_stream(request, cid, name, count))

    async def _produce_stream(request: Request, cid: str, name: str, count: int | None):
        """Parse JSON records as they arrive, produce each, and answer each in order as its
        delivery report comes back (errors of one record do not end the stream).

        The records of one received chunk go to the producer in one executor call, and the
        answers that are ready together leave in one write: a stream of many records costs a
        thread hop per chunk, not per record, while a client that waits for each answer
        before sending the next record still gets it at once."""
        loop = asyncio.get_running_loop()
        pending: collections.deque = collections.deque()  # answers in record order; None ends
        arrived = asyncio.Event()
        limit = ctx.settings.request_max_bytes

        def push(item) -> None:
            pending.append(item)
            arrived.set()

        async def read_and_produce():
            stream = jsoncodec.JsonStream()
            seen, total = 0, 0

            async def produce(objs: list) -> None:
                nonlocal seen
                seen += len(objs)
                for item in await produce_many(objs):
                    push(item)

            try:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > limit:
                        push(errors.http_error(413).body())
                        return
                    objs = stream.feed(chunk)
                    if objs:
                        await produce(objs)
                objs, err = stream.finish()
                if objs:
                    await produce(objs)
                if err is not None:
                    push(RestError(400, 400, f"Bad Request: {err}").body())
                elif seen == 0:
                    push(RestError(422, errors.INVALID_PAYLOAD,
                                   "Payload error. Request body is empty. Data is required.").body())
            except UnicodeDecodeError:
                push(errors.json_error("Invalid UTF-8 in request body").body())
            except RecursionError:
                push(errors.json_error("Request body nested too deeply").body())
            except Exception:
                log.exception("v3 produce stream failed")
                push(errors.internal_error().body())
            finally:
                push(None)

        async def produce_many(objs: list) -> list:
            """Per record, in order: an error body now, or (future of the chunk's deliveries,
            index in them, formats, key, value). The valid records of a chunk are enqueued in
            one executor call and resolve one future: one loop wake-up per chunk, not per
            record."""
            nonlocal count
            parsed = []
            for obj in objs:
                try:
                    rec, kf, vf, err = parse_record(obj)
                except RestError as e:
                    rec, kf, vf, err = None, None, None, e
                parsed.append((rec, kf, vf, err))
            wanted = max((p[0][0] for p in parsed if p[0] is not None and p[0][0] is not None), default=-1)
            if count is not None and wanted >= count:
                count = await topic_partitions(name, wanted)
            items, records = [], []
            future = loop.create_future()
            for rec, kf, vf, err in parsed:
                err = err or placement_error(name, rec[0], count)
                if err is not None:
                    items.append(err.body())
                    continue
                items.append((future, len(records), kf, vf, rec[1], rec[2]))
                records.append(rec)
            if records:
                await backend.run(backend.enqueue, name, records, ProduceBatch(len(records), loop, future))
            return items

        def ready(item) -> bool:
            return isinstance(item, dict) or item[0].done()

        def answer(item) -> bytes:
            if not isinstance(item, dict):
                future, index, kf, vf, key, value = item
                item = render(cid, name, future.result()[index], kf, vf, key, value)
            return jsoncodec.dumps(item)

        reader = asyncio.create_task(read_and_produce())
        try:
            first = True
            while True:
                while not pending:
                    arrived.clear()
                    await arrived.wait()
                head = pending[0]
                if head is None:
                    break
                if not ready(head):
                    await asyncio.wait([head[0]])
                out = []
                while pending and pending[0] is not None and ready(pending[0]):
                    out.append(answer(pending.popleft()))
                yield (b"" if first else b"\n") + b"\n".join(out)
                first = False
        finally:
            if not reader.done():
                reader.cancel()

    def render(cid: str, name: str, r: tuple, kf, vf, key, value) -> dict:
        if r[0] != "ok":
            code = errors.kafka_error_code(r[1])[1] if r[1] is not None else errors.KAFKA_RETRIABLE_ERROR
            return {"error_code": code, "message": r[2]}
        entry = {"error_code": 200, "cluster_id": cid, "topic_name": name, "partition_id": r[1],
                 "offset": r[2], "timestamp": _iso(r[3])}
        if kf is not None:
            entry["key"] = {"type": kf, "size": len(key) if key is not None else 0}
        if vf is not None:
            entry["value"] = {"type": vf, "size": len(value) if value is not None else 0}
        return entry

    # -- produce a batch of records (records:batch) -------------------------------------------------
    max_entries = _batch_max_entries(ctx.settings)

    def parse_batch(req) -> list[tuple]:
        """The entries of a ProduceBatchRequest as (id, record, key type, value type, error), or
        the request's refusal: a body that does not read as the entity (400, or 422 for an
        unknown field), then kafka-rest's batch checks (422 with 42208)."""
        if req is None:
            raise errors.produce_batch_error("Request body is empty. Data is required.")
        req = expect_object(req, "ProduceBatchRequest")
        out = []
        try:
            _check_fields(req, frozenset({"entries"}), "ProduceBatchRequest")
            for entry in expect_list(req.get("entries"), "entries"):
                rec, kf, vf, err = parse_record(entry, _BATCH_ENTRY_FIELDS, "ProduceBatchRequestEntry")
                if "id" not in entry:  # the entry's builder refuses a null id (Jackson reports it)
                    raise errors.json_error("Cannot construct instance of `Builder`, problem: Null id")
                entry_id = entry["id"]
                if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
                    raise errors.produce_batch_error("Batch entry identifier is not a valid string.")
                out.append((entry_id, rec, kf, vf, err))
        except _Unrecognized as e:
            raise errors.unrecognized_field(e.field) from None
        if len({e[0] for e in out}) != len(out):
            raise errors.produce_batch_error("Batch entry IDs are not distinct.")
        if not out:
            raise errors.produce_batch_error("Empty batch.")
        if len(out) > max_entries:
            raise errors.produce_batch_error("Too many entries in batch.")
        return out

    @app.post("/v3/clusters/{cid}/topics/{name}/records:batch", tags=TAGS, status_code=207,
              summary="Produce a batch of records, each with an id (at most api.v3.produce.batch.maximum.entries, "
                      "10 by default): 207 Multi-Status with the successes and failures by id")
    async def produce_batch(request: Request, cid: str, name: str):
        raw = await body(request)
        accept(request)
        entries = parse_batch(parse_json_body(raw))
        wanted = max((e[1][0] for e in entries if e[1] is not None and e[1][0] is not None), default=-1)
        problem = None
        try:
            count = await topic_partitions(name, wanted)
        except RestError as e:  # the producer's metadata failed: every record fails with it
            count, problem = None, e
        failed: dict[int, RestError] = {}
        valid: list[int] = []
        for i, (_, rec, _, _, err) in enumerate(entries):
            err = err or problem or placement_error(name, rec[0], count)
            if err is not None:
                failed[i] = err
            else:
                valid.append(i)
        results = {}
        if valid:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            report = ProduceBatch(len(valid), loop, future)
            await backend.run(backend.enqueue, name, [entries[i][1] for i in valid], report)
            results = dict(zip(valid, await future))
        successes, failures = [], []
        for i, (entry_id, rec, kf, vf, _) in enumerate(entries):
            if i in failed:
                failures.append({"id": entry_id, **failed[i].body()})
                continue
            answer = render(cid, name, results[i], kf, vf, rec[1], rec[2])
            code = answer.pop("error_code")
            if code == 200:
                successes.append({"id": entry_id, **answer})
            else:
                failures.append({"id": entry_id, "error_code": code, "message": answer["message"]})
        return reply({"successes": successes, "failures": failures}, 207)
