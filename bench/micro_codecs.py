"""Microbenchmark: josef's hot-path codecs against kio 0.6.5 (µs per call, best of 7 repeats:
the minimum is the stable figure on a shared machine).

    .venv/bin/python bench/micro_codecs.py
"""
from __future__ import annotations

import datetime
import io
import os
import sys
import timeit

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from josef.protocol.fetch import (
    FetchPartitionResponse, decode_fetch_response, encode_fetch_response, fetch_response_size,
)
from josef.protocol.header import parse_request_header
from josef.protocol.produce import decode_produce_request

PRODUCE_VERSION = 9
FETCH_VERSION = 12


def usec_per_call(fn) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=7, number=number)) / number * 1e6


def kio_bytes(*entities) -> bytes:
    out = io.BytesIO()
    for entity in entities:
        entity_writer(type(entity))(out, entity)
    return out.getvalue()


def produce_frame(partitions: int, size: int) -> bytes:
    """A Produce v9 request (header + body, no size prefix) written by kio."""
    cls = load_request_schema(0, PRODUCE_VERSION)
    module = sys.modules[cls.__module__]
    records = os.urandom(size)
    request = cls(transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=30), topic_data=(
        module.TopicProduceData(name="bench", partition_data=tuple(
            module.PartitionProduceData(index=i, records=records) for i in range(partitions))),))
    header = cls.__header_schema__(request_api_key=0, request_api_version=PRODUCE_VERSION,
                                   correlation_id=1, client_id="bench")
    return kio_bytes(header, request)


def bench_produce(label: str, partitions: int, size: int) -> None:
    frame = produce_frame(partitions, size)
    cls = load_request_schema(0, PRODUCE_VERSION)
    read_header, read_body = entity_reader(cls.__header_schema__), entity_reader(cls)

    def josef():
        header = parse_request_header(frame)
        return decode_produce_request(frame, header.body_offset, header.api_version)

    def kio():
        _, n = read_header(frame, 0)
        return read_body(frame, n)

    print(f"decode Produce v{PRODUCE_VERSION}, {label:<22} josef {usec_per_call(josef):8.1f}   "
          f"kio (cached readers) {usec_per_call(kio):8.1f}")


def bench_fetch(partitions: int, size: int) -> None:
    records = os.urandom(size)
    ours = [("bench", [FetchPartitionResponse(i, 0, 1000, 1000, 0, None, -1, [records])
                       for i in range(partitions)])]
    cls = load_response_schema(1, FETCH_VERSION)
    module = sys.modules[cls.__module__]
    entity = cls(throttle_time=datetime.timedelta(0), error_code=ErrorCode(0), session_id=0, responses=(
        module.FetchableTopicResponse(topic="bench", partitions=tuple(
            module.PartitionData(partition_index=i, error_code=ErrorCode(0), high_watermark=1000,
                                 last_stable_offset=1000, log_start_offset=0, aborted_transactions=None,
                                 records=records)
            for i in range(partitions))),))
    write = entity_writer(cls)

    def josef():
        chunks = encode_fetch_response(FETCH_VERSION, ours)
        return fetch_response_size(chunks), chunks

    def josef_joined():
        return b"".join(encode_fetch_response(FETCH_VERSION, ours))

    def kio_bytesio():
        out = io.BytesIO()
        write(out, entity)
        return out.getvalue()

    def kio_list_sink():
        sink = []
        write(_ListSink(sink), entity)
        return sink

    assert josef_joined() == kio_bytesio()
    label = f"{partitions} x {size // 1024} KiB"
    print(f"encode Fetch v{FETCH_VERSION} response, {label:<14} josef chunks {usec_per_call(josef):8.1f}   "
          f"josef + join {usec_per_call(josef_joined):8.1f}   kio BytesIO {usec_per_call(kio_bytesio):8.1f}   "
          f"kio list sink {usec_per_call(kio_list_sink):8.1f}")


def bench_fetch_decode(label: str, partitions: int, size: int) -> None:
    """A follower's side: the Fetch v12 response body the leader sends, decoded."""
    records = os.urandom(size)
    body = b"".join(encode_fetch_response(FETCH_VERSION, [("bench", [
        FetchPartitionResponse(i, 0, 1000, 1000, 0, None, -1, [records]) for i in range(partitions)])]))
    frame = bytearray(body)  # as the follower's connection reads it
    read = entity_reader(load_response_schema(1, FETCH_VERSION))

    def josef():
        return decode_fetch_response(frame, 0, FETCH_VERSION)

    def kio():
        return read(body, 0)

    assert [bytes(p.records) for p in josef().topics[0][1]] == [p.records for p in kio()[0].responses[0].partitions]
    print(f"decode Fetch v{FETCH_VERSION} response, {label:<22} josef {usec_per_call(josef):8.1f}   "
          f"kio (cached reader) {usec_per_call(kio):8.1f}")


class _ListSink:
    """A write() target that keeps kio's pieces without joining them."""
    __slots__ = ("write",)

    def __init__(self, sink: list):
        self.write = sink.append


def main() -> None:
    print(f"Python {sys.version.split()[0]}; µs per call, best of 7 repeats")
    bench_produce("1 x 1 MiB", 1, 1 << 20)
    bench_produce("6 x 16 KiB", 6, 16 << 10)
    bench_fetch(6, 256 << 10)
    bench_fetch_decode("3 x 1 MiB", 3, 1 << 20)
    bench_fetch_decode("6 x 16 KiB", 6, 16 << 10)
    bench_fetch_decode("1 x 1 KiB", 1, 1 << 10)
    bench_fetch_decode("200 x 0 (idle, full)", 200, 0)


if __name__ == "__main__":
    main()
