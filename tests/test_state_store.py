"""The state stores: Firestore through Google's emulator, and the in-memory one.

The Firestore tests use the real google-cloud-firestore client over gRPC to the
emulator (FIRESTORE_EMULATOR_HOST); nothing is mocked.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures_sandbox import PROJECT, PUBLIC_API, SHOP
from watchdog.incidents import Problem, RestoreRecord, ServiceRecord
from watchdog.state_store import (
    FirestoreStateStore,
    MemoryStateStore,
    StateStoreError,
)

NOW = datetime(2025, 3, 4, 11, 3, 16, tzinfo=UTC)
GITHUB = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)
RECORD = ServiceRecord(
    problem=Problem(
        "policy rejected: constraints/iam.allowedPolicyMemberDomains",
        "Cloud Run refused the policy",
        NOW - timedelta(minutes=37),
        NOW,
        38,
        NOW - timedelta(minutes=37),
    ),
    restores=(RestoreRecord(NOW, GITHUB, "Terraform"),),
    escalated={GITHUB: NOW},
)


def put(record: ServiceRecord):  # type: ignore[no-untyped-def]
    """A decide function that stores `record` and returns what it was given."""

    def decide(before: ServiceRecord) -> tuple[ServiceRecord, ServiceRecord]:
        return record, before

    return decide


def read(before: ServiceRecord) -> tuple[ServiceRecord, ServiceRecord]:
    return before, before


@pytest.fixture
def firestore_store(
    firestore_emulator: str, state_collection: str, monkeypatch: pytest.MonkeyPatch
) -> FirestoreStateStore:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    store = FirestoreStateStore(
        project=PROJECT, database="public-watchdog", collection=state_collection
    )
    yield store  # type: ignore[misc]
    store.close()


def test_firestore_record_round_trips(firestore_store: FirestoreStateStore) -> None:
    assert firestore_store.transact(SHOP, put(RECORD)) == ServiceRecord()
    assert firestore_store.transact(SHOP, read) == RECORD


def test_firestore_records_are_per_service(
    firestore_store: FirestoreStateStore,
) -> None:
    firestore_store.transact(SHOP, put(RECORD))
    assert firestore_store.transact(PUBLIC_API, read) == ServiceRecord()


def test_firestore_keeps_both_of_two_concurrent_updates(
    firestore_store: FirestoreStateStore,
) -> None:
    # Both transactions read the empty record, then wait for each other before
    # writing: one commit fails, and the library runs that decide again on the
    # record the other one wrote. Each adds one restore; both must survive.
    both_read = threading.Barrier(2, timeout=10)
    calls = {"alice": 0, "bob": 0}

    def add(actor: str):  # type: ignore[no-untyped-def]
        def decide(before: ServiceRecord) -> tuple[ServiceRecord, None]:
            calls[actor] += 1
            if calls[actor] == 1:
                both_read.wait()
            restore = RestoreRecord(NOW, actor)
            return ServiceRecord(restores=(*before.restores, restore)), None

        return decide

    errors: list[BaseException] = []

    def run(actor: str) -> None:
        try:
            firestore_store.transact(SHOP, add(actor))
        except BaseException as error:  # noqa: BLE001 - reported by the assert
            errors.append(error)

    threads = [threading.Thread(target=run, args=(a,)) for a in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    stored = firestore_store.transact(SHOP, read)
    assert sorted(r.actor for r in stored.restores) == ["alice", "bob"]
    assert sum(calls.values()) >= 3  # someone decided twice


def test_unreachable_firestore_is_a_state_store_error(
    monkeypatch: pytest.MonkeyPatch, state_collection: str
) -> None:
    from watchdog.sandbox.functions import free_port

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    store = FirestoreStateStore(
        project=PROJECT, collection=state_collection, timeout=0.5, deadline=1.0
    )
    try:
        with pytest.raises(StateStoreError, match="Firestore"):
            store.transact(SHOP, read)
    finally:
        store.close()


def test_memory_store_round_trips_and_keeps_services_apart() -> None:
    store = MemoryStateStore()
    store.transact(SHOP, put(RECORD))
    assert store.transact(SHOP, read) == RECORD
    assert store.transact(PUBLIC_API, read) == ServiceRecord()


def test_unreadable_firestore_record_is_replaced_not_fatal(
    firestore_store: FirestoreStateStore,
) -> None:
    from watchdog.state_store import document_id

    client = firestore_store._firestore()
    reference = client.collection(firestore_store.collection).document(
        document_id(SHOP)
    )
    # Written by another version: the problem lacks fields this one needs.
    reference.set({"problem": {"fingerprint": "x", "since": "2025-01-01T00:00:00Z"}})

    assert firestore_store.transact(SHOP, put(RECORD)) == ServiceRecord()
    assert firestore_store.transact(SHOP, read) == RECORD
