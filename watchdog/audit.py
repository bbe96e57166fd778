"""Read Admin Activity audit-log entries into the project's `Change` value.

An entry reaches us in its JSON form: from Eventarc, from a log sink through
Pub/Sub, from the Cloud Logging API (`MessageToDict(LogEntry._pb)`), or from a file.
The keys are camelCase; snake_case spellings are accepted too because
`json_format` accepts both and some tools re-serialise with proto field names.

The parts of `protoPayload` we use are parsed with the real `AuditLog` proto, so a
field of the wrong type is caught here with a clear reason instead of surfacing as
an AttributeError three modules away. Only those parts are handed to the proto:
`request`, `response`, `metadata`, `status.details` and `authorizationInfo` are
never read, and an odd value there (or an `Any` whose type we do not know) must not
cost us the attribution. `serviceData` is taken apart on its own for the same
reason.

Rules drawn from real entries (PITFALLS 7 and 17):

- the service comes from `protoPayload.resourceName`, never from
  `resource.labels.service_name`, which is empty on SetIamPolicy entries;
- a v1 name `namespaces/P/services/S` has no region: it is taken from
  `resource.labels.location`, then the service's `cloud.googleapis.com/location`
  label in the request or response, then `resourceLocation.currentLocations`. If
  none is there the entry is still returned, with `service=None`: the attribution
  is true, but the caller cannot tell which watched service it means (the trigger
  decoder ignores such an event and lets the next tick find any drift);
- a non-zero `status.code` is a failed call: it changed nothing;
- `removed`/`added` come only from `serviceData.policyDelta`; `request.policy` is
  what the caller asked for, not what happened, and is never read;
- `authenticationInfo` may be empty, or hold only `principalSubject`; delegation
  hops may be empty objects; `callerIp` may be "private", "gce-internal-ip" or IPv6;
  timestamps may carry nanoseconds; `protoPayload` may lack `@type`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from google.cloud.audit import audit_log_pb2

# Imported for its side effect as well: it registers google.iam.v1.logging.AuditData
# in the default descriptor pool, so an Any of that type can be resolved.
from google.iam.v1.logging import audit_data_pb2
from google.protobuf import json_format, struct_pb2

from watchdog import methods
from watchdog.errors import MalformedInput
from watchdog.model import INVOKER_ROLE, Change, ServiceName

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
AUDIT_DATA_TYPE = "type.googleapis.com/google.iam.v1.logging.AuditData"
LOCATION_LABEL = "cloud.googleapis.com/location"
UNKNOWN_PRINCIPAL = "unknown (identity not recorded)"

_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d+))?(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?$"
)
_SERVICE_NAME = re.compile(
    r"^(?:projects/[^/]+/locations/[^/]+|namespaces/[^/]+)/services/[^/]+$"
)
# Federated principals. The subject or attribute value is everything after its
# keyword: it may itself contain '/' and ':' (a GitHub subject such as
# repo:org/app:ref:refs/heads/main), so the URI is never split on ':'.
_FEDERATED = re.compile(
    r"^(?P<scheme>principal|principalSet)://iam\.googleapis\.com/"
    r"(?:projects/(?P<project>[^/]+)/)?locations/(?P<location>[^/]+)/"
    r"(?P<pools>workloadIdentityPools|workforcePools)/(?P<pool>[^/]+)"
    r"(?:/(?P<selector>subject|group|attribute\.[^/]+|\*)(?:/(?P<value>.+))?)?$"
)
_MEMBER_PREFIXES = ("user:", "serviceAccount:")


@dataclass(frozen=True)
class FederatedPrincipal:
    """A `principal://` or `principalSet://` identity from workload or workforce
    identity federation, taken apart without splitting on ':'."""

    kind: str  # "workload_identity_federation" or "workforce_identity_federation"
    pool: str
    selector: str  # "subject", "group", "attribute.NAME" or "*"
    value: str  # the subject, group or attribute value; "" for "*"
    project_number: str | None  # None for workforce pools, which live in an org

    @property
    def subject(self) -> str:
        """The subject, when this is a single principal; else ""."""
        return self.value if self.selector == "subject" else ""


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 time into an aware UTC datetime, truncated to microseconds.

    Accepts any number of fractional digits (Cloud Logging writes nanoseconds),
    'Z' or a '+hh:mm' / '+hhmm' offset. A time with no offset is read as UTC, which
    is what every Google API writes. Raises ValueError otherwise.
    """
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(f"{text[:64]!r} is not an RFC 3339 timestamp")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = match["zone"] or "Z"
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        parsed = datetime.fromisoformat(
            f"{match['date']}T{match['time']}.{fraction}{zone}"
        )
        return parsed.astimezone(UTC)
    except OverflowError as error:
        raise ValueError(f"{text[:64]!r} is out of range") from error


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a 'Z', as Cloud Logging writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_principal(text: str | None) -> FederatedPrincipal | None:
    """Take apart a federated principal URI; None for any other identity."""
    if not text:
        return None
    match = _FEDERATED.match(text.strip())
    if match is None:
        return None
    workforce = match["pools"] == "workforcePools"
    return FederatedPrincipal(
        kind=(
            "workforce_identity_federation"
            if workforce
            else "workload_identity_federation"
        ),
        pool=match["pool"],
        selector=match["selector"] or "*",
        value=match["value"] or "",
        project_number=match["project"],
    )


def principal_kind(text: str | None) -> str:
    """Classify an identity as it appears in an audit entry.

    One of "unknown", "workload_identity_federation",
    "workforce_identity_federation", "service_account", "group", "user", "other".
    """
    if not text:
        return "unknown"
    if federated := parse_principal(text):
        return federated.kind
    bare = text.removeprefix("deleted:")
    if bare.startswith("serviceAccount:") or bare.endswith(".gserviceaccount.com"):
        return "service_account"
    if bare.startswith("group:"):
        return "group"
    if bare.startswith("user:") or "@" in bare:
        return "user"
    return "other"


def describe_principal(text: str | None) -> str:
    """A readable form of an identity for an alert.

    A GitHub Actions subject comes out as
    "repo:org/app:ref:refs/heads/main (workload identity pool github-pool,
    project 123456789012)", a `user:`/`serviceAccount:` member as its email, a
    missing identity as "unknown (identity not recorded)".
    """
    if not text:
        return UNKNOWN_PRINCIPAL
    federated = parse_principal(text)
    if federated is None:
        for prefix in _MEMBER_PREFIXES:
            if text.startswith(prefix):
                return text.removeprefix(prefix)
        return text
    pool_kind = (
        "workforce pool"
        if federated.kind == "workforce_identity_federation"
        else "workload identity pool"
    )
    where = f"{pool_kind} {federated.pool}"
    if federated.project_number:
        where += f", project {federated.project_number}"
    if federated.selector == "subject":
        return f"{federated.value} ({where})"
    if federated.selector == "group":
        return f"group {federated.value} ({where})"
    if federated.selector.startswith("attribute."):
        name = federated.selector.removeprefix("attribute.")
        return f"any identity with {name}={federated.value} ({where})"
    return f"any identity in the {where}"


def looks_like_log_entry(document: object) -> TypeGuard[Mapping[str, Any]]:
    """Whether a decoded JSON document is a LogEntry (as opposed to a tick payload)."""
    return isinstance(document, Mapping) and any(
        key in document
        for key in ("protoPayload", "proto_payload", "logName", "log_name")
    )


def describe_entry(entry: Mapping[str, Any]) -> str:
    """A short "METHOD on API (RESOURCE)" for log messages; never raises."""
    payload = _value(entry, "protoPayload", "proto_payload")
    if not isinstance(payload, Mapping):
        log_name = _value(entry, "logName", "log_name")
        return f"a log entry without an audit payload (logName {log_name!r})"
    method = _value(payload, "methodName", "method_name")
    api = _value(payload, "serviceName", "service_name")
    resource = _value(payload, "resourceName", "resource_name")
    return f"{method or 'an unnamed method'} on {api or 'an unnamed API'} ({resource})"


def parse_entry(entry: Mapping[str, Any]) -> Change | None:
    """The change an audit entry records about a Cloud Run service.

    Returns None for an entry about anything else (another API, a Cloud Run job or
    revision, an ordinary jsonPayload/textPayload log line). Raises MalformedInput
    for an entry that is meant to be an audit entry but cannot be read.
    """
    payload = _audit_payload(entry)
    if payload is None:
        return None
    audit_log = _parse_audit_log(payload)
    resource_name = _run_resource(audit_log.resource_name)
    if audit_log.service_name != methods.SERVICE_NAME:
        return None
    if not audit_log.resource_name:
        raise MalformedInput(
            f"Cloud Run audit entry for {audit_log.method_name or 'no method'} "
            "has no protoPayload.resourceName"
        )
    if not _SERVICE_NAME.match(resource_name):
        return None  # a job, revision, execution or domain mapping
    return _build_change(entry, payload, audit_log)


def extract_change(entry: Mapping[str, Any]) -> Change:
    """Read any API's audit entry into a Change; `service` is set for Cloud Run only.

    For the explain command and tests of the generic parts (delegation chain,
    failure, policy delta); the watchdog itself acts only on `parse_entry`.
    """
    payload = _audit_payload(entry)
    if payload is None:
        raise MalformedInput(f"{describe_entry(entry)} is not an audit entry")
    audit_log = _parse_audit_log(payload)
    return _build_change(entry, payload, audit_log)


def _value(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    """The value under the camelCase key, else under the snake_case one."""
    if camel in mapping:
        return mapping[camel]
    return mapping.get(snake)


def _audit_payload(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The entry's protoPayload; None for an ordinary (non-audit) log line."""
    if not isinstance(entry, Mapping):
        raise MalformedInput(
            f"a log entry must be a JSON object, got {type(entry).__name__}"
        )
    payload = _value(entry, "protoPayload", "proto_payload")
    if payload is None:
        if any(
            key in entry
            for key in ("jsonPayload", "json_payload", "textPayload", "text_payload")
        ):
            return None
        raise MalformedInput("log entry has no protoPayload")
    if not isinstance(payload, Mapping):
        raise MalformedInput(
            f"protoPayload must be a JSON object, got {type(payload).__name__}"
        )
    declared = payload.get("@type")
    if declared is not None and declared != AUDIT_LOG_TYPE:
        raise MalformedInput(
            f"protoPayload is a {str(declared)[:120]!r}, not an AuditLog"
        )
    return payload


# The AuditLog fields we read, with what to keep inside each; None keeps it whole.
_READ_FIELDS: dict[str, tuple[str, ...] | None] = {
    "serviceName": None,
    "methodName": None,
    "resourceName": None,
    "resourceLocation": None,
    "status": ("code", "message"),
    "authenticationInfo": None,
    "requestMetadata": (
        "callerIp",
        "caller_ip",
        "callerSuppliedUserAgent",
        "caller_supplied_user_agent",
    ),
}


def _parse_audit_log(payload: Mapping[str, Any]) -> audit_log_pb2.AuditLog:
    """Parse the parts of protoPayload we read with the AuditLog proto."""
    fields = audit_log_pb2.AuditLog.DESCRIPTOR.fields_by_camelcase_name
    subset: dict[str, Any] = {}
    for camel, keep in _READ_FIELDS.items():
        snake = fields[camel].name
        if camel not in payload and snake not in payload:
            continue
        value = _value(payload, camel, snake)
        if fields[camel].message_type is not None and not isinstance(value, Mapping):
            # json_format would iterate a string as if it were keys, find none it
            # knows, and quietly return an empty message.
            raise MalformedInput(
                f"protoPayload.{camel} must be a JSON object, got {_kind(value)}"
            )
        if keep is not None and isinstance(value, Mapping):
            value = {key: value[key] for key in keep if key in value}
        elif isinstance(value, Mapping):
            value = dict(value)
        subset[camel] = value
    try:
        return json_format.ParseDict(
            subset, audit_log_pb2.AuditLog(), ignore_unknown_fields=True
        )
    except json_format.ParseError as error:
        raise MalformedInput(f"protoPayload is not a readable AuditLog: {error}") from (
            error
        )


def _build_change(
    entry: Mapping[str, Any],
    payload: Mapping[str, Any],
    audit_log: audit_log_pb2.AuditLog,
) -> Change:
    authentication = audit_log.authentication_info
    actor = (
        authentication.principal_email
        or authentication.principal_subject
        or _claims_identity(authentication.third_party_principal)
        or None
    )
    delegation = tuple(
        identity
        for hop in authentication.service_account_delegation_info
        if (identity := _hop_identity(hop))
    )
    removed, added = _policy_delta(payload)
    return Change(
        service=_service_name(entry, payload, audit_log),
        method=audit_log.method_name,
        actor=actor,
        origin=delegation[0] if delegation else actor,
        delegation=delegation,
        caller_ip=audit_log.request_metadata.caller_ip or None,
        user_agent=audit_log.request_metadata.caller_supplied_user_agent or None,
        time=_entry_time(entry),
        insert_id=_entry_text(entry, "insertId", "insert_id"),
        failed=audit_log.status.code != 0,
        status_message=audit_log.status.message or None,
        removed=removed,
        added=added,
        resource_name=audit_log.resource_name or None,
        invoker_after=_invoker_after(payload),
    )


def _invoker_after(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Unconditional invoker members in the policy the call left, if shown.

    The response is the policy as written; a request policy is what the caller
    sent, which equals it for a successful SetIamPolicy. Neither is trusted to
    choose a write: this only tells an alert which change explains a drift.
    """
    response = payload.get("response")
    request = payload.get("request")
    policy: Any = None
    if isinstance(response, Mapping) and ("bindings" in response or "etag" in response):
        policy = response
    elif isinstance(request, Mapping) and isinstance(request.get("policy"), Mapping):
        policy = request["policy"]
    if policy is None:
        return None
    bindings = policy.get("bindings", [])
    if not isinstance(bindings, list):
        return None
    members: list[str] = []
    for binding in bindings:
        if (
            isinstance(binding, Mapping)
            and binding.get("role") == INVOKER_ROLE
            and not binding.get("condition")
            and isinstance(binding.get("members"), list)
        ):
            members.extend(str(m) for m in binding["members"] if m not in members)
    return tuple(members)


def _hop_identity(hop: audit_log_pb2.ServiceAccountDelegationInfo) -> str | None:
    """The identity of one delegation hop; None for an empty hop."""
    if hop.first_party_principal.principal_email:
        return str(hop.first_party_principal.principal_email)
    if hop.principal_subject:
        return str(hop.principal_subject)
    return _claims_identity(hop.third_party_principal.third_party_claims)


def _claims_identity(claims: struct_pb2.Struct) -> str | None:
    """The best identity in a third-party principal's claims, if any."""
    for key in ("principalSubject", "email", "sub", "subject"):
        if key in claims.fields:
            claim = claims.fields[key]
            if claim.WhichOneof("kind") == "string_value" and claim.string_value:
                return str(claim.string_value)
    return None


def _policy_delta(
    payload: Mapping[str, Any],
) -> tuple[dict[str, tuple[str, ...]] | None, dict[str, tuple[str, ...]] | None]:
    """Members removed and added per role, from serviceData.policyDelta only."""
    service_data = _value(payload, "serviceData", "service_data")
    if not isinstance(service_data, Mapping):
        return None, None
    declared = service_data.get("@type")
    if declared is not None and declared != AUDIT_DATA_TYPE:
        return None, None  # another service's data: nothing we can read
    body = {key: value for key, value in service_data.items() if key != "@type"}
    delta = _value(body, "policyDelta", "policy_delta")
    if delta is not None and not isinstance(delta, Mapping):
        raise MalformedInput(
            f"serviceData.policyDelta must be a JSON object, got {_kind(delta)}"
        )
    try:
        audit_data = json_format.ParseDict(
            body, audit_data_pb2.AuditData(), ignore_unknown_fields=True
        )
    except json_format.ParseError as error:
        raise MalformedInput(
            f"serviceData is not a readable IAM AuditData: {error}"
        ) from error
    if not audit_data.HasField("policy_delta"):
        return None, None
    removed: dict[str, list[str]] = {}
    added: dict[str, list[str]] = {}
    # NB: a delta on a conditional binding lands here without its condition; the
    # reconcile step reads the real policy, so this only colours the alert text.
    for delta in audit_data.policy_delta.binding_deltas:
        if delta.action == delta.Action.REMOVE:
            target = removed
        elif delta.action == delta.Action.ADD:
            target = added
        else:
            continue
        members = target.setdefault(delta.role, [])
        if delta.member not in members:
            members.append(delta.member)
    return (
        {role: tuple(members) for role, members in removed.items()},
        {role: tuple(members) for role, members in added.items()},
    )


def _run_resource(resource_name: str) -> str:
    """The resource name without a `//run.googleapis.com/` full-name prefix."""
    return resource_name.strip().removeprefix("//run.googleapis.com/")


def _service_name(
    entry: Mapping[str, Any],
    payload: Mapping[str, Any],
    audit_log: audit_log_pb2.AuditLog,
) -> ServiceName | None:
    """The Cloud Run service the entry is about; None for other APIs or no region."""
    if audit_log.service_name != methods.SERVICE_NAME:
        return None
    text = _run_resource(audit_log.resource_name)
    if not _SERVICE_NAME.match(text):
        return None
    try:
        return ServiceName.parse(text, location=_location(entry, payload, audit_log))
    except ValueError:
        return None  # a v1 name and no region anywhere in the entry


def _location(
    entry: Mapping[str, Any],
    payload: Mapping[str, Any],
    audit_log: audit_log_pb2.AuditLog,
) -> str | None:
    """The region of a v1 entry, from wherever the entry states it."""
    resource = entry.get("resource")
    labels = resource.get("labels") if isinstance(resource, Mapping) else None
    if isinstance(labels, Mapping):
        location = labels.get("location")
        if isinstance(location, str) and location:
            return location
    request = payload.get("request")
    response = payload.get("response")
    for service in (
        request.get("service") if isinstance(request, Mapping) else None,
        response,
    ):
        metadata = service.get("metadata") if isinstance(service, Mapping) else None
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        if isinstance(labels, Mapping):
            location = labels.get(LOCATION_LABEL)
            if isinstance(location, str) and location:
                return location
    for location in audit_log.resource_location.current_locations:
        if location:
            return str(location)
    return None


def _kind(value: object) -> str:
    return type(value).__name__


def _entry_text(entry: Mapping[str, Any], camel: str, snake: str) -> str | None:
    value = _value(entry, camel, snake)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedInput(f"log entry {camel} must be a string, got {value!r:.80}")
    return value


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    text = _entry_text(entry, "timestamp", "timestamp")
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise MalformedInput(f"log entry timestamp: {error}") from error
