"""Every delivery shape, through the real functions-framework server.

The entry points run as `functions-framework --target ...` processes, the way
Cloud Functions runs them, against the sandbox. Each test removes `allUsers` as
the intern, delivers the sandbox's own audit entry for that change in one shape,
and checks the service is public again and the alert names the intern.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from tests.fixtures_sandbox import INTERN, PROJECT, PUBLIC_API, SHOP, WATCHDOG_PRINCIPAL
from watchdog.model import INVOKER_ROLE
from watchdog.sandbox import Sandbox
from watchdog.sandbox.functions import FunctionServer
from watchdog.sandbox.webhook import WebhookReceiver

TIMEOUT = 30


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    with Sandbox(PROJECT, services=("public-api", "shop")) as started:
        yield started


@pytest.fixture(scope="module")
def shared_webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(echo=False) as receiver:
        yield receiver


def function_env(sandbox: Sandbox, webhook: WebhookReceiver) -> dict[str, str]:
    return {
        "WATCHDOG_SERVICES": f"{PUBLIC_API.full},{SHOP.full}",
        "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
        "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
        "WATCHDOG_ALERT_WEBHOOK_URL": webhook.url,
        "WATCHDOG_ALERT_FORMAT": "chat",
        "WATCHDOG_SELF_PRINCIPAL": WATCHDOG_PRINCIPAL,
        "WATCHDOG_HEALTH_TIMEOUT": "2",
        # Every test removes allUsers as the intern, on one long-lived function
        # instance: its memory would take the fourth test for a fight and log
        # that alert only (tests/test_reconcile.py covers escalation).
        "WATCHDOG_ESCALATE_AFTER": "1000",
    }


@pytest.fixture(scope="module")
def on_event(
    shared_sandbox: Sandbox, shared_webhook: WebhookReceiver
) -> Iterator[FunctionServer]:
    env = function_env(shared_sandbox, shared_webhook)
    with FunctionServer("on_event", env) as server:
        yield server


@pytest.fixture(scope="module")
def on_tick(
    shared_sandbox: Sandbox, shared_webhook: WebhookReceiver
) -> Iterator[FunctionServer]:
    env = function_env(shared_sandbox, shared_webhook)
    with FunctionServer("on_tick", env) as server:
        yield server


@pytest.fixture
def sandbox(shared_sandbox: Sandbox, shared_webhook: WebhookReceiver) -> Sandbox:
    """The module's sandbox, public again and with no alerts, for each test."""
    shared_sandbox.reset()
    shared_sandbox.set_sink_url(None)
    shared_webhook.clear()
    return shared_sandbox


def intern_removes_allusers(sandbox: Sandbox) -> dict[str, Any]:
    """Remove allUsers from public-api as the intern; return that audit entry."""
    sandbox.change_members(
        PUBLIC_API, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    assert not sandbox.is_public(PUBLIC_API)
    return sandbox.entries()[-1]


def pubsub_message(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": base64.b64encode(json.dumps(entry).encode()).decode(),
        "messageId": "1234567890",
        "publishTime": entry["timestamp"],
        "attributes": {"logging.googleapis.com/timestamp": entry["timestamp"]},
    }


def audit_cloudevent(entry: dict[str, Any]) -> CloudEvent:
    payload = entry["protoPayload"]
    return CloudEvent(
        {
            "type": "google.cloud.audit.log.v1.written",
            "source": f"//cloudaudit.googleapis.com/projects/{PROJECT}/logs/activity",
            "id": f"{entry['logName']}{entry['insertId']}",
            "methodname": payload["methodName"],
            "servicename": payload["serviceName"],
            "resourcename": payload["resourceName"],
        },
        entry,
    )


def pubsub_cloudevent(entry: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/audit",
        },
        {
            "message": pubsub_message(entry),
            "subscription": f"projects/{PROJECT}/subscriptions/audit-push",
        },
    )


def eventarc_binary(entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers, body = to_binary(audit_cloudevent(entry))
    return headers, body


def eventarc_structured(entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers, body = to_structured(audit_cloudevent(entry))
    return headers, body


def pubsub_binary(entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers, body = to_binary(pubsub_cloudevent(entry))
    return headers, body


def raw_push(entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = {
        "message": pubsub_message(entry),
        "subscription": f"projects/{PROJECT}/subscriptions/audit-push",
    }
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def background_event(entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    message = pubsub_message(entry)
    body = {
        "context": {
            "eventId": message["messageId"],
            "timestamp": entry["timestamp"],
            "eventType": "google.pubsub.topic.publish",
            "resource": {
                "service": "pubsub.googleapis.com",
                "name": f"projects/{PROJECT}/topics/audit",
            },
        },
        "data": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": message["data"],
            "attributes": message["attributes"],
        },
    }
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(eventarc_binary, id="eventarc-audit-binary"),
        pytest.param(eventarc_structured, id="eventarc-audit-structured"),
        pytest.param(pubsub_binary, id="pubsub-cloudevent-from-sink"),
        pytest.param(raw_push, id="raw-pubsub-push"),
        pytest.param(background_event, id="gen1-background-event"),
    ],
)
def test_audit_delivery_restores_and_names_the_actor(
    shape: Any,
    sandbox: Sandbox,
    on_event: FunctionServer,
    shared_webhook: WebhookReceiver,
) -> None:
    headers, body = shape(intern_removes_allusers(sandbox))

    answer = requests.post(on_event.url, headers=headers, data=body, timeout=TIMEOUT)

    assert answer.status_code == 200, answer.text
    assert answer.json()["outcomes"][0]["action"] == "restored"
    assert sandbox.is_public(PUBLIC_API)
    (alert,) = shared_webhook.wait_for(1, 10)
    assert f"who: {INTERN}" in alert.text


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(
            {"Content-Type": "application/json"},
            json.dumps(
                {
                    "message": {
                        "attributes": {"trigger": "scheduler"},
                        "messageId": "42",
                    },
                    "subscription": f"projects/{PROJECT}/subscriptions/ticks",
                }
            ).encode(),
            id="pubsub-push-attributes-only",
        ),
        pytest.param(
            {"User-Agent": "Google-Cloud-Scheduler", "X-CloudScheduler": "true"},
            b"",
            id="scheduler-http-empty-body",
        ),
    ],
)
def test_tick_delivery_restores_and_finds_the_actor_in_logging(
    headers: dict[str, str],
    body: bytes,
    sandbox: Sandbox,
    on_event: FunctionServer,
    shared_webhook: WebhookReceiver,
) -> None:
    intern_removes_allusers(sandbox)

    answer = requests.post(on_event.url, headers=headers, data=body, timeout=TIMEOUT)

    assert answer.status_code == 200, answer.text
    actions = {o["service"]: o["action"] for o in answer.json()["outcomes"]}
    assert actions == {PUBLIC_API.full: "restored", SHOP.full: "none"}
    assert sandbox.is_public(PUBLIC_API)
    (alert,) = shared_webhook.wait_for(1, 10)
    assert f"who: {INTERN}" in alert.text


def test_on_tick_checks_every_service(
    sandbox: Sandbox, on_tick: FunctionServer, shared_webhook: WebhookReceiver
) -> None:
    intern_removes_allusers(sandbox)

    answer = requests.post(on_tick.url, timeout=TIMEOUT)

    assert answer.status_code == 200, answer.text
    assert len(answer.json()["outcomes"]) == 2
    assert sandbox.is_public(PUBLIC_API)
    shared_webhook.wait_for(1, 10)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({"Content-Type": "application/json"}, b"{not json", id="garbage"),
        pytest.param(
            {"Content-Type": "application/json"},
            b'{"message": "not an object"}',
            id="push-with-bad-message",
        ),
        pytest.param(
            {
                "ce-id": "1",
                "ce-source": "//storage.googleapis.com/",
                "ce-type": "google.cloud.storage.object.v1.finalized",
                "ce-specversion": "1.0",
                "Content-Type": "application/json",
            },
            b"{}",
            id="unknown-cloudevent-type",
        ),
    ],
)
def test_malformed_delivery_is_acknowledged_and_changes_nothing(
    headers: dict[str, str],
    body: bytes,
    sandbox: Sandbox,
    on_event: FunctionServer,
    shared_webhook: WebhookReceiver,
) -> None:
    intern_removes_allusers(sandbox)

    answer = requests.post(on_event.url, headers=headers, data=body, timeout=TIMEOUT)

    assert answer.status_code == 200
    assert answer.json()["outcomes"] == []
    assert answer.json()["note"]
    assert not sandbox.is_public(PUBLIC_API)
    assert shared_webhook.alerts == []


def test_event_about_an_unwatched_service_changes_nothing(
    sandbox: Sandbox, on_event: FunctionServer
) -> None:
    entry = intern_removes_allusers(sandbox)
    entry["protoPayload"]["resourceName"] = entry["protoPayload"][
        "resourceName"
    ].replace("public-api", "someone-elses-service")

    answer = requests.post(on_event.url, *raw_push(entry)[::-1], timeout=TIMEOUT)

    assert answer.status_code == 200
    assert answer.json()["outcomes"] == []
    assert not sandbox.is_public(PUBLIC_API)


def test_an_api_that_stays_down_asks_for_redelivery(
    sandbox: Sandbox, on_event: FunctionServer
) -> None:
    headers, body = raw_push(intern_removes_allusers(sandbox))
    sandbox.faults.fail("GetService", "UNAVAILABLE", times=100)

    answer = requests.post(on_event.url, headers=headers, data=body, timeout=TIMEOUT)

    assert answer.status_code == 500
    assert answer.json()["retry"] is True
    sandbox.faults.clear()


def test_sink_through_the_pubsub_emulator_restores(
    pubsub_emulator: str, shared_webhook: WebhookReceiver
) -> None:
    """The whole edge path: audit trail → Pub/Sub emulator push → on_event."""
    shared_webhook.clear()
    with Sandbox(
        PROJECT,
        services=("public-api", "shop"),
        pubsub_emulator_host=pubsub_emulator,
        topic="audit-e2e",
        subscription="audit-e2e-push",
    ) as sandbox:
        env = function_env(sandbox, shared_webhook)
        with FunctionServer("on_event", env) as server:
            sandbox.set_sink_url(server.url)
            intern_removes_allusers(sandbox)
            (alert,) = shared_webhook.wait_for(1, TIMEOUT)
            assert f"who: {INTERN}" in alert.text
            assert sandbox.is_public(PUBLIC_API)
