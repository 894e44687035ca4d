"""Media types and content negotiation as kafka-rest's Jersey resources do it.

Responses: each endpoint offers media types with a server quality (`qs`); the client's Accept
header (with `q` values and wildcards) picks among them; nothing acceptable -> 406. Requests:
an endpoint consumes a set of media types; anything else -> 415.
"""
from __future__ import annotations

from josef.rest.errors import http_error

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON_EMBEDDED = "application/vnd.kafka.json.v2+json"
AVRO = "application/vnd.kafka.avro.v2+json"
JSONSCHEMA = "application/vnd.kafka.jsonschema.v2+json"
PROTOBUF = "application/vnd.kafka.protobuf.v2+json"
JSON = "application/json"

EMBEDDED = {BINARY: "binary", JSON_EMBEDDED: "json", AVRO: "avro", JSONSCHEMA: "jsonschema",
            PROTOBUF: "protobuf"}
SCHEMA_FORMATS = {"avro", "jsonschema", "protobuf"}

# What most v2 resources produce: the v2 type, and (leniently) plain JSON for clients and
# tools such as Postman collections that send `Accept: application/json`.
PLAIN_OFFERS = [(V2, 1.0), (JSON, 0.5)]
# The consumer resource produces every embedded type at low quality so a client can send the
# same Accept header to all consumer endpoints.
CONSUMER_OFFERS = [(V2, 0.9), (BINARY, 0.1), (AVRO, 0.1), (JSON_EMBEDDED, 0.1),
                   (JSONSCHEMA, 0.1), (PROTOBUF, 0.1), (JSON, 0.05)]
# GET .../records: binary wins unless the client asks for another format.
RECORDS_OFFERS = [(BINARY, 1.0), (V2, 0.9), (JSON_EMBEDDED, 0.1), (AVRO, 0.1), (JSONSCHEMA, 0.1),
                  (PROTOBUF, 0.1), (JSON, 0.05)]

# Request bodies
CONSUMES_V2 = {V2, JSON, BINARY, JSON_EMBEDDED, AVRO, JSONSCHEMA, PROTOBUF}
CONSUMES_ROOT = {V2, JSON}
CONSUMES_PRODUCE = set(EMBEDDED)


def _parse_accept(header: str | None) -> list[tuple[str, str, float]]:
    """[(type, subtype, q)] from an Accept header; absent or unparsable means */*."""
    if not header or not header.strip():
        return [("*", "*", 1.0)]
    out = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        main = parts[0].lower()
        if main == "*":
            main = "*/*"
        if "/" not in main:
            continue
        typ, _, sub = main.partition("/")
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        out.append((typ, sub, max(0.0, min(q, 1.0))))
    return out or [("*", "*", 1.0)]


def _match(offer: str, typ: str, sub: str) -> int:
    """Specificity of an Accept range that matches `offer` (2 exact, 1 type/*, 0 */*), -1 none."""
    otyp, _, osub = offer.partition("/")
    if typ == "*" and sub == "*":
        return 0
    if typ != otyp:
        return -1
    if sub == "*":
        return 1
    return 2 if sub == osub else -1


# Offered only where kafka-rest would answer 406: plain JSON is josef's leniency, so it must
# never win over a type the real server produces (`Accept: <v2>;q=0.5, application/json`).
LENIENT_OFFERS = frozenset({JSON})


def _best_offer(ranges, offers) -> str | None:
    # Jersey's CombinedMediaType order over every (Accept range, offer) pair: the client's q,
    # then the server's qs, then the fewer wildcards; not RFC 7231's "most specific range
    # decides", so `<binary>;q=0.1, */*;q=0.5` still picks binary (q 0.5 via */*, qs 1).
    best: tuple | None = None
    for index, (offer, qs) in enumerate(offers):
        for typ, sub, q in ranges:
            spec = _match(offer, typ, sub)
            if spec < 0 or q <= 0:
                continue
            key = (q, qs, spec, -index)
            if best is None or key > best[0]:
                best = (key, offer)
    return best[1] if best is not None else None


def negotiate(accept: str | None, offers: list[tuple[str, float]]) -> str:
    """The offered media type the client accepts best; raises 406 when it accepts none."""
    ranges = _parse_accept(accept)
    chosen = _best_offer(ranges, [o for o in offers if o[0] not in LENIENT_OFFERS])
    if chosen is None:
        chosen = _best_offer(ranges, offers)
    if chosen is None:
        raise http_error(406)
    return chosen


def unsupported_media_error_type(accept: str | None) -> str:
    """The Content-Type of a 415 error: rest-utils' WebApplicationExceptionMapper takes the
    first accepted type (in q order) that is exactly `application/json` or the v2 type, else
    `application/json`."""
    ranges = sorted(_parse_accept(accept), key=lambda r: -r[2])
    for typ, sub, q in ranges:
        if q > 0 and f"{typ}/{sub}" in (JSON, V2):
            return f"{typ}/{sub}"
    return JSON


def content_type(header: str | None) -> str | None:
    if not header:
        return None
    main = header.split(";", 1)[0].strip().lower()
    return main or None


def require_content_type(header: str | None, allowed: set[str], *, allow_missing: bool = True) -> str | None:
    """The request's media type if the endpoint consumes it; 415 otherwise."""
    ct = content_type(header)
    if ct is None:
        if allow_missing:
            return None
        raise http_error(415)
    if ct not in allowed:
        raise http_error(415)
    return ct
