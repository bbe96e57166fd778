"""Every corpus sample, decoded as the function would, against its .expect.json.

Each expectation the product models is one test, named SAMPLE-KEY. A key the
product does not model is listed in UNMODELLED with the reason; a key in neither
place fails `test_every_expect_key_is_mapped`, so a new expectation cannot be
skipped silently. IAM policy samples are only asserted to be ignored as deliveries
(the drift checks on them live in test_policy.py).

Two deliberate departures from the expect files' prose, both from DESIGN (the
scheduler's topic carries whatever payload the job was given):

- a Pub/Sub message whose data is not a LogEntry is a tick, so the emulator's
  `{"foo": "bar"}`, the plain-text Eventarc message and the gen1 "test message 3"
  come out as ticks where their `expected_action` says "ignore"; what those files
  require of the handler (no exception, a 2xx) still holds;
- `callerIp: "private"` is kept as the caller IP (the expect file's
  `caller_ip_raw`) rather than dropped to null: "private" tells the reader the call
  came from inside Google's network, which null would not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS
from watchdog.audit import parse_principal, principal_kind
from watchdog.explain import explain

LOCAL = Path(__file__).resolve().parent / "samples"
FOLDERS = (CORPUS, LOCAL)
CORPUS_MISSING = f"shared corpus not found at {CORPUS}; it is checked out beside main"

UNMODELLED: dict[str, str] = {
    "expected_action": "prose for the reader",
    "notes": "prose for the reader",
    "provenance": "where a local sample came from",
    "iam_change": "the reconcile step reads the policy; it does not classify entries",
    "api_version": "the method name carries it",
    "principal_subject": "the actor is principalEmail first, the subject only when "
    "there is no email",
    "credential": "key names are not part of a change",
    "operation": "LRO ids are not part of a change",
    "policy_after": "only the invoker members are read (allusers_invoker_after)",
    "resource_normalization": "prose; the normalised name is checked as `resource`",
    "event_id": "transport detail",
    "event_type": "checked through the delivery name",
    "topic": "transport detail",
    "message_id": "transport detail",
    "subscription": "transport detail",
    "attributes": "a tick's attributes carry nothing the watchdog uses",
    "data_decoded": "the payload of a tick is not used",
    "delivery": "prose; the delivery name is checked through `kind`",
    "job_name": "the scheduler job's name is not used",
    "body": "the request body itself",
    "ce_id": "transport detail",
    "extension_methodname": "the LogEntry in data is authoritative, never the "
    "CloudEvent extensions",
    "extension_servicename": "as extension_methodname",
    "extension_resourcename": "as extension_methodname",
    "dedupe_key": "dedupe is the reconcile step's concern",
    "version": "IAM policy detail (test_policy)",
    "etag": "IAM policy detail (test_policy)",
    "allusers_invoker_present": "IAM policy detail (test_policy)",
    "allusers_invoker_present_unconditionally": "IAM policy detail (test_policy)",
    "allusers_invoker_present_conditionally": "IAM policy detail (test_policy)",
    "members_by_role": "IAM policy detail (test_policy)",
    "members_by_role_unconditional": "IAM policy detail (test_policy)",
    "conditional_bindings": "IAM policy detail (test_policy)",
}
# Decided together by test_sample_decodes_to_its_kind, not one by one.
KIND_KEYS = ("relevant", "trigger", "data_decoded_kind")

DELIVERY_BY_KIND = {
    "audit_log_entry": "log-entry",
    "pubsub_push_envelope": "pubsub-push",
    "http_request_scheduler": "scheduler-http",
    "legacy_background_event": "background-event",
    "iam_policy": "http",
}
DELIVERY_BY_CE_TYPE = {
    "google.cloud.audit.log.v1.written": "eventarc-audit",
    "google.cloud.pubsub.topic.v1.messagePublished": "pubsub-cloudevent",
}


def _sample_paths() -> list[Path]:
    return [
        path
        for folder in FOLDERS
        if folder.is_dir()
        for path in sorted(folder.glob("*.json"))
        if not path.name.endswith(".expect.json")
    ]


def _expect_path(sample: Path) -> Path:
    return sample.with_name(sample.name.removesuffix(".json") + ".expect.json")


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _find_expect(name: str) -> Path:
    for folder in (LOCAL, CORPUS):
        if (folder / name).is_file():
            return folder / name
    raise AssertionError(f"{name} is named as an inner expect file but exists nowhere")


def _explained(sample: Path) -> dict[str, Any]:
    return explain(sample.read_bytes())


def _expected_kind(expect: Mapping[str, Any]) -> str:
    """What explain's `kind` must be, from whichever keys the expect file has."""
    if expect["kind"] == "iam_policy":
        return "ignored"
    if "relevant" in expect:
        return "audit" if expect["relevant"] else "ignored"
    if expect.get("trigger") == "scheduled_check":
        return "tick"
    decoded = expect.get("data_decoded_kind")
    if decoded == "log_entry_json":
        return "audit"
    if decoded is not None:
        return "tick"  # any other message is a tick: see the module docstring
    if "inner_expect_file" in expect:
        return _expected_kind(_load(_find_expect(expect["inner_expect_file"])))
    raise AssertionError(
        f"{expect.get('sample')}: cannot tell the expected kind; add `relevant`, "
        "`trigger` or `data_decoded_kind` to its expect file"
    )


def _time(text: str) -> datetime:
    """An RFC 3339 text as a datetime, fraction cut to microseconds (test-local)."""
    head, _, rest = text.partition(".")
    if rest:
        digits = rest.rstrip("Zz")
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _members(result: Mapping[str, Any], field: str, value: Any) -> None:
    if value is None:
        assert field not in result
    else:
        assert result[field] == value


def _principal_parts(origin: str | None) -> dict[str, Any] | None:
    parsed = parse_principal(origin)
    if parsed is None:
        return None
    return {
        "project_number": parsed.project_number,
        "pool": parsed.pool,
        "subject": parsed.subject,
    }


def _kind_delivery(result: Mapping[str, Any], value: Any) -> None:
    if value.startswith("http_request_cloudevent"):
        return  # the delivery depends on the type: checked as `ce_type`
    assert result["delivery"] == DELIVERY_BY_KIND[value]


Check = Callable[[Mapping[str, Any], Any], None]
CHECKS: dict[str, Check] = {
    "kind": _kind_delivery,
    "ce_type": lambda r, v: _equal(r["delivery"], DELIVERY_BY_CE_TYPE[v]),
    "method": lambda r, v: _equal(r["method"], v),
    "resource": lambda r, v: _equal(r["service"], v),
    "resource_name_raw": lambda r, v: _equal(r["resource_name"], v),
    "actor": lambda r, v: _equal(r["actor"], v),
    "actor_kind": lambda r, v: _equal(principal_kind(r["actor"]), v),
    "delegation_chain": lambda r, v: _equal(r["delegation"], v),
    "originating_identity": lambda r, v: _equal(r["origin"], v),
    "originating_identity_kind": lambda r, v: _equal(principal_kind(r["origin"]), v),
    "wif_parsed": lambda r, v: _equal(_principal_parts(r["origin"]), v),
    "caller_ip": lambda r, v: _equal(r["caller_ip"], v),
    "caller_ip_raw": lambda r, v: _equal(r["caller_ip"], v),
    "user_agent": lambda r, v: _equal(r["user_agent"], v),
    "failed": lambda r, v: _equal(r["failed"], v),
    "status_code": lambda r, v: _equal(r["failed"], v != 0),
    "timestamp": lambda r, v: _equal(_time(r["time"]), _time(v)),
    "insertId": lambda r, v: _equal(r["insert_id"], v),
    "added_members": lambda r, v: _members(r, "added", v),
    "removed_members": lambda r, v: _members(r, "removed", v),
    "allusers_invoker_after": lambda r, v: _invoker_after(r, v),
    "schedule_time": lambda r, v: _equal(_time(r["time"]), _time(v)),
    "publish_time": lambda r, v: _equal(r["time"] and _time(r["time"]), v and _time(v)),
}


def _invoker_after(result: Mapping[str, Any], public: bool | None) -> None:
    """Whether allUsers held the invoker role after the call; None: not shown."""
    if public is None:
        return  # the expect file does not know either
    assert ("allUsers" in result["invoker_after"]) is public


def _equal(actual: Any, expected: Any) -> None:
    assert actual == expected


def _cases(expect: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, expected value) for every modelled key, inner expectations included."""
    for key, value in expect.items():
        if key in UNMODELLED or key in KIND_KEYS or key == "sample":
            continue
        if key == "inner":
            yield from _cases(value, "inner.")
        elif key == "inner_expect_file":
            inner = _load(_find_expect(value))
            inner = {k: v for k, v in inner.items() if k != "kind"}
            yield from _cases(inner, f"{value.removesuffix('.expect.json')}.")
        elif key == "caller_ip" and "caller_ip_raw" in expect:
            continue  # the raw value is what is kept: see the module docstring
        elif key == "publish_time" and _expected_kind(expect) != "tick":
            continue  # an audit event's time is the entry's, not the message's
        else:
            yield prefix + key, value


def _sample_params() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_MISSING))]
    return [pytest.param(path, id=path.stem) for path in _sample_paths()]


def _expectation_params() -> list[Any]:
    if not CORPUS.is_dir():
        return [
            pytest.param(None, "", None, marks=pytest.mark.skip(reason=CORPUS_MISSING))
        ]
    params = []
    for path in _sample_paths():
        expect_path = _expect_path(path)
        if not expect_path.is_file():
            continue  # test_sample_has_an_expect_file fails for it
        for key, value in _cases(_load(expect_path)):
            params.append(pytest.param(path, key, value, id=f"{path.stem}-{key}"))
    return params


@pytest.mark.parametrize("sample", _sample_params())
def test_sample_has_an_expect_file(sample: Path) -> None:
    assert _expect_path(sample).is_file(), f"{sample.name} has no expect file"


@pytest.mark.parametrize("sample", _sample_params())
def test_expect_file_names_its_sample(sample: Path) -> None:
    assert _load(_expect_path(sample))["sample"] == sample.name


@pytest.mark.parametrize("sample", _sample_params())
def test_every_expect_key_is_mapped(sample: Path) -> None:
    expect = _load(_expect_path(sample))
    known = set(CHECKS) | set(UNMODELLED) | set(KIND_KEYS)
    known |= {"sample", "inner", "inner_expect_file"}
    unmapped = set(expect) - known
    unmapped |= {f"inner.{key}" for key in expect.get("inner", {})} - {
        f"inner.{key}" for key in known
    }
    assert not unmapped, f"map these keys in CHECKS or UNMODELLED: {sorted(unmapped)}"


@pytest.mark.parametrize("sample", _sample_params())
def test_sample_decodes_to_its_kind(sample: Path) -> None:
    expect = _load(_expect_path(sample))
    assert _explained(sample)["kind"] == _expected_kind(expect)


@pytest.mark.parametrize(("sample", "key", "expected"), _expectation_params())
def test_sample_gives_expected_value(sample: Path, key: str, expected: Any) -> None:
    result = _explained(sample)
    CHECKS[key.rsplit(".", 1)[-1]](result, expected)


def test_local_samples_do_not_shadow_shared_ones() -> None:
    shared = {path.name for path in CORPUS.glob("*.json")}
    local = {path.name for path in LOCAL.glob("*.json")}
    assert not shared & local


@pytest.mark.skipif(not CORPUS.is_dir(), reason=CORPUS_MISSING)
@pytest.mark.parametrize(
    "sample",
    [
        "cloudevent_auditlog_structured_run_setiampolicy_request.json",
        "cloudevent_pubsub_binary_sink_run_setiampolicy_request.json",
    ],
)
def test_both_layouts_give_the_same_change(sample: str) -> None:
    """PITFALLS 2: Eventarc's plain data and the sink's base64 read alike."""
    via_sink = explain(
        (CORPUS / "pubsub_push_sink_envelope_run_setiampolicy.json").read_bytes()
    )
    other = explain((LOCAL / sample).read_bytes())
    assert {k: v for k, v in other.items() if k != "delivery"} == {
        k: v for k, v in via_sink.items() if k != "delivery"
    }
