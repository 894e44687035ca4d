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


def kafka_error_code(err) -> tuple[int, int]:
    """(HTTP status, Confluent error code) for a confluent_kafka.KafkaError, as kafka-rest's
    KafkaExceptionMapper classifies the equivalent Java exception."""
    name = err.name() if err is not None else ""
    if name in _AUTHENTICATION:
        return 401, KAFKA_AUTHENTICATION
    if name in _AUTHORIZATION:
        return 403, KAFKA_AUTHORIZATION
    if name == "BROKER_NOT_AVAILABLE":
        return 503, BROKER_NOT_AVAILABLE
    if name in ("INVALID_REPLICATION_FACTOR", "UNSUPPORTED_VERSION", "INVALID_PARTITIONS",
                "INVALID_REQUEST", "UNKNOWN", "POLICY_VIOLATION", "TOPIC_ALREADY_EXISTS", "INVALID_CONFIG"):
        return 400, KAFKA_BAD_REQUEST
    retriable = False
    try:
        retriable = bool(err.retriable())
    except Exception:  # pragma: no cover - KafkaError always has retriable()
        pass
    if retriable or name in ("_TIMED_OUT", "_MSG_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN",
                             "REQUEST_TIMED_OUT", "NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE",
                             "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                             "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS"):
        return 500, KAFKA_RETRIABLE_ERROR
    return 500, KAFKA_ERROR


def from_kafka_error(err, prefix: str = "") -> RestError:
    status, code = kafka_error_code(err)
    text = err.str() if err is not None else "unknown error"
    return RestError(status, code, f"{prefix}{text}")
