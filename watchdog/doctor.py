"""`python -m watchdog doctor`: is a deployment sound, checked from the outside.

It reads (never writes) what `terraform/` created and prints one line per check,
`STATUS  CHECK  DETAIL`, where a FAIL's detail says what to fix. The exit code gates
a deploy pipeline: 0 when nothing failed (warnings allowed), 1 when a check failed,
2 when the doctor could not run at all (bad settings, no credentials).

Each check is a pure decision (`judge_*`) over values read through the gateways
(`RunApi`, `DeploymentApi`). A read the API refuses is a FAIL that names the one
permission the caller lacks, because a check that could not run proves nothing.

The doctor runs as the operator (Application Default Credentials), not as the
function. `testIamPermissions` answers for the caller only, so its line
(`operator-access`) is about the operator and at most a warning. Whether the
watchdog itself can read and restore a service's policy is read from that policy:
the function's account must hold the custom role there (`watchdog-role`). NB: a role
granted on the whole project would also work but is not visible on the service's
policy, so such a deployment fails this check (it is not least privilege either).
Policy Troubleshooter could answer for the function's account wherever the grant
is, at the cost of one more API and permission; the custom role's permissions are
not read either (that needs the IAM API).
"""

from __future__ import annotations

import argparse
import enum
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from watchdog import methods
from watchdog.config import Settings, load_settings
from watchdog.deployment_api import (
    DeploymentApi,
    MissingPermission,
    SchedulerJob,
    Secret,
    SecretVersion,
    Sink,
    Subscription,
    Topic,
)
from watchdog.errors import (
    ConfigError,
    PermissionDenied,
    ServiceNotFound,
    WatchdogError,
)
from watchdog.model import INVOKER_ROLE, Policy, ServiceName
from watchdog.run_api import RunApi

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
DEFAULT_NAME = "public-watchdog"
DESCRIPTION = (
    "Check a deployment of the watchdog from the outside, read-only, as you "
    "(Application Default Credentials). The watched services come from "
    "WATCHDOG_SERVICES (and the alert topic from WATCHDOG_ALERT_TOPIC); "
    "WATCHDOG_RUN_ENDPOINT, WATCHDOG_LOGGING_ENDPOINT and "
    "WATCHDOG_DEPLOYMENT_ENDPOINT point it at a sandbox. One line per check: ok, "
    "warn or FAIL, with what to fix. Exit 0 when nothing failed, 1 when a check "
    "failed, 2 when it could not run."
)
DEFAULT_HEARTBEAT_MINUTES = 10.0
# How far back to look for the last heartbeat once the recent window is empty.
HEARTBEAT_LOOKBACK = timedelta(hours=24)

RUN_PERMISSIONS = (
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
)
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PUBLISH_ROLES = ("roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin")
INTERNAL_ONLY = "INGRESS_TRAFFIC_INTERNAL_ONLY"
DELETED_TOPIC = "_deleted-topic_"
EVERY_MINUTE = (("*", "*", "*", "*", "*"), ("*/1", "*", "*", "*", "*"))

_NAME = re.compile(r"^[a-z][a-z0-9-]{4,20}[a-z0-9]$")  # as terraform/variables.tf
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9.:_-]+$")
_ENDPOINT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_RUN_METHOD = re.compile(r'"(google\.cloud\.run\.v\d+\.Services\.[A-Za-z]+)"')

_T = TypeVar("_T")


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    status: Status
    check: str
    detail: str


@dataclass(frozen=True)
class Deployment:
    """What `terraform/` deployed, named as it names things."""

    project: str
    region: str
    name: str
    services: tuple[ServiceName, ...]
    function_principal: str  # the function's service account email
    secret_id: str | None = None
    alert_topic: str | None = None
    heartbeat_window: timedelta = timedelta(minutes=DEFAULT_HEARTBEAT_MINUTES)

    @property
    def function(self) -> ServiceName:
        """A gen2 function runs as the Cloud Run service of the same name."""
        return ServiceName(self.project, self.region, self.name)

    @property
    def invoker_principal(self) -> str:
        return f"{self.name}-invoker@{self.project}.iam.gserviceaccount.com"

    @property
    def run_role(self) -> str:
        return f"projects/{self.project}/roles/{self.name.replace('-', '_')}_run_iam"

    @property
    def audit_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-audit"

    @property
    def sink(self) -> str:
        return f"projects/{self.project}/sinks/{self.name}-audit"

    @property
    def subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.name}-audit-push"

    @property
    def job(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.name}-tick"

    @property
    def secret(self) -> str | None:
        if self.secret_id is None:
            return None
        return f"projects/{self.project}/secrets/{self.secret_id}"


@dataclass(frozen=True)
class FunctionFacts:
    """The function's Cloud Run service as read through the Run API."""

    uri: str
    invoker_iam_disabled: bool
    ingress: str
    policy: Policy


# Pure decisions.


def _holders(policy: Policy, role: str) -> set[str]:
    """Members holding `role` unconditionally (a condition may never be met)."""
    return {
        member
        for binding in policy.bindings
        if binding.role == role and binding.condition is None
        for member in binding.members
    }


def _short(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]


def judge_watchdog_role(
    service: ServiceName, policy: Policy, deployment: Deployment
) -> Finding:
    """Does the function's account hold the custom role on this service?"""
    check = f"watchdog-role {service.service}"
    member = f"serviceAccount:{deployment.function_principal}"
    role = deployment.run_role
    if member in _holders(policy, role):
        return Finding(Status.OK, check, f"{member} holds {role} on the service")
    if member in _holders(policy, "roles/run.admin"):
        return Finding(
            Status.WARN,
            check,
            f"{member} holds roles/run.admin on the service, more than it needs; "
            f"terraform apply grants the custom role {role} instead",
        )
    return Finding(
        Status.FAIL,
        check,
        f"{member} holds no unconditional {role} on {service}: the watchdog cannot "
        "read or restore this service's policy. Run terraform apply, or "
        f"`gcloud run services add-iam-policy-binding {service.service} "
        f"--project {service.project} --region {service.location} "
        f"--member {member} --role {role}`",
    )


def judge_operator_access(service: ServiceName, granted: frozenset[str]) -> Finding:
    """What testIamPermissions says the caller (not the function) may do."""
    check = f"operator-access {service.service}"
    missing = [
        permission for permission in RUN_PERMISSIONS if permission not in granted
    ]
    about = (
        "testIamPermissions answers for you, not for the function: see watchdog-role"
    )
    if not missing:
        return Finding(
            Status.OK, check, f"you hold {', '.join(RUN_PERMISSIONS)} ({about})"
        )
    return Finding(
        Status.WARN,
        check,
        f"you lack {', '.join(missing)} on the service, so you could not restore it "
        f"by hand; the doctor itself only reads ({about})",
    )


def judge_sink(sink: Sink | None, deployment: Deployment) -> Finding:
    """Does the sink exist, select every watched method and write to the topic?"""
    check = "log-sink"
    if sink is None:
        return Finding(
            Status.FAIL,
            check,
            f"no log sink {deployment.sink}: audit events never reach the function "
            "(ticks still restore, up to a minute later). Run terraform apply",
        )
    problems: list[str] = []
    if sink.disabled:
        problems.append("it is disabled")
    destination = f"pubsub.googleapis.com/{deployment.audit_topic}"
    if sink.destination != destination:
        problems.append(
            f"it writes to {sink.destination or 'nothing'}, not {destination}"
        )
    selected = set(_RUN_METHOD.findall(sink.filter))
    if missing := [m for m in methods.WATCHED_METHODS if m not in selected]:
        problems.append(f"its filter lacks {', '.join(missing)}")
    if methods.ACTIVITY_LOG_ID not in sink.filter:
        problems.append("its filter does not name the Admin Activity log")
    if problems:
        return Finding(
            Status.FAIL,
            check,
            f"{_short(sink.name)}: {'; '.join(problems)}. Run terraform apply",
        )
    if extra := sorted(selected - set(methods.WATCHED_METHODS)):
        return Finding(
            Status.WARN,
            check,
            f"{_short(sink.name)} also selects {', '.join(extra)}, which the "
            "watchdog ignores",
        )
    return Finding(
        Status.OK,
        check,
        f"{_short(sink.name)} selects all {len(methods.WATCHED_METHODS)} watched "
        f"methods and writes to {deployment.audit_topic}",
    )


def judge_sink_publisher(
    sink: Sink | None, topic_policy: Policy | None, deployment: Deployment
) -> Finding:
    """May the sink's writer identity publish to the audit topic?"""
    check = "sink-publisher"
    topic = deployment.audit_topic
    if sink is None:
        return Finding(Status.FAIL, check, "no sink, so no writer to check (log-sink)")
    writer = sink.writer_identity
    if not writer:
        return Finding(
            Status.FAIL,
            check,
            "the sink has no writer identity; recreate it with "
            "unique_writer_identity = true (terraform apply)",
        )
    if topic_policy is None:
        return Finding(Status.FAIL, check, f"no topic {topic} to publish to")
    if any(writer in _holders(topic_policy, role) for role in PUBLISH_ROLES):
        return Finding(Status.OK, check, f"{writer} may publish to {topic}")
    return Finding(
        Status.FAIL,
        check,
        f"{writer} may not publish to {topic}: the sink drops every entry without "
        "an error anywhere. Run terraform apply, or `gcloud pubsub topics "
        f"add-iam-policy-binding {_short(topic)} --project {deployment.project} "
        f"--member {writer} --role roles/pubsub.publisher`",
    )


def judge_topic(check: str, name: str, topic: Topic | None, without: str) -> Finding:
    """Does the topic exist? `without` says what breaks when it does not."""
    if topic is None:
        return Finding(
            Status.FAIL, check, f"no topic {name}: {without}. Run terraform apply"
        )
    return Finding(Status.OK, check, f"{name} exists")


def judge_alert_topic(
    name: str, topic: Topic | None, policy: Policy | None, deployment: Deployment
) -> Finding:
    """Does WATCHDOG_ALERT_TOPIC exist, and may the function publish to it?"""
    check = "topic alerts"
    without = "incidents are not published there (the structured log still has them)"
    if topic is None or policy is None:
        return judge_topic(check, name, None, without)
    member = f"serviceAccount:{deployment.function_principal}"
    if any(member in _holders(policy, role) for role in PUBLISH_ROLES):
        return Finding(Status.OK, check, f"{name} exists; {member} may publish")
    return Finding(
        Status.FAIL,
        check,
        f"{member} may not publish to {name}: {without}. Run terraform apply",
    )


def judge_subscription(
    subscription: Subscription | None,
    dead_letter: Topic | None,
    function_uri: str | None,
    deployment: Deployment,
) -> Finding:
    """Does the push subscription carry audit events to the function?"""
    check = "subscription"
    name = deployment.subscription
    if subscription is None:
        return Finding(
            Status.FAIL,
            check,
            f"no subscription {name}: audit events reach no one (ticks still "
            "restore, up to a minute later). Run terraform apply",
        )
    problems: list[str] = []
    if subscription.topic == DELETED_TOPIC:
        problems.append("its topic was deleted, and Pub/Sub never reattaches it")
    elif subscription.topic != deployment.audit_topic:
        problems.append(f"it reads {subscription.topic}, not {deployment.audit_topic}")
    if not subscription.push_endpoint:
        problems.append("it pushes nowhere (a pull subscription)")
    elif function_uri and subscription.push_endpoint != function_uri:
        problems.append(
            f"it pushes to {subscription.push_endpoint}, not the function's URL "
            f"{function_uri}"
        )
    if subscription.push_principal != deployment.invoker_principal:
        problems.append(
            f"it signs pushes as {subscription.push_principal or 'no one'}, not "
            f"{deployment.invoker_principal}"
        )
    if subscription.dead_letter_topic and dead_letter is None:
        problems.append(
            f"its dead-letter topic {subscription.dead_letter_topic} does not exist, "
            "so undeliverable events are lost"
        )
    if problems:
        return Finding(
            Status.FAIL,
            check,
            f"{_short(name)}: {'; '.join(problems)}. Run terraform apply",
        )
    parked = (
        f", dead letters to {_short(subscription.dead_letter_topic)}"
        if subscription.dead_letter_topic
        else ""
    )
    return Finding(
        Status.OK,
        check,
        f"{_short(name)} pushes {_short(deployment.audit_topic)} to the function as "
        f"{deployment.invoker_principal}{parked}",
    )


def judge_job(
    job: SchedulerJob | None, function_uri: str | None, deployment: Deployment
) -> Finding:
    """Is the tick job enabled, every minute, aimed at the function?"""
    check = "scheduler-job"
    short = _short(deployment.job)
    if job is None:
        return Finding(
            Status.FAIL,
            check,
            f"no job {deployment.job}: nothing ticks, so drift is found only through "
            "audit events. Run terraform apply",
        )
    if job.state != "ENABLED":
        fix = (
            f"`gcloud scheduler jobs resume {short} --project {deployment.project} "
            f"--location {deployment.region}`"
            if job.state == "PAUSED"
            else "terraform apply"
        )
        return Finding(
            Status.FAIL, check, f"{short} is {job.state}: nothing ticks. Run {fix}"
        )
    problems: list[str] = []
    if tuple(job.schedule.split()) not in EVERY_MINUTE:
        problems.append(
            f"it runs on '{job.schedule}', not every minute, so drift can last "
            'until the next tick (set tick_schedule = "* * * * *")'
        )
    if not job.target_uri:
        problems.append("it has no HTTP target")
    elif function_uri and job.target_uri != function_uri:
        problems.append(
            f"it calls {job.target_uri}, not the function's URL {function_uri}"
        )
    if job.target_principal != deployment.invoker_principal:
        problems.append(
            f"it signs calls as {job.target_principal or 'no one'}, not "
            f"{deployment.invoker_principal}"
        )
    if problems:
        return Finding(
            Status.FAIL,
            check,
            f"{short}: {'; '.join(problems)}. Run terraform apply",
        )
    if job.last_status:
        return Finding(
            Status.WARN,
            check,
            f"{short} is enabled, but its last run failed ({job.last_status}); "
            "the function's logs say why",
        )
    return Finding(
        Status.OK,
        check,
        f"{short} is enabled, every minute, calling the function as "
        f"{deployment.invoker_principal}",
    )


def judge_function(
    facts: FunctionFacts | None, deployment: Deployment
) -> tuple[Finding, Finding, Finding]:
    """Is the function private, internal only, and callable by the invoker?"""
    function = deployment.function
    if facts is None:
        missing = (
            f"no Cloud Run service {function.service} in {function.location} (a gen2 "
            "function runs as one): check --name and --region, or run terraform apply"
        )
        return (
            Finding(Status.FAIL, "function-private", missing),
            Finding(Status.FAIL, "function-ingress", missing),
            Finding(Status.FAIL, "function-invoker", missing),
        )
    where = f"--project {function.project} --region {function.location}"
    public = sorted(
        {
            (member, binding.role)
            for binding in facts.policy.bindings
            for member in binding.members
            if member in PUBLIC_MEMBERS
        }
    )
    if public:
        member, role = public[0]
        granted = ", ".join(f"{member} holds {role}" for member, role in public)
        private = Finding(
            Status.FAIL,
            "function-private",
            f"{granted} on the function: anyone can call it. Run `gcloud run "
            f"services remove-iam-policy-binding {function.service} {where} "
            f"--member {member} --role {role}`",
        )
    elif facts.invoker_iam_disabled:
        private = Finding(
            Status.FAIL,
            "function-private",
            "the function's invoker IAM check is disabled: anyone who reaches it can "
            f"call it. Run `gcloud run services update {function.service} {where} "
            "--invoker-iam-check`",
        )
    else:
        private = Finding(
            Status.OK,
            "function-private",
            "no allUsers or allAuthenticatedUsers binding; invoker IAM check on",
        )
    if facts.ingress == INTERNAL_ONLY:
        ingress = Finding(Status.OK, "function-ingress", "internal only")
    else:
        ingress = Finding(
            Status.FAIL,
            "function-ingress",
            f"ingress is {facts.ingress}, not internal only. Run terraform apply "
            "(ingress_settings = ALLOW_INTERNAL_ONLY)",
        )
    invoker = f"serviceAccount:{deployment.invoker_principal}"
    if invoker in _holders(facts.policy, INVOKER_ROLE):
        callable_by = Finding(
            Status.OK, "function-invoker", f"{invoker} holds {INVOKER_ROLE}"
        )
    else:
        callable_by = Finding(
            Status.FAIL,
            "function-invoker",
            f"{invoker} lacks {INVOKER_ROLE} on the function: every tick and audit "
            "push is refused with 403. Run terraform apply",
        )
    return private, ingress, callable_by


def judge_secret(
    secret: Secret | None, latest: SecretVersion | None, deployment: Deployment
) -> Finding:
    """Does the webhook secret exist, with an enabled latest version?"""
    check = "webhook-secret"
    secret_id, project = deployment.secret_id, deployment.project
    if secret_id is None:
        return Finding(
            Status.WARN,
            check,
            "not checked: no --secret given (pass the deployment's "
            "alert_webhook_secret_id; without one no webhook alerts are sent)",
        )
    add_version = (
        f'`printf %s "$WEBHOOK_URL" | gcloud secrets versions add {secret_id} '
        f"--project {project} --data-file=-`"
    )
    if secret is None:
        return Finding(
            Status.FAIL,
            check,
            f"no secret {deployment.secret}: new function instances cannot start. "
            f'Create it: `printf %s "$WEBHOOK_URL" | gcloud secrets create '
            f"{secret_id} --project {project} --data-file=-`",
        )
    if latest is None:
        return Finding(
            Status.FAIL,
            check,
            f"{secret_id} has no version: new function instances cannot start. "
            f"Add one: {add_version}",
        )
    number = _short(latest.name)
    if latest.state != "ENABLED":
        return Finding(
            Status.FAIL,
            check,
            f"{secret_id}: its latest version ({number}) is {latest.state}, and the "
            "function reads `latest` when an instance starts. Run `gcloud secrets "
            f"versions enable {number} --secret {secret_id} --project {project}`, "
            f"or add a version: {add_version}",
        )
    return Finding(
        Status.OK,
        check,
        f"{secret_id}: latest version ({number}) is enabled (value not read)",
    )


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def judge_heartbeat(
    newest: datetime | None,
    last_seen: datetime | None,
    now: datetime,
    deployment: Deployment,
) -> Finding:
    """Was there a tick within the window (`newest`), or when was the last one?"""
    check = "heartbeat"
    window = _age(deployment.heartbeat_window)
    if newest is not None:
        return Finding(
            Status.OK,
            check,
            f"last tick {_age(now - newest)} ago ({_clock(newest)}), within {window}",
        )
    why = (
        "check scheduler-job and function-invoker above, then the function's logs "
        "(a bad WATCHDOG_* setting stops it at start)"
    )
    if last_seen is not None:
        return Finding(
            Status.FAIL,
            check,
            f"no tick for {_age(now - last_seen)} (last at {_clock(last_seen)}; "
            f"expected within {window}): {why}",
        )
    return Finding(
        Status.FAIL,
        check,
        f"no tick in the last {_age(HEARTBEAT_LOOKBACK)}: if the function was "
        f"deployed minutes ago, wait for its first tick; otherwise {why}",
    )


def heartbeat_filter(deployment: Deployment) -> str:
    """The function's heartbeat records, as the terraform log-based metric counts.

    The metric's terms plus the log names, so the query reads one pair of logs.
    """
    logs = " OR ".join(
        f'"projects/{deployment.project}/logs/run.googleapis.com%2F{stream}"'
        for stream in ("stdout", "stderr")
    )
    return " AND ".join(
        [
            f"logName=({logs})",
            'resource.type="cloud_run_revision"',
            f'resource.labels.service_name="{deployment.name}"',
            "jsonPayload.heartbeat=true",
        ]
    )


# Reading, then deciding.


def _listed(
    check: Callable[[ServiceName], Finding], service: ServiceName
) -> Callable[[], list[Finding]]:
    """`check(service)` as a call of no arguments, for Doctor._guarded."""
    return lambda: [check(service)]


def _from_run(permission: str, resource: str, read: Callable[[], _T]) -> _T:
    """A RunApi read, its refusal restated as the permission the caller lacks."""
    try:
        return read()
    except MissingPermission:
        raise
    except PermissionDenied as error:
        raise MissingPermission(permission, resource, str(error)) from error


class Doctor:
    """Reads the deployment through the gateways and judges each piece."""

    def __init__(
        self, deployment: Deployment, run_api: RunApi, deployment_api: DeploymentApi
    ) -> None:
        self.deployment = deployment
        self.run_api = run_api
        self.api = deployment_api

    def examine(self, now: datetime) -> list[Finding]:
        """Every check, in the order a reader follows an event through the system."""
        d = self.deployment
        function: list[FunctionFacts | None] = []

        def read_function() -> list[Finding]:
            function.append(self.read_function())
            return list(judge_function(function[0], d))

        function_findings = self._guarded(
            ("function-private", "function-ingress", "function-invoker"),
            read_function,
        )
        uri = function[0].uri if function and function[0] is not None else None

        findings: list[Finding] = []
        for service in d.services:
            findings += self._guarded(
                (f"watchdog-role {service.service}",),
                _listed(self.check_watchdog_role, service),
            )
            findings += self._guarded(
                (f"operator-access {service.service}",),
                _listed(self.check_operator_access, service),
            )
        sink: list[Sink | None] = []

        def read_sink() -> list[Finding]:
            sink.append(self.api.get_sink(d.sink))
            return [judge_sink(sink[0], d)]

        findings += self._guarded(("log-sink",), read_sink)
        findings += self._guarded(
            ("sink-publisher",),
            lambda: [
                judge_sink_publisher(
                    sink[0] if sink else self.api.get_sink(d.sink),
                    self.api.get_topic_policy(d.audit_topic),
                    d,
                )
            ],
        )
        findings += self._guarded(
            ("topic audit",),
            lambda: [
                judge_topic(
                    "topic audit",
                    d.audit_topic,
                    self.api.get_topic(d.audit_topic),
                    "the sink has nowhere to write, so audit events never reach the "
                    "function",
                )
            ],
        )
        if d.alert_topic is not None:
            alert_topic = d.alert_topic
            findings += self._guarded(
                ("topic alerts",),
                lambda: [
                    judge_alert_topic(
                        alert_topic,
                        self.api.get_topic(alert_topic),
                        self.api.get_topic_policy(alert_topic),
                        d,
                    )
                ],
            )
        findings += self._guarded(
            ("subscription",), lambda: [self.check_subscription(uri)]
        )
        findings += self._guarded(
            ("scheduler-job",),
            lambda: [judge_job(self.api.get_job(d.job), uri, d)],
        )
        findings += function_findings
        findings += self._guarded(("webhook-secret",), lambda: [self.check_secret()])
        findings += self._guarded(("heartbeat",), lambda: [self.check_heartbeat(now)])
        return findings

    def read_function(self) -> FunctionFacts | None:
        """The function's Cloud Run service, or None if there is none."""
        function = self.deployment.function
        try:
            info = _from_run(
                "run.services.get",
                function.full,
                lambda: self.run_api.get_service(function),
            )
        except ServiceNotFound:
            return None
        ingress = _from_run(
            "run.services.get",
            function.full,
            lambda: self.run_api.get_ingress(function),
        )
        policy = _from_run(
            "run.services.getIamPolicy",
            function.full,
            lambda: self.run_api.get_policy(function),
        )
        return FunctionFacts(info.uri, info.invoker_iam_disabled, ingress, policy)

    def check_watchdog_role(self, service: ServiceName) -> Finding:
        try:
            policy = _from_run(
                "run.services.getIamPolicy",
                service.full,
                lambda: self.run_api.get_policy(service),
            )
        except ServiceNotFound:
            return Finding(
                Status.FAIL,
                f"watchdog-role {service.service}",
                f"no service {service}: fix WATCHDOG_SERVICES (and watched_services "
                "in terraform)",
            )
        return judge_watchdog_role(service, policy, self.deployment)

    def check_operator_access(self, service: ServiceName) -> Finding:
        try:
            granted = self.run_api.test_permissions(service, RUN_PERMISSIONS)
        except ServiceNotFound:
            return Finding(
                Status.FAIL,
                f"operator-access {service.service}",
                f"no service {service}: fix WATCHDOG_SERVICES",
            )
        return judge_operator_access(service, granted)

    def check_subscription(self, function_uri: str | None) -> Finding:
        subscription = self.api.get_subscription(self.deployment.subscription)
        dead_letter = None
        if subscription is not None and subscription.dead_letter_topic:
            dead_letter = self.api.get_topic(subscription.dead_letter_topic)
        return judge_subscription(
            subscription, dead_letter, function_uri, self.deployment
        )

    def check_secret(self) -> Finding:
        name = self.deployment.secret
        if name is None:
            return judge_secret(None, None, self.deployment)
        secret = self.api.get_secret(name)
        latest = None if secret is None else self.api.get_latest_version(name)
        return judge_secret(secret, latest, self.deployment)

    def check_heartbeat(self, now: datetime) -> Finding:
        d = self.deployment
        query = heartbeat_filter(d)
        newest = self.api.newest_entry_time(
            d.project, query, since=now - d.heartbeat_window
        )
        last_seen = None
        if newest is None:
            # One wider, still bounded query, only to say when it stopped.
            last_seen = self.api.newest_entry_time(
                d.project, query, since=now - HEARTBEAT_LOOKBACK
            )
        return judge_heartbeat(newest, last_seen, now, d)

    @staticmethod
    def _guarded(
        checks: Sequence[str], examine: Callable[[], list[Finding]]
    ) -> list[Finding]:
        """The findings, or a FAIL for each check when a read could not be made.

        ConfigError (no credentials, a library missing) is not caught: then no
        check can run, and the doctor stops with exit code 2.
        """
        try:
            return examine()
        except ConfigError:
            raise
        except MissingPermission as error:
            detail = (
                f"cannot check: you (Application Default Credentials) lack "
                f"{error.permission} on {error.resource}"
            )
        except WatchdogError as error:
            detail = f"cannot check: {error}"
        return [Finding(Status.FAIL, check, detail) for check in checks]


def render(findings: Sequence[Finding]) -> list[str]:
    """`STATUS  CHECK  DETAIL` lines, the check names aligned."""
    width = max((len(finding.check) for finding in findings), default=0)
    return [
        f"{finding.status.value:<4}  {finding.check:<{width}}  {finding.detail}"
        for finding in findings
    ]


def summarize(findings: Sequence[Finding]) -> str:
    counts = {status: 0 for status in Status}
    for finding in findings:
        counts[finding.status] += 1
    return (
        f"doctor: {counts[Status.OK]} ok, {counts[Status.WARN]} warn, "
        f"{counts[Status.FAIL]} FAIL"
    )


# The command line.


def _positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The doctor's flags; the watched services come from WATCHDOG_SERVICES."""
    parser.add_argument(
        "--project",
        help="project of the deployment (default: that of the first watched service)",
    )
    parser.add_argument(
        "--region",
        help="region of the function and the scheduler job (default: that of the "
        "first watched service)",
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"the terraform `name` variable (default: {DEFAULT_NAME})",
    )
    parser.add_argument(
        "--secret",
        metavar="SECRET_ID",
        help="the terraform `alert_webhook_secret_id`, if the deployment sets one",
    )
    parser.add_argument(
        "--heartbeat-minutes",
        type=_positive_minutes,
        default=DEFAULT_HEARTBEAT_MINUTES,
        help="the newest heartbeat must be at most this old (default: "
        f"{DEFAULT_HEARTBEAT_MINUTES:g})",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `doctor` subcommand to `python -m watchdog`."""
    parser = commands.add_parser(
        "doctor",
        help="check a deployment from the outside; exit 1 when a check fails",
        description=DESCRIPTION,
    )
    add_arguments(parser)


def _deployment_endpoint(env: Mapping[str, str]) -> str | None:
    value = env.get("WATCHDOG_DEPLOYMENT_ENDPOINT", "").strip() or None
    if value and not _ENDPOINT.match(value):
        raise ConfigError(f"WATCHDOG_DEPLOYMENT_ENDPOINT: {value!r} is not host:port")
    return value


def deployment_from(args: argparse.Namespace, settings: Settings) -> Deployment:
    """The deployment the flags and settings describe; ConfigError if malformed."""
    first = settings.services[0]
    project = args.project or first.project
    region = args.region or first.location
    for flag, value in (("--project", project), ("--region", region)):
        if not _PLAIN_ID.match(value):
            raise ConfigError(f"{flag}: {value!r} is not an ID")
    if not _NAME.match(args.name):
        raise ConfigError(
            f"--name: {args.name!r} is not a deployment name (6-22 lowercase "
            "letters, digits or hyphens, starting with a letter)"
        )
    if args.secret is not None and not _SECRET_ID.match(args.secret):
        raise ConfigError(
            "--secret: expected a secret ID (letters, digits, - and _), not a URL "
            "or a full resource name (value not shown)"
        )
    return Deployment(
        project=project,
        region=region,
        name=args.name,
        services=settings.services,
        function_principal=(
            settings.self_principal or f"{args.name}@{project}.iam.gserviceaccount.com"
        ),
        secret_id=args.secret,
        alert_topic=settings.alert_topic,
        heartbeat_window=timedelta(minutes=args.heartbeat_minutes),
    )


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Check the deployment, print one line per check; the exit code.

    Raises ConfigError when it cannot run at all (the CLI prints it, exit 2).
    """
    env = os.environ if env is None else env
    settings = load_settings(env)
    deployment = deployment_from(args, settings)
    run_api = RunApi(settings.run_endpoint)
    deployment_api = DeploymentApi(
        _deployment_endpoint(env), logging_endpoint=settings.logging_endpoint
    )
    print(
        f"doctor: deployment {deployment.name} in {deployment.project}, "
        f"{deployment.region}; reading as you (Application Default Credentials), "
        "not as the function"
    )
    try:
        findings = Doctor(deployment, run_api, deployment_api).examine(
            datetime.now(UTC)
        )
    finally:
        run_api.close()
        deployment_api.close()
    for line in render(findings):
        print(line)
    print(summarize(findings))
    failed = any(finding.status is Status.FAIL for finding in findings)
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m watchdog doctor` on its own: parse `argv`, run, the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog doctor", description=DESCRIPTION
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except WatchdogError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
