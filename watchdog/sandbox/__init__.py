"""Local stand-ins for the Google APIs the watchdog talks to, on loopback.

The sandbox serves the Cloud Run Admin API subset (service, IAM policy with etags)
and the Cloud Logging API subset over gRPC, so the real client libraries are used
unchanged; writes a genuine-shaped Admin Activity entry for every IAM change and
forwards it like a log sink; answers each service's URL the way Google's front end
does; and injects faults and latency on demand. `make demo`, the tests and the
benchmarks all use this one implementation.

    with Sandbox(project="demo-project", services=["public-api"]) as sandbox:
        RunApi(sandbox.run_endpoint).get_policy(sandbox.service_name("public-api"))

`python -m watchdog.sandbox --help` runs it as a process.
"""

from watchdog.sandbox.audit_trail import Caller
from watchdog.sandbox.faults import ConcurrentWrite, Faults
from watchdog.sandbox.run_service import RpcFailure
from watchdog.sandbox.server import Sandbox

__all__ = ["Caller", "ConcurrentWrite", "Faults", "RpcFailure", "Sandbox"]
