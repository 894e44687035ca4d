"""The FastAPI application: Confluent's REST Proxy v2 resources.

Handlers are `async def` but never call librdkafka themselves: admin and metadata calls run
on the backend's thread pool, consumer operations on the instance's own worker thread, and
produce enqueues on a worker thread and then awaits delivery reports. So a slow consumer
poll or a broker round trip never blocks the event loop (which, inside `josef serve`, is
also the broker's).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from josef.rest import errors, jsoncodec, media
from josef.rest.consumers import (ConsumerManager, check_read_format, parse_commit, parse_create_request,
                                  parse_partitions, parse_seek, parse_subscription)
from josef.rest.errors import RestError
from josef.rest.kafka import KafkaBackend, ProduceBatch
from josef.rest.produce import parse_produce_body, produce_response
from josef.rest.settings import Listener, RestSettings
from josef.rest.util import parse_json_body, path_int, query_long

log = logging.getLogger("josef.rest")


@dataclass
class RestContext:
    settings: RestSettings
    backend: KafkaBackend
    consumers: ConsumerManager
    # the listeners actually bound (port 0 resolved), for base_uri
    bound: list[Listener] = field(default_factory=list)


def reply(body, media_type: str, status: int = 200) -> Response:
    return Response(content=jsoncodec.dumps(body), status_code=status, media_type=media_type)


def no_content() -> Response:
    return Response(status_code=204)


def negotiated(request: Request, offers) -> str:
    """The response type for `offers`, remembered so that an error raised later by the same
    request is answered in it too (Jersey writes a mapped exception in the selected method's
    negotiated type: a records read without Accept fails as the binary type)."""
    kind = media.negotiate(request.headers.get("accept"), offers)
    request.state.v2_media = kind
    return kind


def _error_media(request: Request, status: int = 0) -> str:
    if request.url.path.startswith("/v3"):
        return media.JSON
    kind = getattr(request.state, "v2_media", None)
    if kind is not None:
        return kind
    if status == 415:
        return media.unsupported_media_error_type(request.headers.get("accept"))
    try:
        return media.negotiate(request.headers.get("accept"), media.PLAIN_OFFERS)
    except RestError:
        return media.V2


def error_response(request: Request, exc: RestError) -> Response:
    return reply(exc.body(), _error_media(request, exc.status), exc.status)


def base_uri(request: Request, ctx: RestContext, *segments: str) -> str:
    """kafka-rest's UrlFactoryImpl: the request's scheme; the authority of a matching
    `advertised.listeners` entry, else `host.name` (with the listener's port when the request
    named one), else the request's Host; then the request's base path."""
    from urllib.parse import quote, urlsplit
    settings = ctx.settings
    scheme = request.url.scheme
    authority = None
    for item in settings.advertised_listeners:
        parts = urlsplit(item if "://" in item else f"http://{item}")
        if parts.scheme == scheme and parts.netloc:
            authority = parts.netloc
            break
    if authority is None and settings.host_name:
        port = None
        if request.url.port is not None:
            port = settings.port
            for listener in ctx.bound or settings.listeners:
                if listener.scheme == scheme:
                    port = listener.port
        authority = settings.host_name + (f":{port}" if port is not None else "")
    if authority is None:
        authority = request.headers.get("host") or request.url.netloc
    base = request.scope.get("root_path", "").strip("/")
    # kafka-rest's UrlBuilder appends segments unescaped; keep every character a path segment
    # may hold as is (RFC 3986 pchar) and escape only what would make the URI invalid
    path = "/".join(quote(s.strip("/"), safe="!$&'()*+,;=:@") for s in segments if s.strip("/"))
    return f"{scheme}://{authority}" + (f"/{base}" if base else "") + f"/{path}"


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.http_error(413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise errors.http_error(413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: RestSettings | None = None, backend: KafkaBackend | None = None,
               consumers: ConsumerManager | None = None) -> FastAPI:
    settings = settings or RestSettings()
    ctx = RestContext(settings, backend or KafkaBackend(settings), consumers or ConsumerManager(settings))
    app = FastAPI(title="josef REST Proxy",
                  description="Confluent-compatible Kafka REST Proxy (API v2) served by josef.",
                  version="2", redirect_slashes=False)
    app.state.rest = ctx
    limit = settings.request_max_bytes

    # -- errors --------------------------------------------------------------------------------
    @app.exception_handler(RestError)
    async def _rest_error(request: Request, exc: RestError):
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(request, errors.http_error(exc.status_code))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(request, errors.http_error(404))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(request, errors.internal_error())

    def plain(request: Request) -> str:
        return negotiated(request, media.PLAIN_OFFERS)

    def consumer_media(request: Request) -> str:
        return negotiated(request, media.CONSUMER_OFFERS)

    # -- root, brokers, topics, partitions -----------------------------------------------------
    @app.get("/", summary="Liveness: an empty object", tags=["v2"])
    async def root_get(request: Request):
        return reply({}, negotiated(request, [(media.V2, 0.9), (media.JSON, 0.5)]))

    @app.post("/", summary="Liveness with a posted entity: an empty object", tags=["v2"])
    async def root_post(request: Request):
        media.require_content_type(request.headers.get("content-type"), media.CONSUMES_ROOT)
        kind = negotiated(request, [(media.V2, 0.9), (media.JSON, 0.5)])
        body = parse_json_body(await read_body(request, limit))
        # Jackson coerces a number or boolean to a String value; only objects and arrays fail
        if body is not None and (not isinstance(body, dict)
                                 or any(isinstance(v, (dict, list)) for v in body.values())):
            raise errors.json_error("Cannot deserialize value of type `Map<String,String>`")
        return reply({}, kind)

    @app.get("/brokers", summary="Broker ids of the cluster", tags=["v2"])
    async def brokers(request: Request):
        kind = negotiated(request, [(media.V2, 0.9), (media.JSON, 0.5)])
        return reply({"brokers": await ctx.backend.run(ctx.backend.broker_ids)}, kind)

    @app.get("/topics", summary="Topic names (internal topics hidden)", tags=["v2"])
    async def topics(request: Request):
        kind = plain(request)
        return reply(await ctx.backend.run(ctx.backend.topic_names), kind)

    async def _topic(topic: str):
        info = await ctx.backend.run(ctx.backend.describe_topic, topic)
        if info is None:
            # kafka-rest looks the topic up with Admin.describeTopics, whose
            # UnknownTopicOrPartitionException fails the request before its "Topic not found."
            # (40401) check: 404 with rest-utils' 40403 (MetadataApiTest asserts it)
            raise errors.unknown_topic_partition()
        return info

    @app.get("/topics/{topic}", summary="A topic: configs and partitions", tags=["v2"])
    async def topic_get(request: Request, topic: str):
        kind = plain(request)
        info = await _topic(topic)
        configs = await ctx.backend.run(ctx.backend.topic_configs, topic)
        return reply({"name": info.name, "configs": configs,
                      "partitions": [p.v2() for p in info.partitions]}, kind)

    @app.get("/topics/{topic}/partitions", summary="Partitions of a topic", tags=["v2"])
    async def partitions(request: Request, topic: str):
        kind = plain(request)
        info = await _topic(topic)
        return reply([p.v2() for p in info.partitions], kind)

    @app.get("/topics/{topic}/partitions/{partition}", summary="One partition", tags=["v2"])
    async def partition_get(request: Request, topic: str, partition: str):
        p = path_int(partition)
        kind = plain(request)
        info = await _topic(topic)
        part = info.partition(p)
        if part is None:
            raise errors.partition_not_found()
        return reply(part.v2(), kind)

    @app.get("/topics/{topic}/partitions/{partition}/offsets",
             summary="Beginning and end offsets of a partition", tags=["v2"])
    async def partition_offsets(request: Request, topic: str, partition: str):
        p = path_int(partition)
        kind = plain(request)
        info = await _topic(topic)
        if info.partition(p) is None:
            raise errors.partition_not_found()
        begin, end = await ctx.backend.run(ctx.backend.offsets, topic, p)
        return reply({"beginning_offset": begin, "end_offset": end}, kind)

    # -- produce -------------------------------------------------------------------------------
    async def _produce(request: Request, topic: str, partition: int | None) -> Response:
        # the seed's rest_proxy.yaml posts to a partition as application/vnd.kafka.v2+json;
        # kafka-rest answers 415 there, josef takes it as the default (binary) format.
        # No Content-Type at all is binary in kafka-rest too: Jersey lets every produce method
        # consume it, picks binary (the only one at qs 1) and reads the body as JSON.
        allowed = media.CONSUMES_PRODUCE | {media.V2} if partition is not None else media.CONSUMES_PRODUCE
        ct = media.require_content_type(request.headers.get("content-type"), allowed)
        fmt = media.EMBEDDED.get(ct, "binary")
        kind = plain(request)
        raw = await read_body(request, limit)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        backend = ctx.backend

        def work() -> None:
            records, count = parse_produce_body(raw, fmt)
            if partition is not None:
                records = [(p if p is not None else partition, k, v) for p, k, v in records]
            backend.check_partitions(topic, {p for p, _, _ in records if p is not None})
            backend.enqueue(topic, records, ProduceBatch(count, loop, future))

        await backend.run(work)
        results = await future
        status, body = produce_response(results)
        return reply(body, kind, status)

    @app.post("/topics/{topic}", summary="Produce records to a topic", tags=["v2"])
    async def produce_topic(request: Request, topic: str):
        return await _produce(request, topic, None)

    @app.post("/topics/{topic}/partitions/{partition}", summary="Produce records to a partition", tags=["v2"])
    async def produce_partition(request: Request, topic: str, partition: str):
        return await _produce(request, topic, path_int(partition))

    async def produce_at_front_door(request: Request, topic: str, partition: str | None) -> Response:
        """The two routes above for josef.rest.front_door, with the app's error answers."""
        try:
            return await _produce(request, topic, None if partition is None else path_int(partition))
        except RestError as exc:
            return error_response(request, exc)
        except Exception as exc:
            return await _unexpected(request, exc)

    app.state.produce_at_front_door = produce_at_front_door

    # -- consumers -----------------------------------------------------------------------------
    prefix = "/consumers/{group}/instances/{instance}"
    manager = ctx.consumers

    async def _body(request: Request) -> bytes:
        media.require_content_type(request.headers.get("content-type"), media.CONSUMES_V2)
        return await read_body(request, limit)

    @app.post("/consumers/{group}", summary="Create a consumer instance in a group", tags=["v2 consumers"])
    async def consumer_create(request: Request, group: str):
        raw = await _body(request)
        kind = consumer_media(request)
        cfg = parse_create_request(raw)
        name = await manager.create(group, cfg)
        return reply({"instance_id": name,
                      "base_uri": base_uri(request, ctx, "consumers", group, "instances", name)}, kind)

    @app.delete(prefix, summary="Delete a consumer instance", tags=["v2 consumers"])
    async def consumer_delete(request: Request, group: str, instance: str):
        consumer_media(request)
        await manager.delete(group, instance)
        return no_content()

    @app.post(prefix + "/subscription", summary="Subscribe to topics or a topic pattern", tags=["v2 consumers"])
    async def subscribe(request: Request, group: str, instance: str):
        raw = await _body(request)
        consumer_media(request)
        topics, pattern = parse_subscription(raw)
        await manager.call(group, instance, "subscribe", topics, pattern)
        return no_content()

    @app.get(prefix + "/subscription", summary="Subscribed topics", tags=["v2 consumers"])
    async def subscription(request: Request, group: str, instance: str):
        kind = consumer_media(request)
        return reply({"topics": await manager.call(group, instance, "subscription")}, kind)

    @app.delete(prefix + "/subscription", summary="Unsubscribe", tags=["v2 consumers"])
    async def unsubscribe(request: Request, group: str, instance: str):
        consumer_media(request)
        await manager.call(group, instance, "unsubscribe")
        return no_content()

    @app.post(prefix + "/assignments", summary="Assign partitions manually", tags=["v2 consumers"])
    async def assign(request: Request, group: str, instance: str):
        raw = await _body(request)
        consumer_media(request)
        parts = parse_partitions(raw)
        await manager.call(group, instance, "assign", parts)
        return no_content()

    @app.get(prefix + "/assignments", summary="Assigned partitions", tags=["v2 consumers"])
    async def assignments(request: Request, group: str, instance: str):
        kind = consumer_media(request)
        return reply({"partitions": await manager.call(group, instance, "assignment")}, kind)

    @app.post(prefix + "/positions", summary="Seek to offsets or timestamps", tags=["v2 consumers"])
    async def seek(request: Request, group: str, instance: str):
        raw = await _body(request)
        consumer_media(request)
        offsets, timestamps = parse_seek(raw)
        await manager.call(group, instance, "seek", offsets, timestamps)
        return no_content()

    @app.post(prefix + "/beginning", include_in_schema=False)  # the seed's rest_proxy.yaml form
    @app.post(prefix + "/positions/beginning", summary="Seek to the beginning", tags=["v2 consumers"])
    async def seek_beginning(request: Request, group: str, instance: str):
        return await seek_to(request, group, instance, beginning=True)

    @app.post(prefix + "/end", include_in_schema=False)  # the seed's rest_proxy.yaml form
    @app.post(prefix + "/positions/end", summary="Seek to the end", tags=["v2 consumers"])
    async def seek_end(request: Request, group: str, instance: str):
        return await seek_to(request, group, instance, beginning=False)

    async def seek_to(request: Request, group: str, instance: str, *, beginning: bool):
        raw = await _body(request)
        consumer_media(request)
        await manager.call(group, instance, "seek_to", parse_partitions(raw), beginning)
        return no_content()

    @app.get(prefix + "/records", summary="Fetch records (Accept picks binary or json)", tags=["v2 consumers"])
    async def records(request: Request, group: str, instance: str):
        kind = negotiated(request, media.RECORDS_OFFERS)
        timeout = query_long(request.query_params.get("timeout"), -1)
        max_bytes = query_long(request.query_params.get("max_bytes"), -1)
        inst = manager.get(group, instance)
        fmt = inst.format if kind == media.JSON else (
            "binary" if kind in (media.BINARY, media.V2) else media.EMBEDDED[kind])
        check_read_format(inst, fmt)
        got = await manager.call(group, instance, "read", timeout, max_bytes, fmt)
        return reply(got, kind)

    @app.post(prefix + "/offsets", summary="Commit offsets (all consumed, or the given ones)",
              tags=["v2 consumers"])
    async def commit(request: Request, group: str, instance: str):
        raw = await _body(request)
        kind = consumer_media(request)
        offsets = parse_commit(raw)
        return reply(await manager.call(group, instance, "commit", offsets), kind)

    @app.get(prefix + "/offsets", summary="Last committed offsets (partitions in the body)",
             tags=["v2 consumers"])
    async def committed(request: Request, group: str, instance: str):
        raw = await _body(request)
        kind = consumer_media(request)
        parts = parse_partitions(raw, required=False) if raw.strip() else None
        if parts is None:
            raise errors.partition_not_found()
        return reply(await manager.call(group, instance, "committed", parts), kind)

    from josef.rest.v3 import register_v3
    register_v3(app, ctx)

    return app
