"""The REST Proxy's JSON codec gives the standard library's answers, only faster."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from josef.rest import jsoncodec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip_matches_the_standard_library(value):
    encoded = jsoncodec.dumps(value)
    assert json.loads(encoded) == value
    assert jsoncodec.loads(encoded) == value
    stdlib = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    assert jsoncodec.loads(stdlib) == json.loads(stdlib)


@pytest.mark.parametrize("text", [
    "123456789012345678901234567890",        # beyond 64 bits: orjson alone would give a float
    "-9223372036854775809",
    "18446744073709551616",
    '{"id":99999999999999999999999,"pad":"x"}',
])
def test_integers_beyond_64_bits_stay_exact(text):
    value = jsoncodec.loads(text.encode())
    assert value == json.loads(text)
    assert jsoncodec.dumps(value) == text.encode()


def test_lone_surrogates_are_read_and_written_back_as_escapes():
    value = jsoncodec.loads(b'{"a":"\\ud800x"}')
    assert value == {"a": "\ud800x"}
    assert json.loads(jsoncodec.dumps(value)) == value


def test_non_ascii_is_written_as_utf8_not_escaped():
    assert jsoncodec.dumps({"k": "é€"}) == '{"k":"é€"}'.encode("utf-8")


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b"-Infinity", b"[1,2", b"{", b"'a'"])
def test_what_is_not_json_is_refused(raw):
    with pytest.raises(json.JSONDecodeError):
        jsoncodec.loads(raw)


def test_invalid_utf8_is_a_unicode_error():
    with pytest.raises(UnicodeDecodeError):
        jsoncodec.loads(b'"\xff\xfe"')


values_of_a_stream = st.lists(json_values, max_size=8)


def feed_in_pieces(encoded: bytes, cuts: list[int]):
    stream = jsoncodec.JsonStream()
    got = []
    last = 0
    for cut in sorted(c % (len(encoded) + 1) for c in cuts):
        got += stream.feed(encoded[last:cut])
        last = cut
    got += stream.feed(encoded[last:])
    values, error = stream.finish()
    return got + values, error


@settings(max_examples=300, deadline=None)
@given(values_of_a_stream, st.sampled_from(["\n", "\r\n", " ", "", "\n\n  "]), st.booleans(),
       st.lists(st.integers(min_value=0), max_size=6))
def test_a_stream_splits_into_its_values_wherever_the_chunks_end(values, separator, pretty, cuts):
    if pretty:
        texts = [json.dumps(v, indent=2, ensure_ascii=False) for v in values]
    else:
        texts = [json.dumps(v, ensure_ascii=False) for v in values]
    if separator == "":  # values with nothing between them must delimit themselves
        texts = [json.dumps([v]) for v in values]
        values = [[v] for v in values]
    encoded = separator.join(texts).encode("utf-8")
    got, error = feed_in_pieces(encoded, cuts)
    assert error is None
    assert got == values


@pytest.mark.parametrize("raw, values, error", [
    (b'{"a":1}\n{"b":\n', [{"a": 1}], "Unexpected character"),
    (b'{"a":1}\nxyz\n', [{"a": 1}], "Unexpected character"),
    (b'{"a":1} {"b":2}\n{"c":3}', [{"a": 1}, {"b": 2}, {"c": 3}], None),
    (b'{"n":123456789012345678901234567890}\n', [{"n": 123456789012345678901234567890}], None),
    (b"", [], None),
    (b"  \n\n ", [], None),
])
def test_a_stream_with_bad_or_odd_content(raw, values, error):
    got, err = feed_in_pieces(raw, [3, 9])
    assert got == values
    assert (err is None) if error is None else err.startswith(error)


def test_a_stream_with_invalid_utf8_raises():
    stream = jsoncodec.JsonStream()
    with pytest.raises(UnicodeDecodeError):
        stream.feed(b'{"a":"\xff"}\n')
        stream.finish()


def test_a_stream_gives_values_before_their_line_ends():
    """A client that waits for each answer sends no newline after its record."""
    stream = jsoncodec.JsonStream()
    assert stream.feed(b'{"a":1}') == [{"a": 1}]
    assert stream.feed(b'{"b":2}{"c":') == [{"b": 2}]
    assert stream.feed(b'"\xc3') == []  # a character cut in two by the chunk's end
    assert stream.feed(b'\xa9"}\n[1,\n') == [{"c": "é"}]
    assert stream.feed(b'2]\n') == [[1, 2]]
    assert stream.finish() == ([], None)


@pytest.mark.parametrize("first, second, value", [
    (b"6.1e", b"+16\n", 6.1e16), (b"1.", b"5\n", 1.5), (b"-", b"7\n", -7), (b"12", b"3\n", 123),
    (b"[1]\n2.5E", b"-3 ", 2.5e-3)])
def test_a_number_cut_by_a_chunk_is_not_cut_short(first, second, value):
    stream = jsoncodec.JsonStream()
    got = stream.feed(first) + stream.feed(second)
    values, error = stream.finish()
    assert error is None
    assert (got + values)[-1] == value
