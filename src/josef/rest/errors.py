"""Confluent REST Proxy error codes and bodies: `{"error_code": N, "message": "..."}`.

The codes are kafka-rest's (and rest-utils'): an HTTP status alone becomes the error code
(`400`, `404`, `415`, ...), the REST Proxy's own conditions have five-digit codes whose first
three digits are the status (40401 = 404 topic not found). Messages follow the real server
where a client might match on them ("Topic not found.", "Consumer instance not found.").
"""
from __future__ import annotations

from http import HTTPStatus

# Confluent's codes (kafka-rest Errors / rest-utils KafkaExceptionMapper)
KAFKA_BAD_REQUEST = 40002
INVALID_CONSUMER_CONFIG_CONSTRAINT = 40001
KAFKA_AUTHENTICATION = 40101
KAFKA_AUTHORIZATION = 40301
TOPIC_NOT_FOUND = 40401
PARTITION_NOT_FOUND = 40402
CONSUMER_INSTANCE_NOT_FOUND = 40403
LEADER_NOT_AVAILABLE = 40404
CONSUMER_FORMAT_MISMATCH = 40601
SERIALIZATION_TIMEOUT = 40801
CONSUMER_ALREADY_SUBSCRIBED = 40901
CONSUMER_ALREADY_EXISTS = 40902
ILLEGAL_STATE = 40903
KEY_SCHEMA_MISSING = 42201
VALUE_SCHEMA_MISSING = 42202
JSON_CONVERSION = 42203
INVALID_CONSUMER_CONFIG = 42204
INVALID_SCHEMA = 42205
INVALID_PAYLOAD = 42206
SERIALIZATION = 42207
KAFKA_ERROR = 50002
KAFKA_RETRIABLE_ERROR = 50003
BROKER_NOT_AVAILABLE = 50302


class RestError(Exception):
    """An error answered as Confluent's JSON error body with an HTTP status."""

    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def http_error(status: int) -> RestError:
    """Jersey's answer for a bare HTTP condition: `HTTP 415 Unsupported Media Type`."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return RestError(status, status, f"HTTP {status} {phrase}")


def bad_request(detail: str) -> RestError:
    """kafka-rest's BadRequestException (bad base64, bad JSON for the format, ...)."""
    return RestError(400, 400, f"Bad Request: {detail}")


def json_error(detail: str) -> RestError:
    """A body that is not JSON or does not map onto the request entity: 400, as Jackson's mappers."""
    return RestError(400, 400, detail)


def unprocessable(detail: str, error_code: int = 422) -> RestError:
    """A constraint violation (422), e.g. an empty `records` list."""
    return RestError(422, error_code, detail)


def topic_not_found() -> RestError:
    return RestError(404, TOPIC_NOT_FOUND, "Topic not found.")


def partition_not_found() -> RestError:
    return RestError(404, PARTITION_NOT_FOUND, "Partition not found.")


def consumer_instance_not_found() -> RestError:
    return RestError(404, CONSUMER_INSTANCE_NOT_FOUND, "Consumer instance not found.")


def consumer_format_mismatch() -> RestError:
    return RestError(406, CONSUMER_FORMAT_MISMATCH,
                     "The requested embedded data format does not match the deserializer for this "
                     "consumer instance")


def consumer_already_exists() -> RestError:
    return RestError(409, CONSUMER_ALREADY_EXISTS,
                     "Consumer with specified consumer ID already exists in the specified consumer group.")


def illegal_state(detail: str) -> RestError:
    return RestError(409, ILLEGAL_STATE, f"Illegal state: {detail}")


def invalid_consumer_config(detail: str) -> RestError:
    return RestError(422, INVALID_CONSUMER_CONFIG, f"Invalid consumer configuration: {detail}")


def invalid_consumer_config_constraint(detail: str) -> RestError:
    return RestError(422, INVALID_CONSUMER_CONFIG_CONSTRAINT,
                     f"Invalid consumer configuration. It does not abide by the constraints: {detail}")


def schema_registry_required() -> RestError:
    """A schema (or schema id) given without a Schema Registry: kafka-rest's SchemaManagerThrowing."""
    return RestError(422, INVALID_PAYLOAD,
                     "Payload error. Schema Registry must be configured when using schemas.")


def schema_serialization_unavailable() -> RestError:
    """avro/jsonschema/protobuf data without a Schema Registry: SchemaRecordSerializerThrowing."""
    return RestError(422, SERIALIZATION,
                     "Error serializing message. Schema Registry not defined, no Schema Registry "
                     "client available to serialize message.")


def deserialization_failed(detail: str) -> RestError:
    """kafka-rest maps a deserializer's SerializationException to 408 / 40801."""
    return RestError(408, SERIALIZATION_TIMEOUT, detail)


def internal_error() -> RestError:
    return RestError(500, 500, "Internal Server Error")


# librdkafka error names that mean "not allowed" rather than "broken"
_AUTHORIZATION = {"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED",
                  "CLUSTER_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
                  "DELEGATION_TOKEN_AUTHORIZATION_FAILED"}
_AUTHENTICATION = {"SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION", "ILLEGAL_SASL_STATE",
                   "UNSUPPORTED_SASL_MECHANISM"}


# KafkaExceptionMapper's table (exact Java exception classes), under librdkafka's error names:
# BrokerNotAvailable; RecordTooLarge (MESSAGE_TOO_LARGE: the status is the code, 413);
# ThrottlingQuotaExceeded (429, 42901); UnknownTopicOrPartition and UnknownTopicId (40403);
# InvalidReplicationFactor, SecurityDisabled, UnsupportedVersion, InvalidPartitions,
# InvalidRequest, UnknownServer, PolicyViolation, TopicExists, InvalidConfiguration and
# TopicDeletionDisabled (400, 40002); and its InvalidTopicException branch (TOPIC_EXCEPTION).
TOO_MANY_REQUESTS = 42901
# errors whose Java exception is a RetriableException (librdkafka marks few of them retriable)
_RETRIABLE = frozenset({
    "_TIMED_OUT", "_MSG_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "REQUEST_TIMED_OUT",
    "NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE", "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
    "UNKNOWN_TOPIC_OR_PART", "UNKNOWN_TOPIC_ID", "THROTTLING_QUOTA_EXCEEDED"})
_HANDLED: dict[str, tuple[int, int]] = {
    "BROKER_NOT_AVAILABLE": (503, BROKER_NOT_AVAILABLE),
    "MSG_SIZE_TOO_LARGE": (413, 413),
    "THROTTLING_QUOTA_EXCEEDED": (429, TOO_MANY_REQUESTS),
    "UNKNOWN_TOPIC_OR_PART": (404, 40403),
    "UNKNOWN_TOPIC_ID": (404, 40403),
    **{name: (400, KAFKA_BAD_REQUEST) for name in (
        "INVALID_REPLICATION_FACTOR", "SECURITY_DISABLED", "UNSUPPORTED_VERSION", "INVALID_PARTITIONS",
        "INVALID_REQUEST", "UNKNOWN", "POLICY_VIOLATION", "TOPIC_ALREADY_EXISTS", "INVALID_CONFIG",
        "TOPIC_DELETION_DISABLED", "TOPIC_EXCEPTION")},
}


def kafka_error_code(err) -> tuple[int, int]:
    """(HTTP status, Confluent error code) for a confluent_kafka.KafkaError, as kafka-rest's
    KafkaExceptionMapper classifies the equivalent Java exception: authentication and
    authorization first, then its table of exception classes (checked before "retriable", so a
    throttling quota violation is 429 and an unknown topic-partition 404 although both are
    retriable in Java), then retriable, then any other Kafka error."""
    name = err.name() if err is not None else ""
    if name in _AUTHENTICATION:
        return 401, KAFKA_AUTHENTICATION
    if name in _AUTHORIZATION:
        return 403, KAFKA_AUTHORIZATION
    handled = _HANDLED.get(name)
    if handled is not None:
        return handled
    retriable = False
    try:
        retriable = bool(err.retriable())
    except Exception:  # pragma: no cover - KafkaError always has retriable()
        pass
    if retriable or name in _RETRIABLE:
        return 500, KAFKA_RETRIABLE_ERROR
    return 500, KAFKA_ERROR


def producer_error_code(err) -> int:
    """The `error_code` of a v2 produce answer's failed record (kafka-rest's AbstractProduceAction,
    not the exception mapper): authentication 40101, authorization 40301, retriable 50003,
    any other Kafka error 50002 (a record too large included)."""
    name = err.name() if err is not None else ""
    if name in _AUTHENTICATION:
        return KAFKA_AUTHENTICATION
    if name in _AUTHORIZATION:
        return KAFKA_AUTHORIZATION
    try:
        retriable = err is None or bool(err.retriable())
    except Exception:  # pragma: no cover - KafkaError always has retriable()
        retriable = False
    if retriable or name in _RETRIABLE:
        return KAFKA_RETRIABLE_ERROR
    return KAFKA_ERROR


def from_kafka_error(err, prefix: str = "") -> RestError:
    status, code = kafka_error_code(err)
    text = err.str() if err is not None else "unknown error"
    return RestError(status, code, f"{prefix}{text}")


# -- v3 (kafka-rest's v3 resources) ---------------------------------------------------------------
KAFKA_UNKNOWN_TOPIC_PARTITION = 40403  # rest-utils' KafkaExceptionMapper: UnknownTopicOrPartitionException
PRODUCE_BATCH = 42208  # kafka-rest's records:batch request checks


def unknown_topic_partition(message: str = "This server does not host this topic-partition.") -> RestError:
    """What the Admin client's UnknownTopicOrPartitionException becomes in v3: 404 with 40403."""
    return RestError(404, KAFKA_UNKNOWN_TOPIC_PARTITION, message)


def produce_batch_error(message: str) -> RestError:
    """A `records:batch` request refused as a whole (empty, duplicate ids, too many entries, ...)."""
    return RestError(422, PRODUCE_BATCH, message)


def unrecognized_field(name: str) -> RestError:
    """A field the request entity does not have: 422, as rest-utils' Jackson provider answers."""
    return RestError(422, 422, f"Unrecognized field: {name}")


def in_stream_constraint(err: RestError) -> RestError:
    """A 422 constraint violation answered for one record of a v3 produce stream or batch:
    kafka-rest puts the status (422) in `error_code` and the specific code in the message."""
    return RestError(422, 422, f"Error: {err.error_code} : {err.message}")


def reject_unknown_fields(obj: dict, known) -> None:
    """A request entity (a JSON object) with a field it does not have: the first such field is
    refused with 422 "Unrecognized field: <name>" (Jackson fails on unknown properties)."""
    for key in obj:
        if key not in known:
            raise unrecognized_field(key)
