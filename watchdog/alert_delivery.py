"""Deliver an alert: a structured log record, a webhook, a Pub/Sub topic.

`AlertSender` always writes one structured log record first, so log-based
alerting sees the incident even when every other channel is down; then it posts
to the webhook (with retries) and publishes to Pub/Sub. A failing channel is
logged and reported, never raised. A suppressed incident (a repeat of a problem
already alerted) is written to the structured log only, with `suppressed=true`
and how long the problem has lasted.

Webhook URLs carry their credential in the path, and HTTP libraries and
receivers repeat it in their messages: a webhook failure is reported only as its
status, its attempts and a description chosen by exception class, never with an
exception message or the receiver's answer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from http.client import RemoteDisconnected
from itertools import groupby
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote, unquote, urlsplit

import requests
import urllib3
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri
from urllib3.exceptions import (
    LocationValueError,
    MaxRetryError,
    NameResolutionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util import Retry

from watchdog.alerts import (
    RENDERERS,
    Alert,
    cut,
    render_json,
)
from watchdog.config import ALERT_FORMATS
from watchdog.errors import ConfigError
from watchdog.model import (
    Action,
    Incident,
    Recovery,
)

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

log = logging.getLogger(__name__)


# --- delivery --------------------------------------------------------------------
#
# A webhook URL carries its credential in the path, and an HTTP library's error
# messages, a receiver's error body and urllib3's own records all repeat it, in
# any spelling and cut anywhere. So a webhook failure is described only by facts
# that cannot hold it: the channel name, the status code and its standard reason
# phrase, the number of attempts, and for an exception a fixed description chosen
# by its class. The scrubber below is a second line: it also guards urllib3's own
# records, which the watchdog does not write.


@dataclass(frozen=True)
class DeliveryResult:
    """How one channel fared; `detail` never contains the webhook URL."""

    channel: str
    ok: bool
    detail: str = ""


class _RetriesExhausted(MaxRetryError):
    """urllib3's "giving up", saying how many attempts were made."""

    def __init__(
        self,
        pool: ConnectionPool,
        url: str | None,
        reason: Exception | None,
        attempts: int,
    ) -> None:
        super().__init__(pool, url, reason)
        self.attempts = attempts


class _CountingRetry(Retry):
    """urllib3's retry policy, unchanged, except that giving up counts attempts."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        try:
            return super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exhausted:
            # Every earlier attempt left one entry in the history.
            raise _RetriesExhausted(
                exhausted.pool,
                exhausted.url,
                exhausted.reason,
                attempts=len(self.history) + 1,
            ) from exhausted.reason


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


def _describe_answer(status: int, attempts: int) -> str:
    """ "answered 503 Service Unavailable (4 attempts)": no byte of the body."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "(not a standard status)"
    text = f"answered {status} {phrase}"
    if 300 <= status < 400:
        text += (
            ", a redirect: not followed, since it would send the alert somewhere "
            "not configured"
        )
    return f"{text} ({_attempts(attempts)})"


def _wrapped(error: BaseException) -> list[BaseException]:
    """`error` and every exception inside it: causes, contexts, reasons, args."""
    found: list[BaseException] = []
    pending = [error]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        )
        pending.extend(e for e in inner if isinstance(e, BaseException))
    return found


# Checked in order, so the most telling class wins: a refused connection is also
# a NewConnectionError, which urllib3 derives from ConnectTimeoutError.
_FAILURES: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((requests.TooManyRedirects,), "too many redirects"),
    ((NameResolutionError, socket.gaierror), "DNS lookup of the webhook host failed"),
    (
        (requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError),
        "TLS error",
    ),
    ((requests.exceptions.ProxyError, urllib3.exceptions.ProxyError), "proxy error"),
    ((ConnectionRefusedError,), "connection refused"),
    (
        (ReadTimeoutError, requests.ReadTimeout),
        "read timeout: no answer within {timeout:g} s; the alert may have arrived",
    ),
    (
        (requests.ConnectTimeout,),
        "connect timeout: no connection within {timeout:g} s",
    ),
    (
        (
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            RemoteDisconnected,
            ProtocolError,
        ),
        "connection reset or closed by the webhook host",
    ),
    (
        (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
        "broken answer",
    ),
    ((requests.exceptions.RetryError,), "gave up after retries"),
    ((requests.Timeout,), "timed out after {timeout:g} s"),
)
_INVALID_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    LocationValueError,
)


def _describe_webhook_error(error: BaseException, timeout: float) -> str:
    """A fixed description of a failed webhook post, chosen by exception class.

    Never the exception's message: requests and urllib3 put the URL in theirs.
    """
    wrapped = _wrapped(error)
    if any(isinstance(e, _INVALID_URL) for e in wrapped):
        return "invalid webhook URL (value not shown); nothing was sent"
    what = ""
    for kinds, description in _FAILURES:
        if any(isinstance(e, kinds) for e in wrapped):
            what = description.format(timeout=timeout)
            break
    if not what:
        # os.strerror gives the system's fixed words for the number, never a URL.
        numbered = [e.errno for e in wrapped if isinstance(e, OSError) and e.errno]
        if numbered:
            what = f"could not connect: {os.strerror(numbered[-1])}"
        else:
            what = f"request failed ({type(error).__name__})"
    counts = [e.attempts for e in wrapped if isinstance(e, _RetriesExhausted)]
    return f"{what} ({_attempts(counts[0])})" if counts else what


_REDACTED = "<webhook URL>"
# No run of this many characters of the URL's path or query survives a scrub, so
# a piece cut from either end of the URL is caught too. NB: a common word in the
# path ("/services/" in Slack's) is then also hidden in urllib3's records of
# other requests; a readable log line is worth less than a leaked credential.
_PIECE = 8
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _spellings(text: str) -> set[str]:
    """`text` raw, percent-decoded and percent-encoded, each also JSON-escaped.

    JSON-escaped as PHP's json_encode writes it by default: "\\/" and "\\u00e9".
    """
    decoded = unquote(text)
    found: set[str] = set()
    for spelling in {
        text,
        decoded,
        requote_uri(text),
        quote(decoded, safe="/?&=;:@"),
        quote(decoded, safe=""),
    }:
        escaped = json.dumps(spelling)[1:-1]
        found |= {spelling, escaped}
        found |= {spelling.replace("/", "\\/"), escaped.replace("/", "\\/")}
    return found


@dataclass(frozen=True)
class _Secrets:
    """What a scrub hides: every spelling of a webhook URL, any piece of its path."""

    whole: frozenset[str] = frozenset()
    pieces: frozenset[str] = frozenset()

    @classmethod
    def of(cls, url: str) -> _Secrets:
        """The secrets of one webhook URL: its path, query and any user info."""
        parts = urlsplit(url)
        path_query = parts.path + (f"?{parts.query}" if parts.query else "")
        private = {path_query, parts.path, parts.query}
        if "@" in parts.netloc:
            private.add(parts.netloc.rsplit("@", 1)[0])
        whole = {url, url.split("://", 1)[-1], parts.netloc + path_query, *private}
        spelled = {s for text in whole for s in _spellings(text)}
        pieces = {
            s.translate(_ASCII_LOWER)[start : start + _PIECE]
            for text in private
            for s in _spellings(text)
            for start in range(len(s) - _PIECE + 1)
        }
        # A bare "/" or a one-letter path would hide every message; it is no secret.
        return cls(frozenset(s for s in spelled if len(s) > 2), frozenset(pieces))

    def __or__(self, other: _Secrets) -> _Secrets:
        return _Secrets(self.whole | other.whole, self.pieces | other.pieces)

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        ordered = sorted(self.whole, key=len, reverse=True)
        if not ordered:
            return None
        return re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE)

    def scrub(self, text: str) -> str:
        """`text` with the URL and any piece of its path hidden; scrub, then cut."""
        if self._pattern is not None:
            text = self._pattern.sub(_REDACTED, text)
        folded = text.translate(_ASCII_LOWER)
        hidden = [False] * len(text)
        for start in range(len(text) - _PIECE + 1):
            if folded[start : start + _PIECE] in self.pieces:
                hidden[start : start + _PIECE] = [True] * _PIECE
        if not any(hidden):
            return text
        return "".join(
            _REDACTED if secret else "".join(char for _, char in run)
            for secret, run in groupby(
                zip(hidden, text, strict=True), key=itemgetter(0)
            )
        )


class _RedactSecrets(logging.Filter):
    """Scrubs webhook URLs from urllib3's own records ("Retrying ... /services/...").

    urllib3 logs the request path of every retry at WARNING (and the full URL at
    DEBUG); with no handler configured, Python prints that to stderr, which Cloud
    Logging keeps. The whole message is scrubbed as formatted, before any handler
    could cut it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets = _Secrets()
        self._lock = threading.Lock()

    def add(self, secrets: _Secrets) -> None:
        with self._lock:
            self._secrets = self._secrets | secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        message = record.getMessage()
        scrubbed = secrets.scrub(message)
        if scrubbed != message:
            record.msg = scrubbed
            record.args = None
        if record.exc_info:
            # A traceback repeats the exception messages, URL included.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = secrets.scrub(text)
            record.exc_info = None
        return True


# A logger's filter sees only records made on that very logger, not its children's.
_URLLIB3_LOGGERS = (
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)
_redact_filter = _RedactSecrets()
_filter_lock = threading.Lock()


def _install_redaction(secrets: _Secrets) -> None:
    _redact_filter.add(secrets)
    with _filter_lock:
        names = set(_URLLIB3_LOGGERS) | {
            name
            for name in logging.Logger.manager.loggerDict
            if name.startswith("urllib3.")
        }
        for name in sorted(names):
            logger = logging.getLogger(name)
            if _redact_filter not in logger.filters:
                logger.addFilter(_redact_filter)


class AlertSender:
    """Delivers each incident to the structured log, the webhook and Pub/Sub."""

    def __init__(
        self,
        *,
        webhook_url: str | None,
        alert_format: str,
        topic: str | None = None,
        timeout: float = 5.0,
        backoff_factor: float = 0.5,
    ) -> None:
        if alert_format not in ALERT_FORMATS:
            raise ConfigError(
                f"WATCHDOG_ALERT_FORMAT: {alert_format!r} is not one of "
                f"{', '.join(ALERT_FORMATS)}"
            )
        self._webhook_url = webhook_url
        self._secrets = _Secrets.of(webhook_url) if webhook_url else _Secrets()
        if webhook_url:
            _install_redaction(self._secrets)
        self.alert_format = alert_format
        self.topic = topic
        self.timeout = timeout
        self.backoff_factor = backoff_factor
        self._session: requests.Session | None = None
        self._publisher: PublisherClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        webhook = "<set>" if self._webhook_url else None
        return (
            f"AlertSender(webhook={webhook}, alert_format={self.alert_format!r}, "
            f"topic={self.topic!r}, timeout={self.timeout})"
        )

    @property
    def webhook_channel(self) -> str:
        """How the webhook is named in logs and results: its format, never its URL."""
        return f"webhook ({self.alert_format})"

    def send(self, incident: Alert) -> list[DeliveryResult]:
        """Log the alert, then deliver it to every channel, unless it is suppressed."""
        results = [self._log(incident)]
        if isinstance(incident, Incident) and incident.suppressed:
            return results
        if self._webhook_url:
            results.append(
                self._deliver(
                    self.webhook_channel, self._post, self._describe_post, incident
                )
            )
        if self.topic:
            results.append(
                self._deliver(
                    f"pubsub ({self.topic})",
                    self._publish,
                    self._describe_publish,
                    incident,
                )
            )
        return results

    def close(self) -> None:
        """Release the HTTP connections and the publisher's channel."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._publisher is not None:
                self._publisher.stop()
                self._publisher = None

    def _log(self, alert: Alert) -> DeliveryResult:
        if isinstance(alert, Recovery):
            level = logging.INFO
        elif alert.action == Action.FAILED:
            level = logging.ERROR
        elif alert.action in (Action.RESTORED, Action.REPORTED):
            level = logging.WARNING
        else:
            level = logging.INFO
        suppressed = isinstance(alert, Incident) and alert.suppressed
        # `alert` marks what was sent: a log-based alert on it pages once too.
        fields = render_json(alert) | {"alert": not suppressed}
        message = str(fields["summary"])
        if isinstance(alert, Incident) and alert.suppressed:
            # Still at the incident's level: log-based alerting sees every check.
            message = f"{message} [not sent again: {alert.repeat}]"
        log.log(level, "%s", message, extra={"fields": fields})
        return DeliveryResult("log", True, "structured log record written")

    def _deliver(
        self,
        channel: str,
        deliver: Callable[[str, Alert], DeliveryResult],
        describe: Callable[[BaseException], str],
        incident: Alert,
    ) -> DeliveryResult:
        """Run one channel; whatever it raises becomes a failed result, logged."""
        try:
            result = deliver(channel, incident)
        except Exception as error:  # noqa: BLE001
            # NB: deliberately broad. One channel must never take the others or
            # the reconcile step down; the incident is already in the log.
            result = DeliveryResult(channel, False, describe(error))
        # Built from fixed words already; scrubbed whole all the same, in case.
        result = DeliveryResult(
            result.channel, result.ok, self._secrets.scrub(result.detail)
        )
        if not result.ok:
            log.error(
                "alert delivery through %s failed: %s",
                channel,
                result.detail,
                extra={
                    "fields": {
                        "channel": channel,
                        "service": incident.service.full,
                        "detail": result.detail,
                    }
                },
            )
        return result

    def _describe_post(self, error: BaseException) -> str:
        """What went wrong with the webhook, by exception class only."""
        return _describe_webhook_error(error, self.timeout)

    def _describe_publish(self, error: BaseException) -> str:
        """What went wrong with Pub/Sub: the API's own words, which name no webhook."""
        if isinstance(error, TimeoutError) and not str(error):
            return f"timed out after {self.timeout:g} s"
        expected = isinstance(error, GoogleAPIError | GoogleAuthError | TimeoutError)
        text = f"{'' if expected else 'unexpected '}{type(error).__name__}: {error}"
        return cut(self._secrets.scrub(text), 500)

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                retry = _CountingRetry(
                    total=4,
                    connect=3,
                    # A read timeout may mean the post arrived; one more try risks
                    # a duplicate alert, which beats a lost one.
                    read=1,
                    status=3,
                    other=0,
                    # POST is not idempotent, so urllib3 will not retry it unless
                    # told: a duplicate alert is acceptable, a lost one is not.
                    allowed_methods=frozenset({"POST"}),
                    status_forcelist=(429, 500, 502, 503, 504),
                    backoff_factor=self.backoff_factor,
                    backoff_max=5,
                    respect_retry_after_header=True,
                    # A Slack 429 can ask for a long wait; the function has a
                    # deadline, and the incident is already in the log.
                    retry_after_max=10,
                    raise_on_status=False,
                )
                session = requests.Session()
                adapter = HTTPAdapter(max_retries=retry)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def _post(self, channel: str, incident: Alert) -> DeliveryResult:
        assert self._webhook_url is not None
        payload = RENDERERS[self.alert_format](incident)
        response = self._http().post(
            self._webhook_url,
            json=payload,
            timeout=self.timeout,
            # A redirect would send the alert somewhere not configured.
            allow_redirects=False,
        )
        with response:
            # The body is never read into a result: a receiver may echo the URL.
            retries = getattr(response.raw, "retries", None)
            attempts = len(retries.history) + 1 if isinstance(retries, Retry) else 1
            status = response.status_code
            return DeliveryResult(
                channel, 200 <= status < 300, _describe_answer(status, attempts)
            )

    def _pubsub(self) -> PublisherClient:
        with self._lock:
            if self._publisher is None:
                # Imported here: the library is heavy and most deployments that
                # publish nothing should not pay for it at cold start.
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
            return self._publisher

    def _publish(self, channel: str, incident: Alert) -> DeliveryResult:
        assert self.topic is not None
        document = render_json(incident)
        future = self._pubsub().publish(
            self.topic,
            json.dumps(document, ensure_ascii=False).encode("utf-8"),
            timeout=self.timeout,
            service=incident.service.full,
            action=str(document["action"]),
        )
        # NB: on timeout the message may still be sent later; a publisher future
        # cannot be cancelled.
        message_id = future.result(timeout=self.timeout)
        return DeliveryResult(channel, True, f"published message {message_id}")
