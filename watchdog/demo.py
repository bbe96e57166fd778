"""`make demo`: the outage this project exists for, played on the local sandbox.

Everything is real but Google: the sandbox serves the Cloud Run Admin and Cloud
Logging APIs over gRPC, both entry points run under the functions-framework
server, audit entries travel through Google's Pub/Sub emulator where it is
installed, and alerts land on a local webhook. Three scenarios:

1. an intern removes `allUsers`; the audit event brings the watchdog at once;
2. the same happens but the log sink loses the entry; the next tick finds it and
   asks Cloud Logging who did it;
3. `allAuthenticatedUsers` is swapped in for `allUsers`; both are fixed.
"""

from __future__ import annotations

import contextlib
import tempfile
import textwrap
import time
from collections.abc import Callable

import requests

from watchdog.model import ServiceName
from watchdog.sandbox.actor import Actor
from watchdog.sandbox.emulator import PubSubEmulator, missing_requirement
from watchdog.sandbox.functions import FunctionServer
from watchdog.sandbox.server import Sandbox
from watchdog.sandbox.webhook import WebhookReceiver

ALERT_TIMEOUT = 30.0  # seconds to wait for an alert before the demo fails


def _say(text: str = "") -> None:
    print(text, flush=True)


def _health(sandbox: Sandbox, name: ServiceName) -> int:
    answer = requests.get(sandbox.uri(name) + "/health", timeout=5)
    return answer.status_code


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _show_alert(webhook: WebhookReceiver, count: int, started: float) -> None:
    alerts = webhook.wait_for(count, ALERT_TIMEOUT)
    elapsed = time.monotonic() - started
    _say(f"   alert received {elapsed:.1f} s after the change:")
    _say(textwrap.indent(alerts[count - 1].text, "   │ "))


def run_demo() -> int:
    """Play the three scenarios; 0 when each ends with the service public again."""
    started = time.monotonic()
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile())
        webhook = stack.enter_context(WebhookReceiver(echo=False))
        reason = missing_requirement()
        emulator = None if reason else stack.enter_context(PubSubEmulator())
        sandbox = stack.enter_context(
            Sandbox(
                services=("public-api", "shop"),
                pubsub_emulator_host=emulator.host if emulator else None,
                topic="audit" if emulator else None,
            )
        )
        public_api, shop = sandbox.services
        env = {
            "WATCHDOG_SERVICES": " ".join(name.full for name in sandbox.services),
            "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
            "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
            "WATCHDOG_ALERT_WEBHOOK_URL": webhook.url,
            "WATCHDOG_ALERT_FORMAT": "chat",
            "WATCHDOG_SELF_PRINCIPAL": sandbox.default_principal,
        }
        on_event = stack.enter_context(FunctionServer("on_event", env, log=log))
        on_tick = stack.enter_context(FunctionServer("on_tick", env, log=log))
        sandbox.set_sink_url(on_event.url)
        route = (
            f"through the Pub/Sub emulator at {emulator.host}"
            if emulator
            else f"as Pub/Sub push requests ({reason})"
        )
        _say("Sandbox up: Cloud Run Admin API, Cloud Logging API, front ends")
        _say(f"  watching {public_api.full}")
        _say(f"       and {shop.full}")
        _say(f"  audit entries reach on_event {route}")
        _say(f"  set-up took {time.monotonic() - started:.1f} s")
        _say(f"  {public_api.service}/health answers {_health(sandbox, public_api)}")

        _say()
        _say("1. intern@example.com removes allUsers from public-api")
        intern = Actor(
            "intern@example.com",
            sandbox.run_endpoint,
            user_agent="google-cloud-sdk gcloud/528.0.0 "
            "command/gcloud.run.services.remove-iam-policy-binding",
        )
        stack.callback(intern.close)
        changed = time.monotonic()
        intern.edit_invoker(public_api, remove=["allUsers"])
        _say(f"   public-api/health now answers {_health(sandbox, public_api)}")
        _show_alert(webhook, 1, changed)
        if not _wait_until(lambda: _health(sandbox, public_api) == 200, 5):
            failures.append("scenario 1: public-api did not answer 200 again")
        _say(f"   public-api/health answers {_health(sandbox, public_api)} again")

        _say()
        _say("2. deploy-bot removes allUsers from shop, and the sink loses the entry")
        bot = Actor(
            "deploy-bot@demo-project.iam.gserviceaccount.com",
            sandbox.run_endpoint,
            user_agent="deploy-pipeline/2.1",
        )
        stack.callback(bot.close)
        sandbox.faults.drop_forwarded(1)
        changed = time.monotonic()
        bot.edit_invoker(shop, remove=["allUsers"])
        sandbox.flush()
        _say(f"   shop/health answers {_health(sandbox, shop)}; no audit event came")
        _say("   Cloud Scheduler's next tick calls on_tick")
        requests.post(on_tick.url, timeout=60)
        _show_alert(webhook, 2, changed)
        if _health(sandbox, shop) != 200:
            failures.append("scenario 2: shop did not answer 200 again")
        _say(f"   shop/health answers {_health(sandbox, shop)} again")

        _say()
        _say("3. contractor@example.com swaps allAuthenticatedUsers in for allUsers")
        contractor = Actor(
            "contractor@example.com",
            sandbox.run_endpoint,
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
        )
        stack.callback(contractor.close)
        changed = time.monotonic()
        contractor.edit_invoker(
            public_api, remove=["allUsers"], add=["allAuthenticatedUsers"]
        )
        _show_alert(webhook, 3, changed)
        members = {
            m
            for b in sandbox.policy(public_api).bindings
            if b.role == "roles/run.invoker"
            for m in b.members
        }
        if "allUsers" not in members or "allAuthenticatedUsers" in members:
            failures.append(f"scenario 3: invoker members are {sorted(members)}")
        _say(f"   invoker members now: {', '.join(sorted(members))}")
        _say(f"   public-api/health answers {_health(sandbox, public_api)}")

    _say()
    for failure in failures:
        _say(f"FAILED {failure}")
    verdict = "FAILED" if failures else "all three restored and alerted"
    _say(f"Demo done in {time.monotonic() - started:.1f} s: {verdict}.")
    return 1 if failures else 0
