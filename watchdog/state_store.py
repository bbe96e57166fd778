"""Where the per-service record of watchdog.incidents lives between invocations.

Two stores with one interface, `transact(service, decide)`: load the service's
record, let `decide` (pure) return the new record and a result, save the record
if it changed, return the result.

* `FirestoreStateStore` keeps one small document per service in a collection of
  a Firestore (native mode) database, and runs `decide` inside a Firestore
  transaction: when two instances handle the same service at once, one of them
  reads again and decides again, so neither update is lost. This is the only
  module that imports google-cloud-firestore (lazily: importing it needs no
  credentials). With FIRESTORE_EMULATOR_HOST set, the client library talks to
  the emulator instead.
* `MemoryStateStore` keeps the records in this process. NB: each function
  instance has its own memory, so suppression and escalation only work within
  one instance; an instance started later (scale-out, a cold start) alerts
  again. It is the default because it needs nothing deployed.

Store errors are wrapped in `StateStoreError` (retryable): the caller restores
and alerts as if there were no memory, so an outage of the store never stops a
restore.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from google.api_core import exceptions
from google.auth.exceptions import GoogleAuthError

from watchdog.errors import MalformedInput, RetryableError
from watchdog.incidents import ServiceRecord, from_document, to_document
from watchdog.model import ServiceName

if TYPE_CHECKING:
    from google.cloud.firestore import Client, Transaction

log = logging.getLogger(__name__)

Result = TypeVar("Result")
Decide = Callable[[ServiceRecord], tuple[ServiceRecord, Result]]

# Contention between instances is rare (a tick and an audit event on the same
# service); a few rounds settle it, and a store that stays contended is treated
# as an outage.
MAX_TRANSACTION_ATTEMPTS = 5


class StateStoreError(RetryableError):
    """The state store could not be read or written; the caller goes without it."""


class StateStore(Protocol):
    def transact(self, service: ServiceName, decide: Decide[Result]) -> Result: ...


def document_id(service: ServiceName) -> str:
    """A document ID for a service: its name parts; IDs may not contain "/"."""
    return f"{service.project}:{service.location}:{service.service}"


class MemoryStateStore:
    """Records in this process only: suppression works within one instance."""

    def __init__(self) -> None:
        self._records: dict[ServiceName, ServiceRecord] = {}
        self._lock = threading.Lock()

    def transact(self, service: ServiceName, decide: Decide[Result]) -> Result:
        with self._lock:
            record, result = decide(self._records.get(service, ServiceRecord()))
            self._records[service] = record
            return result

    def __repr__(self) -> str:
        return f"MemoryStateStore({len(self._records)} services)"


class FirestoreStateStore:
    """One document per service in `collection` of Firestore database `database`."""

    def __init__(
        self,
        *,
        project: str,
        database: str = "(default)",
        collection: str = "watchdog-services",
        timeout: float = 5.0,
        deadline: float = 10.0,
    ) -> None:
        self.project = project
        self.database = database
        self.collection = collection
        self.timeout = timeout
        self.deadline = deadline
        self._client: Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FirestoreStateStore(project={self.project!r}, "
            f"database={self.database!r}, collection={self.collection!r})"
        )

    def _firestore(self) -> Client:
        with self._lock:
            if self._client is None:
                # Imported here: only deployments that keep state pay for it.
                from google.cloud import firestore

                self._client = firestore.Client(
                    project=self.project, database=self.database
                )
            return self._client

    def transact(self, service: ServiceName, decide: Decide[Result]) -> Result:
        """Run `decide` on the stored record in a transaction; save what it returns.

        Bounded by `deadline` seconds in all: the library begins and commits a
        transaction with its own default retry (up to 60 s on UNAVAILABLE),
        which would outlast the function's timeout and lose the alert. NB: a
        transaction abandoned at the deadline finishes in its (daemon) thread,
        and may still commit; the record it writes is a valid one.
        """
        finished = threading.Event()
        results: list[Result] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                results.append(self._transact(service, decide))
            except BaseException as error:  # noqa: BLE001 - re-raised below
                errors.append(error)
            finally:
                finished.set()

        threading.Thread(target=work, name="firestore-state", daemon=True).start()
        if not finished.wait(self.deadline):
            raise StateStoreError(
                f"Firestore database {self.database!r} did not answer within "
                f"{self.deadline:g} s for {service.service}"
            )
        if errors:
            raise errors[0]
        return results[0]

    def _transact(self, service: ServiceName, decide: Decide[Result]) -> Result:
        from google.cloud import firestore

        try:
            client = self._firestore()
            reference = client.collection(self.collection).document(
                document_id(service)
            )

            def run(transaction: Transaction) -> Result:
                snapshot = reference.get(transaction=transaction, timeout=self.timeout)
                try:
                    before = from_document(
                        snapshot.to_dict() if snapshot.exists else None
                    )
                except MalformedInput as unreadable:
                    # Start afresh rather than lose this check's alert: the
                    # worst case is one repeat page.
                    log.error(
                        "state for %s is unreadable and is replaced: %s",
                        service.service,
                        unreadable,
                        extra={"fields": {"service": service.full}},
                    )
                    before = ServiceRecord()
                after, result = decide(before)
                if after != before:
                    document: dict[str, Any] = to_document(after)
                    document["service"] = service.full
                    document["updated_at"] = firestore.SERVER_TIMESTAMP
                    transaction.set(reference, document)
                return result

            transactional = firestore.transactional(run)
            result: Result = transactional(
                client.transaction(max_attempts=MAX_TRANSACTION_ATTEMPTS)
            )
            return result
        except (exceptions.GoogleAPIError, GoogleAuthError) as error:
            raise StateStoreError(
                f"Firestore database {self.database!r} (collection "
                f"{self.collection!r}) could not be read or written for "
                f"{service.service}: {type(error).__name__}: {error}"
            ) from error
        except ValueError as error:
            # The library raises ValueError when a transaction keeps failing
            # ("Failed to commit transaction in N attempts").
            raise StateStoreError(
                f"Firestore transaction for {service.service} did not commit: {error}"
            ) from error

    def close(self) -> None:
        """Release the client's channel."""
        with self._lock:
            if self._client is not None:
                self._client.close()  # type: ignore[no-untyped-call]
                self._client = None
