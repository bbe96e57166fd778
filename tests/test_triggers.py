"""Trigger decoding: every delivery shape of PITFALLS 1, 2 and 12, decided on purpose.

Inputs are built inline, small, from `_entry()` (a Cloud Run SetIamPolicy entry);
the corpus captures are covered by test_corpus.py. `decode` must never raise, so
the last tests feed it generated garbage.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.model import AuditEvent, Ignored, Tick, Trigger
from watchdog.triggers import decode, decode_delivery

NOW = datetime(2025, 3, 4, 10, 16, 30, tzinfo=UTC)
SERVICE = "projects/example-project/locations/europe-west1/services/public-api"
AUDIT_TYPE = "google.cloud.audit.log.v1.written"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
SCHEDULER = {
    "User-Agent": "Google-Cloud-Scheduler",
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": "iam-watch-every-minute",
    "X-CloudScheduler-ScheduleTime": "2025-03-04T10:16:00Z",
}


def _entry(**payload: Any) -> dict[str, Any]:
    proto_payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName": "run.googleapis.com",
        "methodName": "google.cloud.run.v2.Services.SetIamPolicy",
        "resourceName": SERVICE,
        "authenticationInfo": {"principalEmail": "alice@example.com"},
    }
    proto_payload.update(payload)
    return {
        "protoPayload": proto_payload,
        "insertId": "abc123",
        "timestamp": "2020-01-01T00:00:00Z",  # old on purpose: entries never go stale
        "resource": {"type": "cloud_run_revision", "labels": {"location": "x"}},
        "logName": "projects/example-project/logs/cloudaudit.googleapis.com%2Factivity",
    }


def _b64(document: Any) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return base64.b64encode(raw).decode()


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


def _push(message: dict[str, Any]) -> bytes:
    return _json({"message": message, "subscription": "projects/p/subscriptions/s"})


def _message(data: Any = None, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": "42",
        "publishTime": "2025-03-04T10:16:00.412Z",
    }
    if data is not None:
        message["data"] = _b64(data)
    message.update(fields)
    return message


def _binary(event_type: str, body: bytes, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Ce-Specversion": "1.0",
        "Ce-Type": event_type,
        "Ce-Source": "//example",
        "Ce-Id": "1",
        **extra,
    }


def _structured(event_type: str, data: Any, **attributes: Any) -> bytes:
    return _json(
        {
            "specversion": "1.0",
            "type": event_type,
            "source": "//example",
            "id": "1",
            "data": data,
            **attributes,
        }
    )


def _decode(headers: dict[str, str], body: bytes, **options: Any) -> Trigger:
    return decode(headers, body, now=NOW, **options)


def _ignored(trigger: Trigger) -> Ignored:
    assert isinstance(trigger, Ignored), trigger
    return trigger


def _event(trigger: Trigger) -> AuditEvent:
    assert isinstance(trigger, AuditEvent), trigger
    return trigger


def _tick(trigger: Trigger) -> Tick:
    assert isinstance(trigger, Tick), trigger
    return trigger


# --- audit entries, in every layout (PITFALLS 2) --------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "delivery"),
    [
        pytest.param(
            _binary(AUDIT_TYPE, b""),
            _json(_entry()),
            "eventarc-audit",
            id="eventarc-binary",
        ),
        pytest.param(
            {"Content-Type": "application/cloudevents+json"},
            _structured(AUDIT_TYPE, _entry(), methodName="m", resourceName="r"),
            "eventarc-audit",
            id="eventarc-structured-camelcase-extensions",
        ),
        pytest.param(
            {"Content-Type": "application/json"},
            _structured(AUDIT_TYPE, _entry()),
            "eventarc-audit",
            id="eventarc-structured-as-plain-json",
        ),
        pytest.param(
            _binary(PUBSUB_TYPE, b""),
            _json({"message": _message(_entry()), "subscription": "s"}),
            "pubsub-cloudevent",
            id="pubsub-cloudevent",
        ),
        pytest.param({}, _push(_message(_entry())), "pubsub-push", id="raw-push"),
        pytest.param(
            {},
            _json(
                {
                    "context": {
                        "eventId": "1",
                        "eventType": "google.pubsub.topic.publish",
                        "timestamp": "2025-03-04T10:16:00Z",
                    },
                    "data": {"data": _b64(_entry())},
                }
            ),
            "background-event",
            id="gen1-background",
        ),
        pytest.param({}, _json(_entry()), "log-entry", id="bare-entry"),
    ],
)
def test_audit_entry_is_an_audit_event_in_every_layout(
    headers: dict[str, str], body: bytes, delivery: str
) -> None:
    event = _event(_decode(headers, body))
    assert (event.delivery, event.change.insert_id, str(event.change.service)) == (
        delivery,
        "abc123",
        SERVICE,
    )


def test_header_names_are_read_in_any_case() -> None:
    headers = {key.upper(): value for key, value in _binary(AUDIT_TYPE, b"").items()}
    assert isinstance(_decode(headers, _json(_entry())), AuditEvent)


def test_extension_attributes_are_not_trusted_over_the_entry() -> None:
    body = _structured(AUDIT_TYPE, _entry(), methodName="google.other.Delete")
    event = _event(_decode({"Content-Type": "application/cloudevents+json"}, body))
    assert event.change.method == "google.cloud.run.v2.Services.SetIamPolicy"


def test_old_audit_entry_is_not_dropped_for_age() -> None:
    assert isinstance(_decode({}, _push(_message(_entry()))), AuditEvent)


def test_failed_call_is_still_an_audit_event() -> None:
    """The reconcile step reports it as a denied attempt; it restores nothing."""
    body = _json(_entry(status={"code": 7, "message": "denied"}))
    assert _event(_decode({}, body)).change.failed is True


def test_pubsub_push_with_escaped_slashes_is_read() -> None:
    body = _push(_message(_entry())).replace(b"/", b"\\/")
    assert isinstance(_decode({}, body), AuditEvent)


def test_decode_delivery_hands_back_the_entry() -> None:
    entry = _entry()
    assert decode_delivery({}, _push(_message(entry)), now=NOW).entry == entry


# --- audit entries that are not for us ------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            {
                "serviceName": "storage.googleapis.com",
                "methodName": "storage.setIamPermissions",
                "resourceName": "projects/_/buckets/b",
            },
            "storage.setIamPermissions on storage.googleapis.com",
            id="other-api",
        ),
        pytest.param(
            {"methodName": "google.cloud.run.v2.Services.GetIamPolicy"},
            "GetIamPolicy on " + SERVICE,
            id="unwatched-run-method",
        ),
        pytest.param(
            {"resourceName": "namespaces/p/services/s", "resourceLocation": {}},
            "names no region",
            id="v1-name-without-region",
        ),
        pytest.param({"authenticationInfo": "alice"}, "unreadable", id="malformed"),
    ],
)
def test_audit_entry_not_for_the_watchdog_is_ignored_with_reason(
    payload: dict[str, Any], reason: str
) -> None:
    entry = _entry(**payload)
    entry["resource"]["labels"] = {}
    assert reason in _ignored(_decode({}, _json(entry))).reason


def test_log_entry_without_payload_is_ignored() -> None:
    body = _push(_message({"logName": "projects/p/logs/x", "insertId": "1"}))
    assert "no protoPayload" in _ignored(_decode({}, body)).reason


# --- ticks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"tick", id="not-json"),
        pytest.param(b'{"check": "all"}', id="json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_scheduler_http_request_is_a_tick_whatever_the_body(body: bytes) -> None:
    tick = _tick(_decode(SCHEDULER, body))
    assert (tick.source, tick.scheduled_at) == (
        "scheduler-http",
        datetime(2025, 3, 4, 10, 16, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"User-Agent": "Google-Cloud-Scheduler"}, id="user-agent-only"),
        pytest.param({"X-CloudScheduler": "true"}, id="header-only"),
    ],
)
def test_scheduler_is_recognised_by_either_mark(headers: dict[str, str]) -> None:
    assert isinstance(_decode(headers, b""), Tick)


def test_scheduler_time_with_offset_is_read() -> None:
    headers = SCHEDULER | {"X-CloudScheduler-ScheduleTime": "2025-03-04T11:16:00+01:00"}
    assert _tick(_decode(headers, b"")).scheduled_at == datetime(
        2025, 3, 4, 10, 16, tzinfo=UTC
    )


def test_unreadable_scheduler_time_still_ticks() -> None:
    headers = SCHEDULER | {"X-CloudScheduler-ScheduleTime": "soon"}
    assert _tick(_decode(headers, b"")).scheduled_at is None


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            _message(attributes={"trigger": "scheduler"}), id="attributes-only"
        ),
        pytest.param(_message(data=b"tick"), id="text"),
        pytest.param(_message(data={"foo": "bar"}), id="json-not-log-entry"),
        pytest.param(_message(data=b"\xff\x00"), id="binary"),
        pytest.param(_message(data=[1, 2]), id="json-list"),
        pytest.param(_message() | {"data": ""}, id="empty-data"),
    ],
)
def test_pubsub_message_that_is_not_a_log_entry_is_a_tick(
    message: dict[str, Any],
) -> None:
    tick = _tick(_decode({}, _push(message)))
    assert tick.scheduled_at == datetime(2025, 3, 4, 10, 16, 0, 412000, tzinfo=UTC)


def test_attributes_only_pubsub_cloudevent_is_a_tick() -> None:
    body = _json({"message": _message(attributes={"job": "j"}), "subscription": "s"})
    assert _tick(_decode(_binary(PUBSUB_TYPE, body), body)).source == (
        "pubsub-cloudevent"
    )


def test_snake_case_only_message_is_read() -> None:
    message = {"message_id": "42", "publish_time": "2025-03-04T10:16:00Z"}
    assert _tick(_decode({}, _push(message))).scheduled_at == datetime(
        2025, 3, 4, 10, 16, tzinfo=UTC
    )


def test_message_without_publish_time_is_a_tick_of_unknown_time() -> None:
    body = _push({"attributes": {"a": "b"}, "messageId": "52"})
    assert _tick(_decode({}, body)).scheduled_at is None


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            {
                "context": {
                    "eventId": "1",
                    "eventType": "google.pubsub.topic.publish",
                    "timestamp": "2025-03-04T10:16:00Z",
                },
                "data": {"data": _b64(b"test message 3")},
            },
            id="context-layout",
        ),
        pytest.param(
            {
                "eventId": "1",
                "eventType": "providers/cloud.pubsub/eventTypes/topic.publish",
                "timestamp": "2025-03-04T10:16:00Z",
                "resource": "projects/p/topics/t",
                "data": {"attributes": {"a": "b"}},
            },
            id="top-level-layout",
        ),
    ],
)
def test_gen1_background_event_is_read(event: dict[str, Any]) -> None:
    tick = _tick(_decode({}, _json(event)))
    assert (tick.source, tick.scheduled_at) == (
        "background-event",
        datetime(2025, 3, 4, 10, 16, tzinfo=UTC),
    )


# --- staleness (PITFALLS 12) ----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(SCHEDULER, b"", id="scheduler-http"),
        pytest.param({}, _push(_message(attributes={"a": "b"})), id="pubsub-push"),
    ],
)
def test_tick_older_than_max_age_is_ignored_as_stale(
    headers: dict[str, str], body: bytes
) -> None:
    later = NOW + timedelta(minutes=10)
    ignored = _ignored(decode(headers, body, now=later, max_age=300))
    assert ignored.reason.startswith("stale tick")


def test_tick_within_max_age_is_kept() -> None:
    assert isinstance(_decode(SCHEDULER, b"", max_age=300), Tick)


def test_infinite_max_age_keeps_every_tick() -> None:
    far = NOW + timedelta(days=3650)
    assert isinstance(decode(SCHEDULER, b"", now=far, max_age=math.inf), Tick)


def test_naive_now_is_read_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert isinstance(decode(SCHEDULER, b"", now=naive), Tick)


# --- everything else is ignored with a reason -----------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        pytest.param({}, b"", "empty body", id="empty-without-scheduler"),
        pytest.param({}, b"\x00\x01garbage", "not JSON", id="garbage-bytes"),
        pytest.param({}, b"\xff\xfe\xfd", "not JSON", id="not-utf8"),
        pytest.param({}, b"{not json", "not JSON", id="broken-json"),
        pytest.param({}, b"[" * 100_000, "not JSON", id="nested-too-deep"),
        pytest.param({}, b"[1, 2]", "not an object", id="json-list"),
        pytest.param({}, b'"text"', "not an object", id="json-string"),
        pytest.param({}, b'{"hello": "world"}', "[hello]", id="unknown-object"),
        pytest.param(
            {}, b'{"etag": "ACAB"}', "looks like an IAM policy", id="iam-policy"
        ),
        pytest.param(
            {},
            _push(_message(data=None) | {"data": "@@@"}),
            "not base64",
            id="data-not-base64",
        ),
        pytest.param(
            {}, _push(_message() | {"data": 5}), "not base64 text", id="data-number"
        ),
        pytest.param({}, _json({"message": "hi"}), "not an object", id="message-text"),
        pytest.param(
            {},
            _push(_message(attributes=["a"])),
            "attributes are list",
            id="attributes-list",
        ),
        pytest.param(
            {},
            _json({"eventType": "google.storage.object.finalize", "data": {}}),
            "not Pub/Sub",
            id="gen1-storage-event",
        ),
        pytest.param(
            _binary("com.example.unknown", b""),
            b"{}",
            "com.example.unknown",
            id="unknown-cloudevent-type",
        ),
        pytest.param(
            {"Ce-Specversion": "1.0"},
            b"{}",
            "not a valid CloudEvent",
            id="cloudevent-without-type",
        ),
        pytest.param(
            _binary(AUDIT_TYPE, b"") | {"Ce-Specversion": "9.9"},
            b"{}",
            "not a valid CloudEvent",
            id="cloudevent-unknown-specversion",
        ),
        pytest.param(
            {"Content-Type": "application/cloudevents+json"},
            b"[1]",
            "structured CloudEvent body",
            id="structured-not-object",
        ),
        pytest.param(
            _binary(AUDIT_TYPE, b""), b"", "absent, not a LogEntry", id="audit-no-data"
        ),
        pytest.param(
            _binary(AUDIT_TYPE, b""), b"<xml/>", "not JSON", id="audit-data-not-json"
        ),
        pytest.param(
            _binary(PUBSUB_TYPE, b""),
            b"{}",
            "without a message",
            id="pubsub-no-message",
        ),
    ],
)
def test_undecodable_delivery_is_ignored_with_reason(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    assert reason in _ignored(_decode(headers, body)).reason


def test_ignored_delivery_says_how_it_came() -> None:
    body = _push(_message(data=None) | {"data": "@@@"})
    assert _ignored(_decode({}, body)).delivery == "pubsub-push"


def test_reason_for_huge_garbage_stays_short() -> None:
    body = _json({"x" * 10_000: 1})
    assert len(_ignored(_decode({}, body)).reason) < 300


# --- never raises ---------------------------------------------------------------

_HEADER_SETS = st.sampled_from(
    [
        {},
        SCHEDULER,
        _binary(AUDIT_TYPE, b""),
        _binary(PUBSUB_TYPE, b""),
        {"Content-Type": "application/cloudevents+json"},
        {"Content-Type": "application/json"},
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        "message",
        "data",
        "attributes",
        "specversion",
        "type",
        "protoPayload",
        "logName",
        "context",
        "eventType",
        "publishTime",
        "serviceName",
        "resourceName",
        "methodName",
        "authenticationInfo",
    ]
)
_SHAPED = st.recursive(
    st.none() | st.text(max_size=20) | st.integers(),
    lambda inner: (
        st.dictionaries(_KEYS, inner, max_size=5) | st.lists(inner, max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(headers=_HEADER_SETS, body=st.binary(max_size=200))
def test_decode_never_raises_on_arbitrary_bytes(
    headers: dict[str, str], body: bytes
) -> None:
    assert isinstance(_decode(headers, body), Tick | AuditEvent | Ignored)


@settings(max_examples=150, deadline=None)
@given(headers=_HEADER_SETS, document=_JSON | _SHAPED)
def test_decode_never_raises_on_arbitrary_json(
    headers: dict[str, str], document: Any
) -> None:
    body = json.dumps(document).encode()
    assert isinstance(_decode(headers, body), Tick | AuditEvent | Ignored)


@settings(max_examples=150, deadline=None)
@given(document=_SHAPED)
def test_decode_never_raises_on_arbitrary_pubsub_data(document: Any) -> None:
    body = _push(_message(document))
    assert isinstance(_decode({}, body), Tick | AuditEvent | Ignored)


@settings(max_examples=150, deadline=None)
@given(payload=st.dictionaries(_KEYS, _SHAPED, max_size=6))
def test_decode_never_raises_on_arbitrary_audit_payload(
    payload: dict[str, Any],
) -> None:
    body = _json({"protoPayload": payload, "logName": "l"})
    assert isinstance(_decode({}, body), Tick | AuditEvent | Ignored)


_ATTRIBUTE_KEYS = st.sampled_from(
    ["type", "id", "source", "time", "datacontenttype", "data", "data_base64", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    spec=st.sampled_from(["1.0", "0.3"]) | _JSON,
    attributes=st.dictionaries(_ATTRIBUTE_KEYS, _JSON, max_size=6),
)
def test_decode_never_raises_on_arbitrary_structured_cloudevent(
    spec: Any, attributes: dict[str, Any]
) -> None:
    body = _json({"specversion": spec, **attributes})
    headers = {"Content-Type": "application/cloudevents+json"}
    assert isinstance(_decode(headers, body), Tick | AuditEvent | Ignored)
