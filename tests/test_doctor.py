"""`python -m watchdog doctor` against a sandboxed deployment, healthy and broken.

Every read goes through the real client libraries over gRPC to the sandbox: the Run
and Logging stand-ins of `Sandbox`, and the deployment stand-ins of
`watchdog.sandbox.deployment` (Pub/Sub, the log sink, Cloud Scheduler, Secret
Manager). Nothing is mocked.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from watchdog import doctor, methods
from watchdog.deployment_api import SchedulerJob, Sink
from watchdog.model import ServiceName
from watchdog.run_api import RunApi
from watchdog.sandbox.deployment import DeploymentSandbox, sink_filter

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "demo-project"
REGION = "europe-west1"
SHOP = ServiceName(PROJECT, REGION, "shop")
HEALTHY_CHECKS = [
    "watchdog-role public-api",
    "operator-access public-api",
    "watchdog-role shop",
    "operator-access shop",
    "log-sink",
    "sink-publisher",
    "topic audit",
    "subscription",
    "scheduler-job",
    "function-private",
    "function-ingress",
    "function-invoker",
    "webhook-secret",
    "heartbeat",
]


@pytest.fixture
def deployment() -> Iterator[DeploymentSandbox]:
    """A healthy sandboxed deployment, and the doctor's environment pointing at it."""
    with DeploymentSandbox(PROJECT, REGION, ("public-api", "shop")) as started:
        os.environ.update(started.environment())
        yield started


def run_doctor(
    deployment: DeploymentSandbox,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
    arguments: list[str] | None = None,
) -> tuple[int, dict[str, str], str]:
    """Exit code, `{check: line}`, and everything printed."""
    argv = deployment.doctor_arguments() if arguments is None else arguments
    code = doctor.main([*argv, *extra])
    captured = capsys.readouterr()
    lines = {}
    for line in captured.out.splitlines():
        if match := re.match(r"^(ok|warn|FAIL)\s{2,}(.+?)\s{2,}", line):
            lines[match[2]] = line
    return code, lines, captured.out + captured.err


def test_healthy_deployment_passes_every_check(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run_doctor(deployment, capsys)
    assert code == doctor.EXIT_OK
    assert list(lines) == HEALTHY_CHECKS
    assert all(line.startswith("ok  ") for line in lines.values())


def test_report_says_it_reads_as_the_operator_not_the_function(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, output = run_doctor(deployment, capsys)
    assert "not as the function" in output.splitlines()[0]
    assert "not for the function" in lines["operator-access shop"]


def test_report_ends_with_the_counts(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.pause_job()
    _, _, output = run_doctor(deployment, capsys)
    assert output.splitlines()[-1] == "doctor: 13 ok, 0 warn, 1 FAIL"


Breakage = Callable[[DeploymentSandbox], None]


def _drop_replace_service(deployment: DeploymentSandbox) -> None:
    lacking = sink_filter(PROJECT).replace(
        '"google.cloud.run.v1.Services.ReplaceService" OR', ""
    )
    deployment.change_sink(filter=lacking)


@pytest.mark.parametrize(
    ("breakage", "check", "fix"),
    [
        pytest.param(
            lambda d: d.revoke_watchdog_role("shop"),
            "watchdog-role shop",
            "gcloud run services add-iam-policy-binding shop",
            id="watchdog-role-revoked",
        ),
        pytest.param(
            lambda d: d.delete_sink(), "log-sink", "no log sink", id="sink-deleted"
        ),
        pytest.param(
            _drop_replace_service,
            "log-sink",
            "lacks google.cloud.run.v1.Services.ReplaceService",
            id="sink-filter-lacks-a-method",
        ),
        pytest.param(
            lambda d: d.change_sink(
                destination=f"pubsub.googleapis.com/projects/{PROJECT}/topics/other"
            ),
            "log-sink",
            f"writes to pubsub.googleapis.com/projects/{PROJECT}/topics/other",
            id="sink-writes-elsewhere",
        ),
        pytest.param(
            lambda d: d.change_sink(disabled=True),
            "log-sink",
            "disabled",
            id="sink-disabled",
        ),
        pytest.param(
            lambda d: d.revoke_sink_publisher(),
            "sink-publisher",
            "gcloud pubsub topics add-iam-policy-binding public-watchdog-audit",
            id="sink-publisher-revoked",
        ),
        pytest.param(
            lambda d: d.delete_topic(),
            "topic audit",
            "no topic projects/demo-project/topics/public-watchdog-audit",
            id="audit-topic-deleted",
        ),
        pytest.param(
            lambda d: d.delete_subscription(),
            "subscription",
            "no subscription",
            id="subscription-deleted",
        ),
        pytest.param(
            lambda d: d.delete_topic(d.dead_letter_topic),
            "subscription",
            "undeliverable events are lost",
            id="dead-letter-topic-deleted",
        ),
        pytest.param(
            lambda d: d.pause_job(),
            "scheduler-job",
            "gcloud scheduler jobs resume public-watchdog-tick",
            id="job-paused",
        ),
        pytest.param(
            lambda d: d.change_job(schedule="*/5 * * * *"),
            "scheduler-job",
            "not every minute",
            id="job-every-five-minutes",
        ),
        pytest.param(
            lambda d: d.make_function_public(),
            "function-private",
            "--member allUsers --role roles/run.invoker",
            id="function-public",
        ),
        pytest.param(
            lambda d: d.make_function_public("allAuthenticatedUsers"),
            "function-private",
            "--member allAuthenticatedUsers",
            id="function-open-to-all-authenticated",
        ),
        pytest.param(
            lambda d: d.set_invoker_iam_disabled(d.name, True),
            "function-private",
            "--invoker-iam-check",
            id="function-invoker-check-disabled",
        ),
        pytest.param(
            lambda d: d.set_function_ingress(run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL),
            "function-ingress",
            "ingress_settings = ALLOW_INTERNAL_ONLY",
            id="function-ingress-all",
        ),
        pytest.param(
            lambda d: d.revoke_function_invoker(),
            "function-invoker",
            "refused with 403",
            id="function-invoker-revoked",
        ),
        pytest.param(
            lambda d: d.disable_secret_version(),
            "webhook-secret",
            "gcloud secrets versions enable 1 --secret public-watchdog-webhook",
            id="secret-version-disabled",
        ),
        pytest.param(
            lambda d: d.delete_secret(),
            "webhook-secret",
            "gcloud secrets create public-watchdog-webhook",
            id="secret-deleted",
        ),
        pytest.param(
            lambda d: d.stop_heartbeats(timedelta(minutes=40)),
            "heartbeat",
            "no tick for 40 min",
            id="heartbeats-stopped",
        ),
        pytest.param(
            lambda d: d.store.clear(),
            "heartbeat",
            "no tick in the last 24 h",
            id="never-a-heartbeat",
        ),
        pytest.param(
            lambda d: d.deny("GetSink"),
            "log-sink",
            "cannot check: you (Application Default Credentials) lack "
            "logging.sinks.get",
            id="sink-read-denied",
        ),
        pytest.param(
            lambda d: d.deny("GetSecretVersion"),
            "webhook-secret",
            "lack secretmanager.versions.get",
            id="secret-version-read-denied",
        ),
        pytest.param(
            lambda d: d.faults.fail("ListLogEntries", "PERMISSION_DENIED"),
            "heartbeat",
            "lack logging.logEntries.list on projects/demo-project",
            id="log-read-denied",
        ),
        pytest.param(
            # The first policy read is the function's own.
            lambda d: d.faults.fail("GetIamPolicy", "PERMISSION_DENIED"),
            "function-private",
            "lack run.services.getIamPolicy",
            id="function-policy-read-denied",
        ),
    ],
)
def test_each_breakage_fails_its_check_with_a_fix(
    deployment: DeploymentSandbox,
    capsys: pytest.CaptureFixture[str],
    breakage: Breakage,
    check: str,
    fix: str,
) -> None:
    breakage(deployment)
    code, lines, _ = run_doctor(deployment, capsys)
    assert code == doctor.EXIT_FAILED
    assert lines[check].startswith("FAIL  ")
    assert fix in lines[check]


def test_operator_lacking_a_permission_is_a_warning_only(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.withhold_permissions("shop", ["run.services.setIamPolicy"])
    code, lines, _ = run_doctor(deployment, capsys)
    assert code == doctor.EXIT_OK
    assert lines["operator-access shop"].startswith("warn  ")
    assert "you lack run.services.setIamPolicy" in lines["operator-access shop"]


def test_failed_last_tick_is_a_warning(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.change_job(last_status=(7, "The principal lacks run.routes.invoke"))
    code, lines, _ = run_doctor(deployment, capsys)
    assert code == doctor.EXIT_OK
    assert "last run failed (PERMISSION_DENIED" in lines["scheduler-job"]


def test_secret_value_never_appears_in_the_output(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # The operator may have exported the function's settings, webhook included.
    os.environ["WATCHDOG_ALERT_WEBHOOK_URL"] = deployment.webhook_url
    run_doctor(deployment, capsys)
    deployment.disable_secret_version()
    _, _, output = run_doctor(deployment, capsys)
    assert deployment.webhook_url not in output
    assert "sandbox-key" not in output


def test_secret_stand_in_never_serves_a_payload(
    deployment: DeploymentSandbox,
) -> None:
    channel = grpc.insecure_channel(deployment.deployment_endpoint)
    client = secretmanager_v1.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )
    try:
        with pytest.raises(exceptions.MethodNotImplemented):
            client.access_secret_version(
                name=f"{deployment.secret}/versions/latest", timeout=5
            )
    finally:
        client.transport.close()


def test_without_a_secret_flag_the_secret_is_not_checked(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = deployment.doctor_arguments()[:-2]  # drop --secret ID
    code, lines, _ = run_doctor(deployment, capsys, arguments=arguments)
    assert code == doctor.EXIT_OK
    assert lines["webhook-secret"].startswith("warn  ")
    assert "no --secret given" in lines["webhook-secret"]


def test_missing_alert_topic_fails_when_one_is_set(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["WATCHDOG_ALERT_TOPIC"] = f"projects/{PROJECT}/topics/alerts"
    code, lines, _ = run_doctor(deployment, capsys)
    assert code == doctor.EXIT_FAILED
    assert lines["topic alerts"].startswith("FAIL  ")
    assert f"no topic projects/{PROJECT}/topics/alerts" in lines["topic alerts"]


def test_alert_topic_needs_the_functions_publisher_grant(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"projects/{PROJECT}/topics/alerts"
    deployment.deployment.add_topic(topic)
    os.environ["WATCHDOG_ALERT_TOPIC"] = topic
    _, lines, _ = run_doctor(deployment, capsys)
    assert lines["topic alerts"].startswith("FAIL  ")
    assert "may not publish" in lines["topic alerts"]


def test_wrong_name_fails_the_function_checks_naming_the_flags(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run_doctor(deployment, capsys, "--name", "other-watchdog")
    assert code == doctor.EXIT_FAILED
    assert "check --name and --region" in lines["function-private"]


def test_heartbeat_window_is_a_flag(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.stop_heartbeats(timedelta(minutes=40))
    code, lines, _ = run_doctor(deployment, capsys, "--heartbeat-minutes", "60")
    assert code == doctor.EXIT_OK
    assert "within 60 min" in lines["heartbeat"]


@pytest.mark.parametrize(
    ("environment", "arguments", "message"),
    [
        pytest.param(
            {"WATCHDOG_SERVICES": ""}, [], "WATCHDOG_SERVICES", id="no-services"
        ),
        pytest.param({}, ["--name", "Bad_Name"], "--name", id="bad-name"),
        pytest.param(
            {}, ["--secret", "https://example.com/x"], "--secret", id="secret-as-url"
        ),
        pytest.param(
            {"WATCHDOG_DEPLOYMENT_ENDPOINT": "localhost"},
            [],
            "WATCHDOG_DEPLOYMENT_ENDPOINT",
            id="endpoint-without-port",
        ),
    ],
)
def test_bad_settings_stop_the_doctor_with_exit_2(
    deployment: DeploymentSandbox,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    arguments: list[str],
    message: str,
) -> None:
    os.environ.update(environment)
    code = doctor.main(arguments)
    assert code == doctor.EXIT_ERROR
    assert message in capsys.readouterr().err


def test_heartbeat_query_agrees_with_the_terraform_metric() -> None:
    monitoring = (ROOT / "terraform" / "monitoring.tf").read_text()
    block = monitoring.split('resource "google_logging_metric" "heartbeat"')[1]
    metric_filter = block.split("<<-EOT")[1].split("EOT")[0]
    terms = [
        term.strip().replace(
            "${google_cloudfunctions2_function.watchdog.name}", "public-watchdog"
        )
        for term in metric_filter.split(" AND ")
    ]
    deployment = doctor.Deployment(
        PROJECT, REGION, "public-watchdog", (SHOP,), "watchdog@x"
    )
    query = doctor.heartbeat_filter(deployment)
    assert all(term in query for term in terms), (terms, query)


@pytest.mark.parametrize(
    ("schedule", "status"),
    [
        ("* * * * *", doctor.Status.OK),
        ("*/1 * * * *", doctor.Status.OK),
        ("*/5 * * * *", doctor.Status.FAIL),
        ("0 * * * *", doctor.Status.FAIL),
    ],
    ids=["stars", "every-one", "every-five", "hourly"],
)
def test_only_an_every_minute_schedule_passes(
    schedule: str, status: doctor.Status
) -> None:
    deployment = doctor.Deployment(
        PROJECT, REGION, "public-watchdog", (SHOP,), "watchdog@x"
    )
    job = SchedulerJob(
        name=deployment.job,
        schedule=schedule,
        time_zone="Etc/UTC",
        state="ENABLED",
        target_uri="https://f",
        target_principal=deployment.invoker_principal,
        last_status="",
        last_attempt=datetime.now(UTC),
    )
    assert doctor.judge_job(job, "https://f", deployment).status is status


def test_sink_filter_naming_every_watched_method_passes() -> None:
    deployment = doctor.Deployment(
        PROJECT, REGION, "public-watchdog", (SHOP,), "watchdog@x"
    )
    sink = Sink(
        name=deployment.sink,
        destination=f"pubsub.googleapis.com/{deployment.audit_topic}",
        filter=sink_filter(PROJECT),
        writer_identity="serviceAccount:w@x",
        disabled=False,
    )
    finding = doctor.judge_sink(sink, deployment)
    assert finding.status is doctor.Status.OK
    assert f"all {len(methods.WATCHED_METHODS)} watched methods" in finding.detail


# The two RunApi reads the doctor added.


def test_test_permissions_answers_with_what_the_caller_holds(
    deployment: DeploymentSandbox,
) -> None:
    deployment.withhold_permissions("shop", ["run.services.setIamPolicy"])
    api = RunApi(deployment.run_endpoint, timeout=5)
    try:
        granted = api.test_permissions(SHOP, doctor.RUN_PERMISSIONS)
    finally:
        api.close()
    assert granted == {"run.services.get", "run.services.getIamPolicy"}


def test_get_ingress_names_the_setting(deployment: DeploymentSandbox) -> None:
    api = RunApi(deployment.run_endpoint, timeout=5)
    try:
        function = api.get_ingress(ServiceName(PROJECT, REGION, deployment.name))
        watched = api.get_ingress(SHOP)
    finally:
        api.close()
    assert (function, watched) == (
        "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "INGRESS_TRAFFIC_ALL",
    )


# The command line.


def test_register_adds_a_doctor_subcommand_that_runs(
    deployment: DeploymentSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="python -m watchdog")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor.register(commands)
    args = parser.parse_args(["doctor", *deployment.doctor_arguments()])
    assert doctor.run(args) == doctor.EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 FAIL")


@pytest.mark.parametrize("help_only", [True, False], ids=["help", "sandbox"])
def test_python_m_watchdog_doctor_runs(
    deployment: DeploymentSandbox, help_only: bool
) -> None:
    arguments = ["--help"] if help_only else deployment.doctor_arguments()
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "doctor", *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "heartbeat" in result.stdout
