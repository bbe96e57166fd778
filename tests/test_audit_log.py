"""The Cloud Logging gateway against the sandbox, through the real GAPIC client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions
from google.cloud.logging_v2.types import LogEntry
from google.protobuf import json_format

from tests.conftest import CORPUS
from tests.fixtures_sandbox import INTERN, PROJECT, PUBLIC_API, SHOP
from watchdog import methods
from watchdog.audit_log import AuditLogReader, changes_filter
from watchdog.errors import PermanentError, PermissionDenied, RetryableError
from watchdog.model import INVOKER_ROLE, ServiceName
from watchdog.sandbox import RpcFailure, Sandbox

SET_IAM_POLICY = "google.cloud.run.v2.Services.SetIamPolicy"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def remove_all_users(
    sandbox: Sandbox,
    service: str = "public-api",
    *,
    principal: str = INTERN,
    delegation: tuple[str, ...] = (),
) -> None:
    policy = sandbox.policy(service)
    for binding in policy.bindings:
        if binding.role == INVOKER_ROLE and "allUsers" in binding.members:
            binding.members.remove("allUsers")
    sandbox.write_policy(service, policy, principal=principal, delegation=delegation)


def write_corpus_entry(sandbox: Sandbox, sample: str) -> dict[str, object]:
    """Store a corpus entry in the sandbox through WriteLogEntries."""
    document = json.loads((CORPUS / f"{sample}.json").read_text())
    proto = LogEntry.pb()()
    json_format.ParseDict(document, proto)
    client = AuditLogReader(sandbox.logging_endpoint).client()
    client.write_log_entries(entries=[LogEntry.wrap(proto)], timeout=5)
    return document  # type: ignore[no-any-return]


def test_filter_names_log_resource_methods_service_and_time() -> None:
    since = datetime(2025, 3, 4, 10, 15, 7, 123456, tzinfo=UTC)
    terms = changes_filter(PUBLIC_API, since).split(" AND ")
    assert terms == [
        f'logName="projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"',
        'resource.type="cloud_run_revision"',
        "protoPayload.methodName=("
        + " OR ".join(f'"{method}"' for method in methods.WATCHED_METHODS)
        + ")",
        f'protoPayload.resourceName=("{PUBLIC_API.full}" OR '
        f'"namespaces/{PROJECT}/services/public-api")',
        'timestamp>="2025-03-04T10:15:07.123456Z"',
    ]


def test_naive_since_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        changes_filter(PUBLIC_API, datetime(2025, 1, 1))


def test_change_made_as_the_intern_is_found_with_that_actor(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox)
    [change] = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)
    assert (change.actor, change.method, change.service, change.failed) == (
        INTERN,
        SET_IAM_POLICY,
        PUBLIC_API,
        False,
    )


def test_change_over_grpc_metadata_keeps_caller_details(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    import grpc
    from google.cloud import run_v2
    from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

    channel = grpc.insecure_channel(sandbox.run_endpoint)
    client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    policy = client.get_iam_policy(request={"resource": PUBLIC_API.full}, timeout=5)
    client.set_iam_policy(
        request={"resource": PUBLIC_API.full, "policy": policy},
        metadata=[("x-sandbox-principal", INTERN)],
        timeout=5,
    )
    channel.close()
    [change] = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)
    assert (change.actor, change.caller_ip, bool(change.user_agent)) == (
        INTERN,
        "127.0.0.1",
        True,
    )


def test_delegation_chain_is_read_origin_first(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    chain = ("alice@example.com", "ci@demo-project.iam.gserviceaccount.com")
    deployer = "deployer@demo-project.iam.gserviceaccount.com"
    remove_all_users(sandbox, principal=deployer, delegation=chain)
    [change] = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)
    assert (change.actor, change.delegation, change.origin) == (
        deployer,
        chain,
        "alice@example.com",
    )


def test_changes_come_newest_first_up_to_the_limit(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox, principal="first@example.com")
    sandbox.write_policy(
        "public-api", sandbox.policy("public-api"), principal="second@example.com"
    )
    sandbox.set_invoker_iam_disabled("public-api", True, principal="third@example.com")
    changes = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO, limit=2)
    assert [change.actor for change in changes] == [
        "third@example.com",
        "second@example.com",
    ]


def test_changes_before_since_are_left_out(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox)
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert audit_log_reader.recent_changes(PUBLIC_API, since=later) == []


def test_changes_to_another_service_are_left_out(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox, "shop")
    assert audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO) == []
    assert len(audit_log_reader.recent_changes(SHOP, since=LONG_AGO)) == 1


def test_refused_change_is_found_as_failed(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    sandbox.faults.block_public_members()
    remove_all_users(sandbox, principal="someone@example.com")
    policy = sandbox.policy("public-api")
    policy.bindings.add(role=INVOKER_ROLE, members=["allUsers"])
    with pytest.raises(RpcFailure, match="FAILED_PRECONDITION"):
        sandbox.write_policy("public-api", policy)
    newest = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)[0]
    assert (newest.failed, newest.actor) == (True, sandbox.default_principal)


def test_logging_delay_hides_the_change(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    sandbox.faults.delay_logging(60)
    remove_all_users(sandbox)
    assert audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO) == []


@pytest.mark.parametrize(
    ("sample", "service"),
    [
        (
            "auditlog_run_v1_replaceservice_failed_conflict",
            ServiceName("example-project", "asia-northeast1", "cloud-run-slack-bot"),
        ),
        (
            "auditlog_run_v2_setiampolicy_wif_github_impersonation",
            ServiceName("example-project", "europe-west1", "public-api"),
        ),
    ],
    ids=["v1-namespaces-name", "v2-full-name"],
)
def test_corpus_entry_is_found_by_its_service(
    sandbox: Sandbox,
    audit_log_reader: AuditLogReader,
    sample: str,
    service: ServiceName,
) -> None:
    document = write_corpus_entry(sandbox, sample)
    [change] = audit_log_reader.recent_changes(service, since=LONG_AGO)
    assert change.insert_id == document["insertId"]


def test_entry_about_another_api_is_skipped(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox)
    document = sandbox.entries()[0]
    document["insertId"] = "other-api"
    document["protoPayload"]["serviceName"] = "example.googleapis.com"
    proto = LogEntry.pb()()
    json_format.ParseDict(document, proto)
    audit_log_reader.client().write_log_entries(
        entries=[LogEntry.wrap(proto)], timeout=5
    )
    changes = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)
    assert [change.insert_id for change in changes] == [
        sandbox.entries()[0]["insertId"]
    ]


def test_unavailable_past_the_attempts_is_retryable(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    sandbox.faults.fail("ListLogEntries", "UNAVAILABLE", times=10)
    with pytest.raises(RetryableError, match="UNAVAILABLE"):
        audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)


def test_unavailable_once_is_retried(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    remove_all_users(sandbox)
    sandbox.faults.fail("ListLogEntries", "UNAVAILABLE", times=1)
    assert len(audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)) == 1


def test_permission_denied_is_permission_denied(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    sandbox.faults.fail("ListLogEntries", "PERMISSION_DENIED")
    with pytest.raises(PermissionDenied, match=r"logging\.logEntries\.list"):
        audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO)


def test_refused_query_is_permanent(sandbox: Sandbox) -> None:
    # The run endpoint does not serve Logging: a wrongly wired endpoint is a
    # permanent error, not something a retry fixes.
    reader = AuditLogReader(sandbox.run_endpoint, timeout=5)
    try:
        with pytest.raises(PermanentError, match="UNIMPLEMENTED"):
            reader.recent_changes(PUBLIC_API, since=LONG_AGO)
    finally:
        reader.close()


def test_unsupported_filter_sent_straight_through_is_invalid_argument(
    audit_log_reader: AuditLogReader,
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="severity"):
        audit_log_reader.client().list_log_entries(
            request={
                "resource_names": [f"projects/{PROJECT}"],
                "filter": 'severity>="NOTICE"',
            },
            timeout=5,
        )


def test_entries_after_until_are_left_out(
    sandbox: Sandbox, audit_log_reader: AuditLogReader
) -> None:
    sandbox.change_members(
        PUBLIC_API, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    between = datetime.now(UTC)
    sandbox.change_members(
        PUBLIC_API, add={INVOKER_ROLE: ["allUsers"]}, principal="later@example.com"
    )

    changes = audit_log_reader.recent_changes(PUBLIC_API, since=LONG_AGO, until=between)

    assert [c.actor for c in changes] == [INTERN]
