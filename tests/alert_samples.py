"""Sample incidents shared by the alert rendering and delivery tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchdog.model import (
    Action,
    Change,
    Drift,
    Escalation,
    Incident,
    Probe,
    ProbeResult,
    Recovery,
    ServiceName,
)

SERVICE = ServiceName("example-project", "europe-west1", "public-api")
DETECTED = datetime(2025, 3, 4, 11, 3, 16, tzinfo=UTC)
DEPLOYER = "deployer@example-project.iam.gserviceaccount.com"
GITHUB = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)
TERRAFORM = (
    "Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 "
    "terraform-provider-google/5.21.0,gzip(gfe)"
)
ORG_POLICY_ERROR = (
    "the API refused the policy: One or more users named in the policy do not "
    "belong to a permitted customer (constraints/iam.allowedPolicyMemberDomains)"
)
TIMINGS = {"read": 0.05, "write": 0.1, "verify": 0.03, "probe": 0.02, "attribute": 0.2}
SECRET_PATH = "/services/T000/B000/SECRETTOKEN"

WIF_CHANGE = Change(
    service=SERVICE,
    method="google.cloud.run.v2.Services.SetIamPolicy",
    actor=DEPLOYER,
    origin=GITHUB,
    delegation=(GITHUB,),
    caller_ip="203.0.113.77",
    user_agent=TERRAFORM,
    time=datetime(2025, 3, 4, 11, 2, 41, 905112, tzinfo=UTC),
    insert_id="9q8w7e6r5t4y",
    failed=False,
)
DENIED_CHANGE = Change(
    service=SERVICE,
    method="google.cloud.run.v1.Services.SetIamPolicy",
    actor="intern@example.com",
    origin="intern@example.com",
    delegation=(),
    caller_ip="198.51.100.4",
    user_agent=(
        "google-cloud-sdk gcloud/460.0.0 "
        "command/gcloud.run.services.add-iam-policy-binding"
    ),
    time=datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC),
    insert_id="denied1",
    failed=True,
    status_message="PERMISSION_DENIED: Permission 'run.services.setIamPolicy' denied",
)


def restored(**changes: Any) -> Incident:
    """A restore after a Terraform run through GitHub's WIF; fields overridable."""
    fields: dict[str, Any] = {
        "service": SERVICE,
        "drift": Drift(missing=("allUsers",)),
        "action": Action.RESTORED,
        "detected_at": DETECTED,
        "trigger": "audit event",
        "change": WIF_CHANGE,
        "attribution": "from the audit event that triggered this check",
        "probe": Probe(ProbeResult.OK, status=200, seconds=0.02),
        "timings": TIMINGS,
    }
    return Incident(**(fields | changes))


INCIDENTS = {
    "restored-wif": restored(),
    "report-mode": restored(
        action=Action.REPORTED, mode="report", probe=None, timings={"read": 0.05}
    ),
    "failed-org-policy": restored(
        action=Action.FAILED, error=ORG_POLICY_ERROR, probe=None
    ),
    "unknown-actor": restored(
        change=None,
        trigger="tick",
        attribution="not yet known: no audit entry for this service since 05:03 UTC",
    ),
    "forbidden-after-restore": restored(
        probe=Probe(
            ProbeResult.FORBIDDEN,
            status=403,
            detail="403 from Google's front end: the invoker IAM check refused",
            seconds=0.02,
        )
    ),
    "denied-attempt": restored(change=DENIED_CHANGE, trigger="tick"),
    "swapped-members": restored(
        drift=Drift(missing=("allUsers",), forbidden=("allAuthenticatedUsers",))
    ),
}


def huge() -> Incident:
    """Every field that can grow, grown far past every chat limit."""
    members = tuple(f"user:person{n}@example.com" for n in range(5000))
    change = Change(
        service=SERVICE,
        method="google.cloud.run.v2.Services.SetIamPolicy",
        actor="a" * 10_000 + "@example.com",
        origin=GITHUB,
        delegation=tuple(
            f"serviceAccount:hop{n}@x.iam.gserviceaccount.com" for n in range(300)
        ),
        caller_ip="203.0.113.77",
        user_agent="Terraform/1.7.5 " + "x" * 100_000,
        time=DETECTED,
        insert_id="big",
        failed=False,
        removed={"roles/run.invoker": members},
        added={f"roles/custom.role{n}": members[:3] for n in range(500)},
    )
    return restored(
        drift=Drift(missing=members, forbidden=members),
        change=change,
        attribution="z" * 50_000,
        error="e" * 50_000,
        timings={f"step{n}": 0.1 for n in range(1000)},
    )


RECOVERY = Recovery(
    service=SERVICE,
    problem=ORG_POLICY_ERROR,
    broken_since=datetime(2025, 3, 4, 10, 26, 16, tzinfo=UTC),
    recovered_at=DETECTED,
    checks=38,
    fixed_by="the watchdog restored it: added allUsers back on tick",
    trigger="tick",
    fingerprint="policy rejected: constraints/iam.allowedPolicyMemberDomains",
)
ESCALATED = restored(
    escalation=Escalation(
        actor=GITHUB,
        restores=3,
        first_at=datetime(2025, 3, 4, 9, 3, 16, tzinfo=UTC),
        tools=("Terraform",),
    )
)
REPEATED = restored(
    action=Action.FAILED,
    error=ORG_POLICY_ERROR,
    probe=None,
    suppressed=True,
    repeat="failing for 37 min, 38 checks",
)
