"""The sandbox behaves like the Google APIs it stands in for, seen by the real clients.

These tests use the GAPIC clients directly (not the watchdog's gateways) so that
they pin the sandbox's own contract: IAM etag and version rules, audit entries in
the corpus shape, the filter subset, the front end, faults and forwarding.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import run_v2
from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.services.logging_service_v2.transports import (
    LoggingServiceV2GrpcTransport,
)
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.iam.v1 import policy_pb2
from google.rpc import error_details_pb2
from google.type import expr_pb2

from tests.conftest import CORPUS
from tests.fixtures_sandbox import (
    INTERN,
    PROJECT,
    PUBLIC_API,
    SHOP,
    WATCHDOG_PRINCIPAL,
    PushReceiver,
)
from watchdog.model import INVOKER_ROLE, ServiceName
from watchdog.sandbox import Sandbox
from watchdog.sandbox.faults import ORG_POLICY_CONSTRAINT

ACTIVITY = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
AS_INTERN = [("x-sandbox-principal", INTERN)]
EXPIRING = expr_pb2.Expr(
    expression='request.time < timestamp("2030-01-01T00:00:00Z")', title="expires"
)


@pytest.fixture
def services(sandbox: Sandbox) -> Iterator[run_v2.ServicesClient]:
    channel = grpc.insecure_channel(sandbox.run_endpoint)
    yield run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    channel.close()


@pytest.fixture
def logging_api(sandbox: Sandbox) -> Iterator[LoggingServiceV2Client]:
    channel = grpc.insecure_channel(sandbox.logging_endpoint)
    yield LoggingServiceV2Client(
        transport=LoggingServiceV2GrpcTransport(channel=channel)
    )
    channel.close()


def read(client: run_v2.ServicesClient, version: int = 3) -> policy_pb2.Policy:
    return client.get_iam_policy(
        request={
            "resource": PUBLIC_API.full,
            "options": {"requested_policy_version": version},
        },
        timeout=5,
    )


def write(
    client: run_v2.ServicesClient,
    policy: policy_pb2.Policy,
    metadata: list[tuple[str, str]] | None = None,
) -> policy_pb2.Policy:
    return client.set_iam_policy(
        request={"resource": PUBLIC_API.full, "policy": policy},
        metadata=metadata or [],
        timeout=5,
    )


def without_all_users(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    changed = policy_pb2.Policy()
    changed.CopyFrom(policy)
    for binding in changed.bindings:
        if binding.role == INVOKER_ROLE and "allUsers" in binding.members:
            binding.members.remove("allUsers")
    return changed


def entry_list(
    client: LoggingServiceV2Client, filter_text: str, **fields: Any
) -> list[Any]:
    pager = client.list_log_entries(
        request={"resource_names": [f"projects/{PROJECT}"], "filter": filter_text}
        | fields,
        timeout=5,
    )
    return list(next(iter(pager.pages)).entries)


# The Cloud Run Admin API.


def test_new_service_is_public_beside_one_other_binding(
    services: run_v2.ServicesClient,
) -> None:
    policy = read(services)
    assert [(b.role, list(b.members)) for b in policy.bindings] == [
        ("roles/run.developer", ["user:dev@example.com"]),
        (INVOKER_ROLE, ["allUsers"]),
    ]


def test_get_service_gives_the_front_end_uri(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    service = services.get_service(name=SHOP.full, timeout=5)
    assert (service.name, service.uri, list(service.urls)) == (
        SHOP.full,
        sandbox.uri("shop"),
        [sandbox.uri("shop")],
    )


def test_each_write_gets_a_new_etag(services: run_v2.ServicesClient) -> None:
    before = read(services)
    after = write(services, before)
    assert after.etag and after.etag != before.etag


def test_stale_etag_is_aborted(services: run_v2.ServicesClient) -> None:
    stale = read(services)
    write(services, stale)
    with pytest.raises(exceptions.Aborted):
        write(services, without_all_users(stale))


def test_empty_etag_overwrites_blindly(services: run_v2.ServicesClient) -> None:
    stale = read(services)
    write(services, stale)
    blind = without_all_users(stale)
    blind.etag = b""
    assert "allUsers" not in str(write(services, blind))


@pytest.mark.parametrize("version", [0, 1], ids=["unset", "v1"])
def test_conditional_policy_read_below_version_3_is_refused(
    sandbox: Sandbox, services: run_v2.ServicesClient, version: int
) -> None:
    policy = read(services)
    policy.version = 3
    policy.bindings.add(
        role=INVOKER_ROLE, members=["user:a@example.com"]
    ).condition.CopyFrom(EXPIRING)
    write(services, policy)
    with pytest.raises(exceptions.InvalidArgument):
        read(services, version)


def test_conditional_policy_written_below_version_3_is_refused(
    services: run_v2.ServicesClient,
) -> None:
    policy = read(services)
    policy.version = 1
    policy.bindings.add(
        role=INVOKER_ROLE, members=["user:a@example.com"]
    ).condition.CopyFrom(EXPIRING)
    with pytest.raises(exceptions.InvalidArgument):
        write(services, policy)


def test_conditional_policy_survives_a_version_3_round_trip(
    services: run_v2.ServicesClient,
) -> None:
    policy = read(services)
    policy.version = 3
    policy.bindings.add(
        role=INVOKER_ROLE, members=["user:a@example.com"]
    ).condition.CopyFrom(EXPIRING)
    write(services, policy)
    reread = read(services)
    assert (reread.version, reread.bindings[2].condition) == (3, EXPIRING)


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.get_service(name=f"{PUBLIC_API.full}-gone", timeout=5),
        lambda client: client.get_iam_policy(
            request={"resource": f"{PUBLIC_API.full}-gone"}, timeout=5
        ),
        lambda client: client.set_iam_policy(
            request={"resource": f"{PUBLIC_API.full}-gone", "policy": {}}, timeout=5
        ),
    ],
    ids=["GetService", "GetIamPolicy", "SetIamPolicy"],
)
def test_unknown_service_is_not_found(
    services: run_v2.ServicesClient, call: Any
) -> None:
    with pytest.raises(exceptions.NotFound):
        call(services)


# Faults.


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("UNAVAILABLE", exceptions.ServiceUnavailable),
        ("PERMISSION_DENIED", exceptions.PermissionDenied),
        ("ABORTED", exceptions.Aborted),
    ],
    ids=["unavailable", "permission-denied", "aborted"],
)
def test_status_fault_fails_the_next_call_only(
    sandbox: Sandbox,
    services: run_v2.ServicesClient,
    code: str,
    error: type[Exception],
) -> None:
    sandbox.faults.fail("GetIamPolicy", code, times=1)
    with pytest.raises(error):
        services.get_iam_policy(request={"resource": PUBLIC_API.full}, retry=None)
    assert read(services).etag


def test_org_policy_fault_names_the_constraint(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.block_public_members()
    blind = without_all_users(read(services))
    blind.etag = b""
    write(services, blind)
    restored = read(services)
    restored.bindings.add(role=INVOKER_ROLE, members=["allUsers"])
    with pytest.raises(exceptions.FailedPrecondition) as caught:
        write(services, restored)
    [detail] = caught.value.details
    assert isinstance(detail, error_details_pb2.PreconditionFailure)
    assert detail.violations[0].type == ORG_POLICY_CONSTRAINT


def test_org_policy_fault_still_lets_allusers_be_removed(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.block_public_members()
    assert "allUsers" not in str(write(services, without_all_users(read(services))))


def test_concurrent_writer_makes_the_next_write_stale(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.add_concurrent_writer()
    policy = read(services)
    with pytest.raises(exceptions.Aborted):
        write(services, without_all_users(policy))
    assert "user:concurrent-writer@example.com" in str(read(services))


def test_latency_beyond_the_client_timeout_is_deadline_exceeded(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.add_latency("GetService", 2.0)
    with pytest.raises(exceptions.DeadlineExceeded):
        services.get_service(name=PUBLIC_API.full, retry=None, timeout=0.2)


# The audit trail.


def structure(value: Any) -> Any:
    """The keys of a JSON value, recursively: its shape without the data."""
    if isinstance(value, dict):
        return {key: structure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [structure(value[0])] if value else []
    return type(value).__name__


def test_audit_entry_has_the_shape_of_a_real_one(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, without_all_users(read(services)), AS_INTERN)
    [entry] = sandbox.entries()
    sample = json.loads(
        (
            CORPUS / "auditlog_run_v2_setiampolicy_wif_github_impersonation.json"
        ).read_text()
    )
    del sample["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"]
    for document in (entry, sample):
        for part in ("request", "response"):
            document["protoPayload"][part] = {}  # their contents are policies
    assert structure(entry) == structure(sample)


def test_audit_entry_names_the_caller_from_metadata(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, without_all_users(read(services)), AS_INTERN)
    payload = sandbox.entries()[0]["protoPayload"]
    assert (
        payload["authenticationInfo"]["principalEmail"],
        payload["requestMetadata"]["callerIp"],
        payload["methodName"],
        payload["resourceName"],
    ) == (
        INTERN,
        "127.0.0.1",
        "google.cloud.run.v2.Services.SetIamPolicy",
        PUBLIC_API.full,
    )


def test_audit_entry_records_the_delegation_chain_origin_first(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    metadata = [
        ("x-sandbox-principal", "deployer@demo-project.iam.gserviceaccount.com"),
        (
            "x-sandbox-delegation",
            "alice@example.com,ci@demo-project.iam.gserviceaccount.com",
        ),
    ]
    write(services, read(services), metadata)
    info = sandbox.entries()[0]["protoPayload"]["authenticationInfo"]
    assert info["serviceAccountDelegationInfo"] == [
        {"firstPartyPrincipal": {"principalEmail": "alice@example.com"}},
        {
            "firstPartyPrincipal": {
                "principalEmail": "ci@demo-project.iam.gserviceaccount.com"
            }
        },
    ]


def test_caller_defaults_to_the_watchdog_principal(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, read(services))
    info = sandbox.entries()[0]["protoPayload"]["authenticationInfo"]
    assert info["principalSubject"] == f"serviceAccount:{WATCHDOG_PRINCIPAL}"


def test_refused_write_is_audited_as_a_failure(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.fail("SetIamPolicy", "PERMISSION_DENIED")
    with pytest.raises(exceptions.PermissionDenied):
        write(services, read(services), AS_INTERN)
    [entry] = sandbox.entries()
    assert (
        entry["severity"],
        entry["protoPayload"]["status"]["code"],
        entry["protoPayload"]["authorizationInfo"][0].get("granted", False),
        "response" in entry["protoPayload"],
    ) == ("ERROR", 7, False, False)


def test_transient_failure_leaves_no_audit_entry(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    sandbox.faults.fail("SetIamPolicy", "UNAVAILABLE")
    with pytest.raises(exceptions.ServiceUnavailable):
        services.set_iam_policy(
            request={"resource": PUBLIC_API.full, "policy": read(services)}, retry=None
        )
    assert sandbox.entries() == []


def test_policy_delta_is_absent_by_default(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, without_all_users(read(services)))
    assert "serviceData" not in sandbox.entries()[0]["protoPayload"]


def test_policy_delta_is_written_when_asked_for() -> None:
    with Sandbox(PROJECT, services=["public-api"], policy_delta=True) as sandbox:
        sandbox.write_policy(
            "public-api",
            without_all_users(sandbox.policy("public-api")),
            principal=INTERN,
        )
        [entry] = sandbox.entries()
    assert entry["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] == [
        {"action": "REMOVE", "role": INVOKER_ROLE, "member": "allUsers"}
    ]


def test_invoker_check_change_is_an_update_service_entry(sandbox: Sandbox) -> None:
    sandbox.set_invoker_iam_disabled("shop", True, principal=INTERN)
    [entry] = sandbox.entries()
    assert (
        entry["protoPayload"]["methodName"],
        entry["protoPayload"]["request"]["service"]["invokerIamDisabled"],
    ) == ("google.cloud.run.v2.Services.UpdateService", True)


# The Cloud Logging API.


def test_written_entries_are_listed_by_filter(
    sandbox: Sandbox,
    services: run_v2.ServicesClient,
    logging_api: LoggingServiceV2Client,
) -> None:
    write(services, read(services), AS_INTERN)
    sandbox.set_invoker_iam_disabled("shop", True)
    found = entry_list(
        logging_api,
        f'logName="{ACTIVITY}" AND protoPayload.methodName='
        '("google.cloud.run.v2.Services.UpdateService" OR "x")',
    )
    assert [entry.proto_payload.type_url for entry in found] == [
        "type.googleapis.com/google.cloud.audit.AuditLog"
    ]


def resource_names(entries: list[Any]) -> list[str]:
    names = []
    for entry in entries:
        payload = audit_log_pb2.AuditLog()
        entry.proto_payload.Unpack(payload)
        names.append(payload.resource_name)
    return names


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [("timestamp desc", [SHOP, PUBLIC_API]), ("", [PUBLIC_API, SHOP])],
    ids=["desc", "default-asc"],
)
def test_entries_come_in_the_requested_order(
    sandbox: Sandbox,
    logging_api: LoggingServiceV2Client,
    order_by: str,
    expected: list[ServiceName],
) -> None:
    sandbox.set_invoker_iam_disabled("public-api", True)
    sandbox.set_invoker_iam_disabled("shop", True)
    found = entry_list(logging_api, "", order_by=order_by)
    assert resource_names(found) == [name.full for name in expected]


def test_pages_follow_the_page_token(
    sandbox: Sandbox, logging_api: LoggingServiceV2Client
) -> None:
    for disabled in (True, False, True):
        sandbox.set_invoker_iam_disabled("shop", disabled)
    pager = logging_api.list_log_entries(
        request={"resource_names": [f"projects/{PROJECT}"], "page_size": 2}, timeout=5
    )
    sizes = [len(page.entries) for page in pager.pages]
    assert sizes == [2, 1]


def test_timestamp_bound_excludes_older_entries(
    sandbox: Sandbox, logging_api: LoggingServiceV2Client
) -> None:
    sandbox.set_invoker_iam_disabled("shop", True)
    [entry] = sandbox.entries()
    later = entry_list(logging_api, f'timestamp>"{entry["timestamp"]}"')
    same = entry_list(logging_api, f'timestamp>="{entry["timestamp"]}"')
    assert (len(later), len(same)) == (0, 1)


@pytest.mark.parametrize(
    "filter_text",
    [
        'severity="NOTICE"',
        f'logName:"{ACTIVITY}"',
        'logName="a" OR resource.type="cloud_run_revision"',
        'NOT logName="a"',
        '-logName="a"',
        'logName="a',
        'logName="a" resource.type="b"',
        '(logName="a")',
        'logName>="a"',
        'timestamp>="yesterday"',
        'timestamp>=("2025-01-01T00:00:00Z" OR "2025-01-02T00:00:00Z")',
    ],
    ids=[
        "unknown-field",
        "has-operator",
        "or-between-terms",
        "not",
        "minus",
        "unbalanced-quote",
        "implicit-and",
        "parenthesised-term",
        "ordering-on-a-string",
        "bad-timestamp",
        "timestamp-list",
    ],
)
def test_unsupported_filter_is_invalid_argument(
    logging_api: LoggingServiceV2Client, filter_text: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        entry_list(logging_api, filter_text)


def test_invalid_filter_message_names_the_term(
    logging_api: LoggingServiceV2Client,
) -> None:
    with pytest.raises(exceptions.InvalidArgument) as caught:
        entry_list(logging_api, f'logName="{ACTIVITY}" AND severity>="ERROR"')
    assert 'severity>="ERROR"' in caught.value.message


@pytest.mark.parametrize(
    "names", [[], ["organizations/1"]], ids=["none", "organization"]
)
def test_resource_names_must_name_a_project(
    logging_api: LoggingServiceV2Client, names: list[str]
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        logging_api.list_log_entries(request={"resource_names": names}, timeout=5)


def test_logging_delay_hides_new_entries_until_it_passes(
    sandbox: Sandbox, logging_api: LoggingServiceV2Client
) -> None:
    sandbox.faults.delay_logging(0.3)
    sandbox.set_invoker_iam_disabled("shop", True)
    hidden = entry_list(logging_api, "")
    deadline = time.monotonic() + 5
    while not (shown := entry_list(logging_api, "")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (len(hidden), len(shown)) == (0, 1)


def test_write_log_entries_stores_a_corpus_entry(
    logging_api: LoggingServiceV2Client,
) -> None:
    from google.cloud.logging_v2.types import LogEntry
    from google.protobuf import json_format

    sample = json.loads(
        (CORPUS / "auditlog_run_v1_setiampolicy_projects_format.json").read_text()
    )
    entry = LogEntry.pb()()
    json_format.ParseDict(sample, entry)
    logging_api.write_log_entries(entries=[LogEntry.wrap(entry)], timeout=5)
    pager = logging_api.list_log_entries(
        request={"resource_names": ["projects/example-project"]}, timeout=5
    )
    [found] = next(iter(pager.pages)).entries
    assert json_format.MessageToDict(found._pb) == sample


# The front end.


def health(sandbox: Sandbox, service: str) -> requests.Response:
    return requests.get(f"{sandbox.uri(service)}/health", timeout=5)


def test_public_service_answers_its_health_path(sandbox: Sandbox) -> None:
    answer = health(sandbox, "public-api")
    assert (answer.status_code, answer.text) == (200, "ok\n")


def test_service_without_allusers_gets_google_403_page(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, without_all_users(read(services)), AS_INTERN)
    answer = health(sandbox, "public-api")
    assert (answer.status_code, answer.headers["Content-Type"]) == (
        403,
        "text/html; charset=UTF-8",
    )
    assert "Your client does not have permission to get URL" in answer.text


def test_conditional_allusers_grant_does_not_open_the_service(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    policy = without_all_users(read(services))
    policy.version = 3
    policy.bindings.add(role=INVOKER_ROLE, members=["allUsers"]).condition.CopyFrom(
        EXPIRING
    )
    write(services, policy)
    assert health(sandbox, "public-api").status_code == 403


def test_disabled_invoker_check_opens_the_service(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    write(services, without_all_users(read(services)))
    sandbox.set_invoker_iam_disabled("public-api", True)
    assert health(sandbox, "public-api").status_code == 200


def test_unknown_service_path_is_404(sandbox: Sandbox) -> None:
    answer = requests.get(f"{sandbox.frontend_url}/s/nothing/health", timeout=5)
    assert answer.status_code == 404


# The log sink.


def test_sink_pushes_a_pubsub_envelope(
    sandbox: Sandbox, services: run_v2.ServicesClient, push_receiver: PushReceiver
) -> None:
    sandbox.set_sink_url(push_receiver.url)
    write(services, without_all_users(read(services)), AS_INTERN)
    [push] = push_receiver.wait_for(1)
    message = push.body["message"]
    entry = json.loads(base64.b64decode(message["data"]))
    assert (
        push.body["subscription"],
        entry["insertId"],
        entry["protoPayload"]["authenticationInfo"]["principalEmail"],
        message["attributes"]["logging.googleapis.com/timestamp"],
    ) == (
        f"projects/{PROJECT}/subscriptions/audit-sink",
        sandbox.entries()[0]["insertId"],
        INTERN,
        entry["timestamp"],
    )


def test_dropped_entry_is_not_pushed_but_is_still_logged(
    sandbox: Sandbox, push_receiver: PushReceiver
) -> None:
    sandbox.set_sink_url(push_receiver.url)
    sandbox.faults.drop_forwarded(1)
    sandbox.set_invoker_iam_disabled("shop", True)
    sandbox.set_invoker_iam_disabled("shop", False)
    [push] = push_receiver.wait_for(1)
    assert sandbox.flush()
    first, second = sandbox.entries()
    pushed = json.loads(base64.b64decode(push.body["message"]["data"]))
    assert (len(push_receiver.received), pushed["insertId"]) == (1, second["insertId"])
    assert first["insertId"] != second["insertId"]


def test_failing_sink_does_not_fail_the_write(
    sandbox: Sandbox, services: run_v2.ServicesClient, push_receiver: PushReceiver
) -> None:
    push_receiver.status = 500
    sandbox.set_sink_url(push_receiver.url)
    write(services, read(services))
    assert sandbox.flush()
    assert (sandbox.forwarder.failed, len(push_receiver.received)) == (1, 3)


def test_sink_publishes_to_the_pubsub_emulator(
    pubsub_emulator: str, push_receiver: PushReceiver
) -> None:
    with Sandbox(
        PROJECT,
        services=["public-api"],
        sink_url=push_receiver.url,
        pubsub_emulator_host=pubsub_emulator,
        topic=f"audit-{os.getpid()}-{time.monotonic_ns()}",
        subscription=f"audit-push-{os.getpid()}-{time.monotonic_ns()}",
    ) as sandbox:
        sandbox.set_invoker_iam_disabled("public-api", True, principal=INTERN)
        assert sandbox.flush()
        [push] = push_receiver.wait_for(1, timeout=30)
        [entry] = sandbox.entries()
    pushed = json.loads(base64.b64decode(push.body["message"]["data"]))
    assert (pushed["insertId"], push.body["subscription"]) == (
        entry["insertId"],
        sandbox.forwarder.subscription,
    )


# The HTTP control endpoint and the process.


def control(sandbox: Sandbox, route: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{sandbox.control_url}/{route}", json=body, timeout=5)


def test_control_fault_reaches_the_grpc_api(
    sandbox: Sandbox, services: run_v2.ServicesClient
) -> None:
    armed = control(
        sandbox,
        "fault",
        {"kind": "status", "method": "GetService", "code": "PERMISSION_DENIED"},
    )
    assert armed.status_code == 200
    with pytest.raises(exceptions.PermissionDenied):
        services.get_service(name=PUBLIC_API.full, timeout=5)


def test_control_invoker_check_disables_the_check(sandbox: Sandbox) -> None:
    answer = control(sandbox, "invoker-check", {"service": "shop", "disabled": True})
    state = requests.get(f"{sandbox.control_url}/state", timeout=5).json()
    assert (
        answer.status_code,
        state["services"][SHOP.full]["invoker_iam_disabled"],
    ) == (
        200,
        True,
    )


def test_control_iam_change_acts_as_the_given_principal(sandbox: Sandbox) -> None:
    answer = control(
        sandbox,
        "iam",
        {
            "service": "public-api",
            "remove": {INVOKER_ROLE: ["allUsers"]},
            "principal": INTERN,
        },
    )
    [entry] = sandbox.entries()
    assert (
        answer.status_code,
        health(sandbox, "public-api").status_code,
        entry["protoPayload"]["authenticationInfo"]["principalEmail"],
    ) == (200, 403, INTERN)


def test_reset_makes_services_public_and_forgets_entries(sandbox: Sandbox) -> None:
    sandbox.change_members("shop", remove={INVOKER_ROLE: ["allUsers"]})
    sandbox.faults.fail("GetService", "UNAVAILABLE", times=5)
    sandbox.reset()
    assert (
        sandbox.is_public("shop"),
        sandbox.entries(),
        sandbox.faults.snapshot()["status"],
    ) == (
        True,
        [],
        {},
    )


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("fault", {"kind": "earthquake"}, 400),
        ("fault", {"kind": "status", "method": "Nope", "code": "ABORTED"}, 400),
        (
            "fault",
            {"kind": "status", "method": "GetService", "code": "ABORTED", "times": 0},
            400,
        ),
        ("invoker-check", {"service": "nothing"}, 404),
        ("iam", {"service": "shop", "add": ["allUsers"]}, 400),
        ("nowhere", {}, 404),
    ],
    ids=[
        "unknown-fault",
        "unknown-method",
        "zero-times",
        "unknown-service",
        "malformed-iam-change",
        "unknown-route",
    ],
)
def test_control_refuses_what_it_cannot_do(
    sandbox: Sandbox, route: str, body: dict[str, Any], status: int
) -> None:
    assert control(sandbox, route, body).status_code == status


def test_module_runs_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchdog.sandbox",
            "--service",
            "public-api",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert process.stdout is not None
        endpoints = json.loads(process.stdout.readline())
        [service] = endpoints["services"]
        answer = requests.get(f"{service['uri']}/health", timeout=5)
        written = json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    assert (answer.status_code, written, code) == (200, endpoints, 0)
