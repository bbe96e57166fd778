"""Settings: defaults, validation, and errors that name the variable to fix."""

from __future__ import annotations

import pytest

from watchdog.config import load_settings
from watchdog.errors import ConfigError
from watchdog.model import ServiceName

SERVICE = "projects/demo-project/locations/europe-west1/services/public-api"
OTHER = "projects/demo-project/locations/us-central1/services/shop"


def test_defaults_apply_when_only_services_are_set() -> None:
    settings = load_settings({"WATCHDOG_SERVICES": SERVICE})
    assert settings.services == (ServiceName.parse(SERVICE),)
    assert settings.mode == "enforce"
    assert settings.desired.public_members == ("allUsers",)
    assert settings.desired.forbidden_members == ("allAuthenticatedUsers",)
    assert settings.health_path == "/health"
    assert settings.alert_format == "json"
    assert settings.alert_webhook_url is None
    assert settings.run_endpoint is None


def test_services_split_on_commas_and_whitespace_without_duplicates() -> None:
    settings = load_settings({"WATCHDOG_SERVICES": f" {SERVICE},\n{OTHER} {SERVICE}"})
    assert [s.full for s in settings.services] == [SERVICE, OTHER]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param({}, "WATCHDOG_SERVICES", id="services-missing"),
        pytest.param(
            {"WATCHDOG_SERVICES": "public-api"}, "WATCHDOG_SERVICES", id="short-name"
        ),
        pytest.param({"WATCHDOG_MODE": "fix"}, "WATCHDOG_MODE", id="mode"),
        pytest.param(
            {"WATCHDOG_ALERT_FORMAT": "teams"}, "WATCHDOG_ALERT_FORMAT", id="format"
        ),
        pytest.param(
            {"WATCHDOG_PUBLIC_MEMBERS": "bob"}, "WATCHDOG_PUBLIC_MEMBERS", id="member"
        ),
        pytest.param(
            {"WATCHDOG_FORBIDDEN_MEMBERS": "allUsers"},
            "WATCHDOG_FORBIDDEN_MEMBERS",
            id="public-and-forbidden",
        ),
        pytest.param(
            {"WATCHDOG_HEALTH_PATH": "health"}, "WATCHDOG_HEALTH_PATH", id="path"
        ),
        pytest.param(
            {"WATCHDOG_RUN_ENDPOINT": "http://x"},
            "WATCHDOG_RUN_ENDPOINT",
            id="endpoint",
        ),
        pytest.param(
            {"WATCHDOG_ALERT_TOPIC": "alerts"}, "WATCHDOG_ALERT_TOPIC", id="topic"
        ),
        pytest.param(
            {"WATCHDOG_HEALTH_TIMEOUT": "-1"}, "WATCHDOG_HEALTH_TIMEOUT", id="timeout"
        ),
    ],
)
def test_bad_setting_error_names_the_variable(env: dict[str, str], names: str) -> None:
    base = {"WATCHDOG_SERVICES": SERVICE} if names != "WATCHDOG_SERVICES" else {}
    with pytest.raises(ConfigError, match=names):
        load_settings(base | env)


def test_bad_webhook_url_error_does_not_show_the_url() -> None:
    secret = "hooks.example.com/services/T000/B000/SECRETTOKEN"
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {"WATCHDOG_SERVICES": SERVICE, "WATCHDOG_ALERT_WEBHOOK_URL": secret}
        )
    assert "WATCHDOG_ALERT_WEBHOOK_URL" in str(raised.value)
    assert "SECRETTOKEN" not in str(raised.value)


def test_settings_repr_hides_the_webhook_url() -> None:
    url = "https://hooks.example.com/services/T000/B000/SECRETTOKEN"
    settings = load_settings(
        {"WATCHDOG_SERVICES": SERVICE, "WATCHDOG_ALERT_WEBHOOK_URL": url}
    )
    assert settings.alert_webhook_url == url
    assert "SECRETTOKEN" not in repr(settings)


def test_project_number_matches_watched_service_by_location_and_name() -> None:
    settings = load_settings({"WATCHDOG_SERVICES": SERVICE})
    by_number = ServiceName("123456789012", "europe-west1", "public-api")
    elsewhere = ServiceName("123456789012", "us-east1", "public-api")
    assert settings.watched(by_number) == ServiceName.parse(SERVICE)
    assert settings.watched(elsewhere) is None


def test_other_project_by_id_is_not_watched() -> None:
    settings = load_settings({"WATCHDOG_SERVICES": SERVICE})
    assert settings.watched(ServiceName("other", "europe-west1", "public-api")) is None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "namespaces/demo-project/services/public-api", id="v1-no-location"
        ),
        pytest.param("projects/p/locations/r/services/", id="empty-service"),
        pytest.param("projects/p/services/s", id="no-locations-part"),
    ],
)
def test_service_name_parse_rejects_incomplete_names(text: str) -> None:
    with pytest.raises(ValueError, match=r"service|location"):
        ServiceName.parse(text)


def test_v1_service_name_takes_the_given_location() -> None:
    name = ServiceName.parse("namespaces/p/services/s", location="us-west1")
    assert name.full == "projects/p/locations/us-west1/services/s"


# --- memory across invocations ----------------------------------------------------


def test_state_defaults_to_memory_with_documented_thresholds() -> None:
    settings = load_settings({"WATCHDOG_SERVICES": SERVICE})
    assert (
        settings.state,
        settings.firestore_database,
        settings.state_collection,
    ) == ("memory", "(default)", "watchdog-services")
    assert (
        settings.escalate_after,
        settings.escalation_window,
        settings.reminder_interval,
    ) == (3, 86400.0, 86400.0)


def test_firestore_state_settings_are_read() -> None:
    settings = load_settings(
        {
            "WATCHDOG_SERVICES": SERVICE,
            "WATCHDOG_STATE": "firestore",
            "WATCHDOG_FIRESTORE_DATABASE": "public-watchdog",
            "WATCHDOG_STATE_COLLECTION": "incidents",
            "WATCHDOG_ESCALATE_AFTER": "5",
            "WATCHDOG_ESCALATION_WINDOW": "3600",
            "WATCHDOG_REMINDER_INTERVAL": "0",
        }
    )
    assert (settings.state, settings.firestore_database) == (
        "firestore",
        "public-watchdog",
    )
    assert settings.state_collection == "incidents"
    assert (settings.escalate_after, settings.escalation_window) == (5, 3600.0)
    assert settings.reminder_interval == 0.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("WATCHDOG_STATE", "redis", id="state-backend"),
        pytest.param("WATCHDOG_FIRESTORE_DATABASE", "My_DB", id="database-id"),
        pytest.param("WATCHDOG_FIRESTORE_DATABASE", "ab", id="database-too-short"),
        pytest.param("WATCHDOG_STATE_COLLECTION", "a/b", id="collection-slash"),
        pytest.param("WATCHDOG_STATE_COLLECTION", "__x__", id="collection-reserved"),
        pytest.param("WATCHDOG_ESCALATE_AFTER", "1", id="escalate-after-one"),
        pytest.param("WATCHDOG_ESCALATE_AFTER", "2.5", id="escalate-after-fraction"),
        pytest.param("WATCHDOG_ESCALATION_WINDOW", "0", id="window-zero"),
        pytest.param("WATCHDOG_REMINDER_INTERVAL", "-1", id="reminder-negative"),
        pytest.param("WATCHDOG_REMINDER_INTERVAL", "daily", id="reminder-word"),
    ],
)
def test_bad_state_setting_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({"WATCHDOG_SERVICES": SERVICE, variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("WATCHDOG_HEALTH_TIMEOUT", "nan", id="timeout-nan"),
        pytest.param("WATCHDOG_HEALTH_TIMEOUT", "inf", id="timeout-inf"),
        pytest.param("WATCHDOG_MAX_EVENT_AGE", "nan", id="age-nan"),
        pytest.param("WATCHDOG_REMINDER_INTERVAL", "inf", id="reminder-inf"),
    ],
)
def test_non_finite_numbers_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({"WATCHDOG_SERVICES": SERVICE, variable: value})


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://[::1/hooks/SECRETTOKEN", id="broken-ipv6"),
        pytest.param("https://hooks.example.com:99999999/SECRETTOKEN", id="bad-port"),
        pytest.param("https://:443/SECRETTOKEN", id="no-host"),
    ],
)
def test_unparseable_webhook_url_is_a_config_error_without_the_url(url: str) -> None:
    with pytest.raises(ConfigError, match="WATCHDOG_ALERT_WEBHOOK_URL") as raised:
        load_settings({"WATCHDOG_SERVICES": SERVICE, "WATCHDOG_ALERT_WEBHOOK_URL": url})
    assert "SECRETTOKEN" not in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("watchdog@p.iam.gserviceaccount.com", id="email"),
        pytest.param("serviceAccount:watchdog@p.iam.gserviceaccount.com", id="member"),
    ],
)
def test_self_principal_is_kept_as_the_bare_email(value: str) -> None:
    settings = load_settings(
        {"WATCHDOG_SERVICES": SERVICE, "WATCHDOG_SELF_PRINCIPAL": value}
    )
    assert settings.self_principal == "watchdog@p.iam.gserviceaccount.com"


def test_self_principal_that_is_no_email_is_refused() -> None:
    with pytest.raises(ConfigError, match="WATCHDOG_SELF_PRINCIPAL"):
        load_settings({"WATCHDOG_SERVICES": SERVICE, "WATCHDOG_SELF_PRINCIPAL": "me"})
