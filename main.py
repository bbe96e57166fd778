"""Cloud Function entry points. Decoding, checking and alerting live in `watchdog`.

Both are HTTP functions on purpose: an HTTP signature sees every request as it
came, so no delivery shape (a raw Pub/Sub push, a message with attributes and no
data, an empty Cloud Scheduler body) is rejected by the framework before the
watchdog can acknowledge it.
"""

import flask
import functions_framework

from watchdog import runtime


@functions_framework.http
def on_event(request: flask.Request) -> runtime.Response:
    """Audit-log entries and ticks, in any delivery shape (CloudEvent, push, HTTP)."""
    return runtime.handle_event(dict(request.headers), request.get_data())


@functions_framework.http
def on_tick(request: flask.Request) -> runtime.Response:
    """Check every watched service now (Cloud Scheduler HTTP target, manual run)."""
    return runtime.handle_tick()
