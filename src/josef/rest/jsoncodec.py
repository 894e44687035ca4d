"""JSON for the REST Proxy's hot paths: orjson where it gives the same answer as the standard
library, the standard library where it would not.

orjson parses and writes JSON several times faster than `json`, which matters when every
produced and consumed record passes through it. Its answers differ in two places, both of
which would change a user's data: it reads an integer beyond 64 bits as a float (Jackson,
which kafka-rest uses, keeps it exact), and it refuses lone surrogate escapes (`"\\ud800"`)
that the standard library, like Jackson, accepts. So a body with a run of 19 or more digits,
and anything orjson refuses, goes through `json`, which also words the error messages.
"""
from __future__ import annotations

import codecs
import json
import re

import orjson

# digits to "0", everything else to " ": then a run of 19 digits is a plain substring search,
# ~20x faster than a regular expression over a 15 kB body
_DIGITS_AS_ZERO = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"))


def reject_json_constant(name: str):
    # JSON has no NaN or Infinity: Python's parser would accept them, Jackson does not
    raise json.JSONDecodeError(f"Non-standard token '{name}'", name, 0)


def loads(raw: bytes):
    """The JSON value of `raw`: json.JSONDecodeError when it is not JSON, UnicodeDecodeError
    when it is not UTF-8 (both ValueErrors), RecursionError when nested too deeply."""
    if _NINETEEN_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # let the standard library decide, and word the error
    return json.loads(raw.decode("utf-8"), parse_constant=reject_json_constant)


def dumps(value) -> bytes:
    """Compact UTF-8 JSON, as Jackson writes it."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate
        pass
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: escape it as JSON does
        return _ASCII_ENCODER.encode(value).encode("ascii")


_WHITESPACE = re.compile(r"\s*")
_NUMBER_TAIL = re.compile(r"[0-9eE+.-]*")  # what may still follow a number's first digits
_NUMBER_BYTES = frozenset(bytes([c]) for c in b"0123456789eE+-.")


class JsonStream:
    """Splits a byte stream of JSON values (v3's streamed produce) into values as they complete.

    One value per line, the usual form, is read line by line with `loads` (orjson). From the
    first line that is not exactly one JSON value on, the rest of the stream is scanned with the
    standard library's incremental decoder instead, which takes values in any layout:
    pretty-printed over several lines, several on a line, or with no separator at all.
    """

    def __init__(self):
        self._bytes = b""  # line mode: the start of a line not yet complete
        self._text: str | None = None  # scan mode: decoded text from self._pos on is unread
        self._pos = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder(parse_constant=reject_json_constant)

    def feed(self, chunk: bytes) -> list:
        """The values completed by `chunk`. UnicodeDecodeError and RecursionError propagate."""
        if self._text is not None:
            return self._scan(chunk)
        data = self._bytes + chunk
        end = data.rfind(b"\n") + 1
        values, start = [], 0
        while start < end:
            newline = data.index(b"\n", start)
            line = data[start:newline]
            if line.strip():
                try:
                    values.append(loads(line))
                except ValueError:
                    self._bytes, self._text = b"", ""
                    return values + self._scan(data[start:])
            start = newline + 1
        self._bytes = data[end:]
        if self._bytes.strip():  # a line under way may already hold whole values
            values += self._leading_values()
        return values

    def finish(self) -> tuple[list, str | None]:
        """The values at the very end of the stream, and what is wrong with whatever follows
        them (None when nothing does)."""
        if self._text is None:
            rest, self._bytes = self._bytes, b""
            if not rest.strip():
                return [], None
            try:
                return [loads(rest)], None
            except ValueError:
                self._text = ""
                values = self._scan(rest, final=True)
        else:
            values = self._scan(b"", final=True)
        left = self._text[self._pos:].strip()
        if not left:
            return values, None
        try:
            self._decoder.raw_decode(left)
            return values, "Unexpected content after a record"
        except json.JSONDecodeError as e:
            return values, f"Unexpected character at line {e.lineno} column {e.colno}: {e.msg}"

    def _leading_values(self) -> list:
        """The whole values at the start of the unfinished line (a client that waits for each
        answer sends no newline after its record), leaving the rest of the line unread."""
        rest = self._bytes
        if rest[-1:] not in _NUMBER_BYTES:  # a number at the very end may go on in the next chunk
            try:
                value = loads(rest)
            except ValueError:
                pass
            else:
                self._bytes = b""
                return [value]
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason != "unexpected end of data":
                raise  # invalid, not just a character cut at the chunk's end
            text = rest[:e.start].decode("utf-8")
        values, pos = self._values_in(text, final=False)
        self._bytes = rest[len(text[:pos].encode("utf-8")):]
        return values

    def _scan(self, chunk: bytes, final: bool = False) -> list:
        text = self._text[self._pos:] + self._utf8.decode(chunk, final)
        values, self._pos = self._values_in(text, final)
        self._text = text
        return values

    def _values_in(self, text: str, final: bool) -> tuple[list, int]:
        """The whole values from the start of `text`, and where the first incomplete one starts."""
        values, pos = [], 0
        while True:
            pos = _WHITESPACE.match(text, pos).end()
            try:
                value, end = self._decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break  # incomplete: wait for more bytes (finish() judges what is left)
            if not final and type(value) in (int, float) and _NUMBER_TAIL.fullmatch(text, end):
                break  # a number that the next chunk may continue ("1", "1." or "1e" so far)
            values.append(value)
            pos = end
        return values, pos
