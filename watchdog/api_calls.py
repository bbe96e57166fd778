"""What every gateway does the same way around a Google API call.

Transient statuses are retried by google-api-core's `Retry`, bounded both by a
number of attempts and by a deadline, so a tick still ends well inside its
minute. Errors are described as `STATUS: message` for the person reading them.
Only gateways import this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions
from google.api_core.retry import Retry

# The statuses another attempt can fix. The rest are permanent, or (ABORTED) need
# the caller to read again and decide again rather than repeat the same call.
TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.ResourceExhausted,
)


def bounded_retry(
    *,
    attempts: int,
    deadline: float,
    initial: float = 0.25,
    maximum: float = 4.0,
    on_retry: Callable[[Exception, int], None] | None = None,
) -> Retry:
    """A retry of transient errors, at most `attempts` calls within `deadline` s.

    Build a new one per call: it counts that call's attempts.
    """
    made = 1

    def should_retry(error: Exception) -> bool:
        nonlocal made
        if not isinstance(error, TRANSIENT) or made >= attempts:
            return False
        made += 1
        if on_retry is not None:
            on_retry(error, made)
        return True

    return Retry(
        predicate=should_retry,
        initial=initial,
        maximum=maximum,
        multiplier=2.0,
        timeout=deadline,
    )


def status_text(error: exceptions.GoogleAPIError) -> str:
    """`PERMISSION_DENIED: message` for an API error."""
    code = getattr(error, "grpc_status_code", None)
    label = code.name if code is not None else type(error).__name__
    return f"{label}: {getattr(error, 'message', error)}"


def last_error(error: exceptions.RetryError) -> str:
    """What the last attempt of a retry that ran out of time failed with."""
    cause = error.cause
    if cause is None:
        return "no answer before the deadline"
    if isinstance(cause, exceptions.GoogleAPIError):
        return status_text(cause)
    return f"{type(cause).__name__}: {cause}"


def log_retry(
    logger: logging.Logger, api: str, attempts: int
) -> Callable[[Exception, int], None]:
    """An `on_retry` hook that says which API failed and which attempt comes."""

    def report(error: Exception, attempt: int) -> None:
        logger.info(
            "%s call failed (%s), retrying (attempt %d of %d)",
            api,
            type(error).__name__,
            attempt,
            attempts,
        )

    return report


class LazyClient:
    """A gateway whose client library client is built on first use.

    Importing a gateway costs no credentials and no connection; the client is
    then shared by the threads of a tick. Subclasses say how to build it.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None

    def client(self) -> Any:
        """The client, built once."""
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Close the channel; a later call builds a new client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()
