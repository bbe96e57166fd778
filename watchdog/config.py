"""Settings, read once from the environment at cold start and validated.

Every error names the variable to fix, because the person reading it is looking at
a deployment, not at this code. The names are a public interface (Terraform and
users set them); the README lists each with its default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from watchdog.errors import ConfigError
from watchdog.model import DesiredState, ServiceName

MODES = ("enforce", "report")
ALERT_FORMATS = ("slack", "chat", "json")
# Where the memory of earlier invocations lives (watchdog.state_store). NB: in
# "memory" mode each function instance remembers only what it saw itself, so a
# persistent problem is suppressed, and a fight escalated, within one instance.
STATE_BACKENDS = ("memory", "firestore")

_SPLIT = re.compile(r"[\s,]+")
_ENDPOINT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_EMAIL = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")
_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
_MEMBER = re.compile(r"^(allUsers|allAuthenticatedUsers|[a-zA-Z]+:.+)$")
# Firestore database IDs: 4-63 lowercase letters, digits or hyphens, or (default).
_DATABASE = re.compile(r"^(\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9])$")
_COLLECTION = re.compile(r"^(?!__.*__$)[^/]{1,1500}$")


@dataclass(frozen=True)
class Settings:
    services: tuple[ServiceName, ...]
    mode: str = "enforce"
    desired: DesiredState = field(default_factory=DesiredState)
    health_path: str = "/health"
    alert_webhook_url: str | None = None  # a secret: never logged, never in repr
    alert_format: str = "json"
    alert_topic: str | None = None
    self_principal: str | None = None
    run_endpoint: str | None = None
    logging_endpoint: str | None = None
    health_timeout: float = 5.0
    max_event_age: float = 300.0
    state: str = "memory"
    firestore_database: str = "(default)"
    state_collection: str = "watchdog-services"
    escalate_after: int = 3  # restores by one identity within the window
    escalation_window: float = 86400.0  # seconds
    reminder_interval: float = 86400.0  # seconds; 0 sends no reminders

    def __repr__(self) -> str:
        webhook = "<set>" if self.alert_webhook_url else None
        return (
            f"Settings(services={[s.full for s in self.services]}, mode={self.mode!r},"
            f" desired={self.desired}, health_path={self.health_path!r},"
            f" alert_webhook_url={webhook}, alert_format={self.alert_format!r},"
            f" alert_topic={self.alert_topic!r},"
            f" self_principal={self.self_principal!r},"
            f" run_endpoint={self.run_endpoint!r},"
            f" logging_endpoint={self.logging_endpoint!r}, state={self.state!r},"
            f" firestore_database={self.firestore_database!r},"
            f" state_collection={self.state_collection!r})"
        )

    def watched(self, name: ServiceName) -> ServiceName | None:
        """The watched service a name refers to, or None.

        Audit entries may name the project by number where the settings use its
        ID; such a name matches a watched service in the same location with the
        same name. That is safe because the event only chooses which watched
        service to check: reconcile reads that service's real policy.
        """
        if name in self.services:
            return name
        if name.project.isdigit():
            for watched in self.services:
                if (watched.location, watched.service) == (name.location, name.service):
                    return watched
        return None

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"


def _members(env: Mapping[str, str], variable: str, default: str) -> tuple[str, ...]:
    members = tuple(m for m in _SPLIT.split(env.get(variable, default)) if m)
    for member in members:
        if not _MEMBER.match(member):
            raise ConfigError(
                f"{variable}: {member!r} is not an IAM member; expected allUsers, "
                "allAuthenticatedUsers or TYPE:ID such as user:ops@example.com"
            )
    return members


def _endpoint(env: Mapping[str, str], variable: str) -> str | None:
    value = env.get(variable, "").strip() or None
    if value and not _ENDPOINT.match(value):
        raise ConfigError(f"{variable}: {value!r} is not host:port")
    return value


def _number(
    env: Mapping[str, str], variable: str, default: float, *, zero_allowed: bool = False
) -> float:
    """A finite number above 0 (or 0 too, where 0 turns a feature off)."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{variable}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{variable}: must be a finite number, got {raw!r}")
    if value < 0 or (value == 0 and not zero_allowed):
        least = "0 or more" if zero_allowed else "greater than 0"
        raise ConfigError(f"{variable}: must be {least}, got {raw!r}")
    return value


def _count(env: Mapping[str, str], variable: str, default: int, least: int) -> int:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{variable}: {raw!r} is not a whole number") from None
    if value < least:
        raise ConfigError(f"{variable}: must be at least {least}, got {raw!r}")
    return value


def _state(env: Mapping[str, str]) -> tuple[str, str, str]:
    state = env.get("WATCHDOG_STATE", "memory").strip() or "memory"
    if state not in STATE_BACKENDS:
        raise ConfigError(
            f"WATCHDOG_STATE: {state!r} is not one of {', '.join(STATE_BACKENDS)}"
        )
    database = env.get("WATCHDOG_FIRESTORE_DATABASE", "").strip() or "(default)"
    if not _DATABASE.match(database):
        raise ConfigError(
            f"WATCHDOG_FIRESTORE_DATABASE: {database!r} is not a Firestore database "
            "ID (4-63 lowercase letters, digits or hyphens, or (default))"
        )
    collection = env.get("WATCHDOG_STATE_COLLECTION", "").strip() or "watchdog-services"
    if not _COLLECTION.match(collection):
        raise ConfigError(
            f"WATCHDOG_STATE_COLLECTION: {collection!r} is not a collection ID "
            "(no /, not __NAME__)"
        )
    return state, database, collection


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when out of range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and (port is None or port > 0)
    )


def _self_principal(env: Mapping[str, str]) -> str | None:
    """The watchdog's account as audit entries name it: the bare email."""
    raw = env.get("WATCHDOG_SELF_PRINCIPAL", "").strip()
    email = raw.removeprefix("serviceAccount:")
    if raw and not _EMAIL.match(email):
        raise ConfigError(
            f"WATCHDOG_SELF_PRINCIPAL: {raw!r} is not a service account email "
            "such as watchdog@my-project.iam.gserviceaccount.com"
        )
    return email or None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError on bad input."""
    raw_services = env.get("WATCHDOG_SERVICES", "").strip()
    if not raw_services:
        raise ConfigError(
            "WATCHDOG_SERVICES is not set; name the services to keep public, e.g. "
            "projects/my-project/locations/europe-west1/services/my-app"
        )
    services: list[ServiceName] = []
    for text in _SPLIT.split(raw_services):
        if not text:
            continue
        try:
            name = ServiceName.parse(text)
        except ValueError as error:
            raise ConfigError(f"WATCHDOG_SERVICES: {error}") from None
        if name not in services:
            services.append(name)

    mode = env.get("WATCHDOG_MODE", "enforce").strip() or "enforce"
    if mode not in MODES:
        raise ConfigError(f"WATCHDOG_MODE: {mode!r} is not one of {', '.join(MODES)}")

    public = _members(env, "WATCHDOG_PUBLIC_MEMBERS", "allUsers")
    forbidden = _members(env, "WATCHDOG_FORBIDDEN_MEMBERS", "allAuthenticatedUsers")
    if not public:
        raise ConfigError("WATCHDOG_PUBLIC_MEMBERS: at least one member is required")
    if overlap := set(public) & set(forbidden):
        raise ConfigError(
            "WATCHDOG_PUBLIC_MEMBERS and WATCHDOG_FORBIDDEN_MEMBERS both name "
            f"{', '.join(sorted(overlap))}"
        )

    health_path = env.get("WATCHDOG_HEALTH_PATH", "/health").strip() or "/health"
    if not health_path.startswith("/"):
        raise ConfigError(f"WATCHDOG_HEALTH_PATH: {health_path!r} must start with /")

    webhook = env.get("WATCHDOG_ALERT_WEBHOOK_URL", "").strip() or None
    if webhook and not _is_http_url(webhook):
        # Never echo the value: webhook URLs carry their credential in the path.
        raise ConfigError(
            "WATCHDOG_ALERT_WEBHOOK_URL is not an http(s) URL with a host and a "
            "valid port (value not shown)"
        )

    alert_format = env.get("WATCHDOG_ALERT_FORMAT", "json").strip() or "json"
    if alert_format not in ALERT_FORMATS:
        raise ConfigError(
            f"WATCHDOG_ALERT_FORMAT: {alert_format!r} is not one of "
            f"{', '.join(ALERT_FORMATS)}"
        )

    topic = env.get("WATCHDOG_ALERT_TOPIC", "").strip() or None
    if topic and not _TOPIC.match(topic):
        raise ConfigError(
            f"WATCHDOG_ALERT_TOPIC: {topic!r} is not projects/PROJECT/topics/TOPIC"
        )

    state, database, collection = _state(env)
    window = _number(env, "WATCHDOG_ESCALATION_WINDOW", 86400.0)

    return Settings(
        services=tuple(services),
        mode=mode,
        desired=DesiredState(public_members=public, forbidden_members=forbidden),
        health_path=health_path,
        alert_webhook_url=webhook,
        alert_format=alert_format,
        alert_topic=topic,
        self_principal=_self_principal(env),
        run_endpoint=_endpoint(env, "WATCHDOG_RUN_ENDPOINT"),
        logging_endpoint=_endpoint(env, "WATCHDOG_LOGGING_ENDPOINT"),
        health_timeout=_number(env, "WATCHDOG_HEALTH_TIMEOUT", 5.0),
        max_event_age=_number(env, "WATCHDOG_MAX_EVENT_AGE", 300.0),
        state=state,
        firestore_database=database,
        state_collection=collection,
        escalate_after=_count(env, "WATCHDOG_ESCALATE_AFTER", 3, least=2),
        escalation_window=window,
        reminder_interval=_number(
            env, "WATCHDOG_REMINDER_INTERVAL", 86400.0, zero_allowed=True
        ),
    )
