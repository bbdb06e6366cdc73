"""``OscarBatchInvokeOperator``: many inputs, one task, close to what the clusters can run.

Airflow starts a process per task, so mapping one task per input suits tens of inputs, not
thousands. This operator fans out inside one task with asyncio (:mod:`~airflow_provider_oscar.
fanout`): a fixed pool of workers over one reused HTTP client per cluster, each input retried on
its own, progress in the task log at a steady rate.

* **Inputs**: a list (or an upstream XCom) of bytes, text or JSON documents; a list of
  ``bucket/key`` objects; or every object under a ``bucket/prefix``. Objects are read when
  their turn comes, so a large batch is never in memory at once.
* **Invocation**: ``mode="sync"`` posts each input to ``/run`` with the service token;
  ``mode="async"`` runs each input as one job, exactly once: the job belongs to the DAG, run,
  task, map index and input, never to the try (named after them from OSCAR 4.1, correlated
  under a lease before), so a retried request or a retried task re-attaches to it; only a job
  that *failed* is followed by a new one. Jobs are waited for through the process's job-list
  coalescer (one listing per poll interval for all of them), riding out failures that heal.
* **Deferrable** (``deferrable``, default ``[operators] default_deferrable``; async mode on one
  cluster): submits up to ``concurrency`` jobs, defers while they run, and resumes to record
  the finished ones and submit the next inputs, so hours of inference hold no worker slot.
* **Checkpoints**: finished inputs are written to ``<results_object>.parts/`` as they finish
  (:mod:`~airflow_provider_oscar.operators.batch_results`); a retry of the task runs only the
  inputs without a successful record.
* **Concurrency**: ``concurrency``; or, when not set, sized from ``/system/status`` and the
  service's CPU and memory as OSCAR's batch tooling does (80 % of the free resources), capped
  by ``max_concurrency``.
* **Clusters**: ``oscar_conn_ids`` lists several OSCAR connections; ``routing`` picks one per
  input (``round_robin``, ``least_loaded`` from ``/system/status``, or ``failover``); a cluster
  that errors or cannot be reached is skipped for ``cooldown`` seconds and its inputs go
  elsewhere. Every result records the cluster that served it.
* **Results**: per input ``{index, input, cluster, status, prediction | text | bytes | error,
  seconds}``. Small batches return them in XCom; above ``results_threshold`` results (or
  ``results_threshold_bytes`` of JSON) they are written as JSON lines to ``results_object`` (by
  default ``<service bucket>/.oscar-airflow/batches/<task>.jsonl``) and XCom holds its path and
  the counts.
* **Failures**: ``on_failure="fail"`` stops at the first input that fails for good (after its
  retries) and fails the task; ``"continue"`` finishes the batch and reports the failed inputs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_oscar.aio import run_coroutine
from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.deepaas import DEFAULT_ARGUMENT, InputFormat, resolve_format
from airflow_provider_oscar.errors import OscarClientError, OscarError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.fanout import FanOutSummary, Item
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.hooks.correlation import STATE_FOLDER, StatePath, state_path_for
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.links import OscarServiceLink
from airflow_provider_oscar.operators.base import OscarBaseOperator, default_deferrable
from airflow_provider_oscar.operators.batch_clusters import Cluster
from airflow_provider_oscar.operators.batch_run import BatchRun, failure_exception, split_done
from airflow_provider_oscar.operators.batch_steps import FAILED_IDS_LIMIT, DeferrableSteps
from airflow_provider_oscar.operators.hub import check_target
from airflow_provider_oscar.operators.identity import TaskIdentity
from airflow_provider_oscar.routing import CAPACITY_FRACTION, ROUTINGS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oscar.hooks.storage import OscarStorageHook

Mode = Literal["sync", "async"]
Decode = Literal["prediction", "text", "none"]


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
    :param results_object: ``bucket/key`` for JSON-lines results of a large batch; its
        ``.parts/`` hold the checkpoint (default under the service's bucket).
    :param results_threshold: more results than this go to ``results_object``.
    :param results_threshold_bytes: more JSON than this goes to ``results_object``.
    :param oscar_conn_ids: several OSCAR connections to spread the inputs over (default: just
        ``oscar_conn_id``, which also holds the bucket of object inputs and results).
    :param routing: ``"round_robin"``, ``"least_loaded"`` or ``"failover"``.
    :param cooldown: seconds a failing cluster is skipped (only with several clusters).
    :param timeout: seconds to wait for each synchronous answer (default: the connection's).
    :param job_timeout: seconds an asynchronous job may take before it is deleted.
    :param poll_interval: seconds between job listings (async mode).
    :param delete_jobs: delete each succeeded job once its result is checkpointed (keeps the
        job list, and so every poll, short).
    :param progress_interval: seconds between progress lines in the task log.
    :param deferrable: in async mode on one cluster, wait in the triggerer between
        submissions instead of holding a worker slot.
    :param state_path: ``bucket/prefix`` for the job records kept before OSCAR 4.1 (default:
        the service's MinIO bucket).
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
        deferrable: bool = default_deferrable(),
        state_path: str | None = None,
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
        self.deepaas = False  # whether inputs go as DEEPaaS documents (set when run)
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
        self.deferrable = deferrable
        self.state_path = state_path
        self.jobs_in_flight: dict[str, tuple[str, str]] = {}  # job -> (conn id, service)

    # Airflow entry points -----------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with task_outcome():
            clusters = self._clusters()
            self._resolve_target(clusters)
            OscarServiceLink.persist(
                context, endpoint=clusters[0].settings.endpoint, service=self.service_name
            )
            checkpoint = self._checkpoint_path(context, clusters[0])
            if self._defers(clusters, checkpoint):
                return DeferrableSteps(self).step(context, None, None)
            run = self._new_run(context, clusters, checkpoint)
            summary, earlier = run_coroutine(lambda: self._run(run, self._inline_items()))
        return self._finish(run, summary, earlier)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, *, state: dict[str, Any]
    ) -> dict[str, Any]:
        """Resume a deferrable batch: record the jobs that ended, submit the next inputs."""
        with task_outcome():
            self._resolve_target(self._clusters())
            return DeferrableSteps(self).step(context, state, event or {})

    def on_kill(self) -> None:
        """Delete the asynchronous jobs still running when the task is killed."""
        for job, (conn_id, service) in list(self.jobs_in_flight.items()):
            with contextlib.suppress(Exception):
                OscarHook(conn_id).delete_job(service, job)

    # what the run needs -------------------------------------------------------------------

    def _resolve_target(self, clusters: list[Cluster]) -> None:
        """Find the hub module's service (one name on every cluster) and the input format."""
        from airflow_provider_oscar.hooks.hub import find_service

        if self.hub_module is None and self.input_format != "auto":
            self.deepaas = self.input_format == "deepaas"
            return
        name, module = self.service_name or None, self.hub_module
        found = {
            c.conn_id: find_service(OscarHook(c.conn_id), service_name=name, hub_module=module)
            for c in clusters
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
        self.deepaas = resolve_format(self.input_format, first) == "deepaas"

    def _clusters(self) -> list[Cluster]:
        conn_ids = self.oscar_conn_ids or [self.oscar_conn_id]
        return [Cluster.read(conn_id, several=len(conn_ids) > 1) for conn_id in conn_ids]

    def _new_run(
        self, context: Context, clusters: list[Cluster], checkpoint: str | None
    ) -> BatchRun:
        ti = context["ti"]
        return BatchRun(self, clusters, TaskIdentity.of(context), int(ti.try_number), checkpoint)

    def _defers(self, clusters: list[Cluster], checkpoint: str | None) -> bool:
        if not self.deferrable or self.mode != "async":
            return False
        if len(clusters) > 1 or checkpoint is None:
            self.log.info(
                "the batch waits in the worker: deferring needs async mode on one cluster and "
                "a bucket for its checkpoint (results_object, or a service with a MinIO path)"
            )
            return False
        return True

    def _checkpoint_path(self, context: Context, cluster: Cluster) -> str | None:
        """``results_object``, or ``<service bucket>/.oscar-airflow/batches/<task>.jsonl``."""
        if self.results_object:
            return self.results_object
        try:
            service = OscarHook(cluster.conn_id).get_service(self.service_name)
        except OscarError as exc:  # (another cluster may serve the batch)
            self.log.warning("no checkpoint: the service's bucket is unknown (%s)", exc)
            return None
        for io in [*(service.output or []), *(service.input or [])] if service else []:
            if io.provider_type == "minio" and io.bucket:
                token = TaskIdentity.of(context).token()
                return f"{io.bucket}/{STATE_FOLDER}/batches/{token}.jsonl"
        return None

    @cached_property
    def storage(self) -> OscarStorageHook:
        return self.storage_of(self.oscar_conn_id)

    def storage_of(self, conn_id: str) -> OscarStorageHook:
        from airflow_provider_oscar.hooks.storage import OscarStorageHook

        storage = OscarStorageHook(conn_id)
        _ = storage.minio_provider  # read the MinIO credentials once, before the event loop
        return storage

    def state_of(self, service: Service | None) -> StatePath:
        if service is None:
            raise AirflowFailException(f"service {self.service_name!r} does not exist")
        return state_path_for(service, self.state_path)

    # inputs -------------------------------------------------------------------------------

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

    async def _items(self, run: BatchRun, inline: list[Item] | None) -> list[Item]:
        if inline is not None:
            return inline
        assert run.s3 is not None
        bucket, prefix = _split(str(self.input_prefix))
        objects = await run.s3.list(bucket, prefix)
        return self._prefix_items([(o.bucket, o.key) for o in objects])

    # the in-worker run --------------------------------------------------------------------

    async def _run(
        self, run: BatchRun, inline: list[Item] | None
    ) -> tuple[FanOutSummary, list[dict[str, Any]]]:
        async with contextlib.AsyncExitStack() as stack:
            await run.open(stack)
            items = await self._items(run, inline)
            earlier, todo = split_done(run, items, await run.previous())
            for record in earlier:
                run.results.add({k: v for k, v in record.items() if k != "try"})
            if earlier:
                self.log.info(
                    "%d of %d inputs finished in an earlier try (checkpoint %s): not run again",
                    len(earlier),
                    len(items),
                    run.checkpoint_path,
                )
            return await run.run(todo), earlier

    # results ------------------------------------------------------------------------------

    def _finish(
        self, run: BatchRun, summary: FanOutSummary, earlier: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.log.info(run.progress.line() if run.progress else "no inputs")
        ok_before = sum(1 for r in earlier if r.get("status") == "ok")
        result: dict[str, Any] = {
            "service": self.service_name,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "mode": self.mode,
            "total": summary.total + len(earlier),
            "succeeded": summary.succeeded + ok_before,
            "failed": summary.failed + len(earlier) - ok_before,
            "failed_inputs": run.failed_ids[:FAILED_IDS_LIMIT],
            "clusters": run.router.summary() if run.router else {},
            "concurrency": run.concurrency,
            "seconds": round(summary.seconds, 3),
            "resumed": len(earlier),
        }
        if len(run.failed_ids) > FAILED_IDS_LIMIT:
            result["failed_inputs_truncated"] = True
        if summary.failed:
            self.log.warning(
                "%d of %d inputs failed: %s%s",
                summary.failed,
                summary.total,
                ", ".join(run.failed_ids[:20]),
                " ..." if summary.failed > 20 else "",
            )
        if summary.stopped and summary.first_failure is not None:
            run.results.close()
            raise failure_exception(summary.first_failure)
        with task_outcome():
            result.update(run.results.publish(self.results_object, self.storage, self.log))
        return result


def _split(path: str) -> tuple[str, str]:
    from airflow_provider_oscar.hooks.storage import split_path

    return split_path(path)


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
