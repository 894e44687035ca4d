"""The replica fetcher's asyncio connection (client/async_wire.py): against a real broker, its Fetch
answers are the ones kio reads through the blocking client; against small fake servers on loopback,
frames split anywhere are reassembled and every broken peer ends in WireError, never a hang."""
from __future__ import annotations

import asyncio
import struct
import time

import pytest

from josef.client.async_wire import AsyncKafkaConnection
from josef.client.wire import KafkaConnection, WireError
from josef.protocol.entities import to_entity
from josef.protocol.fetch import FetchPartitionResponse, encode_fetch_response
from josef.protocol.header import response_header
from josef.protocol.kio_codec import request_class
from tests.integration.test_clients import create_topic, produce, topic_name


def fetch_request(topics, max_wait: int = 0, replica_id: int = -1):
    """A Fetch v12 request entity; topics as [(name, [partition, ...])], all from offset 0."""
    return to_entity(request_class(1, 12), {
        "cluster_id": None, "replica_id": replica_id, "max_wait": max_wait, "min_bytes": 1,
        "max_bytes": 1 << 24, "isolation_level": 0, "session_id": 0, "session_epoch": -1,
        "topics": [{"topic": t, "partitions": [
            {"partition": p, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
             "log_start_offset": -1, "partition_max_bytes": 1 << 20} for p in ps]} for t, ps in topics],
        "forgotten_topics_data": [], "rack_id": ""})


def metadata_request():
    return to_entity(request_class(3, 12), {"topics": None, "allow_auto_topic_creation": False,
                                            "include_topic_authorized_operations": False})


def test_fetch_matches_the_blocking_client(broker):
    topic = topic_name("asyncwire")
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [(None, b"v%d" % i * 50, i % 3) for i in range(300)])
    request = fetch_request([(topic, [0, 1, 2]), ("no-such-topic", [0])])
    with KafkaConnection("127.0.0.1", broker.port) as conn:
        expected = conn.request(request)

    async def main():
        conn = await AsyncKafkaConnection.connect("127.0.0.1", broker.port, 10.0, "test")
        try:
            got = await conn.fetch(request)
            again = await conn.fetch(request)  # the connection stays usable
            meta = await conn.request(metadata_request())  # and answers kio entities too
        finally:
            conn.close()
        return got, again, meta
    got, again, meta = asyncio.run(main())
    want = [(t.topic, [(p.partition_index, int(p.error_code), p.high_watermark, p.log_start_offset,
                        bytes(p.records or b"")) for p in t.partitions]) for t in expected.responses]
    for response in (got, again):
        assert [(name, [(p.partition, p.error_code, p.high_watermark, p.log_start_offset, bytes(p.records or b""))
                        for p in parts]) for name, parts in response.topics] == want
    assert sum(len(p.records) for _, parts in got.topics for p in parts) > 300 * 50
    assert topic in {t.name for t in meta.topics}


# --------------------------------------------------------------------------- fake peers

def answer_frame(correlation_id: int, records: bytes = b"r" * 10) -> bytes:
    body = b"".join(encode_fetch_response(12, [("t", [FetchPartitionResponse(0, 0, 7, records=[records])])],
                                          session_id=9))
    payload = response_header(correlation_id, flexible=True) + body
    return struct.pack(">i", len(payload)) + payload


async def read_request(reader: asyncio.StreamReader) -> int:
    """Read one request frame; its correlation id."""
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    frame = await reader.readexactly(size)
    return struct.unpack_from(">i", frame, 4)[0]


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def run_against(handler, client):
    async def main():
        server, port = await serve(handler)
        try:
            conn = await AsyncKafkaConnection.connect("127.0.0.1", port, 2.0, "test")
            try:
                return await client(conn)
            finally:
                conn.close()
        finally:
            server.close()
    return asyncio.run(main())


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 1000, 70_000])
def test_frames_split_anywhere_are_reassembled(piece):
    records = bytes(range(256)) * 1200  # 300 KiB: larger than the reader's scratch buffer

    async def handler(reader, writer):
        for _ in range(2):
            data = answer_frame(await read_request(reader), records)
            for i in range(0, len(data), piece):
                writer.write(data[i:i + piece])
                await writer.drain()
                if piece < 10 and i > 200:  # a few tiny pieces, then the rest at once
                    writer.write(data[i + piece:])
                    break
        await reader.read()

    async def client(conn):
        return [await conn.fetch(fetch_request([("t", [0])])) for _ in range(2)]
    for response in run_against(handler, client):
        (name, [p]), = response.topics
        assert (name, p.high_watermark, response.session_id) == ("t", 7, 9)
        assert p.records == records
        assert isinstance(p.records.obj, bytearray)  # a slice of the frame, not a copy


def test_two_frames_in_one_read():
    async def handler(reader, writer):
        first = await read_request(reader)
        writer.write(answer_frame(first) + answer_frame(first + 1))  # the second comes before its request
        await read_request(reader)
        await reader.read()

    async def client(conn):
        return [await conn.fetch(fetch_request([("t", [0])])) for _ in range(2)]
    assert all(r.topics[0][1][0].records == b"r" * 10 for r in run_against(handler, client))


BROKEN_PEERS = {
    "oversized frame": lambda cid: struct.pack(">i", 200 * 1024 * 1024),
    "negative size": lambda cid: struct.pack(">i", -5),
    "closes mid-frame": lambda cid: answer_frame(cid)[:20],
    "wrong correlation id": lambda cid: answer_frame(cid + 1),
    "garbage body": lambda cid: struct.pack(">i", 12) + struct.pack(">i", cid) + b"\x00\xff\xff\xff\xff\xff\xff\x0f",
    "lying records length": lambda cid: answer_frame(cid)[:-14] + b"\xff\xff\xff\x0f" + b"r" * 10 + b"\x00\x00\x00",
    "never answers": None,
}


@pytest.mark.parametrize("name", BROKEN_PEERS)
def test_broken_peers_end_in_wire_error(name):
    make = BROKEN_PEERS[name]

    async def handler(reader, writer):
        cid = await read_request(reader)
        if make is not None:
            data = make(cid)
            if name == "lying records length":  # keep the frame size honest, only the records length lies
                payload = data[4:]
                data = struct.pack(">i", len(payload)) + payload
            writer.write(data)
            await writer.drain()
            writer.close()
        else:
            await reader.read()

    async def client(conn):
        began = time.perf_counter()
        with pytest.raises(WireError):
            await conn.fetch(fetch_request([("t", [0])]), timeout=1.0)
        with pytest.raises(WireError):  # and the connection is done with
            await conn.fetch(fetch_request([("t", [0])]), timeout=1.0)
        return time.perf_counter() - began
    assert run_against(handler, client) < 2.5


def test_connect_refused_is_a_wire_error():
    async def main():
        server, port = await serve(lambda r, w: None)
        server.close()
        await server.wait_closed()
        with pytest.raises(WireError):
            await AsyncKafkaConnection.connect("127.0.0.1", port, 2.0)
    asyncio.run(main())


def test_cancelled_request_closes_the_connection():
    async def handler(reader, writer):
        await read_request(reader)
        await reader.read()

    async def client(conn):
        task = asyncio.ensure_future(conn.fetch(fetch_request([("t", [0])])))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(WireError):  # an answer to the cancelled request would come out of turn
            await conn.fetch(fetch_request([("t", [0])]), timeout=1.0)
    run_against(handler, client)
