"""``OscarBatchInvokeOperator``: many inputs, one task, close to what the clusters can run.

Airflow starts a process per task, so mapping one task per input suits tens of inputs, not
thousands. This operator fans out inside one task with asyncio (:mod:`~airflow_provider_oscar.
fanout`): a fixed pool of workers over one reused HTTP client per cluster, each input retried on
its own, progress in the task log at a steady rate.

* **Inputs**: a list (or an upstream XCom) of bytes, text or JSON documents; a list of
  ``bucket/key`` objects; or every object under a ``bucket/prefix``. Objects are read when
  their turn comes, so a large batch is never in memory at once.
* **Invocation**: ``mode="sync"`` posts each input to ``/run`` with the service token;
  ``mode="async"`` posts it to ``/job`` under a job name derived from the DAG, run, task, map
  index, try and input index (``X-Delegated-Job-ID``), so a re-run of the same try resubmits
  nothing, and waits for the jobs through the process's job-list coalescer (one listing per
  poll interval for all of them).
* **Concurrency**: ``concurrency``; or, when not set, sized from ``/system/status`` and the
  service's CPU and memory as OSCAR's batch tooling does (80 % of the free resources), capped
  by ``max_concurrency``.
* **Clusters**: ``oscar_conn_ids`` lists several OSCAR connections; ``routing`` picks one per
  input (``round_robin``, ``least_loaded`` from ``/system/status``, or ``failover``); a cluster
  that errors or cannot be reached is skipped for ``cooldown`` seconds and its inputs go
  elsewhere. Every result records the cluster that served it.
* **Results**: per input ``{index, input, cluster, status, prediction | text | bytes | error,
  seconds}``. Small batches return them in XCom; above ``results_threshold`` results (or
  ``results_threshold_bytes`` of JSON) they are written as JSON lines to ``results_object`` and
  XCom holds its path and the counts.
* **Failures**: ``on_failure="fail"`` stops at the first input that fails for good (after its
  retries) and fails the task; ``"continue"`` finishes the batch and reports the failed inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.deepaas import (
    DEFAULT_ARGUMENT,
    DeepaasFile,
    InputFormat,
    deepaas_document,
    resolve_format,
)
from airflow_provider_oscar.errors import OscarApiError, OscarClientError, OscarError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.fanout import (
    PERMANENT,
    AttemptError,
    FanOutSummary,
    Item,
    Outcome,
    Progress,
    default_retryable,
    fan_out,
    format_duration,
)
from airflow_provider_oscar.fdl import job_prefix
from airflow_provider_oscar.hooks.api import ClusterSettings, JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.links import OscarServiceLink
from airflow_provider_oscar.operators.base import OscarBaseOperator
from airflow_provider_oscar.operators.hub import check_target
from airflow_provider_oscar.routing import (
    CAPACITY_FRACTION,
    ROUTINGS,
    ClusterSlot,
    Router,
    capacity_from_status,
    is_cluster_failure,
    strategy_named,
)
from airflow_provider_oscar.triggers.coalesce import coalescer

if TYPE_CHECKING:
    import httpx
    from airflow.sdk import Context

    from airflow_provider_oscar.hooks.oscar import OscarAsyncSession
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

T = TypeVar("T")
Mode = Literal["sync", "async"]
Decode = Literal["prediction", "text", "none"]
_NAMESPACE = uuid.UUID("0b7e2c1e-6a4f-4f0e-9d55-3c1b8f9a2e47")
_TEXT_LIMIT = 1024
_FAILED_IDS_LIMIT = 1000
_MISSING_ROUNDS = 3  # listings a submitted job may be absent from before it counts as lost
_STATUS_REFRESH = 30.0  # seconds between status reads for least-loaded routing
_DEFAULT_CONCURRENCY = 4  # when /system/status cannot size it


class JobFailed(OscarError):
    """An asynchronous job ended ``Failed`` (worth another attempt)."""


class JobTimedOut(OscarError):
    """A job did not end within ``job_timeout`` (it was deleted; not retried)."""


class OscarBatchInvokeOperator(OscarBaseOperator):
    """Invoke a service for many inputs from one task, with bounded concurrency.

    :param service_name: the OSCAR service (deployed on every cluster used); or
    :param hub_module: the AI4OS hub module it runs (the same service name on every cluster).
    :param input_format: ``"raw"``, ``"deepaas"`` (each input as a file of the document that
        services deployed from the AI4OS dashboard read) or ``"auto"`` (``deepaas`` for such a
        service); see :class:`~airflow_provider_oscar.operators.invoke.OscarRunServiceOperator`.
    :param deepaas_argument: the predict argument the file is given as.
    :param deepaas_arguments: other predict arguments, by name.
    :param inputs: inline inputs: a list (or an upstream ``XComArg``) of bytes, text or JSON
        documents; or
    :param input_objects: a list (or ``XComArg``) of ``bucket/key`` objects to send; or
    :param input_prefix: ``bucket/prefix``: every object under it is an input.
    :param input_ids: how results name the inputs (default: the object's name without
        extension, the position for inline inputs).
    :param mode: ``"sync"`` (``/run``) or ``"async"`` (``/job``, then wait for the jobs).
    :param decode: ``"prediction"`` (normalised classification; a model answering
        ``status: error`` fails that input), ``"text"`` (first 1 KiB of the answer: the
        output file or the console text, in both modes) or ``"none"``.
    :param concurrency: invocations in flight; ``None`` sizes it from ``/system/status``.
    :param max_concurrency: the cap on a sized concurrency.
    :param capacity_fraction: share of the free CPU and memory a sized concurrency may use.
    :param input_retries: further attempts for an input that failed with a transient error
        (with several clusters, the next attempt goes to another cluster when it can).
    :param input_retry_delay: seconds before the first retry of an input (doubled each time).
    :param on_failure: ``"fail"`` (stop and fail the task) or ``"continue"`` (report them).
    :param results_object: ``bucket/key`` for JSON-lines results of a large batch.
    :param results_threshold: more results than this go to ``results_object``.
    :param results_threshold_bytes: more JSON than this goes to ``results_object``.
    :param oscar_conn_ids: several OSCAR connections to spread the inputs over (default: just
        ``oscar_conn_id``, which also holds the bucket of object inputs and results).
    :param routing: ``"round_robin"``, ``"least_loaded"`` or ``"failover"``.
    :param cooldown: seconds a failing cluster is skipped (only with several clusters).
    :param timeout: seconds to wait for each synchronous answer (default: the connection's).
    :param job_timeout: seconds an asynchronous job may take before it is deleted.
    :param poll_interval: seconds between job listings (async mode).
    :param delete_jobs: delete each succeeded job once its result is read (keeps the job
        list, and so every poll, short).
    :param progress_interval: seconds between progress lines in the task log.
    """

    template_fields = (
        "service_name",
        "hub_module",
        "deepaas_arguments",
        "inputs",
        "input_objects",
        "input_prefix",
        "input_ids",
        "results_object",
        "oscar_conn_ids",
    )
    template_fields_renderers = {"inputs": "json"}
    operator_extra_links = (OscarServiceLink(),)

    def __init__(
        self,
        *,
        service_name: str | None = None,
        hub_module: str | None = None,
        input_format: InputFormat = "raw",
        deepaas_argument: str = DEFAULT_ARGUMENT,
        deepaas_arguments: Mapping[str, Any] | None = None,
        inputs: Any = None,
        input_objects: Any = None,
        input_prefix: str | None = None,
        input_ids: Any = None,
        mode: Mode = "sync",
        decode: Decode = "prediction",
        concurrency: int | None = None,
        max_concurrency: int = 64,
        capacity_fraction: float = CAPACITY_FRACTION,
        input_retries: int = 2,
        input_retry_delay: float = 1.0,
        on_failure: Literal["fail", "continue"] = "fail",
        results_object: str | None = None,
        results_threshold: int = 1000,
        results_threshold_bytes: int = 256 * 1024,
        oscar_conn_ids: Sequence[str] | None = None,
        routing: str = "round_robin",
        cooldown: float = 60.0,
        timeout: float | None = None,
        job_timeout: float = 3600.0,
        poll_interval: float = 5.0,
        delete_jobs: bool = True,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be 'sync' or 'async', not {mode!r}")
        if decode not in ("prediction", "text", "none"):
            raise ValueError(f"decode must be 'prediction', 'text' or 'none', not {decode!r}")
        if on_failure not in ("fail", "continue"):
            raise ValueError(f"on_failure must be 'fail' or 'continue', not {on_failure!r}")
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        sources = {"inputs": inputs, "input_objects": input_objects, "input_prefix": input_prefix}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of inputs, input_objects, input_prefix (got {given or 'none'})"
            )
        check_target(service_name, hub_module, input_format)
        self.service_name = service_name or ""  # a hub module's is found when the task runs
        self.hub_module = hub_module
        self.input_format = input_format
        self.deepaas_argument = deepaas_argument
        self.deepaas_arguments = deepaas_arguments
        self._deepaas = False  # whether inputs go as DEEPaaS documents (set when run)
        self.inputs = inputs
        self.input_objects = input_objects
        self.input_prefix = input_prefix
        self.input_ids = input_ids
        self.mode = mode
        self.decode = decode
        self.concurrency = concurrency
        self.max_concurrency = max_concurrency
        self.capacity_fraction = capacity_fraction
        self.input_retries = input_retries
        self.input_retry_delay = input_retry_delay
        self.on_failure = on_failure
        self.results_object = results_object
        self.results_threshold = results_threshold
        self.results_threshold_bytes = results_threshold_bytes
        self.oscar_conn_ids = list(oscar_conn_ids) if oscar_conn_ids else None
        self.routing = routing
        self.cooldown = cooldown
        self.timeout = timeout
        self.job_timeout = job_timeout
        self.poll_interval = poll_interval
        self.delete_jobs = delete_jobs
        self.progress_interval = progress_interval
        self._jobs_in_flight: dict[str, tuple[str, str]] = {}  # job -> (conn id, service)

    # Airflow entry points -----------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with task_outcome():
            conn_ids = self.oscar_conn_ids or [self.oscar_conn_id]
            clusters = [_Cluster.read(conn_id, several=len(conn_ids) > 1) for conn_id in conn_ids]
            self._resolve_target(conn_ids)
            OscarServiceLink.persist(
                context, endpoint=clusters[0].settings.endpoint, service=self.service_name
            )
            storage = self._storage() if self._needs_storage() else None
            items = self._inline_items()
            batch = _Batch(self, context, clusters, storage, items)
            summary = _run_coroutine(batch.run)
        return self._finish(batch, summary)

    def _resolve_target(self, conn_ids: list[str]) -> None:
        """Find the hub module's service (one name on every cluster) and the input format."""
        from airflow_provider_oscar.hooks.hub import find_service

        if self.hub_module is None and self.input_format != "auto":
            self._deepaas = self.input_format == "deepaas"
            return
        name, module = self.service_name or None, self.hub_module
        found = {
            conn_id: find_service(OscarHook(conn_id), service_name=name, hub_module=module)
            for conn_id in conn_ids
        }
        names = {service.name for service in found.values()}
        if len(names) > 1:
            listed = ", ".join(f"{c}: {s.name}" for c, s in found.items())
            raise OscarClientError(
                f"hub module {self.hub_module!r} runs under different names on the clusters "
                f"({listed}); one batch calls one name: run one task per cluster"
            )
        first = next(iter(found.values()))
        self.service_name = first.name
        self._deepaas = resolve_format(self.input_format, first) == "deepaas"

    def on_kill(self) -> None:
        """Delete the asynchronous jobs still running when the task is killed."""
        for job, (conn_id, service) in list(self._jobs_in_flight.items()):
            with contextlib.suppress(Exception):
                OscarHook(conn_id).delete_job(service, job)

    # inputs -------------------------------------------------------------------------------

    def _needs_storage(self) -> bool:
        return (
            self.input_objects is not None
            or self.input_prefix is not None
            or self.results_object is not None
        )

    def _storage(self) -> OscarStorageHook:
        from airflow_provider_oscar.hooks.storage import OscarStorageHook

        storage = OscarStorageHook(self.oscar_conn_id)
        _ = storage.minio_provider  # read the MinIO credentials once, before the event loop
        return storage

    def _inline_items(self) -> list[Item] | None:
        """Items of ``inputs`` or ``input_objects``; ``None`` for a prefix (listed later)."""
        if self.input_prefix is not None:
            return None
        if self.inputs is not None:
            values = _as_list(self.inputs, "inputs")
            for position, value in enumerate(values):
                if not isinstance(value, bytes | str | Mapping | list):
                    raise AirflowFailException(
                        f"input {position} must be bytes, text or a JSON document, "
                        f"not {type(value).__name__}"
                    )
            names = self._names([str(i) for i in range(len(values))])
            pairs = zip(names, values, strict=True)
            return [Item(i, name, ("data", value)) for i, (name, value) in enumerate(pairs)]
        paths = [str(p) for p in _as_list(self.input_objects, "input_objects")]
        names = self._names([PurePosixPath(p).stem for p in paths])
        objects = zip(names, paths, strict=True)
        return [Item(i, name, ("object", path)) for i, (name, path) in enumerate(objects)]

    def _prefix_items(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        prefix = str(self.input_prefix).strip("/").partition("/")[2]
        defaults = []
        for _, key in keys:
            relative = key[len(prefix) :].lstrip("/") if key.startswith(prefix) else key
            defaults.append(str(PurePosixPath(relative).with_suffix("")) or key)
        names = self._names(defaults)
        return [
            Item(i, n, ("object", f"{bucket}/{key}"))
            for i, (n, (bucket, key)) in enumerate(zip(names, keys, strict=True))
        ]

    def _names(self, defaults: list[str]) -> list[str]:
        if self.input_ids is None:
            return defaults
        ids = [str(i) for i in _as_list(self.input_ids, "input_ids")]
        if len(ids) != len(defaults):
            raise AirflowFailException(f"input_ids has {len(ids)} names for {len(defaults)} inputs")
        return ids

    # results ------------------------------------------------------------------------------

    def _finish(self, batch: _Batch, summary: FanOutSummary) -> dict[str, Any]:
        self.log.info(batch.progress.line() if batch.progress else "no inputs")
        result: dict[str, Any] = {
            "service": self.service_name,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "mode": self.mode,
            "total": summary.total,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "failed_inputs": batch.failed_ids[:_FAILED_IDS_LIMIT],
            "clusters": batch.served,
            "concurrency": batch.concurrency,
            "seconds": round(summary.seconds, 3),
        }
        if len(batch.failed_ids) > _FAILED_IDS_LIMIT:
            result["failed_inputs_truncated"] = True
        if summary.failed:
            self.log.warning(
                "%d of %d inputs failed: %s%s",
                summary.failed,
                summary.total,
                ", ".join(batch.failed_ids[:20]),
                " ..." if summary.failed > 20 else "",
            )
        if summary.stopped and summary.first_failure is not None:
            batch.results.close()
            raise _failure_exception(summary.first_failure)
        with task_outcome():
            result.update(batch.results.publish(self.results_object, batch.storage, self.log))
        return result


@dataclass(eq=False)
class _Cluster:
    """One cluster of the batch: its connection, settings and (inside the loop) session."""

    conn_id: str
    settings: ClusterSettings
    session: OscarAsyncSession | None = None
    existing_jobs: set[str] = field(default_factory=set)
    cpu: float = 0.0  # the service's needs on this cluster (read when sizing)
    memory: int = 0

    @classmethod
    def read(cls, conn_id: str, *, several: bool) -> _Cluster:
        settings = OscarHook(conn_id).settings
        if several:  # another cluster is a better retry than hammering this one
            settings = replace(settings, retries=min(settings.retries, 1))
        return cls(conn_id, settings)

    @property
    def name(self) -> str:
        return self.settings.name


class _Batch:
    """One execution of the operator: everything that lives inside the event loop."""

    def __init__(
        self,
        op: OscarBatchInvokeOperator,
        context: Context,
        clusters: list[_Cluster],
        storage: OscarStorageHook | None,
        items: list[Item] | None,
    ) -> None:
        self.op = op
        self.log = op.log
        self.ti = context["ti"]
        self.clusters = clusters
        self.storage = storage
        self.items = items
        self.results = _Results(
            op.results_threshold,
            op.results_threshold_bytes,
            spill=op.results_object is not None,
        )
        self.failed_ids: list[str] = []
        self.served: dict[str, int] = {}
        self.concurrency = 0
        self.progress: Progress | None = None
        self.router: Router | None = None
        self._s3: httpx.AsyncClient | None = None
        self._tried: dict[int, set[str]] = {}  # clusters each input failed on
        self._unreachable: set[_Cluster] = set()  # clusters that failed while sizing

    # the run ------------------------------------------------------------------------------

    async def run(self) -> FanOutSummary:
        import httpx

        op = self.op
        width = (op.concurrency or op.max_concurrency) + 4
        async with contextlib.AsyncExitStack() as stack:
            for cluster in self.clusters:
                cluster.session = await stack.enter_async_context(
                    OscarHook(cluster.conn_id).asession(
                        settings=cluster.settings, max_connections=width
                    )
                )
            if self.storage is not None:
                limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
                verify = self.clusters[0].settings.verify_ssl
                self._s3 = await stack.enter_async_context(
                    httpx.AsyncClient(limits=limits, verify=verify, timeout=60.0)
                )
            items = self.items if self.items is not None else await self._list_prefix()
            self.router = await self._router()
            self.concurrency = self._concurrency()
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
            if op.mode == "async":
                await self._known_jobs()
            refresher = (
                asyncio.ensure_future(self._refresh_status())
                if op.routing == "least_loaded"
                else None
            )
            try:
                summary = await fan_out(
                    items,
                    self._sync_attempt if op.mode == "sync" else self._job_attempt,
                    concurrency=max(1, min(self.concurrency, len(items) or 1)),
                    retries=op.input_retries,
                    retry_delay=op.input_retry_delay,
                    retryable=_retryable,
                    stop_on_failure=op.on_failure == "fail",
                    on_outcome=self._record,
                    progress=self.progress,
                )
            finally:
                if refresher is not None:
                    refresher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await refresher
        self.served = self.router.summary()
        return summary

    def _record(self, outcome: Outcome) -> None:
        self._tried.pop(outcome.item.index, None)
        self.results.add(outcome.record)
        if not outcome.ok:
            self.failed_ids.append(outcome.item.name)
            self.log.warning(
                "input %s failed after %d attempt(s): %s",
                outcome.item.name,
                outcome.attempts,
                outcome.record.get("error"),
            )

    async def _list_prefix(self) -> list[Item]:
        assert self.storage is not None
        objects = await self.storage.alist_objects(str(self.op.input_prefix))
        return self.op._prefix_items([(o.bucket, o.key) for o in objects])

    # clusters, capacity, routing ----------------------------------------------------------

    async def _router(self) -> Router:
        op = self.op
        sized = op.concurrency is None or op.routing == "least_loaded" or len(self.clusters) > 1
        slots = []
        for cluster in self.clusters:
            slot = ClusterSlot(cluster.name, key=cluster)
            if sized:
                await self._size(slot, cluster)
            slots.append(slot)
        usable = [s for s in slots if s.limit != 0]
        if not usable:
            raise OscarClientError(
                f"service {op.service_name!r} is not usable on any cluster "
                f"({', '.join(s.name for s in slots)})"
            )
        router = Router(usable, strategy_named(op.routing), op.cooldown)
        for slot in usable:
            if slot.key in self._unreachable:  # start it cooled down
                router.report_failure(slot)
        return router

    async def _size(self, slot: ClusterSlot, cluster: _Cluster) -> None:
        """Read the service and the cluster status; set the slot's limit and capacity."""
        op = self.op
        assert cluster.session is not None
        try:
            service = await cluster.session.aget_service(op.service_name)
        except OscarError as exc:
            if not is_cluster_failure(exc) or len(self.clusters) < 2:
                raise
            self.log.warning("OSCAR cluster %s is unavailable: %s", cluster.name, exc)
            self._unreachable.add(cluster)
            return
        if service is None:
            if len(self.clusters) < 2:
                raise OscarClientError(
                    f"OSCAR cluster {cluster.name}: service {op.service_name!r} does not exist",
                    status_code=404,
                    service=op.service_name,
                )
            self.log.warning("OSCAR cluster %s has no service %s", cluster.name, op.service_name)
            slot.limit = 0
            return
        cluster.cpu, cluster.memory = service.cpu_cores, service.memory_bytes
        scale = service.synchronous.max_scale if op.mode == "sync" else 0
        free = await self._free_slots(cluster)
        if free is None:
            if op.concurrency is None:
                slot.limit = min(_DEFAULT_CONCURRENCY, scale or op.max_concurrency)
            return
        slot.set_status_capacity(free)
        if op.concurrency is None:  # Knative runs one request per pod: no more than max_scale
            slot.limit = max(1, min(free, scale or free, op.max_concurrency))
            self.log.info(
                "OSCAR cluster %s fits %d parallel invocations of %s (%.2f CPU, %d MiB each)",
                cluster.name,
                free,
                op.service_name,
                service.cpu_cores,
                service.memory_bytes // 2**20,
            )

    async def _free_slots(self, cluster: _Cluster) -> int | None:
        """Invocations of the service that fit on the cluster now (``None``: unknown)."""
        assert cluster.session is not None
        if cluster.cpu <= 0 and cluster.memory <= 0:  # its service was never read
            return None
        try:
            status = await cluster.session.aget_status()
        except OscarError as exc:
            self.log.warning("OSCAR cluster %s: no usable /system/status (%s)", cluster.name, exc)
            return None
        return capacity_from_status(status, cluster.cpu, cluster.memory, self.op.capacity_fraction)

    def _concurrency(self) -> int:
        op = self.op
        assert self.router is not None
        if op.concurrency is not None:
            return op.concurrency
        total = sum(s.limit or _DEFAULT_CONCURRENCY for s in self.router.clusters)
        return max(1, min(total, op.max_concurrency))

    async def _refresh_status(self) -> None:
        assert self.router is not None
        while True:
            await asyncio.sleep(_STATUS_REFRESH)
            for slot in self.router.healthy():
                free = await self._free_slots(slot.key)
                if free is not None:
                    slot.set_status_capacity(free)

    # one input ----------------------------------------------------------------------------

    async def _load(self, item: Item) -> Any:
        data = await self._read(item)
        if not self.op._deepaas:
            return data
        kind, value = item.source
        name = PurePosixPath(value).name if kind == "object" else None
        content = data if isinstance(data, bytes) else _encoded(data)
        files = {self.op.deepaas_argument: DeepaasFile(name, content)}
        return deepaas_document(files, self.op.deepaas_arguments, what=f"input {item.name!r}")

    async def _read(self, item: Item) -> Any:
        kind, value = item.source
        if kind == "data":
            return value
        assert self.storage is not None and self._s3 is not None
        url = self.storage.presigned_url(value, expires=900)  # signed locally, no request
        try:
            response = await self._s3.get(url)
        except Exception as exc:
            raise OscarApiError(f"reading {value}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise OscarClientError(f"object {value!r} does not exist", status_code=404)
        if not response.is_success:
            raise OscarApiError(f"reading {value}: S3 answered {response.status_code}")
        return response.content

    async def _leased(
        self, item: Item, tried: set[str], work: Callable[[_Cluster], Awaitable[T]]
    ) -> tuple[_Cluster, T]:
        """Run ``work`` on a cluster leased from the router; errors name the cluster."""
        assert self.router is not None
        slot = await self.router.acquire(avoid=tried)
        cluster: _Cluster = slot.key
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
        data = await self._load(item)
        tried = self._tried.setdefault(item.index, set())
        service, timeout = self.op.service_name, self.op.timeout

        async def run(cluster: _Cluster) -> dict[str, Any]:
            assert cluster.session is not None
            response = await cluster.session.arun_service(service, data, timeout=timeout)
            return self._summarise(response.body, None)

        cluster, fields = await self._leased(item, tried, run)
        return {"cluster": cluster.name, **fields}

    def _job_name(self, index: int, attempt: int) -> str:
        ti = self.ti
        parts = [ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number, index]
        if attempt > 1:
            parts.append(attempt)
        token = uuid.uuid5(_NAMESPACE, "|".join(map(str, parts)))
        return f"{job_prefix(self.op.service_name)}-{token}"

    async def _known_jobs(self) -> None:
        """Jobs already on each cluster (a re-run of this try waits on them, never resubmits)."""
        for cluster in self.clusters:
            assert cluster.session is not None
            try:
                cluster.existing_jobs = set(await cluster.session.alist_jobs(self.op.service_name))
            except OscarError as exc:
                self.log.warning("could not list the jobs on %s: %s", cluster.name, exc)

    async def _job_attempt(self, item: Item, attempt: int) -> dict[str, Any]:
        data = await self._load(item)
        tried = self._tried.setdefault(item.index, set())
        job = self._job_name(item.index, attempt)
        op = self.op

        async def run(cluster: _Cluster) -> dict[str, Any]:
            session = cluster.session
            assert session is not None
            self.op._jobs_in_flight[job] = (cluster.conn_id, op.service_name)
            try:
                if job not in cluster.existing_jobs:
                    await session.asubmit_job(op.service_name, data, job_name=job)
                info = await self._wait_for_job(cluster, job)
                logs = await session.aget_job_logs(op.service_name, job)
                if info.status != "Succeeded":
                    tail = " | ".join((logs or "").strip().splitlines()[-3:])[:500]
                    raise JobFailed(f"OSCAR job {job} ended {info.status}: {tail or 'no log'}")
                fields = self._summarise(None, logs or "")
                if op.delete_jobs:
                    await session.adelete_job(op.service_name, job)
                return fields
            except asyncio.CancelledError:  # the batch stopped: do not leave the job running
                with contextlib.suppress(Exception):
                    await asyncio.shield(session.adelete_job(op.service_name, job))
                raise
            finally:
                self.op._jobs_in_flight.pop(job, None)

        cluster, fields = await self._leased(item, tried, run)
        return {"cluster": cluster.name, "job": job, **fields}

    async def _wait_for_job(self, cluster: _Cluster, job: str) -> JobInfo:
        op = self.op
        deadline = time.time() + op.job_timeout
        missing = 0
        async with coalescer().watch(cluster.settings, op.service_name, op.poll_interval) as feed:
            while True:
                info = (await feed.next(deadline=deadline)).get(job)
                if info is None:
                    missing += 1
                    if missing >= _MISSING_ROUNDS:
                        raise JobFailed(
                            f"OSCAR job {job} is not in the job list (deleted, expired, or the "
                            "cluster ignores X-Delegated-Job-ID: use mode='sync')"
                        )
                    continue
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

    def _summarise(self, body: bytes | None, logs: str | None) -> dict[str, Any]:
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


def _retryable(exc: BaseException) -> bool:
    cause = exc.cause if isinstance(exc, AttemptError) else exc
    return default_retryable(exc) and not isinstance(cause, JobTimedOut)


def _failure_exception(outcome: Outcome) -> Exception:
    record = outcome.record
    where = f" on {record['cluster']}" if record.get("cluster") else ""
    message = (
        f"input {outcome.item.name!r} failed after {outcome.attempts} attempt(s){where}: "
        f"{record.get('error')} (on_failure='fail' stopped the batch)"
    )
    if isinstance(outcome.error, PERMANENT):
        return AirflowFailException(message)
    return AirflowException(message)


class _Results:
    """Result records: kept in memory, or spilled to a JSON-lines file above a threshold."""

    def __init__(self, count_limit: int, byte_limit: int, *, spill: bool) -> None:
        self.count_limit = count_limit
        self.byte_limit = byte_limit
        self.spill = spill
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self.size = 0
        self.file: IO[bytes] | None = None

    def add(self, record: dict[str, Any]) -> None:
        line = _json_line(record)
        self.count += 1
        self.size += len(line)
        if self.file is None and self.spill and self._over():
            # closed in publish() or close()
            self.file = tempfile.NamedTemporaryFile(prefix="oscar-batch-", suffix=".jsonl")  # noqa: SIM115
            for kept in self.records:
                self.file.write(_json_line(kept))
            self.records = []
        if self.file is not None:
            self.file.write(line)
        else:
            self.records.append(record)

    def _over(self) -> bool:
        return self.count > self.count_limit or self.size > self.byte_limit

    def publish(
        self, results_object: str | None, storage: OscarStorageHook | None, log: Any
    ) -> dict[str, Any]:
        """What XCom gets: the records (by input order), or where the JSON lines went."""
        try:
            if self.file is not None and results_object and storage is not None:
                self.file.flush()
                storage.upload_file(results_object, self.file.name)
                log.info(
                    "wrote %d results (%d bytes of JSON lines) to %s",
                    self.count,
                    self.size,
                    results_object,
                )
                return {"results_object": results_object}
            if self._over():
                log.warning(
                    "%d results (%d bytes) go to XCom; set results_object to write large "
                    "batches to a bucket instead",
                    self.count,
                    self.size,
                )
            return {"results": sorted(self.records, key=lambda r: r["index"])}
        finally:
            self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _encoded(data: str | Mapping[str, Any] | list[Any]) -> bytes:
    """Inline text as UTF-8, a JSON document as its text."""
    return data.encode() if isinstance(data, str) else json.dumps(data).encode()


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()


def _as_list(value: Any, what: str) -> list[Any]:
    """A list from a list, tuple, lazy XCom sequence or the JSON text of a list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise AirflowFailException(f"{what} is text that is not a JSON list") from None
    if isinstance(value, bytes | Mapping) or not isinstance(value, Iterable):
        raise AirflowFailException(f"{what} must be a list, not {type(value).__name__}")
    return list(value)


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from sync code, even when a loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_call(factory))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_call(factory))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="oscar-batch")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
