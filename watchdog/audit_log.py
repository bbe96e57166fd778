"""The Cloud Logging gateway: who last changed a service's IAM, when a tick asks.

This is the only module that imports `google-cloud-logging`. It uses the GAPIC
client directly rather than the handwritten `logging.Client`, whose `list_entries`
adds a 24-hour window only when the filter does not mention `timestamp` (PITFALLS
9): here the time bound, the log, the resource type and the methods are always
explicit, the order is newest first, and one small page is read.

Entries are turned into the same JSON shape a sink or Eventarc delivers, so one
parser (`watchdog.audit.parse_entry`) reads every path an entry can take.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.protobuf import json_format

from watchdog import methods
from watchdog.api_calls import (
    TRANSIENT,
    LazyClient,
    bounded_retry,
    last_error,
    status_text,
)
from watchdog.audit import describe_entry, parse_entry
from watchdog.errors import (
    ConfigError,
    MalformedInput,
    PermanentError,
    PermissionDenied,
    RetryableError,
    WatchdogError,
)
from watchdog.model import Change, ServiceName

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_DEADLINE = 20.0
MAX_PAGE_SIZE = 1000


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _any_of(values: tuple[str, ...] | list[str]) -> str:
    return "(" + " OR ".join(_quote(value) for value in values) + ")"


def changes_filter(
    name: ServiceName, since: datetime, until: datetime | None = None
) -> str:
    """The Logging filter for IAM-relevant Admin Activity entries about `name`.

    NB: a v1 entry can name the project by number (`namespaces/123.../services/S`);
    the watchdog knows only the project ID, so such entries are not matched. A tick
    then reports the actor as unknown; adding the project number to the settings
    would close this gap.
    """
    terms = [
        f"logName={_quote(f'projects/{name.project}/logs/{methods.ACTIVITY_LOG_ID}')}",
        f"resource.type={_quote('cloud_run_revision')}",
        f"protoPayload.methodName={_any_of(methods.WATCHED_METHODS)}",
        f"protoPayload.resourceName={_any_of([name.full, name.v1_name])}",
        f"timestamp>={_quote(format_time(since))}",
    ]
    if until is not None:
        terms.append(f"timestamp<={_quote(format_time(until))}")
    return " AND ".join(terms)


def _retry() -> Retry:
    return bounded_retry(attempts=MAX_ATTEMPTS, deadline=RETRY_DEADLINE)


def translate_error(
    error: exceptions.GoogleAPIError, name: ServiceName
) -> WatchdogError:
    """The watchdog error for a client-library error while querying for `name`."""
    action = f"reading audit entries for {name}"
    if isinstance(error, exceptions.RetryError):
        return RetryableError(
            f"{action}: Cloud Logging kept failing; last error: {last_error(error)}"
        )
    status = status_text(error)
    if isinstance(error, TRANSIENT):
        return RetryableError(
            f"{action}: still failing after {MAX_ATTEMPTS} attempts: {status}"
        )
    if isinstance(error, exceptions.PermissionDenied | exceptions.Unauthenticated):
        return PermissionDenied(
            f"{action}: the watchdog's identity was refused; it needs "
            f"logging.logEntries.list on project {name.project} (the Terraform "
            f"module's audit-reader role). {status}"
        )
    if isinstance(error, exceptions.InvalidArgument):
        return PermanentError(f"{action}: Cloud Logging refused the query: {status}")
    return PermanentError(f"{action}: unexpected API error {status}")


class AuditLogReader(LazyClient):
    """Finds the latest Admin Activity entries that can change a service's IAM.

    With `endpoint` ("host:port") it talks plaintext gRPC with no credentials to the
    sandbox; without, to Google with Application Default Credentials. The client is
    built on first use and shared by threads.
    """

    def _build_client(self) -> Any:
        from google.cloud.logging_v2.services.logging_service_v2 import (
            LoggingServiceV2Client,
        )

        if self.endpoint:
            import grpc
            from google.cloud.logging_v2.services.logging_service_v2.transports import (
                LoggingServiceV2GrpcTransport,
            )

            channel = grpc.insecure_channel(self.endpoint)
            return LoggingServiceV2Client(
                transport=LoggingServiceV2GrpcTransport(channel=channel)
            )
        import google.auth.exceptions

        try:
            return LoggingServiceV2Client()
        except google.auth.exceptions.DefaultCredentialsError as error:
            raise ConfigError(
                "no Application Default Credentials for the Cloud Logging API; "
                "run as a service account, or set WATCHDOG_LOGGING_ENDPOINT to a "
                "sandbox"
            ) from error

    def recent_changes(
        self,
        name: ServiceName,
        *,
        since: datetime,
        until: datetime | None = None,
        limit: int = 10,
    ) -> list[Change]:
        """The newest IAM-relevant changes to `name` in [since, until], newest first.

        Reads one page of at most `limit` entries. Entries the parser cannot use
        are skipped with a log line, so the list can be shorter than `limit`.
        """
        request = {
            "resource_names": [f"projects/{name.project}"],
            "filter": changes_filter(name, since, until),
            "order_by": "timestamp desc",
            "page_size": max(1, min(limit, MAX_PAGE_SIZE)),
        }
        try:
            pager = self.client().list_log_entries(
                request=request, retry=_retry(), timeout=self.timeout
            )
            # The first page is the response already in hand; asking the pager
            # for more would issue further calls.
            page = next(iter(pager.pages))
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name) from error
        changes: list[Change] = []
        for entry in page.entries:
            document = json_format.MessageToDict(entry._pb)
            try:
                change = parse_entry(document)
            except MalformedInput as error:
                log.warning(
                    "skipping an unreadable audit entry for %s: %s",
                    name,
                    error,
                    extra={"fields": {"insert_id": document.get("insertId")}},
                )
                continue
            if change is None:
                log.info(
                    "skipping %s: not a change to a Cloud Run service",
                    describe_entry(document),
                    extra={"fields": {"insert_id": document.get("insertId")}},
                )
                continue
            changes.append(change)
        return changes
