"""RecordBatch v2: codecs, record encoding, validation, and robustness against malformed input."""
from __future__ import annotations

import os
import struct
import types

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from josef.protocol.errors import Error
from josef.records.batch import (
    HEADER_SIZE, InvalidRecord, crc_ok, iter_batches, patch, read_header, validate_produce_records,
)
from josef.records.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD, XERIAL_MAGIC, compress, decompress
from josef.records.records import Record, build_batch, iter_records

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# JOSEF_FUZZ_EXAMPLES=5000 for a long fuzzing run
FUZZ = settings(max_examples=int(os.environ.get("JOSEF_FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------------

payloads = st.none() | st.binary(max_size=60)
header_lists = st.lists(st.tuples(st.text(max_size=8), payloads), max_size=3)
timestamps = st.integers(min_value=0, max_value=2**45)
full_records = st.lists(st.tuples(payloads, payloads, header_lists, timestamps), min_size=1, max_size=8)


def _any_shape(record):
    """Exercise every accepted input shape: 2-, 3- and 4-tuples."""
    key, value, headers, timestamp = record
    return st.sampled_from([(key, value), (key, value, headers), (key, value, headers, timestamp)])


record_inputs = st.lists(st.tuples(payloads, payloads, header_lists, timestamps).flatmap(_any_shape),
                         min_size=1, max_size=8)


def _raises_only_invalid_record(fn, *args):
    try:
        result = fn(*args)
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    except InvalidRecord as exc:
        assert exc.code in (Error.CORRUPT_MESSAGE, Error.INVALID_RECORD, Error.UNSUPPORTED_COMPRESSION_TYPE)


# -- compression -----------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
@FAST
@given(data=st.binary(max_size=3000) | st.binary(max_size=40).map(lambda b: b * 2000))
def test_codec_round_trip(codec, data):
    assert decompress(codec, compress(codec, data)) == data
    assert decompress(codec, memoryview(bytearray(compress(codec, data)))) == data


def test_snappy_writes_xerial_framing_in_32k_blocks():
    data = bytes(range(256)) * 1000
    out = compress(SNAPPY, data)
    assert out[:16] == XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    assert len(compress(SNAPPY, b"")) > 20  # librdkafka only recognises xerial beyond 20 bytes
    blocks, pos = 0, 16
    while pos < len(out):
        (length,) = struct.unpack_from(">i", out, pos)
        pos += 4 + length
        blocks += 1
    assert pos == len(out) and blocks == 8


@pytest.mark.parametrize("version_ints", [struct.pack(">ii", 1, 1), struct.pack("<ii", 1, 1)])
def test_snappy_reads_raw_and_xerial(version_ints):
    data = b"librdkafka writes raw blocks, java writes xerial " * 50
    assert decompress(SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    framed = bytearray(XERIAL_MAGIC + version_ints)  # redpanda writes the ints little endian
    for chunk in (data[:700], data[700:]):
        block = bytes(cramjam.snappy.compress_raw(chunk))
        framed += struct.pack(">i", len(block)) + block
    assert decompress(SNAPPY, framed) == data


def test_snappy_rejects_a_forged_length_without_allocating():
    with pytest.raises(InvalidRecord) as exc:
        decompress(SNAPPY, b"\xff\xff\xff\xff\x0f\x00")
    assert exc.value.code == Error.CORRUPT_MESSAGE


def test_lz4_frames_use_independent_blocks():
    # Java's Lz4BlockInputStream decodes each block alone, so linked blocks would break it.
    frame = compress(LZ4, b"abc" * 100_000)
    assert frame[:4] == b"\x04\x22\x4d\x18" and frame[4] & 0x20


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
@pytest.mark.parametrize("garbage", [b"", b"\x05", b"not compressed at all", XERIAL_MAGIC + b"\0\0\0\1\0\0\0\1\0\0\0\x09ab"])
def test_corrupt_data_is_corrupt_message(codec, garbage):
    with pytest.raises(InvalidRecord) as exc:
        decompress(codec, garbage)
    assert exc.value.code == Error.CORRUPT_MESSAGE


def test_unknown_codec():
    for fn in (compress, decompress):
        with pytest.raises(InvalidRecord) as exc:
            fn(5, b"x")
        assert exc.value.code == Error.CORRUPT_MESSAGE


@FUZZ
@given(codec=st.sampled_from(CODECS[1:]), data=st.binary(max_size=200))
def test_decompress_random_bytes(codec, data):
    _raises_only_invalid_record(decompress, codec, data)


# -- build / iterate -------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
@FAST
@given(records=record_inputs, base_offset=st.integers(0, 2**40), base_timestamp=st.none() | timestamps)
def test_round_trip(codec, records, base_offset, base_timestamp):
    batch = build_batch(records, base_offset=base_offset, compression=codec, base_timestamp=base_timestamp)
    header = read_header(batch)
    assert header.size == len(batch) and crc_ok(batch, 0, header)
    assert header.compression == codec and header.record_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    validate_produce_records(batch, 9)

    decoded = list(iter_records(batch))
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(records)))
    for got, record in zip(decoded, records):
        key, value, headers, timestamp = (tuple(record) + (None, None))[:4]
        assert (got.key, got.value, got.headers) == (key, value, headers or [])
        if timestamp is not None:
            assert got.timestamp == timestamp
    # records without a timestamp share base_timestamp (or one reading of the clock)
    untimed = {got.timestamp for got, record in zip(decoded, records) if len(record) < 4}
    assert len(untimed) <= 1 and (base_timestamp is None or untimed <= {base_timestamp})
    assert header.max_timestamp == max(r.timestamp for r in decoded)
    assert header.base_timestamp == (decoded[0].timestamp if base_timestamp is None else base_timestamp)
    # any bytes-like input reads the same
    assert list(iter_records(memoryview(bytearray(batch)))) == decoded


def test_batch_fields():
    batch = build_batch([(b"k", b"v", [("h", None)], 1000), (None, None, None, 900)], base_offset=10,
                        producer_id=7, producer_epoch=3, base_sequence=42, is_transactional=True,
                        leader_epoch=5, compression=GZIP)
    h = read_header(batch)
    assert (h.base_offset, h.partition_leader_epoch, h.producer_id, h.producer_epoch, h.base_sequence) == (10, 5, 7, 3, 42)
    assert h.is_transactional and not h.is_log_append_time and not h.is_control
    assert (h.base_timestamp, h.max_timestamp, h.last_sequence, h.next_offset) == (1000, 1000, 43, 12)
    assert list(iter_records(batch)) == [Record(10, 1000, b"k", b"v", [("h", None)]), Record(11, 900, None, None, [])]


def test_log_append_time_reports_max_timestamp():
    batch = build_batch([(b"a", b"1", None, 5), (b"b", b"2")], base_timestamp=77, log_append_time=True)
    assert read_header(batch).is_log_append_time
    assert [r.timestamp for r in iter_records(batch)] == [77, 77]


def test_records_keep_their_offsets():
    kept = [Record(103, 1, b"a", b"1", []), Record(107, 2, b"b", None, [("x", b"y")])]
    batch = build_batch(kept, base_offset=100)
    assert read_header(batch).last_offset_delta == 7
    assert list(iter_records(batch)) == kept
    with pytest.raises(ValueError):
        build_batch(kept[::-1], base_offset=100)


def test_extreme_varints_round_trip():
    lo, hi = -(2**63), 2**63 - 1
    records = [(b"k", b"v", None, 0), (None, b"x", None, hi), (None, b"y", None, lo), (None, None, None, -1)]
    batch = build_batch(records, base_timestamp=0)
    assert [r.timestamp for r in iter_records(batch)] == [0, hi, lo, -1]
    assert read_header(batch).max_timestamp == hi
    with pytest.raises(ValueError):
        build_batch([(b"k", b"v", None, hi)], base_timestamp=-1)


def test_empty_or_malformed_input_to_build():
    with pytest.raises(ValueError):
        build_batch([])
    with pytest.raises(ValueError):
        build_batch([(b"only a key",)])


# -- cross-check against kafka-python ------------------------------------------------------------

kafka_records = pytest.importorskip("kafka.record.default_records")
kafka_codec = pytest.importorskip("kafka.codec")


def _kafka_python_batch(records, codec=0, producer=(-1, -1, -1, False)):
    builder = kafka_records.DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=producer[3], producer_id=producer[0],
        producer_epoch=producer[1], base_sequence=producer[2], batch_size=2**30)
    for delta, (key, value, headers, timestamp) in enumerate(records):
        assert builder.append(delta, timestamp=timestamp, key=key, value=value, headers=headers)
    return bytes(builder.build())


def _kafka_python_read(batch):
    reader = kafka_records.DefaultRecordBatch(batch)
    assert reader.validate_crc()
    return [Record(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in reader]


producers = st.sampled_from([(-1, -1, -1, False), (1234, 5, 0, False), (99, 0, 2**31 - 10, True)])


@settings(max_examples=100, deadline=None)
@given(records=full_records, producer=producers)
def test_uncompressed_bytes_match_kafka_python(records, producer):
    pid, epoch, seq, txn = producer
    ours = build_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                       is_transactional=txn, leader_epoch=0)
    assert ours == _kafka_python_batch(records, producer=producer)
    assert _kafka_python_read(ours) == list(iter_records(ours))


@pytest.fixture
def kafka_python_snappy(monkeypatch):
    """kafka-python's own xerial framing code, with cramjam standing in for python-snappy."""
    shim = types.SimpleNamespace(compress=lambda b: bytes(cramjam.snappy.compress_raw(b)),
                                 decompress=lambda b: bytes(cramjam.snappy.decompress_raw(b)))
    monkeypatch.setattr(kafka_codec, "snappy", shim)


def _compressible(records):
    # kafka-python falls back to no compression when it would not shrink the batch
    return [(k, (v or b"") + b"padding " * 40, h, t) for k, v, h, t in records]


@pytest.mark.parametrize("codec", [GZIP, SNAPPY])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=full_records)
def test_compressed_batches_interoperate_with_kafka_python(kafka_python_snappy, codec, records):
    records = _compressible(records)
    theirs = _kafka_python_batch(records, codec=codec)
    assert read_header(theirs).compression == codec
    if codec == SNAPPY:
        assert theirs[HEADER_SIZE:HEADER_SIZE + 8] == XERIAL_MAGIC
    expected = [Record(i, t, k, v, h) for i, (k, v, h, t) in enumerate(records)]
    assert list(iter_records(theirs)) == expected
    validate_produce_records(theirs, 8)

    ours = build_batch(records, compression=codec)
    assert _kafka_python_read(ours) == expected


def test_kafka_python_header_view_of_lz4_and_zstd():
    # Without lz4/zstd modules kafka-python can't decode these; at least its header view agrees.
    for codec in (LZ4, ZSTD):
        batch = build_batch([(b"k", b"v" * 100, None, 5)], compression=codec)
        reader = kafka_records.DefaultRecordBatch(batch)
        assert reader.compression_type == codec and reader.validate_crc()


# -- validate_produce_records ----------------------------------------------------------------------

GOOD = build_batch([(b"k", b"v"), (None, b"w", [("h", b"x")])], base_timestamp=1)


def _code(buf, api_version=9):
    with pytest.raises(InvalidRecord) as exc:
        validate_produce_records(buf, api_version)
    return exc.value.code


@pytest.mark.parametrize("codec", CODECS)
def test_validate_accepts_good_batches(codec):
    batch = build_batch([(b"k", b"v" * 50)], compression=codec)
    assert validate_produce_records(batch, 9).record_count == 1
    assert validate_produce_records(bytearray(batch), 7).compression == codec


def test_validate_any_flipped_bit_in_crc_area():
    for position in range(21, len(GOOD)):
        for bit in range(8):
            bad = bytearray(GOOD)
            bad[position] ^= 1 << bit
            assert _code(bad) == Error.CORRUPT_MESSAGE, (position, bit)


def test_validate_flipped_crc():
    bad = bytearray(GOOD)
    bad[17] ^= 0x80
    assert _code(bad) == Error.CORRUPT_MESSAGE


@pytest.mark.parametrize("magic", [0, 1])
def test_validate_old_magic(magic):
    bad = bytearray(GOOD)
    bad[16] = magic
    assert _code(bad, 3) == Error.INVALID_RECORD


def test_validate_two_batches():
    assert _code(GOOD + GOOD) == Error.INVALID_RECORD


def test_validate_zstd_needs_v7():
    batch = build_batch([(b"k", b"v")], compression=ZSTD)
    assert _code(batch, 6) == Error.UNSUPPORTED_COMPRESSION_TYPE
    validate_produce_records(batch, 7)


@pytest.mark.parametrize("length", [0, 10, HEADER_SIZE - 1, HEADER_SIZE, len(GOOD) - 1])
def test_validate_truncated(length):
    assert _code(GOOD[:length]) == Error.CORRUPT_MESSAGE


# -- patch / iter_batches --------------------------------------------------------------------------

@pytest.mark.parametrize("codec", [NONE, LZ4])
def test_patch_keeps_crc(codec):
    buf = bytearray(build_batch([(b"a", b"1"), (b"b", b"2")], compression=codec, base_timestamp=3))
    patch(buf, 0, 1_000_000, 17)
    header = read_header(buf)
    assert (header.base_offset, header.partition_leader_epoch) == (1_000_000, 17)
    assert crc_ok(buf, 0, header)
    assert [r.offset for r in iter_records(buf)] == [1_000_000, 1_000_001]


def test_patch_at_a_position():
    buf = bytearray(GOOD + GOOD)
    patch(buf, len(GOOD), 2, 4)
    (_, first), (pos, second) = iter_batches(buf)
    assert (first.base_offset, second.base_offset, second.partition_leader_epoch, pos) == (0, 2, 4, len(GOOD))
    assert crc_ok(buf, pos, second)


@pytest.mark.parametrize("keep", [0, 1, 10, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 3, -1])
def test_iter_batches_stops_at_truncated_tail(keep):
    third = build_batch([(b"x", b"y" * 20)])
    found = list(iter_batches(GOOD + GOOD + third[:keep]))
    assert [pos for pos, _ in found] == [0, len(GOOD)]
    assert [pos for pos, _ in iter_batches(GOOD + GOOD + third)] == [0, len(GOOD), 2 * len(GOOD)]


# -- malformed records -----------------------------------------------------------------------------

def _raw_batch(body: bytes, record_count: int, attributes: int = 0) -> bytes:
    """A batch around hand-written record bytes (CRC left zero: iter_records doesn't check it)."""
    header = struct.pack(">qiibIhiqqqhii", 0, HEADER_SIZE - 12 + len(body), 0, 2, 0, attributes,
                         max(record_count - 1, 0), 0, 0, -1, -1, -1, record_count)
    return header + body


def _corrupt(batch):
    with pytest.raises(InvalidRecord) as exc:
        list(iter_records(batch))
    assert exc.value.code == Error.CORRUPT_MESSAGE


def test_huge_header_count_does_not_allocate():
    # attributes, ts delta, offset delta, null key, null value, header count 2**31-1 (zig-zag)
    record = b"\x00\x00\x00\x01\x01" + b"\xfe\xff\xff\xff\x0f"
    _corrupt(_raw_batch(bytes([len(record) * 2]) + record, 1))


def test_huge_record_count_does_not_allocate():
    one = build_batch([(b"k", b"v")])
    _corrupt(_raw_batch(one[HEADER_SIZE:], 2**31 - 1))
    _corrupt(_raw_batch(one[HEADER_SIZE:], -5))


def test_minimal_hand_written_record():
    # length 6 | attributes | ts delta 0 | offset delta 0 | null key | null value | no headers
    assert list(iter_records(_raw_batch(b"\x0c\x00\x00\x00\x01\x01\x00", 1))) == [Record(0, 0, None, None, [])]


@pytest.mark.parametrize("body", [
    b"\xff\xff\xff\xff\xff\xff\x01",                # varint longer than five bytes
    b"\x7e\x00",                                    # record length 63, beyond the batch
    b"\x0c\x00\x00\x00\x14ab",                       # key of 10 bytes in a 6-byte record
    b"\x0c\x00\x00\x00\x03\x01\x00",                 # key length -2: neither null nor a length
    b"\x10\x00\x00\x00\x01\x01\x02\x01\x01",         # a header with a null key
    b"\x12\x00\x00\x00\x01\x01\x02\x02\xff\x01",     # a header key that is not utf-8
    b"\x0e\x00\x00\x00\x01\x01\x00\x00",             # record length 7, fields take 6
    b"\x0c\x00\x00\x00\x01\x01\x01",                 # header count -1
    b"\x0c\x00\x00\x00\x01\x01\x00" + b"\x0c\x00",  # second record cut short
])
def test_malformed_record_bytes(body):
    _corrupt(_raw_batch(body, 2 if body.endswith(b"\x0c\x00") else 1))


def test_trailing_bytes_after_records():
    one = build_batch([(b"k", b"v")])
    _corrupt(_raw_batch(one[HEADER_SIZE:] + b"\x00", 1))


def test_truncated_batch_for_iter_records():
    batch = build_batch([(b"k", b"v")])
    _corrupt(batch[:-1])
    _corrupt(batch[:HEADER_SIZE - 1])


# -- fuzz -------------------------------------------------------------------------------------------

ENTRY_POINTS = [
    ("read_header", lambda b: read_header(b)),
    ("validate", lambda b: validate_produce_records(b, 9)),
    ("iter_batches", lambda b: iter_batches(b)),
    ("iter_records", lambda b: iter_records(b)),
]


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    for _, fn in ENTRY_POINTS:
        _raises_only_invalid_record(fn, data)


@FUZZ
@given(body=st.binary(max_size=200), count=st.integers(-3, 2**31 - 1) | st.integers(0, 5),
       attributes=st.integers(0, 0x3F))
def test_fuzz_random_records_behind_a_valid_header(body, count, attributes):
    batch = _raw_batch(body, count, attributes)
    for _, fn in ENTRY_POINTS:
        _raises_only_invalid_record(fn, batch)


valid_batches = st.builds(lambda records, codec: build_batch(records, compression=codec),
                          full_records, st.sampled_from(CODECS))


@FUZZ
@given(batch=valid_batches, data=st.data())
def test_fuzz_mutated_batches(batch, data):
    buf = bytearray(batch)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del buf[pos:pos + data.draw(st.integers(1, 8))]
    for _, fn in ENTRY_POINTS:
        _raises_only_invalid_record(fn, bytes(buf))
        _raises_only_invalid_record(fn, buf)


@FUZZ
@given(records=full_records, data=st.data())
def test_fuzz_mutated_records_of_uncompressed_batches(records, data):
    # Mutate only the records so the parser (not the header checks) meets the damage.
    buf = bytearray(build_batch(records))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(HEADER_SIZE, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    _raises_only_invalid_record(iter_records, buf)
