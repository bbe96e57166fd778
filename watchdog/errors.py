"""The package's exceptions, split by what the caller should do about them.

A `RetryableError` is worth another delivery (the entry point answers 5xx so Pub/Sub
or Eventarc redelivers); a `PermanentError` is not (the entry point logs it and
acknowledges). Client-library errors are wrapped at the gateway that saw them and
chained with ``from``, so nothing above a gateway imports google.api_core.
"""


class WatchdogError(Exception):
    """Base of every error the watchdog raises on purpose."""


class RetryableError(WatchdogError):
    """A failure another attempt can fix: unavailable API, timeout, quota."""


class PermanentError(WatchdogError):
    """A failure no retry can fix without a human changing something."""


class ConfigError(PermanentError):
    """A setting is missing or malformed; the message names the variable."""


class EtagConflict(RetryableError):
    """The policy changed between our read and our write (ABORTED)."""


class PermissionDenied(PermanentError):
    """The watchdog's identity lacks a permission on the service."""


class PolicyRejected(PermanentError):
    """The API refused the policy itself, e.g. an org policy forbids allUsers."""


class ServiceNotFound(PermanentError):
    """The watched service does not exist (deleted, or a typo in the settings)."""


class MalformedInput(PermanentError):
    """A delivery or log entry that can never be understood; logged, then acked."""
