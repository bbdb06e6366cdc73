"""``OscarSubmitJobOperator``: run a service asynchronously, once per task instance.

**Exactly once.** The job belongs to the task instance (DAG, run, task, map index), never to a
try (:mod:`~airflow_provider_oscar.operators.identity`): a retry, or a task whose worker died,
re-attaches to the job its earlier try submitted, in whatever state it is, and waits for it or
reads its result. ``force_rerun=True`` deletes that job and submits afresh. How a submission
finds its job on each OSCAR release is :mod:`~airflow_provider_oscar.hooks.correlation`'s
business: named after the identity from 4.1 (``via="job"``), correlated under a lease before,
and for uploads.

**Waiting.** In the worker, or deferred to a trigger (``deferrable``); either way polls that
fail with something that heals are ridden out until ``timeout``, new lines of the job's log
reach the task log while it runs (``live_logs``), and killing the task deletes the job (and the
input an upload left behind); a triggerer restart does not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal, NoReturn

from airflow.sdk import Context

from airflow_provider_oscar.aio import run_coroutine
from airflow_provider_oscar.answers import DECODES, UnexpectedOutput, kept_inline, read_answer
from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.deepaas import DEFAULT_ARGUMENT, InputFormat
from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.hooks.correlation import (
    CorrelationError,
    Correlator,
    JobRef,
    StatePath,
    state_path_for,
)
from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.hooks.oscar import OscarAsyncSession
from airflow_provider_oscar.hooks.s3 import S3Session
from airflow_provider_oscar.hooks.storage import split_path
from airflow_provider_oscar.links import OscarJobLogsLink, OscarOutputLink
from airflow_provider_oscar.operators.base import OscarBaseOperator, default_deferrable
from airflow_provider_oscar.operators.hub import HubTarget
from airflow_provider_oscar.operators.identity import TaskIdentity, remember_job, remembered_job
from airflow_provider_oscar.operators.inputs import InputMixin, as_bytes, log_remote
from airflow_provider_oscar.operators.job_waits import JobWaits
from airflow_provider_oscar.operators.offload import DEFAULT_THRESHOLD, default_location, offload
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger
from airflow_provider_oscar.triggers.storage import OscarOutputTrigger, matching

__all__ = ["OscarSubmitJobOperator"]


class OscarSubmitJobOperator(JobWaits, HubTarget, InputMixin, OscarBaseOperator):
    """Run a service asynchronously, exactly once per task instance, and (optionally) wait.

    ``via="job"`` posts the input to ``/job``; the result is read from the job's log.
    ``via="bucket"`` uploads the input into the service's input folder under a key derived from
    the task instance (``<input folder>/<token>-<input name>``), which starts the job as any
    upload does; the result is the output object whose name contains that token. Either way
    ``Succeeded`` alone is not trusted: the model's output decides.

    A service deployed from the AI4OS dashboard (``hub_module``, ``input_format``: see
    :class:`~airflow_provider_oscar.operators.invoke.OscarRunServiceOperator`) answers a bucket
    upload with ``<name>.json`` (the result) and ``<name>.log`` (copied into the task log); the
    input is uploaded as ``<name>.json``.

    :param service_name: the OSCAR service; or
    :param hub_module: the AI4OS hub module the service runs.
    :param input_format: ``"raw"``, ``"deepaas"`` or ``"auto"`` (as for the synchronous run).
    :param deepaas_argument: the predict argument the file is given as.
    :param deepaas_arguments: other predict arguments, by name.
    :param via: ``"job"`` or ``"bucket"``.
    :param wait_for_completion: wait for the job (and its output); otherwise return at once.
    :param decode: ``"auto"`` (a prediction when the output is one, else its text or files),
        ``"prediction"``, ``"text"``, ``"files"`` or ``"none"`` (just the job).
    :param timeout: seconds to wait for the result; at the deadline the job is deleted.
    :param poll_interval: seconds between polls.
    :param fetch_logs: copy the job's log into the task log when it ends.
    :param live_logs: copy new log lines while the job runs (one log read per poll at most).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param force_rerun: delete the job an earlier try submitted and submit afresh.
    :param state_path: ``bucket/prefix`` for the job records kept before OSCAR 4.1 and for
        uploads (default: the service's MinIO bucket, under ``.oscar-airflow/``).
    :param results_object: ``bucket/key`` for a result larger than ``results_threshold_bytes``
        (default: under the service's bucket); XCom then holds its summary.
    """

    template_fields = (
        "service_name",
        "hub_module",
        "input_path",
        "input_data",
        "input_object",
        "input_id",
        "deepaas_arguments",
        "results_object",
        "oscar_conn_id",
    )
    template_fields_renderers = {"input_data": "json"}
    operator_extra_links = (OscarJobLogsLink(), OscarOutputLink())

    def __init__(
        self,
        *,
        service_name: str | None = None,
        hub_module: str | None = None,
        input_format: InputFormat = "raw",
        deepaas_argument: str = DEFAULT_ARGUMENT,
        deepaas_arguments: Mapping[str, Any] | None = None,
        input_path: str | None = None,
        input_data: Any = None,
        input_object: str | None = None,
        input_id: str | None = None,
        via: Literal["job", "bucket"] = "job",
        wait_for_completion: bool = True,
        decode: str = "auto",
        timeout: float = 3600.0,
        poll_interval: float = 5.0,
        fetch_logs: bool = True,
        live_logs: bool = True,
        deferrable: bool = default_deferrable(),
        force_rerun: bool = False,
        state_path: str | None = None,
        results_object: str | None = None,
        results_threshold_bytes: int = DEFAULT_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if via not in ("job", "bucket"):
            raise ValueError(f"via must be 'job' or 'bucket', not {via!r}")
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {', '.join(DECODES)}, not {decode!r}")
        self.set_hub_options(
            service_name=service_name,
            hub_module=hub_module,
            input_format=input_format,
            deepaas_argument=deepaas_argument,
            deepaas_arguments=deepaas_arguments,
        )
        self.input_path = input_path
        self.input_data = input_data
        self.input_object = input_object
        self.input_id = input_id
        self.via = via
        self.wait_for_completion = wait_for_completion
        self.decode = decode
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.fetch_logs = fetch_logs
        self.live_logs = live_logs
        self.deferrable = deferrable
        self.force_rerun = force_rerun
        self.state_path = state_path
        self.results_object = results_object
        self.results_threshold_bytes = results_threshold_bytes
        self._submission: dict[str, Any] | None = None
        self._upload_name = ""  # the uploaded input's file name (via="bucket")

    # submission ---------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with task_outcome():
            self._check_one_input()
            self.resolve_name()
            identity = TaskIdentity.of(context)
            raw = self._read_input()
            data = self.shaped(raw, self._file_name(), f"input {self._input_id()!r}")
            self._upload_name = self._input_name()
            if data is not raw and not self._upload_name.endswith(".json"):
                self._upload_name += ".json"  # a dashboard deployment answers a .json input
            sub = run_coroutine(lambda: self._submit(context, identity, data))
            self._submission = sub
            self._persist_links(context, sub)
            verb = "submitted" if sub["created"] else "re-attached to"
            self.log.info(
                "%s OSCAR job %s of service %s", verb, sub["job"] or "(unnamed)", self.service_name
            )
            if not self.wait_for_completion:
                return {"service": self.service_name, **_public(sub), "status": "submitted"}
            deadline = time.time() + self.timeout
            if self.deferrable:
                self._defer(sub, deadline, log_lines=0)
            if sub["job"] is None:
                return self._finish(context, sub, self._wait_for_outputs(sub, deadline))
            info = self._wait_for_job(sub, deadline)
            return self._finish(context, sub, info)

    async def _submit(self, context: Context, identity: TaskIdentity, data: Any) -> dict[str, Any]:
        name, ident = self.service_name, identity.identity()
        async with self.hook.asession() as session:
            release = await session.arelease()
            cluster = session.settings.endpoint
            sub: dict[str, Any] = {"job": None, "input_object": None, "submitted": time.time()}
            known = None if self.force_rerun else remembered_job(context, cluster, name)
            recalled = bool(known and known.get("via") == self.via and known.get("job"))
            if known and recalled and known["job"] in await session.alist_jobs(name):
                return {**known, "created": False}
            if self.via == "job" and release.names_jobs:
                ref = await Correlator(session, logger=self.log).submit_named(
                    name, ident, data, force=self.force_rerun
                )
                sub.update(job=ref.job, created=ref.created)
            else:
                service = await session.aget_service(name)
                if service is None:
                    raise OscarClientError(
                        f"service {name!r} does not exist", status_code=404, service=name
                    )
                async with self.storage.as3() as s3:
                    sub.update(await self._correlated(session, s3, service, identity, data))
            sub.update(cluster=cluster, service=name, via=self.via)
            remember_job(context, **sub)
            return sub

    async def _correlated(
        self,
        session: OscarAsyncSession,
        s3: S3Session,
        service: Service,
        identity: TaskIdentity,
        data: Any,
    ) -> dict[str, Any]:
        """Submit under the service's lease (before 4.1, and uploads on every release)."""
        name, ident = self.service_name, identity.identity()
        if self.via == "job":
            correlator = Correlator(session, s3, self._state(service), logger=self.log)

            async def post() -> None:
                await session.asubmit_job(name, data)

            ref = await correlator.submit_listed(name, ident, post, force=self.force_rerun)
            return {"job": ref.job, "created": ref.created}
        folder, output = (
            _minio_folder(service, "input", name),
            _minio_folder(service, "output", name),
        )
        correlator = Correlator(session, s3, self._state(service), logger=self.log)
        token = identity.token()[:8]
        bucket, key = split_path(f"{folder}/{token}-{self._upload_name}")
        content = as_bytes(data)

        async def upload() -> None:
            await s3.put(bucket, key, content)

        async def unsent() -> bool:
            return await s3.stat(bucket, key) is None

        try:
            ref = await correlator.submit_listed(
                name, ident, upload, force=self.force_rerun, unsent=unsent
            )
        except CorrelationError as exc:  # the outputs, named after the key, still tell
            self.log.warning("%s; waiting for the outputs named after the input instead", exc)
            ref = JobRef(name, None, False)
        stat = await s3.stat(bucket, key)
        return {
            "job": ref.job,
            "created": ref.created,
            "input_object": f"{bucket}/{key}",
            "token": token,
            "output": output,
            "submitted": stat.last_modified.timestamp() if stat and stat.last_modified else None,
        }

    def _state(self, service: Service) -> StatePath:
        return state_path_for(service, self.state_path)

    def _persist_links(self, context: Context, sub: dict[str, Any]) -> None:
        endpoint = self.hook.settings.endpoint
        OscarJobLogsLink.persist(
            context, endpoint=endpoint, service=self.service_name, job=sub["job"]
        )
        if sub.get("output"):
            bucket, folder = split_path(sub["output"])
            OscarOutputLink.persist(
                context,
                endpoint=endpoint,
                service=self.service_name,
                bucket=bucket,
                key=f"{folder}/",
            )

    # waiting (in the worker: :class:`JobWaits`) -------------------------------------------

    def _defer(self, sub: dict[str, Any], deadline: float, *, log_lines: int) -> NoReturn:
        trigger: OscarJobTrigger | OscarOutputTrigger
        if sub["job"] is not None:
            trigger = OscarJobTrigger(
                service_name=self.service_name,
                job_name=sub["job"],
                oscar_conn_id=self.oscar_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                live_logs=self.live_logs,
                log_lines=log_lines,
                input_object=sub.get("input_object"),
            )
        else:
            trigger = OscarOutputTrigger(
                path=f"{sub['output']}/",
                prefix=True,
                contains=sub["token"],
                newer_than=sub["submitted"],
                oscar_conn_id=self.oscar_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                input_object=sub["input_object"],
            )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"submission": sub},
            timeout=timedelta(seconds=max(deadline - time.time(), 0) + 60),
        )

    # results ------------------------------------------------------------------------------

    def _finish(
        self, context: Context, sub: dict[str, Any], ended: JobInfo | list[str]
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "service": self.service_name,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "cluster": self.hook.settings.name,
            "input": self._input_id(),
            **self._origin(),
        }
        if isinstance(ended, JobInfo):
            result["job"] = ended.to_dict()
            logs = self.hook.get_job_logs(self.service_name, sub["job"])
            if self.fetch_logs or ended.status != "Succeeded":
                log_remote(self, f"OSCAR job {sub['job']} log", logs, skip=sub.get("log_lines", 0))
            if ended.status != "Succeeded":
                tail = "\n".join((logs or "").splitlines()[-20:])
                raise AirflowFailException(
                    f"OSCAR job {sub['job']} ended {ended.status}. Log tail:\n{tail}"
                )
            if self.via == "job":
                result.update(self._decoded(logs or "", sub["job"], empty=not logs))
                return self._offloaded(result)
            outputs = self._outputs(sub)
        else:
            outputs = ended
        result.update(token=sub["token"], outputs=outputs)
        for log in (o for o in outputs if o.endswith(".log")):  # a dashboard deployment's console
            log_remote(self, f"OSCAR output {log}", self.storage.download_bytes(log).decode())
        if self.decode != "none":
            if not outputs:
                raise AirflowFailException(
                    f"OSCAR job {sub['job']} succeeded but wrote no output containing "
                    f"{sub['token']!r} in {sub['output']}: the service's script must name its "
                    "outputs after the input file"
                )
            path = min(outputs, key=lambda o: (not o.endswith(".json"), o))
            result.update(self._decoded(self.storage.download_bytes(path), path, empty=False))
        return self._offloaded(result)

    def _outputs(self, sub: dict[str, Any]) -> list[str]:
        objects = self.storage.list_objects(f"{sub['output']}/")
        return [f"{o.bucket}/{o.key}" for o in matching(objects, sub["token"], sub["submitted"])]

    def _decoded(self, body: bytes | str, source: str, *, empty: bool) -> dict[str, Any]:
        if self.decode == "none":
            return {}
        if empty:
            raise AirflowFailException(f"OSCAR job {source} succeeded but left no log to read")
        try:
            answer = read_answer(body, self.decode, source=source)
        except UnexpectedOutput as exc:
            raw = "\n".join(f"{n}: {len(b)} bytes" for n, b in exc.files.items())
            raise AirflowFailException(
                f"OSCAR job {source} succeeded but printed no model result: {exc}\n"
                f"its raw output ({raw}) is in the job's log above"
            ) from exc
        fields = answer.fields
        if "files" in fields and answer.files:
            fields["content_base64"] = kept_inline(answer.files)
        return fields

    def _offloaded(self, result: dict[str, Any]) -> dict[str, Any]:
        def location() -> str | None:
            if self.results_object:
                return self.results_object
            name = (self._submission or {}).get("job") or self._input_id()
            return default_location(self.hook.get_service(self.service_name), name)

        return offload(
            result,
            threshold=self.results_threshold_bytes,
            location=location,
            storage=self.storage,
            log=self.log,
        )

    # resumption after deferral ------------------------------------------------------------

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        *,
        submission: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Resume after the job (or output) trigger fired."""
        event = event or {}
        sub = submission or {  # a deferral made by an earlier provider version
            "job": event.get("job"),
            "token": event.get("contains"),
            "output": str(event.get("path") or "").rstrip("/"),
            "submitted": None,
        }
        self._submission = sub
        job = sub.get("job") or "?"
        with task_outcome():
            self.resolve_name()
            status = event.get("status")
            if "objects" in event and status == "success":
                outputs = [f"{o['bucket']}/{o['key']}" for o in event["objects"]]
                return self._finish(context, sub, outputs)
            sub["log_lines"] = int(event.get("log_lines") or 0)
            if status in ("success", "failed"):
                return self._finish(context, sub, JobInfo(**event["info"]))
            if status == "missing":
                raise AirflowFailException(f"OSCAR job {job}: {event.get('message')}")
            if status == "gone":
                raise AirflowException(f"OSCAR job {job} was deleted before it finished")
            if status == "timeout" and sub.get("job"):
                self._give_up(job, str(event.get("message")))
            raise AirflowException(f"waiting for OSCAR job {job} failed: {event.get('message')}")

    execute_complete_bucket = execute_complete  # deferrals made by earlier provider versions

    def on_kill(self) -> None:
        """Delete the job (and an upload's input object) when the running task is killed."""
        sub = self._submission or {}
        if sub.get("job"):
            self.hook.delete_job(self.service_name, sub["job"])
        if sub.get("input_object"):
            self.storage.delete(sub["input_object"])


def _minio_folder(service: Service, kind: Literal["input", "output"], name: str) -> str:
    entries = [io for io in getattr(service, kind) or [] if io.provider_type == "minio"]
    if not entries:
        raise AirflowFailException(
            f"service {name!r} needs MinIO input and output paths for via='bucket' "
            f"(it has no MinIO {kind})"
        )
    return entries[0].path.strip("/")


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    """What a submission tells a downstream task (job name, or the upload's key and token)."""
    return {
        key: sub[key]
        for key in ("job", "input_object", "token", "output", "created")
        if sub.get(key) is not None
    }
