"""Audit-entry parsing: the edge cases of PITFALLS 7 and 17, one small entry each.

Each case starts from `_entry()`, a minimal successful v2 SetIamPolicy on a Cloud
Run service, and changes one thing.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.types import LogEntry
from google.protobuf import any_pb2, json_format, timestamp_pb2

from watchdog.audit import (
    describe_entry,
    describe_principal,
    extract_change,
    looks_like_log_entry,
    parse_entry,
    parse_principal,
    parse_timestamp,
    principal_kind,
)
from watchdog.errors import MalformedInput
from watchdog.model import ServiceName

SERVICE = "projects/example-project/locations/europe-west1/services/public-api"
WIF_SUBJECT = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)


def _entry(**payload: Any) -> dict[str, Any]:
    """A minimal Cloud Run SetIamPolicy entry; keywords replace payload keys."""
    proto_payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName": "run.googleapis.com",
        "methodName": "google.cloud.run.v2.Services.SetIamPolicy",
        "resourceName": SERVICE,
        "authenticationInfo": {"principalEmail": "alice@example.com"},
        "requestMetadata": {
            "callerIp": "203.0.113.25",
            "callerSuppliedUserAgent": "ua",
        },
    }
    for key, value in payload.items():
        if value is None:
            proto_payload.pop(key, None)
        else:
            proto_payload[key] = value
    return {
        "protoPayload": proto_payload,
        "insertId": "abc123",
        "timestamp": "2025-03-04T10:15:07.123456Z",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": "", "location": "europe-west1"},
        },
        "logName": "projects/example-project/logs/cloudaudit.googleapis.com%2Factivity",
    }


def _parsed(entry: dict[str, Any]) -> Any:
    change = parse_entry(entry)
    assert change is not None
    return change


def _delta(*deltas: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
        "policyDelta": {
            "bindingDeltas": [
                {"action": action, "role": role, "member": member}
                for action, role, member in deltas
            ]
        },
    }


# --- the service ----------------------------------------------------------------


def test_service_comes_from_resource_name_when_label_is_empty() -> None:
    assert _parsed(_entry()).service == ServiceName.parse(SERVICE)


def test_raw_resource_name_is_kept() -> None:
    entry = _entry(resourceName="namespaces/example-project/services/public-api")
    assert (
        _parsed(entry).resource_name == "namespaces/example-project/services/public-api"
    )


def test_v1_namespaces_name_takes_region_from_resource_label() -> None:
    entry = _entry(resourceName="namespaces/example-project/services/public-api")
    assert _parsed(entry).service == ServiceName.parse(SERVICE)


def _without_label(entry: dict[str, Any]) -> dict[str, Any]:
    del entry["resource"]["labels"]["location"]
    return entry


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(
            {
                "request": {
                    "service": {
                        "metadata": {
                            "labels": {"cloud.googleapis.com/location": "europe-west1"}
                        }
                    }
                }
            },
            id="request-service-label",
        ),
        pytest.param(
            {
                "response": {
                    "metadata": {
                        "labels": {"cloud.googleapis.com/location": "europe-west1"}
                    }
                }
            },
            id="response-service-label",
        ),
        pytest.param(
            {"resourceLocation": {"currentLocations": ["europe-west1"]}},
            id="resource-location",
        ),
    ],
)
def test_v1_namespaces_name_takes_region_from_elsewhere(where: dict[str, Any]) -> None:
    entry = _without_label(
        _entry(resourceName="namespaces/example-project/services/public-api", **where)
    )
    assert _parsed(entry).service == ServiceName.parse(SERVICE)


def test_v1_namespaces_name_without_any_region_has_no_service() -> None:
    """Decided: still a change (the attribution holds), but with service None."""
    entry = _without_label(
        _entry(resourceName="namespaces/example-project/services/public-api")
    )
    change = _parsed(entry)
    assert (change.service, change.resource_name) == (
        None,
        "namespaces/example-project/services/public-api",
    )


def test_project_number_is_kept_as_found() -> None:
    entry = _entry(resourceName="namespaces/123456789012/services/public-api")
    assert _parsed(entry).service.project == "123456789012"


def test_full_resource_name_prefix_is_dropped() -> None:
    entry = _entry(resourceName=f"//run.googleapis.com/{SERVICE}")
    assert _parsed(entry).service == ServiceName.parse(SERVICE)


@pytest.mark.parametrize(
    ("api", "method", "resource"),
    [
        pytest.param(
            "storage.googleapis.com",
            "storage.setIamPermissions",
            "projects/_/buckets/b",
            id="storage",
        ),
        pytest.param(
            "compute.googleapis.com",
            "v1.compute.instances.insert",
            "projects/p/zones/z/instances/i",
            id="compute",
        ),
        pytest.param(
            "iam.googleapis.com",
            "google.iam.admin.v1.CreateServiceAccount",
            "projects/p",
            id="iam-admin",
        ),
        pytest.param(
            "cloudresourcemanager.googleapis.com",
            "SetIamPolicy",
            "organizations/888888888888",
            id="org-setiampolicy",
        ),
        pytest.param(
            "run.googleapis.com",
            "google.cloud.run.v1.Jobs.CreateJob",
            "namespaces/p/jobs/nightly",
            id="run-job",
        ),
        pytest.param(
            "run.googleapis.com",
            "google.cloud.run.v2.Revisions.DeleteRevision",
            f"{SERVICE}/revisions/public-api-00001-abc",
            id="run-revision",
        ),
    ],
)
def test_entry_about_anything_but_a_run_service_gives_none(
    api: str, method: str, resource: str
) -> None:
    entry = _entry(serviceName=api, methodName=method, resourceName=resource)
    assert parse_entry(entry) is None


def test_ordinary_log_line_gives_none() -> None:
    assert parse_entry({"jsonPayload": {"message": "hi"}, "logName": "x"}) is None


def test_run_entry_without_resource_name_is_malformed() -> None:
    with pytest.raises(MalformedInput, match="resourceName"):
        parse_entry(_entry(resourceName=None))


# --- malformed entries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param({"insertId": "x", "logName": "l"}, "no protoPayload", id="none"),
        pytest.param({"protoPayload": ["a"]}, "JSON object", id="list"),
        pytest.param({"protoPayload": "text"}, "JSON object", id="string"),
        pytest.param({"protoPayload": 7}, "JSON object", id="number"),
        pytest.param(
            {"protoPayload": {"@type": "type.googleapis.com/google.x.RequestLog"}},
            "not an AuditLog",
            id="foreign-type",
        ),
    ],
)
def test_entry_without_readable_payload_is_malformed(
    entry: dict[str, Any], reason: str
) -> None:
    with pytest.raises(MalformedInput, match=reason):
        parse_entry(entry)


def test_entry_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedInput, match="JSON object"):
        parse_entry(["not", "an", "entry"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"methodName": 5}, id="method-number"),
        pytest.param({"status": {"code": "seven"}}, id="status-code-text"),
        pytest.param(
            {"authenticationInfo": {"serviceAccountDelegationInfo": {}}},
            id="hops-not-a-list",
        ),
        pytest.param({"requestMetadata": {"callerIp": ["a"]}}, id="caller-ip-list"),
        pytest.param({"serviceData": _delta() | {"policyDelta": "x"}}, id="delta-text"),
        pytest.param({"authenticationInfo": "alice"}, id="authentication-text"),
        pytest.param({"status": "OK"}, id="status-text"),
        pytest.param({"resourceLocation": ["europe-west1"]}, id="location-list"),
    ],
)
def test_field_of_the_wrong_type_is_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedInput, match=r"protoPayload|serviceData"):
        parse_entry(_entry(**payload))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("timestamp", "yesterday", id="timestamp-text"),
        pytest.param("timestamp", "2025-13-01T00:00:00Z", id="timestamp-month-13"),
        pytest.param("insertId", 12, id="insert-id-number"),
    ],
)
def test_unreadable_entry_field_is_malformed(key: str, value: Any) -> None:
    entry = _entry()
    entry[key] = value
    with pytest.raises(MalformedInput):
        parse_entry(entry)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            {
                "status": {
                    "code": 7,
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo"}],
                }
            },
            id="status-details-any",
        ),
        pytest.param(
            {"serviceData": {"@type": "type.googleapis.com/acme.Unknown", "x": 1}},
            id="service-data-unknown-any",
        ),
        pytest.param({"request": {"@type": "t", "policy": 5}}, id="odd-request"),
        pytest.param({"response": ["not", "a", "struct"]}, id="odd-response"),
        pytest.param({"metadata": "text"}, id="odd-metadata"),
        pytest.param(
            {"requestMetadata": {"requestAttributes": {"time": "not a time"}}},
            id="odd-request-time",
        ),
        pytest.param({"authorizationInfo": {"granted": "yes"}}, id="odd-authz"),
    ],
)
def test_fields_never_read_cannot_break_the_parse(payload: dict[str, Any]) -> None:
    assert _parsed(_entry(**payload)).actor == "alice@example.com"


def test_payload_without_type_is_read() -> None:
    entry = _entry()
    del entry["protoPayload"]["@type"]
    assert _parsed(entry).method == "google.cloud.run.v2.Services.SetIamPolicy"


def test_snake_case_spelling_is_read() -> None:
    entry = {
        "proto_payload": {
            "service_name": "run.googleapis.com",
            "method_name": "google.cloud.run.v2.Services.SetIamPolicy",
            "resource_name": SERVICE,
            "authentication_info": {"principal_email": "alice@example.com"},
            "request_metadata": {"caller_ip": "203.0.113.25"},
        },
        "insert_id": "abc123",
        "timestamp": "2025-03-04T10:15:07Z",
    }
    change = _parsed(entry)
    assert (change.actor, change.caller_ip, change.insert_id) == (
        "alice@example.com",
        "203.0.113.25",
        "abc123",
    )


def test_message_to_dict_of_a_logging_client_entry_is_read() -> None:
    """The form the audit-log gateway gets: MessageToDict(LogEntry._pb)."""
    audit_log = audit_log_pb2.AuditLog(
        service_name="run.googleapis.com",
        method_name="google.cloud.run.v1.Services.SetIamPolicy",
        resource_name=SERVICE,
    )
    audit_log.authentication_info.principal_email = "alice@example.com"
    audit_log.request_metadata.caller_ip = "2001:db8::1"
    payload = any_pb2.Any()
    payload.Pack(audit_log)
    timestamp = timestamp_pb2.Timestamp(seconds=1741083307, nanos=123456789)
    entry = LogEntry(insert_id="abc123")
    entry._pb.proto_payload.CopyFrom(payload)
    entry._pb.timestamp.CopyFrom(timestamp)
    change = _parsed(json_format.MessageToDict(entry._pb))
    assert (change.actor, change.caller_ip, change.time) == (
        "alice@example.com",
        "2001:db8::1",
        datetime(2025, 3, 4, 10, 15, 7, 123456, tzinfo=UTC),
    )


# --- who, from where, when ------------------------------------------------------


@pytest.mark.parametrize(
    ("authentication", "actor"),
    [
        pytest.param(
            {
                "principalEmail": "a@example.com",
                "principalSubject": "user:a@example.com",
            },
            "a@example.com",
            id="email-first",
        ),
        pytest.param({"principalSubject": WIF_SUBJECT}, WIF_SUBJECT, id="subject-only"),
        pytest.param({}, None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param({"principalEmail": ""}, None, id="empty-email"),
    ],
)
def test_actor_is_email_else_subject_else_none(
    authentication: dict[str, Any] | None, actor: str | None
) -> None:
    assert _parsed(_entry(authenticationInfo=authentication)).actor == actor


@pytest.mark.parametrize(
    ("hops", "delegation"),
    [
        pytest.param(
            [
                {"firstPartyPrincipal": {"principalEmail": "one@example.com"}},
                {"firstPartyPrincipal": {"principalEmail": "two@example.com"}},
            ],
            ("one@example.com", "two@example.com"),
            id="order-kept",
        ),
        pytest.param(
            [{}, {"firstPartyPrincipal": {}}, {"principalSubject": WIF_SUBJECT}],
            (WIF_SUBJECT,),
            id="empty-hops-skipped",
        ),
        pytest.param(
            [{"thirdPartyPrincipal": {"thirdPartyClaims": {"sub": "repo:o/r"}}}],
            ("repo:o/r",),
            id="third-party-claims",
        ),
        pytest.param([{}], (), id="only-empty-hop"),
    ],
)
def test_delegation_chain_is_read_origin_first(
    hops: list[dict[str, Any]], delegation: tuple[str, ...]
) -> None:
    authentication = {
        "principalEmail": "deployer@p.iam.gserviceaccount.com",
        "serviceAccountDelegationInfo": hops,
    }
    assert _parsed(_entry(authenticationInfo=authentication)).delegation == delegation


def test_origin_is_first_hop() -> None:
    authentication = {
        "principalEmail": "deployer@p.iam.gserviceaccount.com",
        "serviceAccountDelegationInfo": [
            {"principalSubject": WIF_SUBJECT},
            {"firstPartyPrincipal": {"principalEmail": "middle@example.com"}},
        ],
    }
    assert _parsed(_entry(authenticationInfo=authentication)).origin == WIF_SUBJECT


def test_origin_is_actor_without_delegation() -> None:
    assert _parsed(_entry()).origin == "alice@example.com"


@pytest.mark.parametrize(
    ("caller_ip", "expected"),
    [
        pytest.param("private", "private", id="private"),
        pytest.param("gce-internal-ip", "gce-internal-ip", id="gce-internal"),
        pytest.param("2001:db8:8e02:1600::a2b2", "2001:db8:8e02:1600::a2b2", id="ipv6"),
        pytest.param("198.51.100.7", "198.51.100.7", id="ipv4"),
        pytest.param("", None, id="empty"),
    ],
)
def test_caller_ip_is_kept_as_written(caller_ip: str, expected: str | None) -> None:
    metadata = {"callerIp": caller_ip}
    assert _parsed(_entry(requestMetadata=metadata)).caller_ip == expected


def test_missing_request_metadata_gives_no_caller() -> None:
    change = _parsed(_entry(requestMetadata=None))
    assert (change.caller_ip, change.user_agent) == (None, None)


def test_empty_user_agent_is_none() -> None:
    metadata = {"callerIp": "private", "callerSuppliedUserAgent": ""}
    assert _parsed(_entry(requestMetadata=metadata)).user_agent is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "2020-05-15T04:28:42.237027213Z",
            datetime(2020, 5, 15, 4, 28, 42, 237027, tzinfo=UTC),
            id="nanoseconds",
        ),
        pytest.param(
            "2023-05-24T21:12:55.145Z",
            datetime(2023, 5, 24, 21, 12, 55, 145000, tzinfo=UTC),
            id="milliseconds",
        ),
        pytest.param(
            "2025-03-04T10:15:00Z",
            datetime(2025, 3, 4, 10, 15, tzinfo=UTC),
            id="no-fraction",
        ),
        pytest.param(
            "2025-03-04T12:15:00+02:00",
            datetime(2025, 3, 4, 10, 15, tzinfo=UTC),
            id="offset",
        ),
        pytest.param(
            "2025-03-04T12:15:00.5+0200",
            datetime(2025, 3, 4, 10, 15, 0, 500000, tzinfo=UTC),
            id="offset-without-colon",
        ),
        pytest.param(
            "2025-03-04T10:15:00",
            datetime(2025, 3, 4, 10, 15, tzinfo=UTC),
            id="no-offset-is-utc",
        ),
    ],
)
def test_timestamp_is_read_as_utc_microseconds(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-03-04",
        "2025-02-30T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
    ],
)
def test_unreadable_timestamp_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_entry_time_keeps_microseconds_of_nanosecond_timestamp() -> None:
    entry = _entry()
    entry["timestamp"] = "2025-03-07T02:03:04.000001999Z"
    assert _parsed(entry).time == datetime(2025, 3, 7, 2, 3, 4, 1, tzinfo=UTC)


def test_missing_timestamp_gives_no_time() -> None:
    entry = _entry()
    del entry["timestamp"]
    assert _parsed(entry).time is None


# --- failed or not --------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [pytest.param({}, id="empty"), pytest.param(None, id="absent")],
)
def test_entry_without_error_code_did_not_fail(status: dict[str, Any] | None) -> None:
    assert _parsed(_entry(status=status)).failed is False


def test_non_zero_status_code_is_a_failed_call() -> None:
    change = _parsed(_entry(status={"code": 7, "message": "Permission denied"}))
    assert (change.failed, change.status_message) == (True, "Permission denied")


# --- what changed ---------------------------------------------------------------


def test_policy_delta_gives_removed_and_added_per_role() -> None:
    delta = _delta(
        ("REMOVE", "roles/run.invoker", "allUsers"),
        ("ADD", "roles/run.invoker", "allAuthenticatedUsers"),
        ("ADD", "roles/run.developer", "group:devs@example.com"),
    )
    change = _parsed(_entry(serviceData=delta))
    assert (change.removed, change.added) == (
        {"roles/run.invoker": ("allUsers",)},
        {
            "roles/run.invoker": ("allAuthenticatedUsers",),
            "roles/run.developer": ("group:devs@example.com",),
        },
    )


def test_delta_with_only_removals_adds_nothing() -> None:
    delta = _delta(("REMOVE", "roles/run.invoker", "allUsers"))
    assert _parsed(_entry(serviceData=delta)).added == {}


def test_repeated_delta_member_is_listed_once() -> None:
    delta = _delta(
        ("REMOVE", "roles/run.invoker", "allUsers"),
        ("REMOVE", "roles/run.invoker", "allUsers"),
    )
    assert _parsed(_entry(serviceData=delta)).removed == {
        "roles/run.invoker": ("allUsers",)
    }


def test_entry_without_delta_states_no_members() -> None:
    change = _parsed(_entry())
    assert (change.removed, change.added) == (None, None)


def test_delta_is_trusted_over_request_policy() -> None:
    request = {
        "@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
        "policy": {
            "bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]
        },
    }
    delta = _delta(("REMOVE", "roles/run.invoker", "allUsers"))
    change = _parsed(_entry(request=request, serviceData=delta))
    assert change.removed == {"roles/run.invoker": ("allUsers",)}


def test_request_policy_alone_states_no_members() -> None:
    request = {"policy": {"bindings": []}}
    assert _parsed(_entry(request=request)).removed is None


def test_service_data_without_type_is_read_as_audit_data() -> None:
    delta = _delta(("REMOVE", "roles/run.invoker", "allUsers"))
    del delta["@type"]
    assert _parsed(_entry(serviceData=delta)).removed == {
        "roles/run.invoker": ("allUsers",)
    }


def test_audit_data_without_policy_delta_states_no_members() -> None:
    service_data = {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData"}
    assert _parsed(_entry(serviceData=service_data)).removed is None


# --- any API (explain, generic tests) -------------------------------------------


def test_extract_change_reads_other_apis_without_a_service() -> None:
    entry = _entry(
        serviceName="storage.googleapis.com",
        methodName="storage.setIamPermissions",
        resourceName="projects/_/buckets/b",
    )
    change = extract_change(entry)
    assert (change.service, change.actor) == (None, "alice@example.com")


def test_extract_change_refuses_an_ordinary_log_line() -> None:
    with pytest.raises(MalformedInput, match="not an audit entry"):
        extract_change({"textPayload": "hello", "logName": "projects/p/logs/app"})


def test_describe_entry_names_method_api_and_resource() -> None:
    assert describe_entry(_entry()) == (
        f"google.cloud.run.v2.Services.SetIamPolicy on run.googleapis.com ({SERVICE})"
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(_entry(), True, id="audit-entry"),
        pytest.param({"logName": "x", "textPayload": "t"}, True, id="log-line"),
        pytest.param({"foo": "bar"}, False, id="other-object"),
        pytest.param(["protoPayload"], False, id="list"),
        pytest.param("protoPayload", False, id="text"),
    ],
)
def test_looks_like_log_entry(document: object, expected: bool) -> None:
    assert looks_like_log_entry(document) is expected


# --- principals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "readable"),
    [
        pytest.param(
            WIF_SUBJECT,
            "repo:example-org/infra:ref:refs/heads/main "
            "(workload identity pool github-pool, project 123456789012)",
            id="github-subject-with-colons",
        ),
        pytest.param(
            "principalSet://iam.googleapis.com/projects/1/locations/global/"
            "workloadIdentityPools/ci/group/admins",
            "group admins (workload identity pool ci, project 1)",
            id="pool-group",
        ),
        pytest.param(
            "principalSet://iam.googleapis.com/projects/1/locations/global/"
            "workloadIdentityPools/ci/attribute.repository/org/app",
            "any identity with repository=org/app "
            "(workload identity pool ci, project 1)",
            id="pool-attribute",
        ),
        pytest.param(
            "principal://iam.googleapis.com/locations/global/workforcePools/staff/"
            "subject/jo@corp.example",
            "jo@corp.example (workforce pool staff)",
            id="workforce-subject",
        ),
        pytest.param("user:alice@example.com", "alice@example.com", id="user-member"),
        pytest.param(
            "serviceAccount:d@p.iam.gserviceaccount.com",
            "d@p.iam.gserviceaccount.com",
            id="service-account-member",
        ),
        pytest.param("alice@example.com", "alice@example.com", id="email"),
        pytest.param(None, "unknown (identity not recorded)", id="none"),
        pytest.param("", "unknown (identity not recorded)", id="empty"),
    ],
)
def test_describe_principal(principal: str | None, readable: str) -> None:
    assert describe_principal(principal) == readable


def test_parse_principal_keeps_subject_whole() -> None:
    parsed = parse_principal(WIF_SUBJECT)
    assert parsed is not None
    assert (parsed.project_number, parsed.pool, parsed.subject) == (
        "123456789012",
        "github-pool",
        "repo:example-org/infra:ref:refs/heads/main",
    )


@pytest.mark.parametrize(
    "text",
    [
        "user:alice@example.com",
        "principal://example.com/projects/1/locations/global/workloadIdentityPools/p",
        "",
    ],
)
def test_parse_principal_refuses_other_identities(text: str) -> None:
    assert parse_principal(text) is None


@pytest.mark.parametrize(
    ("principal", "kind"),
    [
        pytest.param(WIF_SUBJECT, "workload_identity_federation", id="wif"),
        pytest.param(
            "principal://iam.googleapis.com/locations/global/workforcePools/s/subject/x",
            "workforce_identity_federation",
            id="workforce",
        ),
        pytest.param("d@p.iam.gserviceaccount.com", "service_account", id="sa-email"),
        pytest.param("serviceAccount:d@example.com", "service_account", id="sa-member"),
        pytest.param("alice@example.com", "user", id="user-email"),
        pytest.param("group:devs@example.com", "group", id="group"),
        pytest.param(None, "unknown", id="none"),
        pytest.param("system:gke", "other", id="other"),
    ],
)
def test_principal_kind(principal: str | None, kind: str) -> None:
    assert principal_kind(principal) == kind


def test_parse_entry_does_not_change_its_input() -> None:
    entry = _entry(serviceData=_delta(("REMOVE", "roles/run.invoker", "allUsers")))
    before = copy.deepcopy(entry)
    parse_entry(entry)
    assert entry == before
