"""A Cloud Logging API v2 subset over gRPC: WriteLogEntries and ListLogEntries.

The real client library talks to it unchanged. Entries are kept as LogEntry protos
whose `proto_payload` is an Any holding a `google.cloud.audit.AuditLog`, exactly as
Cloud Logging returns them, so the gateway's conversion to JSON is the real one.

The filter language is a deliberate subset: terms joined by ` AND `, each
`FIELD="value"`, `FIELD=("a" OR "b")`, `FIELD=true` (or false) or a `timestamp`
comparison, over a handful of fields. Anything else is refused with
INVALID_ARGUMENT naming the term. A filter the sandbox half-understood and matched too
widely would hide exactly the query bugs (PITFALLS 9) this sandbox exists to catch.
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Imported for their side effect: they register the AuditLog and AuditData types, so
# json_format can read and write the Any payloads.
import google.cloud.audit.audit_log_pb2 as audit_log_pb2
import google.iam.v1.logging.audit_data_pb2  # noqa: F401
import grpc
from google.cloud.logging_v2.types import (
    ListLogEntriesRequest,
    ListLogEntriesResponse,
    LogEntry,
    WriteLogEntriesRequest,
    WriteLogEntriesResponse,
)
from google.protobuf import json_format, timestamp_pb2

from watchdog.sandbox.faults import Faults, abort, abort_with

SERVICE = "google.logging.v2.LoggingServiceV2"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

LogEntryPb: Any = LogEntry.pb()
_ListRequestPb: Any = ListLogEntriesRequest.pb()
_ListResponsePb: Any = ListLogEntriesResponse.pb()
_WriteRequestPb: Any = WriteLogEntriesRequest.pb()
_WriteResponsePb: Any = WriteLogEntriesResponse.pb()

FIELDS = (
    "logName",
    "resource.type",
    "protoPayload.methodName",
    "protoPayload.resourceName",
    "protoPayload.serviceName",
    "timestamp",
    # The function's own records: its heartbeat (watchdog doctor, the log metric).
    "resource.labels.service_name",
    "jsonPayload.heartbeat",
)
_STRING = r'"(?:[^"\\]|\\.)*"'
_BOOLEAN = ("true", "false")
_TERM = re.compile(
    rf"(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>>=|<=|=|>|<)\s*"
    rf"(?P<value>{_STRING}|\(\s*{_STRING}(?:\s+OR\s+{_STRING})*\s*\)|true|false)"
)
_AND = re.compile(r"\s+AND\s+")
_LOG_NAME = re.compile(r"^projects/(?P<project>[^/]+)/logs/[^/]+$")
_PROJECT = re.compile(r"^projects/(?P<project>[^/]+)$")
_HELP = (
    'the sandbox understands FIELD="value", FIELD=("a" OR "b"), FIELD=true|false, '
    "timestamp "
    f"comparisons (>=, <=, >, <), joined by AND, with FIELD one of {', '.join(FIELDS)}"
)


class FilterError(ValueError):
    """A filter the sandbox does not understand; the message names the term."""


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    values: tuple[str, ...]
    nanoseconds: int = 0  # the bound, for timestamp comparisons

    def matches(self, fields: dict[str, str], timestamp_ns: int) -> bool:
        if self.field == "timestamp":
            return {
                "=": timestamp_ns == self.nanoseconds,
                ">=": timestamp_ns >= self.nanoseconds,
                "<=": timestamp_ns <= self.nanoseconds,
                ">": timestamp_ns > self.nanoseconds,
                "<": timestamp_ns < self.nanoseconds,
            }[self.op]
        return fields.get(self.field, "") in self.values


def parse_filter(text: str) -> tuple[Term, ...]:
    """The terms of a filter in the supported subset; raise FilterError otherwise."""
    if not text.strip():
        return ()
    return tuple(_parse_term(term.strip()) for term in _split_terms(text))


def _split_terms(text: str) -> list[str]:
    """Split at top-level ` AND `, outside quotes and parentheses."""
    terms: list[str] = []
    start = index = depth = 0
    quoted = False
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 2
                continue
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise FilterError(f"unbalanced parenthesis in {text[start:]!r}")
        elif depth == 0 and (match := _AND.match(text, index)):
            terms.append(text[start:index])
            index = start = match.end()
            continue
        index += 1
    if quoted:
        raise FilterError(f"unbalanced quotes in {text[start:]!r}")
    if depth:
        raise FilterError(f"unbalanced parenthesis in {text[start:]!r}")
    terms.append(text[start:])
    return terms


def _parse_term(term: str) -> Term:
    match = _TERM.fullmatch(term)
    if not match:
        raise FilterError(f"unsupported filter term {term!r}: {_HELP}")
    field, op, raw = match["field"], match["op"], match["value"]
    if field not in FIELDS:
        raise FilterError(f"unsupported field {field!r} in term {term!r}: {_HELP}")
    if raw in _BOOLEAN:
        if field == "timestamp" or op != "=":
            raise FilterError(f"{raw} only compares with =, in term {term!r}")
        return Term(field, op, (raw,))
    values = tuple(_unquote(value) for value in re.findall(_STRING, raw))
    if field == "timestamp":
        if raw.startswith("("):
            raise FilterError(f"a timestamp takes one value, not a list: {term!r}")
        bound = timestamp_pb2.Timestamp()
        try:
            bound.FromJsonString(values[0])
        except ValueError:
            raise FilterError(
                f"{values[0]!r} in {term!r} is not an RFC 3339 timestamp"
            ) from None
        return Term(field, op, values, bound.ToNanoseconds())
    if op != "=":
        raise FilterError(f"{op} is only supported on timestamp, in term {term!r}")
    return Term(field, op, values)


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


@dataclass
class _Stored:
    entry: Any  # a LogEntry proto
    fields: dict[str, str]
    timestamp_ns: int
    sequence: int
    visible_at: float  # time.monotonic() from which ListLogEntries returns it

    @property
    def key(self) -> tuple[int, int]:
        return (self.timestamp_ns, self.sequence)


class LogStore:
    """The sandbox's Cloud Logging storage; thread-safe."""

    def __init__(self, faults: Faults, *, clock: Callable[[], float] = time.monotonic):
        self._faults = faults
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[_Stored] = []
        self._sequence = itertools.count()
        self._insert_ids = itertools.count(1)

    def write_json(self, entry: dict[str, Any]) -> None:
        """Store one entry given in its JSON form (as the audit trail builds it)."""
        proto = LogEntryPb()
        json_format.ParseDict(entry, proto)
        self.write(proto)

    def write(self, entry: Any) -> None:
        """Store one LogEntry proto, filling what Cloud Logging fills on receipt."""
        now_ns = time.time_ns()
        if not entry.insert_id:
            entry.insert_id = f"sandbox{next(self._insert_ids):08d}"
        if not entry.HasField("timestamp"):
            entry.timestamp.FromNanoseconds(now_ns)
        if not entry.HasField("receive_timestamp"):
            entry.receive_timestamp.FromNanoseconds(now_ns)
        stored = _Stored(
            entry=entry,
            fields=_index(entry),
            timestamp_ns=entry.timestamp.ToNanoseconds(),
            sequence=next(self._sequence),
            visible_at=self._clock() + self._faults.logging_delay(),
        )
        with self._lock:
            self._entries.append(stored)

    def entries(self) -> list[dict[str, Any]]:
        """Every stored entry in JSON form, hidden ones included, oldest first."""
        with self._lock:
            stored = sorted(self._entries, key=lambda item: item.key)
        return [json_format.MessageToDict(item.entry) for item in stored]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def list(
        self,
        resource_names: list[str],
        filter_text: str,
        order_by: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[Any], str]:
        """One page of matching entries and the token of the next (or "")."""
        projects = set()
        for name in resource_names:
            if not (match := _PROJECT.match(name)):
                raise FilterError(
                    f"resource name {name!r} is not supported; expected projects/ID"
                )
            projects.add(match["project"])
        if not projects:
            raise FilterError("resource_names is empty; name projects/ID")
        descending = _parse_order(order_by)
        terms = parse_filter(filter_text)
        after = _parse_token(page_token)
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        now = self._clock()
        with self._lock:
            candidates = [
                item
                for item in self._entries
                if item.visible_at <= now
                and item.fields["project"] in projects
                and all(term.matches(item.fields, item.timestamp_ns) for term in terms)
            ]
        candidates.sort(key=lambda item: item.key, reverse=descending)
        if after is not None:
            candidates = [
                item
                for item in candidates
                if (item.key < after if descending else item.key > after)
            ]
        page = candidates[:size]
        token = _make_token(page[-1].key) if len(candidates) > size else ""
        return [item.entry for item in page], token


def _index(entry: Any) -> dict[str, str]:
    """The filterable fields of one entry."""
    match = _LOG_NAME.match(entry.log_name)
    fields = {
        "project": match["project"] if match else "",
        "logName": entry.log_name,
        "resource.type": entry.resource.type,
        "resource.labels.service_name": entry.resource.labels.get("service_name", ""),
    }
    if entry.HasField("json_payload"):
        heartbeat = entry.json_payload.fields.get("heartbeat")
        if heartbeat is not None and heartbeat.WhichOneof("kind") == "bool_value":
            fields["jsonPayload.heartbeat"] = (
                "true" if heartbeat.bool_value else "false"
            )
    if entry.HasField("proto_payload") and entry.proto_payload.Is(
        audit_log_pb2.AuditLog.DESCRIPTOR
    ):
        payload = audit_log_pb2.AuditLog()
        entry.proto_payload.Unpack(payload)
        fields["protoPayload.methodName"] = payload.method_name
        fields["protoPayload.resourceName"] = payload.resource_name
        fields["protoPayload.serviceName"] = payload.service_name
    return fields


def _parse_order(order_by: str) -> bool:
    """True for descending; raise FilterError for anything but timestamp order."""
    normal = " ".join(order_by.split()).lower()
    if normal in ("", "timestamp", "timestamp asc"):
        return False
    if normal == "timestamp desc":
        return True
    raise FilterError(
        f'order_by {order_by!r} is not supported; use "timestamp asc" or '
        '"timestamp desc"'
    )


def _make_token(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode()).decode()


def _parse_token(token: str) -> tuple[int, int] | None:
    if not token:
        return None
    try:
        stamp, sequence = base64.urlsafe_b64decode(token).decode().split(":")
        return (int(stamp), int(sequence))
    except ValueError:
        raise FilterError(f"page_token {token!r} was not issued by this API") from None


class LoggingServicer:
    """The gRPC handlers of `google.logging.v2.LoggingServiceV2`."""

    def __init__(self, store: LogStore, faults: Faults) -> None:
        self.store = store
        self.faults = faults

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "WriteLogEntries": grpc.unary_unary_rpc_method_handler(
                    self.write_log_entries,
                    request_deserializer=_WriteRequestPb.FromString,
                    response_serializer=_WriteResponsePb.SerializeToString,
                ),
                "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                    self.list_log_entries,
                    request_deserializer=_ListRequestPb.FromString,
                    response_serializer=_ListResponsePb.SerializeToString,
                ),
            },
        )

    def _inject(self, method: str, context: grpc.ServicerContext) -> None:
        if delay := self.faults.latency(method):
            time.sleep(delay)
        if fault := self.faults.take_status(method):
            abort_with(context, fault.to_status("", ""))

    def write_log_entries(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._inject("WriteLogEntries", context)
        accepted = []
        for index, given in enumerate(request.entries):
            entry = LogEntryPb()
            entry.CopyFrom(given)
            if not entry.log_name:
                entry.log_name = request.log_name
            if not entry.HasField("resource") and request.HasField("resource"):
                entry.resource.CopyFrom(request.resource)
            for key, value in request.labels.items():
                entry.labels.setdefault(key, value)
            if not _LOG_NAME.match(entry.log_name):
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"entries[{index}].log_name {entry.log_name!r} is not "
                    "projects/PROJECT/logs/LOG_ID",
                )
            accepted.append(entry)
        if request.dry_run:
            return _WriteResponsePb()
        for entry in accepted:
            self.store.write(entry)
        return _WriteResponsePb()

    def list_log_entries(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._inject("ListLogEntries", context)
        try:
            entries, token = self.store.list(
                list(request.resource_names),
                request.filter,
                request.order_by,
                request.page_size,
                request.page_token,
            )
        except FilterError as error:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return _ListResponsePb(entries=entries, next_page_token=token)
