"""Someone else changing a sandbox service's policy, through the real client.

The demo and the end-to-end tests act as a person or a pipeline would: a
read-modify-write with google-cloud-run, naming the caller in the
`x-sandbox-principal` metadata so the sandbox's audit trail records them.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.api_core.gapic_v1.client_info import ClientInfo
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2

from watchdog.model import INVOKER_ROLE, ServiceName


class Actor:
    """A principal with a google-cloud-run client pointed at the sandbox."""

    def __init__(self, principal: str, endpoint: str, *, user_agent: str = "") -> None:
        self.principal = principal
        # With a channel of our own, the transport cannot set the user agent:
        # it goes on the channel, where the audit trail reads it.
        options = [("grpc.primary_user_agent", user_agent)] if user_agent else []
        self._channel = grpc.insecure_channel(endpoint, options=options)
        self._client = run_v2.ServicesClient(
            transport=ServicesGrpcTransport(channel=self._channel),
            client_info=ClientInfo(user_agent=user_agent or None),  # type: ignore[no-untyped-call]
        )

    def _metadata(self) -> list[tuple[str, str]]:
        return [("x-sandbox-principal", self.principal)]

    def edit_invoker(
        self,
        name: ServiceName,
        *,
        remove: Iterable[str] = (),
        add: Iterable[str] = (),
    ) -> policy_pb2.Policy:
        """Remove and add invoker members, with the etag, as `gcloud` would."""
        policy = self._client.get_iam_policy(
            request=iam_policy_pb2.GetIamPolicyRequest(
                resource=name.full,
                options=options_pb2.GetPolicyOptions(requested_policy_version=3),
            ),
            metadata=self._metadata(),
        )
        removed, added = set(remove), list(add)
        for binding in policy.bindings:
            if binding.role == INVOKER_ROLE and not binding.HasField("condition"):
                kept = [m for m in binding.members if m not in removed]
                kept += [m for m in added if m not in kept]
                added = []
                del binding.members[:]
                binding.members.extend(kept)
        if added:
            policy.bindings.add(role=INVOKER_ROLE, members=added)
        for binding in list(policy.bindings):
            if not binding.members:
                policy.bindings.remove(binding)
        return self._client.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(
                resource=name.full, policy=policy
            ),
            metadata=self._metadata(),
        )

    def close(self) -> None:
        self._channel.close()
