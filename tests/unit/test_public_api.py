"""The exported names are the contract: changing them is a decision, not an accident."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import resilient_aws
from resilient_aws import batch, dynamodb, errors, idempotency, limits, retry, testing


def test_top_level_exports() -> None:
    assert resilient_aws.__all__ == [
        "__version__",
        "batch",
        "cli",
        "consumer",
        "dynamodb",
        "errors",
        "idempotency",
        "limits",
        "outbox",
        "payloads",
        "powertools",
        "redrive",
        "results",
        "retry",
        "testing",
        "tracing",
    ]
    assert resilient_aws.retry is retry
    with pytest.raises(AttributeError):
        resilient_aws.nope  # noqa: B018


def test_retry_exports() -> None:
    assert sorted(retry.__all__) == [
        "DEFAULT_POLICY",
        "Deadline",
        "ErrorClass",
        "FailedEntry",
        "JITTERS",
        "Jitter",
        "Pacer",
        "PartialOutcome",
        "RetryBudget",
        "RetryEvent",
        "RetryListener",
        "RetryPolicy",
        "SendResult",
        "add_listener",
        "arun_partial",
        "backoff_delay",
        "classify",
        "classify_entry",
        "emit",
        "register_entry_codes",
        "remove_listener",
        "retry",
        "run_partial",
        "wait_jittered",
    ]


def test_dynamodb_exports() -> None:
    assert sorted(dynamodb.__all__) == [
        "AsyncBatchWriter",
        "BatchGetResult",
        "BatchResult",
        "BatchWriter",
        "FailedEntry",
        "KeySchema",
        "Numbers",
        "Page",
        "ParallelScan",
        "Read",
        "ReadSummary",
        "abatch_get",
        "batch_get",
        "describe_key_schema",
        "deserialize_item",
        "item_size",
        "parallel_scan",
        "query",
        "scan",
        "scan_segment",
        "serialize_item",
    ]


def test_batch_exports() -> None:
    assert sorted(batch.__all__) == [
        "Answer",
        "AsyncEventBridgePutter",
        "AsyncFirehosePutter",
        "AsyncKinesisPutter",
        "AsyncSnsPublisher",
        "AsyncSqsDeleter",
        "AsyncSqsSender",
        "AsyncSqsVisibilityChanger",
        "BatchResult",
        "BatchSender",
        "EventBridgePutter",
        "FailedEntry",
        "FirehosePutter",
        "KinesisPutter",
        "SnsPublisher",
        "SqsDeleter",
        "SqsSender",
        "SqsVisibilityChanger",
        "event_size",
    ]


def test_consumer_exports() -> None:
    from resilient_aws import consumer

    assert sorted(consumer.__all__) == [
        "BatchProcessor",
        "DynamoDBStreamRecord",
        "FailedRecord",
        "KinesisStreamRecord",
        "KinesisStreamRecordPayload",
        "NOT_PROCESSED",
        "PRECEDING_RECORD_FAILED",
        "ProcessedBatch",
        "RecordKind",
        "SQSRecord",
        "SQSRecordAttributes",
        "Source",
        "StreamRecord",
        "VisibilityBackoff",
        "process_partial_response",
    ]
    assert resilient_aws.consumer is consumer
    assert set(dir(consumer)) >= set(consumer.__all__)
    for name in consumer.__all__:
        assert getattr(consumer, name) is not None


def test_payloads_exports() -> None:
    from resilient_aws import payloads

    assert sorted(payloads.__all__) == [
        "EXTENDED_CLIENT_THRESHOLD",
        "InvalidPointerError",
        "LEGACY_POINTER_CLASS",
        "LEGACY_SIZE_ATTRIBUTE",
        "MIN_RETENTION_S",
        "POINTER_CLASS",
        "PayloadConfig",
        "PayloadError",
        "PayloadNotFoundError",
        "PayloadPointer",
        "PayloadStore",
        "PayloadUploadError",
        "SIZE_ATTRIBUTE",
        "SweepResult",
        "embed_in_receipt_handle",
        "pointer_of",
        "resolve",
        "split_receipt_handle",
        "sweep_payloads",
    ]
    assert resilient_aws.payloads is payloads
    assert set(dir(payloads)) >= set(payloads.__all__)
    for name in payloads.__all__:
        assert getattr(payloads, name) is not None
    # the extended client libraries' exact strings
    assert payloads.POINTER_CLASS == "software.amazon.payloadoffloading.PayloadS3Pointer"
    assert payloads.LEGACY_POINTER_CLASS == "com.amazon.sqs.javamessaging.MessageS3Pointer"
    assert payloads.SIZE_ATTRIBUTE == "ExtendedPayloadSize"
    assert payloads.LEGACY_SIZE_ATTRIBUTE == "SQSLargePayloadSize"
    assert payloads.EXTENDED_CLIENT_THRESHOLD == 262_144


def test_errors_survive_pickling() -> None:
    import pickle

    from resilient_aws.results import BatchResult
    from resilient_aws.retry import FailedEntry
    from tests.unit.helpers import client_error

    cases = [
        errors.ConfigurationError("max_attempts", "must be >= 1"),
        errors.EntryTooLargeError("orders[pk=a]", 500_000, 409_600),
        errors.AttemptsExhaustedError("Scan", 3, client_error("Throttling")),
        errors.UnknownTableError("orders"),
        errors.BatchWriteError(
            BatchResult(submitted=1, failed=[FailedEntry({"pk": "a"}, "t[pk=a]", "X")])
        ),
    ]
    for error in cases:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__.keys() == error.__dict__.keys()


def test_limits_are_todays_values() -> None:
    assert limits.DYNAMODB_BATCH_WRITE.max_entries == 25
    assert limits.DYNAMODB_BATCH_WRITE.max_entry_bytes == 400 * 1024
    assert limits.DYNAMODB_BATCH_GET.max_entries == 100
    assert limits.SQS_BATCH.max_request_bytes == 1024 * 1024
    # a stream's default record size (MaxRecordSizeInKiB raises it to 10 MiB); 10 MiB a request
    assert limits.KINESIS_PUT_RECORDS.max_entry_bytes == 1024 * 1024
    assert limits.KINESIS_PUT_RECORDS.max_request_bytes == 10 * 1024 * 1024
    assert limits.EVENTBRIDGE_PUT_EVENTS.max_entry_bytes == 1_000_000 - 1  # "less than 1MB"
    assert limits.SNS_PUBLISH_BATCH.max_entry_bytes == 256 * 1024  # a topic's default
    assert limits.FIREHOSE_PUT_RECORD_BATCH.max_entry_bytes == 1000 * 1024


def test_testing_exports() -> None:
    assert sorted(testing.__all__) == [
        "Chaos",
        "ChaosStats",
        "FakeClock",
        "FakeLambdaContext",
        "MotoServer",
        "chaos",
        "chaos_defaults",
        "clear_default_clients",
    ]


def test_outbox_exports() -> None:
    from resilient_aws import outbox

    assert sorted(outbox.__all__) == [
        "BLOCKED",
        "CallableTarget",
        "ConditionCheck",
        "DELIVERED",
        "Delete",
        "DeliveryReport",
        "EventBridgeTarget",
        "KinesisTarget",
        "Layout",
        "OffloadedPayload",
        "Outbox",
        "OutboxError",
        "OutboxEvent",
        "OutboxSweeper",
        "PENDING",
        "Put",
        "Router",
        "SnsTarget",
        "SqsTarget",
        "StoredEvent",
        "Target",
        "TransactionCanceledError",
        "TransactionConditionFailedError",
        "TransactionTooLargeError",
        "Update",
        "deliver",
        "envelope",
        "events_from_stream",
        "relay_handler",
    ]


def test_redrive_exports() -> None:
    from resilient_aws import redrive

    assert sorted(redrive.__all__) == [
        "AmbiguousTargetError",
        "DlqMessage",
        "Filter",
        "LambdaFailure",
        "QueueNotFoundError",
        "RedriveError",
        "RedriveNotFoundError",
        "RedriveReport",
        "RedriveTargetError",
        "StreamPointer",
        "StreamPointerExpiredError",
        "TargetTypeMismatchError",
        "aredrive_eventbridge",
        "aredrive_lambda",
        "aredrive_sqs",
        "fresh_deduplication_id",
        "parse_lambda_failure",
        "parse_stream_pointer",
        "read_pointer",
        "redrive_eventbridge",
        "redrive_lambda",
        "redrive_sqs",
        "redrive_stream_pointers",
    ]


def test_powertools_exports() -> None:
    from resilient_aws import powertools

    assert powertools.__all__ == [
        "DIMENSIONS",
        "METRICS",
        "Dimension",
        "PowertoolsMetricsListener",
        "attach_logger",
    ]
    assert "retryable" in {f.name for f in dataclasses.fields(retry.RetryEvent)}


def test_idempotency_exports() -> None:
    assert sorted(idempotency.__all__) == [
        "COMPLETED",
        "INPROGRESS",
        "IdempotencyError",
        "IdempotencyInProgressError",
        "IdempotencyKeyError",
        "IdempotencyRecord",
        "IdempotencyResultError",
        "IdempotencyStore",
        "IdempotencyTableError",
        "IdempotencyValidationError",
        "hash_json",
        "idempotent",
    ]


def test_error_hierarchy() -> None:
    root = errors.ResilientAWSError
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), root)
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.EntryValidationError, ValueError)
    for name in (
        "AttemptsExhaustedError",
        "ElapsedTimeExceededError",
        "DeadlineExceededError",
        "RetryBudgetExhaustedError",
    ):
        assert issubclass(getattr(errors, name), errors.RetryError)
    for name in ("EntryTooLargeError", "DuplicateEntryError", "UnsupportedValueError"):
        assert issubclass(getattr(errors, name), errors.EntryValidationError)
    for name in errors.__all__:
        if name.startswith("Idempotency") and name != "IdempotencyError":
            assert issubclass(getattr(errors, name), errors.IdempotencyError)


def test_every_exception_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    for name in errors.__all__:
        assert name in errors.__doc__


def test_entry_errors_name_the_entry() -> None:
    error = errors.EntryTooLargeError("order-9", 500_000, 409_600)
    assert error.entry_id == "order-9"
    assert "order-9" in str(error)
    assert "409600" in str(error)


def _fresh_modules(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


HEAVY = {"pydantic", "aws_lambda_powertools", "moto", "pytest"}


def test_import_resilient_aws_is_lean() -> None:
    loaded = _fresh_modules("import resilient_aws")
    assert not {m.split(".")[0] for m in loaded} & (HEAVY | {"tenacity", "boto3"})


@pytest.mark.parametrize(
    "module",
    [
        "resilient_aws.retry",
        "resilient_aws.errors",
        "resilient_aws.cli",
        "resilient_aws.testing",
        "resilient_aws.dynamodb",
        "resilient_aws.batch",
        "resilient_aws.idempotency",
        "resilient_aws.outbox",
        "resilient_aws.redrive",
        "resilient_aws.consumer",
        "resilient_aws.payloads",
    ],
)
def test_subpackages_import_no_optional_dependency(module: str) -> None:
    loaded = {m.split(".")[0] for m in _fresh_modules(f"import {module}")}
    assert not loaded & HEAVY
