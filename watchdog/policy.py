"""Drift and repair of IAM policies, as pure functions of values.

This is the part that must never be wrong, so it does no I/O and is tested
exhaustively. The repair is minimal: it adds only what is missing and removes only
what is forbidden, and keeps every other binding, condition, member (`deleted:`
ones included), audit config, the version and the etag exactly as read.

NB: the same role can appear in several bindings (one unconditional, others with
conditions), so nothing here keys bindings by role alone.
"""

from __future__ import annotations

from dataclasses import replace

from watchdog.model import INVOKER_ROLE, Binding, DesiredState, Drift, Policy


def find_drift(policy: Policy, desired: DesiredState) -> Drift:
    """Compare a policy with the desired state of the invoker role."""
    unconditional: set[str] = set()
    anywhere: set[str] = set()
    for binding in policy.bindings:
        if binding.role != INVOKER_ROLE:
            continue
        anywhere.update(binding.members)
        if binding.condition is None:
            unconditional.update(binding.members)
    return Drift(
        missing=tuple(m for m in desired.public_members if m not in unconditional),
        forbidden=tuple(m for m in desired.forbidden_members if m in anywhere),
    )


def repair_policy(policy: Policy, drift: Drift) -> Policy:
    """The policy with `drift` undone and nothing else changed.

    Missing members join the first unconditional invoker binding, or a new one
    appended at the end. Forbidden members leave every invoker binding; a binding
    left with no members is dropped, since IAM rejects empty bindings. The etag is
    kept so the write fails (ABORTED) if anyone changed the policy since the read.
    """
    if not drift:
        return policy
    forbidden = set(drift.forbidden)
    bindings: list[Binding] = []
    added = False
    for binding in policy.bindings:
        if binding.role != INVOKER_ROLE:
            bindings.append(binding)
            continue
        members = tuple(m for m in binding.members if m not in forbidden)
        if binding.condition is None and not added and drift.missing:
            members += tuple(m for m in drift.missing if m not in members)
            added = True
        if members:
            bindings.append(replace(binding, members=members))
    if drift.missing and not added:
        bindings.append(Binding(role=INVOKER_ROLE, members=drift.missing))
    version = policy.version
    if any(b.condition is not None for b in bindings):
        version = 3  # conditions are only kept by a version 3 write
    return replace(policy, bindings=tuple(bindings), version=version)
