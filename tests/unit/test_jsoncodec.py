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
