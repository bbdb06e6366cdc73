"""One execution of the batch operator inside its event loop: clusters, routing, attempts.

:class:`BatchRun` opens a session per cluster (and an S3 session on the first cluster's MinIO),
sizes concurrency from ``/system/status``, and runs inputs: ``/run`` in sync mode; in async
mode one job per input and attempt *generation*, named after the task instance and the input
(never the try) from OSCAR 4.1, correlated under the submission lease before
(:mod:`~airflow_provider_oscar.hooks.correlation`). A failed job starts the next generation; a
failed request does not: the retry re-attaches to the job the first submission created, so an
input runs once however many requests a flaky network costs. Every finished input is
checkpointed (:class:`~airflow_provider_oscar.operators.batch_results.Checkpoint`) before its
job is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.deepaas import DeepaasFile, deepaas_document
from airflow_provider_oscar.errors import PERMANENT, OscarApiError, OscarClientError, OscarError
from airflow_provider_oscar.fanout import (
    AttemptError,
    FanOutSummary,
    Item,
    Outcome,
    Progress,
    default_retryable,
    fan_out,
    format_duration,
)
from airflow_provider_oscar.hooks.correlation import Correlator
from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.operators.batch_clusters import Cluster, Planner
from airflow_provider_oscar.operators.batch_results import Checkpoint, Results
from airflow_provider_oscar.operators.inputs import as_bytes
from airflow_provider_oscar.patience import Patience
from airflow_provider_oscar.routing import (
    Router,
    is_cluster_failure,
)
from airflow_provider_oscar.triggers.coalesce import coalescer
from airflow_provider_oscar.triggers.oscar import ABSENT_LISTINGS

if TYPE_CHECKING:
    import httpx

    from airflow_provider_oscar.hooks.s3 import S3Session
    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
    from airflow_provider_oscar.operators.identity import TaskIdentity

T = TypeVar("T")
_TEXT_LIMIT = 1024
CHECKPOINT_EVERY = 2.0  # seconds between checkpoint writes


class JobFailed(OscarError):
    """An asynchronous job ended ``Failed`` or was deleted (worth another generation)."""


class JobTimedOut(OscarError):
    """A job did not end within ``job_timeout`` (it was deleted; not retried)."""


def retryable(exc: BaseException) -> bool:
    cause = exc.cause if isinstance(exc, AttemptError) else exc
    return default_retryable(exc) and not isinstance(cause, JobTimedOut)


@dataclass
class BatchState:
    """What survives between deferrals (next_kwargs, JSON-plain)."""

    in_flight: dict[str, int] = field(default_factory=dict)  # job -> input index
    generation: dict[str, int] = field(default_factory=dict)  # input index -> generation
    attempts: dict[str, int] = field(default_factory=dict)  # input index -> attempts
    deadlines: dict[str, float] = field(default_factory=dict)  # job -> epoch deadline
    concurrency: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "generation": self.generation,
            "attempts": self.attempts,
            "deadlines": self.deadlines,
            "concurrency": self.concurrency,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BatchState:
        data = data or {}
        return cls(
            {str(k): int(v) for k, v in (data.get("in_flight") or {}).items()},
            {str(k): int(v) for k, v in (data.get("generation") or {}).items()},
            {str(k): int(v) for k, v in (data.get("attempts") or {}).items()},
            {str(k): float(v) for k, v in (data.get("deadlines") or {}).items()},
            int(data.get("concurrency") or 1),
        )


class BatchRun:
    """Everything of one execution (or one deferrable step) that lives inside the loop."""

    def __init__(
        self,
        op: OscarBatchInvokeOperator,
        clusters: list[Cluster],
        identity: TaskIdentity,
        try_number: int,
        checkpoint_path: str | None,
    ) -> None:
        self.op = op
        self.log = op.log
        self.clusters = clusters
        self.identity = identity
        self.try_number = try_number
        self.checkpoint_path = checkpoint_path
        self.checkpoint: Checkpoint | None = None
        self.s3: S3Session | None = None
        self.http: httpx.AsyncClient | None = None
        self.results = Results(
            op.results_threshold, op.results_threshold_bytes, spill=op.results_object is not None
        )
        self.failed_ids: list[str] = []
        self.concurrency = 0
        self.progress: Progress | None = None
        self.router: Router | None = None
        self.generation: dict[int, int] = {}
        self._tried: dict[int, set[str]] = {}  # clusters each input failed on
        self.planner = Planner(op, clusters, self.log)
        self._deletable: dict[str, Cluster] = {}  # succeeded jobs whose records are not added yet
        self._to_delete: list[tuple[Cluster, str]] = []  # recorded jobs, deleted once flushed

    # setting up ---------------------------------------------------------------------------

    async def open(self, stack: contextlib.AsyncExitStack, *, sized: bool = True) -> None:
        """Sessions, releases, the router and the checkpoint."""
        import httpx

        op = self.op
        width = (op.concurrency or op.max_concurrency) + 4
        for cluster in self.clusters:
            cluster.session = await stack.enter_async_context(
                OscarHook(cluster.conn_id).asession(
                    settings=cluster.settings, max_connections=width
                )
            )
        limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
        self.http = await stack.enter_async_context(
            httpx.AsyncClient(
                limits=limits, verify=self.clusters[0].settings.verify_ssl, timeout=60.0
            )
        )
        if self.checkpoint_path or op.input_objects is not None or op.input_prefix is not None:
            self.s3 = await stack.enter_async_context(op.storage.as3())
        if self.checkpoint_path and self.s3 is not None:
            self.checkpoint = Checkpoint(self.s3, self.checkpoint_path)
        self.router = await self.planner.router() if sized else None
        if op.mode == "async":
            await self._prepare_jobs(stack)

    async def _prepare_jobs(self, stack: contextlib.AsyncExitStack) -> None:
        """Releases, and for clusters before OSCAR 4.1 a correlator on their own MinIO."""
        for cluster in self.clusters:
            assert cluster.session is not None
            try:
                cluster.release = await cluster.session.arelease()
            except OscarError as exc:
                if not is_cluster_failure(exc) or len(self.clusters) < 2:
                    raise
                continue  # sizing already cooled it down
            if cluster.release.names_jobs:
                cluster.correlator = Correlator(cluster.session, logger=self.log)
                continue
            service = cluster.service or await cluster.session.aget_service(self.op.service_name)
            state = self.op.state_of(service)
            storage = self.op.storage_of(cluster.conn_id)
            s3 = self.s3 if cluster is self.clusters[0] and self.s3 else None
            if s3 is None:
                s3 = await stack.enter_async_context(storage.as3())
            cluster.correlator = Correlator(cluster.session, s3, state, logger=self.log)

    async def previous(self) -> dict[int, dict[str, Any]]:
        """Records of earlier tries (and steps) from the checkpoint."""
        if self.checkpoint is None:
            return {}
        return await self.checkpoint.load()

    def finished_before(self, record: dict[str, Any]) -> bool:
        """Whether a checkpointed input needs no new run: it succeeded, or it failed for good
        in this very try (a deferrable step before)."""
        return record.get("status") == "ok" or record.get("try") == self.try_number

    # the in-worker run ----------------------------------------------------------------------

    def sized_concurrency(self) -> int:
        """The batch's concurrency (sized from the clusters' status when not given)."""
        self.concurrency = self.planner.concurrency(self.router)
        return self.concurrency

    async def run(self, items: list[Item]) -> FanOutSummary:
        op = self.op
        assert self.router is not None
        self.sized_concurrency()
        label = f"OSCAR batch {op.service_name}"
        self.progress = Progress(len(items), self.log.info, op.progress_interval, label)
        self.log.info(
            "%s: %d inputs, %s mode, concurrency %d over %s",
            label,
            len(items),
            op.mode,
            self.concurrency,
            ", ".join(f"{c.name} (limit {c.limit or '-'})" for c in self.router.clusters),
        )
        background = [asyncio.ensure_future(self._checkpointing())]
        if op.routing == "least_loaded":
            background.append(asyncio.ensure_future(self.planner.refresh_status(self.router)))
        try:
            summary = await fan_out(
                items,
                self._sync_attempt if op.mode == "sync" else self._job_attempt,
                concurrency=max(1, min(self.concurrency, len(items) or 1)),
                retries=op.input_retries,
                retry_delay=op.input_retry_delay,
                retryable=retryable,
                stop_on_failure=op.on_failure == "fail",
                on_outcome=self.record,
                progress=self.progress,
            )
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.flush()
        return summary

    def record(self, outcome: Outcome) -> None:
        self._tried.pop(outcome.item.index, None)
        self.results.add(outcome.record)
        if self.checkpoint is not None:  # which try recorded it decides what a retry runs
            self.checkpoint.add({**outcome.record, "try": self.try_number})
        cluster = self._deletable.pop(str(outcome.record.get("job")), None)
        if cluster is not None and outcome.ok:  # deleted once this record is written
            self._to_delete.append((cluster, str(outcome.record["job"])))
        if not outcome.ok:
            self.failed_ids.append(outcome.item.name)
            self.log.warning(
                "input %s failed after %d attempt(s): %s",
                outcome.item.name,
                outcome.attempts,
                outcome.record.get("error"),
            )

    async def _checkpointing(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await self.flush()
            except OscarError as exc:  # the next write tries again
                self.log.warning("could not write the checkpoint: %s", exc)

    async def flush(self) -> None:
        """Write pending records, then delete the jobs they came from.

        Only jobs whose records this write holds are deleted: a job deleted before its record
        is durable would be submitted again by a retry that finds neither."""
        done, self._to_delete = self._to_delete, []  # taken with the records, before any await
        if self.checkpoint is not None:
            try:
                await self.checkpoint.flush()
            except BaseException:
                self._to_delete = done + self._to_delete
                raise
        for cluster, job in done:
            assert cluster.session is not None
            with contextlib.suppress(OscarError):
                await cluster.session.adelete_job(self.op.service_name, job)

    # one input ----------------------------------------------------------------------------

    async def load(self, item: Item) -> Any:
        """The input as the service reads it (a DEEPaaS document for such a service)."""
        data = await self._read(item)
        if not self.op.deepaas:
            return data
        kind, value = item.source
        name = PurePosixPath(value).name if kind == "object" else None
        files = {self.op.deepaas_argument: DeepaasFile(name, as_bytes(data))}
        return deepaas_document(files, self.op.deepaas_arguments, what=f"input {item.name!r}")

    async def _read(self, item: Item) -> Any:
        kind, value = item.source
        if kind == "data":
            return value
        assert self.http is not None
        url = self.op.storage.presigned_url(value, expires=900)  # signed locally, no request
        try:
            response = await self.http.get(url)
        except Exception as exc:
            raise OscarApiError(f"reading {value}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise OscarClientError(f"object {value!r} does not exist", status_code=404)
        if not response.is_success:
            raise OscarApiError(f"reading {value}: S3 answered {response.status_code}")
        return response.content

    async def _leased(
        self, item: Item, work: Callable[[Cluster], Awaitable[T]]
    ) -> tuple[Cluster, T]:
        """Run ``work`` on a cluster leased from the router; errors name the cluster."""
        assert self.router is not None
        tried = self._tried.setdefault(item.index, set())
        slot = await self.router.acquire(avoid=tried)
        cluster: Cluster = slot.key
        try:
            value = await work(cluster)
        except Exception as exc:
            tried.add(slot.name)
            if is_cluster_failure(exc) and self.router.report_failure(slot):
                self.log.warning(
                    "OSCAR cluster %s failed (%s); skipping it for %s",
                    slot.name,
                    exc,
                    format_duration(self.router.cooldown),
                )
            raise AttemptError(exc, slot.name) from exc
        finally:
            await self.router.release(slot)
        self.router.report_success(slot)
        return cluster, value

    async def _sync_attempt(self, item: Item, attempt: int) -> dict[str, Any]:
        data = await self.load(item)
        service, timeout = self.op.service_name, self.op.timeout

        async def run(cluster: Cluster) -> dict[str, Any]:
            assert cluster.session is not None
            response = await cluster.session.arun_service(service, data, timeout=timeout)
            return self.summarise(response.body, None)

        cluster, fields = await self._leased(item, run)
        return {"cluster": cluster.name, **fields}

    def job_identity(self, index: int) -> str:
        generation = self.generation.get(index, 0)
        return self.identity.identity(index, *([f"g{generation}"] if generation else []))

    async def submit(self, cluster: Cluster, index: int, data: Any) -> str:
        """Submit input ``index`` (its current generation) once; the job's name."""
        assert cluster.session is not None and cluster.correlator is not None
        name, identity = self.op.service_name, self.job_identity(index)
        session = cluster.session
        if cluster.release is not None and cluster.release.names_jobs:
            ref = await cluster.correlator.submit_named(name, identity, data)
        else:

            async def post() -> None:
                await session.asubmit_job(name, data)

            ref = await cluster.correlator.submit_listed(name, identity, post)
        assert ref.job is not None
        return ref.job

    async def _job_attempt(self, item: Item, attempt: int) -> dict[str, Any]:
        data = await self.load(item)
        op = self.op

        async def run(cluster: Cluster) -> tuple[str, dict[str, Any]]:
            job = await self.submit(cluster, item.index, data)
            op.jobs_in_flight[job] = (cluster.conn_id, op.service_name)
            try:
                info = await self._wait_for_job(cluster, job, item.index)
                return job, await self.collect(cluster, item.index, job, info)
            except asyncio.CancelledError:  # the batch stopped: do not leave the job running
                assert cluster.session is not None
                with contextlib.suppress(Exception):
                    await asyncio.shield(cluster.session.adelete_job(op.service_name, job))
                raise
            finally:
                op.jobs_in_flight.pop(job, None)

        cluster, (job, fields) = await self._leased(item, run)
        return {"cluster": cluster.name, "job": job, **fields}

    async def collect(
        self, cluster: Cluster, index: int, job: str, info: JobInfo
    ) -> dict[str, Any]:
        """A finished job's result; a failed one starts the input's next generation."""
        assert cluster.session is not None
        logs = await cluster.session.aget_job_logs(self.op.service_name, job)
        if info.status != "Succeeded":
            self.generation[index] = self.generation.get(index, 0) + 1
            tail = " | ".join((logs or "").strip().splitlines()[-3:])[:500]
            raise JobFailed(f"OSCAR job {job} ended {info.status}: {tail or 'no log'}")
        fields = self.summarise(None, logs or "")
        if self.op.delete_jobs:
            self._deletable[job] = cluster
        return fields

    async def _wait_for_job(self, cluster: Cluster, job: str, index: int) -> JobInfo:
        op = self.op
        deadline = time.time() + op.job_timeout
        absent = 0
        patience = Patience(f"OSCAR job {job}", self.log, base=op.poll_interval)
        async with coalescer().watch(cluster.settings, op.service_name, op.poll_interval) as feed:
            while True:
                try:
                    info = (await feed.next(deadline=deadline)).get(job)
                except Exception as exc:
                    await asyncio.sleep(patience.failed(exc))
                    continue
                patience.succeeded()
                if info is None:
                    absent += 1
                    if absent >= ABSENT_LISTINGS:
                        self.generation[index] = self.generation.get(index, 0) + 1
                        raise JobFailed(f"OSCAR job {job} is no longer in the job list")
                    continue
                absent = 0
                if info.finished:
                    return info
                if time.time() >= deadline:
                    assert cluster.session is not None
                    with contextlib.suppress(OscarError):
                        await cluster.session.adelete_job(op.service_name, job)
                    raise JobTimedOut(
                        f"OSCAR job {job} was still {info.status} after "
                        f"{format_duration(op.job_timeout)}; it was deleted"
                    )

    def summarise(self, body: bytes | None, logs: str | None) -> dict[str, Any]:
        from airflow_provider_oscar.results import decode_prediction, decode_run_body

        decode = self.op.decode
        # a job's log ends with the supervisor's answer, exactly as a synchronous body does
        answer = body if body is not None else logs or ""
        if decode == "prediction":
            prediction = decode_prediction(answer)
            data = prediction.raise_for_status().to_dict()
            return {"prediction": {k: v for k, v in data.items() if v is not None}}
        if decode == "text":
            output = decode_run_body(answer)
            text = (
                output.text
                if output.text is not None
                else (output.data or b"").decode(errors="replace")
            )
            return {"text": text[:_TEXT_LIMIT]}
        return {"bytes": len(body)} if body is not None else {}


def split_done(
    run: BatchRun, items: list[Item], previous: dict[int, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Item]]:
    """The checkpointed records that need no new run, and the items still to run."""
    done, todo = [], []
    for item in items:
        record = previous.get(item.index)
        if record is not None and record.get("input") == item.name and run.finished_before(record):
            done.append(record)
        else:
            todo.append(item)
    return done, todo


def failure_exception(outcome: Outcome) -> Exception:
    record = outcome.record
    where = f" on {record['cluster']}" if record.get("cluster") else ""
    message = (
        f"input {outcome.item.name!r} failed after {outcome.attempts} attempt(s){where}: "
        f"{record.get('error')} (on_failure='fail' stopped the batch)"
    )
    if isinstance(outcome.error, PERMANENT):
        return AirflowFailException(message)
    return AirflowException(message)
