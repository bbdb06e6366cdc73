"""Exactly one job per input: submitting to OSCAR once, and finding that job again.

A job's identity is what the caller says it is (the provider's operators use the DAG, run,
task, map index and input, never the try), and this module maps each identity to exactly one
OSCAR job, across retries, worker crashes and concurrent submitters in other processes.

**From OSCAR 4.1** (``pkg/handlers/job.go`` ``MakeJobHandler`` honours ``X-Delegated-Job-ID``)
the identity names the job: ``<service>-<uuid5 of the identity>``. Submitting it again is
harmless: Kubernetes refuses a second Job of that name (500 ``already exists``), which means
"submitted before" and re-attaches. No listing, no lease.

**Before 4.1**, and for every job started by an upload into an input folder, OSCAR names jobs
``<service>-<uuid4>`` and tells nobody: ``/job`` answers 201 with no body, and the job list
gives names, statuses and times only. Diffing the job list before and after a submission races
as soon as two submitters overlap (both see both new jobs), so submissions are serialised and
recorded in the cluster's own MinIO, under ``<bucket>/.oscar-airflow/`` of the service's bucket
(or ``state_path``):

* **a lease per service** (``leases/<service>.json``): created with ``If-None-Match: *``,
  renewed, released and taken over with ``If-Match`` on the ETag read, so at most one provider
  submitter per service holds it. Its holder renews it every third of ``lease_ttl``
  (:data:`LEASE_TTL`, 20 s); a lease not renewed for that long, by the MinIO server's clock
  (``Last-Modified`` against the answer's ``Date``), is taken over, so a crashed holder blocks
  the others for ``lease_ttl`` at most.
* **under the lease**: the identity's record is read (a record naming a job re-attaches at
  once); the job list is read; a ``pending`` record holding that list is written; the input is
  submitted; the job list is polled until the new job appears. One new job is ours: it gets a
  claim (``claims/<service>/<job>``) and the record names it (``jobs/<service>/<digest>.json``).
  The lease is then released, so one submission costs three S3 writes and two or three
  listings, and submitters of one service take turns (about one round trip each).
* **a retry** finds the record and re-attaches, in any state of the job. A record still
  ``pending`` (the submitter died between submitting and recording) is recovered under the
  lease: of the jobs that appeared since the recorded list, the one this identity claimed (the
  submitter died between claim and record), else the one nobody has claimed, is ours; none
  means the submission never happened, and it is made again.

Limits, stated plainly:

* Jobs started meanwhile by anyone else (uploads into an input folder, other users' tools)
  appear in the same listing. A listing with several new unclaimed jobs is ambiguous: a
  ``/job`` submission then fails with a message naming them (:class:`CorrelationError`) and
  the record keeps the candidates, so a retry does not submit again (``force_rerun`` does); an
  upload goes on without a job name (its outputs, named after the input key, still identify
  the result). The window is one submission's round trip.
* Recovering a ``pending`` record trusts the single unclaimed new job: a foreign job started in
  that same window would be taken for ours.
* The lease needs MinIO conditional writes (MinIO from 2024-11, any S3 with ``If-None-Match``
  and ``If-Match``); credentials that may not write under ``.oscar-airflow/`` fail with 403.
* Through ``.oscar-airflow/`` nothing starts a job: OSCAR's input notifications filter on the
  input folder (``pkg/utils/minio.go`` ``enableInputNotification``, prefix ``<folder>/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.errors import OscarApiError, OscarClientError, OscarError
from airflow_provider_oscar.fdl import job_prefix

if TYPE_CHECKING:
    from airflow_provider_oscar.fdl import Service
    from airflow_provider_oscar.hooks.models import JobInfo
    from airflow_provider_oscar.hooks.oscar import OscarAsyncSession
    from airflow_provider_oscar.hooks.s3 import S3Session

__all__ = ["CorrelationError", "Correlator", "JobRef", "StatePath", "named_job", "state_path_for"]

STATE_FOLDER = ".oscar-airflow"
LEASE_TTL = 20.0
_NAMESPACE = uuid.UUID("3f0f2a8e-5d3c-4b7a-a6c1-6d1b9f0e4c21")
log = logging.getLogger(__name__)


class CorrelationError(OscarClientError):
    """The job of a submission cannot be told apart from others started at the same time."""


@dataclass(frozen=True)
class JobRef:
    """The job an identity maps to; ``created``: this call submitted it (else re-attached)."""

    service: str
    job: str | None
    created: bool


@dataclass(frozen=True)
class StatePath:
    """``bucket`` and key prefix under which the records live (``<prefix>.oscar-airflow/``)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix.strip("/"), STATE_FOLDER, *parts) if p)


def state_path_for(service: Service, state_path: str | None = None) -> StatePath:
    """Where a service's records live: ``state_path``, else its first MinIO bucket."""
    from airflow_provider_oscar.hooks.storage import split_path

    if state_path:
        bucket, prefix = split_path(state_path)
        return StatePath(bucket, prefix)
    for io in [*(service.input or []), *(service.output or [])]:
        if io.provider_type == "minio" and io.bucket:
            return StatePath(io.bucket)
    raise OscarClientError(
        f"service {service.name!r} has no MinIO bucket to keep its job records in: before "
        "OSCAR 4.1 the provider records which job is whose in the cluster's MinIO; give the "
        "service a MinIO input or output path, or pass state_path='bucket/prefix'",
        service=service.name,
    )


def named_job(service: str, identity: str) -> str:
    """The job name an identity asks for through ``X-Delegated-Job-ID`` (OSCAR 4.1+)."""
    return f"{job_prefix(service)}-{uuid.uuid5(_NAMESPACE, f'{service}|{identity}')}"


def _digest(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Lock]]
_LOCKS = weakref.WeakKeyDictionary()


def _local_lock(key: tuple[str, ...]) -> asyncio.Lock:
    """One lock per service and event loop: this process's submitters queue here first."""
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(key, asyncio.Lock())


class Correlator:
    """Submits through OSCAR once per identity and finds the job again (see the module).

    :param session: the cluster's API session.
    :param s3: an S3 session on the cluster's MinIO (needed before 4.1 and for uploads).
    :param state: where the records live (needed wherever ``s3`` is).
    """

    def __init__(
        self,
        session: OscarAsyncSession,
        s3: S3Session | None = None,
        state: StatePath | None = None,
        *,
        lease_ttl: float | None = None,
        appear_timeout: float = 60.0,
        poll: float = 0.2,
        logger: Any = log,
    ) -> None:
        self.session = session
        self.s3 = s3
        self.state = state
        self.lease_ttl = LEASE_TTL if lease_ttl is None else lease_ttl
        self.appear_timeout = appear_timeout
        self.poll = poll
        self.log = logger

    # OSCAR 4.1: the identity names the job ----------------------------------------------------

    async def submit_named(
        self, service: str, identity: str, data: Any, *, force: bool = False
    ) -> JobRef:
        """``POST /job`` under the identity's name; an existing job of that name re-attaches.

        ``force`` deletes that job first and submits afresh.
        """
        name = named_job(service, identity)
        if force:
            await self._delete_old(service, name)
        for _ in range(20):
            created = await self.session.asubmit_job(service, data, job_name=name)
            if created or not force:
                return JobRef(service, name, created)
            await asyncio.sleep(0.5)  # the deleted Job is still finalising
        raise OscarApiError(f"job {name} of {service!r} was deleted but its name stays taken")

    async def _delete_old(self, service: str, name: str) -> None:
        if await self.session.adelete_job(service, name):
            self.log.info("deleted OSCAR job %s to run the input afresh (force_rerun)", name)

    async def _exists(self, service: str, job: str) -> bool:
        return job in await self.session.alist_jobs(service)

    # before 4.1, and uploads: lease, list, submit, list -------------------------------------

    async def submit_listed(
        self,
        service: str,
        identity: str,
        send: Callable[[], Awaitable[None]],
        *,
        force: bool = False,
        unsent: Callable[[], Awaitable[bool]] | None = None,
        deadline: float | None = None,
    ) -> JobRef:
        """Submit with ``send()`` under the service's lease; the one new job is this identity's.

        A recorded job that still exists re-attaches (one that was deleted is submitted
        again); ``force`` deletes it and submits afresh. ``unsent()`` tells, for a ``pending``
        record, that the earlier submission surely did not happen (an upload whose object is
        absent). An ambiguous listing raises :class:`CorrelationError`.
        """
        record_key = self._key("jobs", service, f"{_digest(identity)}.json")
        if not force:
            found = await self._read(record_key)
            if found and found.get("job") and await self._exists(service, str(found["job"])):
                return JobRef(service, str(found["job"]), False)
        until = deadline if deadline is not None else time.time() + self.lease_ttl * 6
        async with (
            _local_lock((self.session.settings.endpoint, service)),
            self._lease(service, until),
        ):
            record = await self._read(record_key)
            if record and record.get("job"):
                job = str(record["job"])
                if force:
                    await self._delete_old(service, job)
                elif await self._exists(service, job):
                    return JobRef(service, job, False)
                record = None  # deleted (killed, timed out, expired): submitted again
            if record and record.get("state") == "ambiguous":
                raise self._ambiguous(service, list(record.get("candidates") or []), record_key)
            if record and record.get("state") == "pending":
                recovered = await self._recover(service, identity, record, record_key, unsent)
                if recovered is not None:
                    return recovered
            before = set(await self.session.alist_jobs(service))
            await self._write(
                record_key, {"identity": identity, "state": "pending", "before": sorted(before)}
            )
            await send()
            submitted = await self._new_job(service, before, record_key, identity)
            return JobRef(service, submitted, True)

    async def _recover(
        self,
        service: str,
        identity: str,
        record: dict[str, Any],
        record_key: str,
        unsent: Callable[[], Awaitable[bool]] | None,
    ) -> JobRef | None:
        """A ``pending`` record: the job that appeared since, unclaimed, or ``None``."""
        if unsent is not None and await unsent():
            return None
        now = await self.session.alist_jobs(service)
        new = set(now) - set(record.get("before") or [])
        claimed = new & await self._claimed(service)
        for job in sorted(claimed):  # claimed, then killed before the record named it
            if await self._claimant(service, job) == identity:
                await self._settle(service, job, record_key, identity)
                self.log.info("OSCAR job %s found for an interrupted submission", job)
                return JobRef(service, job, False)
        new -= claimed
        if len(new) == 1:
            (job,) = new
            await self._settle(service, job, record_key, identity)
            self.log.info("OSCAR job %s found for an interrupted submission", job)
            return JobRef(service, job, False)
        if len(new) > 1:
            await self._write(
                record_key, {"identity": identity, "state": "ambiguous", "candidates": sorted(new)}
            )
            raise self._ambiguous(service, sorted(new), record_key)
        return None

    async def _new_job(
        self, service: str, before: Collection[str], record_key: str, identity: str
    ) -> str:
        """Poll the job list until the submission's job appears; record and claim it."""
        until = time.monotonic() + self.appear_timeout
        pause = self.poll
        claimed: set[str] | None = None
        while True:
            jobs: dict[str, JobInfo] = await self.session.alist_jobs(service)
            new = set(jobs) - set(before)
            if len(new) > 1:
                claimed = await self._claimed(service) if claimed is None else claimed
                new -= claimed
            if len(new) == 1:
                (job,) = new
                await self._settle(service, job, record_key, identity)
                return job
            if len(new) > 1:
                await self._write(
                    record_key,
                    {"identity": identity, "state": "ambiguous", "candidates": sorted(new)},
                )
                raise self._ambiguous(service, sorted(new), record_key)
            if time.monotonic() >= until:
                raise OscarApiError(
                    f"a job of service {service!r} was submitted but none appeared in its job "
                    f"list within {self.appear_timeout:g} s; a retry looks for it again"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def _settle(self, service: str, job: str, record_key: str, identity: str) -> None:
        s3, state = self._storage()
        await s3.put(state.bucket, self._key("claims", service, job), identity.encode())
        await self._write(record_key, {"identity": identity, "state": "submitted", "job": job})

    async def _claimant(self, service: str, job: str) -> str | None:
        """The identity that claimed ``job``."""
        s3, state = self._storage()
        stored = await s3.get(state.bucket, self._key("claims", service, job))
        return stored.data.decode() if stored is not None else None

    async def _claimed(self, service: str) -> set[str]:
        s3, state = self._storage()
        prefix = self._key("claims", service) + "/"
        return {o.key[len(prefix) :] for o in await s3.list(state.bucket, prefix)}

    def _ambiguous(self, service: str, candidates: list[str], record_key: str) -> CorrelationError:
        assert self.state is not None
        return CorrelationError(
            f"{len(candidates)} jobs of service {service!r} started while this input was "
            f"submitted ({', '.join(candidates)}): other clients or uploads into its input "
            "folder submitted at the same moment, and before OSCAR 4.1 a job cannot be told "
            "apart from them, so no job is assumed to be this input's. It is not submitted "
            f"again on retry (see {self.state.bucket}/{record_key}); force_rerun=True submits "
            "it afresh",
            service=service,
        )

    async def forget(self, service: str, identity: str) -> None:
        """Drop the identity's record (its job, if any, is left alone)."""
        s3, state = self._storage()
        await s3.delete(state.bucket, self._key("jobs", service, f"{_digest(identity)}.json"))

    async def recorded_job(self, service: str, identity: str) -> str | None:
        """The job the identity's record names, without submitting anything."""
        found = await self._read(self._key("jobs", service, f"{_digest(identity)}.json"))
        return str(found["job"]) if found and found.get("job") else None

    # the lease ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _lease(self, service: str, deadline: float) -> AsyncIterator[None]:
        s3, state = self._storage()
        key = self._key("leases", f"{service}.json")
        holder = uuid.uuid4().hex
        held = json.dumps({"state": "held", "holder": holder}).encode()
        etags = [await self._acquire(s3, state.bucket, key, held, deadline)]

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_ttl / 3)
                body = json.dumps({"state": "held", "holder": holder, "at": time.time()})
                etag = await s3.put(state.bucket, key, body.encode(), if_match=etags[-1])
                if etag is None:
                    self.log.error("the lease %s/%s was taken over while held", state.bucket, key)
                    return
                etags.append(etag)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, OscarError, OSError):
                await renewing
            released = json.dumps({"state": "released", "by": holder}).encode()
            with contextlib.suppress(OscarError, OSError):
                await asyncio.shield(s3.put(state.bucket, key, released, if_match=etags[-1]))

    async def _acquire(
        self, s3: S3Session, bucket: str, key: str, held: bytes, deadline: float
    ) -> str:
        pause = 0.05
        while True:
            etag = await s3.put(bucket, key, held, "application/json", if_none_match=True)
            if etag:
                return etag
            current = await s3.get(bucket, key)
            if current is None:
                continue  # released by deletion meanwhile
            try:
                state = json.loads(current.data).get("state")
            except (ValueError, AttributeError):
                state = "released"
            age = current.age
            if state != "held" or (age is not None and age > self.lease_ttl):
                if state == "held":
                    self.log.warning("taking over the lease %s/%s after %.0f s", bucket, key, age)
                etag = await s3.put(
                    bucket, key, held, "application/json", if_match=current.info.etag
                )
                if etag:
                    return etag
                continue
            if time.time() >= deadline:
                raise OscarApiError(
                    f"the submission lease {bucket}/{key} stayed taken until the deadline "
                    "(other submitters to the service, or one that stopped: it expires "
                    f"{self.lease_ttl:g} s after it was taken)"
                )
            await asyncio.sleep(pause * (1 + random.random()))
            pause = min(pause * 2, 0.25)

    # records --------------------------------------------------------------------------------

    def _storage(self) -> tuple[S3Session, StatePath]:
        if self.s3 is None or self.state is None:
            raise OscarClientError(
                "this submission needs the cluster's MinIO to record its job (no state path)"
            )
        return self.s3, self.state

    def _key(self, *parts: str) -> str:
        _, state = self._storage()
        return state.key(*parts)

    async def _read(self, key: str) -> dict[str, Any] | None:
        s3, state = self._storage()
        found = await s3.get(state.bucket, key)
        if found is None:
            return None
        try:
            document = json.loads(found.data)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def _write(self, key: str, document: dict[str, Any]) -> None:
        s3, state = self._storage()
        document = {**document, "written": time.time()}
        await s3.put(state.bucket, key, json.dumps(document).encode(), "application/json")
