"""Invoking OSCAR services: synchronously (``/run``) and as asynchronous jobs.

Results pushed to XCom stay small and JSON-plain: a normalised prediction, console text, or the
names and sizes of output files, never raw images. Large outputs are saved to a path or a
bucket and XCom holds where they went.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

from airflow.sdk import Context

from airflow_provider_oscar.assets import cluster_name, publish_objects
from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.deepaas import DEFAULT_ARGUMENT, InputFormat
from airflow_provider_oscar.errors import OscarClientError, OscarResultError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.fdl import job_prefix
from airflow_provider_oscar.hooks.api import JobInfo
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.links import OscarJobLogsLink, OscarOutputLink, OscarServiceLink
from airflow_provider_oscar.operators.base import OscarBaseOperator, default_deferrable
from airflow_provider_oscar.operators.hub import WARM_UP_TIMEOUT, HubTarget
from airflow_provider_oscar.results import RunOutput, decode_prediction, decode_run_body
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger
from airflow_provider_oscar.triggers.storage import OscarOutputTrigger, matching
from airflow_provider_oscar.warmup import WarmUp

OutputKind = Literal["prediction", "text", "files"]
LOG_CHUNK_LINES = 200
_NAMESPACE = uuid.UUID("6f1c0f5e-3b7a-4d61-9a59-0c5f1d3f0a11")
_TEXT_LIMIT = 64 * 1024


class _InputMixin:
    """One input from exactly one of a local file, inline data or a bucket object."""

    input_path: str | None
    input_data: Any
    input_object: str | None
    input_id: str | None
    oscar_conn_id: str

    def _check_one_input(self) -> None:
        given = [
            n for n in ("input_path", "input_data", "input_object") if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise AirflowFailException(
                f"give exactly one of input_path, input_data, input_object (got {given or 'none'})"
            )

    @cached_property
    def storage(self) -> OscarStorageHook:
        return OscarStorageHook(self.oscar_conn_id)

    def _input_name(self) -> str:
        """A file name for the input (what scripts see as its basename)."""
        if self.input_path is not None:
            return Path(self.input_path).name
        if self.input_object is not None:
            return PurePosixPath(self.input_object).name
        return "input.json" if isinstance(self.input_data, Mapping | list) else "input"

    def _file_name(self) -> str | None:
        """The input's own file name: none for inline bytes or text (their type is sniffed)."""
        if self.input_data is not None and not isinstance(self.input_data, Mapping | list):
            return None
        return self._input_name()

    def _input_id(self) -> str:
        """How results name this input: ``input_id``, or the input's file name without suffix."""
        return self.input_id or PurePosixPath(self._input_name()).stem

    def _origin(self) -> dict[str, Any]:
        """Where the input came from, for the results page (the object, never its bytes)."""
        if self.input_object is None:
            return {}
        return {"input_object": self.input_object, "oscar_conn_id": self.oscar_conn_id}

    def _read_input(self) -> bytes | str | Mapping[str, Any] | list[Any]:
        """The input's content."""
        self._check_one_input()
        if self.input_path is not None:
            path = Path(self.input_path)
            if not path.is_file():
                raise AirflowFailException(f"input_path {self.input_path!r} is not a file")
            return path.read_bytes()
        if self.input_object is not None:
            return self.storage.download_bytes(self.input_object)
        data = self.input_data
        if isinstance(data, str) and data.lstrip().startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                data = json.loads(data)  # a rendered template of a JSON document
        if not isinstance(data, bytes | str | Mapping | list):
            raise AirflowFailException(
                f"input_data must be bytes, text or a JSON document, not {type(data).__name__}"
            )
        return data


def _as_bytes(data: bytes | str | Mapping[str, Any] | list[Any]) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data).encode()


def log_remote(operator: OscarBaseOperator, title: str, text: str | None) -> None:
    """Copy a remote log into the task log in chunks (huge single records get dropped)."""
    if not text:
        operator.log.info("%s: (empty)", title)
        return
    lines = text.splitlines()
    for start in range(0, len(lines), LOG_CHUNK_LINES):
        chunk = "\n".join(lines[start : start + LOG_CHUNK_LINES])
        operator.log.info(
            "%s [lines %d-%d]:\n%s", title, start + 1, start + len(chunk.splitlines()), chunk
        )


class OscarRunServiceOperator(HubTarget, _InputMixin, OscarBaseOperator):
    """Invoke a service synchronously (``POST /run``) and return its decoded result.

    :param service_name: the OSCAR service; or
    :param hub_module: the AI4OS hub module the service runs (its image ``ai4oshub/<module>``
        or its ``PAPI_TITLE``): the one service of the cluster running it is called.
    :param input_format: ``"raw"`` (the input as it is), ``"deepaas"`` (the input as a file of
        the JSON document that services deployed from the AI4OS dashboard read, its type from
        its name or content) or ``"auto"`` (``deepaas`` for such a service, else ``raw``).
    :param deepaas_argument: the predict argument the file is given as (``files`` for the AI4OS
        image classifiers).
    :param deepaas_arguments: other predict arguments, by name.
    :param warm_up: ``"call"`` (call the service until it answers, through the cuts of a cold
        start, before the real call) or ``"min_scale"`` (keep a pod up during the call).
    :param warm_up_timeout: seconds the warm-up may take.
    :param input_path: a local file to send; or
    :param input_data: bytes, text or a JSON document to send; or
    :param input_object: ``bucket/key`` of an object to send.
    :param input_id: how the result names the input (default: the file name without suffix).
    :param decode: ``"prediction"`` (a plant-classification style result, normalised; a model
        answering ``status: error`` fails the task), ``"text"`` or ``"files"``.
    :param output_path: save the output there (a file, or a folder for several files).
    :param output_object: save the output to ``bucket/key`` (``bucket/prefix`` for several).
    :param timeout: seconds to wait for the answer (default: the connection's ``run_timeout``).
    :param on_error: ``"fail"`` the task, or ``"record"`` the failure as the result (a
        prediction with status ``error``), so an ensemble downstream counts the model as
        missing for this input instead of losing its answer altogether. The hook's retries of
        transient failures apply first; the task's own ``retries`` do not apply to recorded
        failures.
    """

    template_fields = (
        "service_name",
        "hub_module",
        "input_path",
        "input_data",
        "input_object",
        "input_id",
        "deepaas_arguments",
        "output_path",
        "output_object",
        "oscar_conn_id",
    )
    template_fields_renderers = {"input_data": "json"}
    operator_extra_links = (OscarServiceLink(),)

    def __init__(
        self,
        *,
        service_name: str | None = None,
        hub_module: str | None = None,
        input_format: InputFormat = "raw",
        deepaas_argument: str = DEFAULT_ARGUMENT,
        deepaas_arguments: Mapping[str, Any] | None = None,
        warm_up: WarmUp | None = None,
        warm_up_timeout: float = WARM_UP_TIMEOUT,
        input_path: str | None = None,
        input_data: Any = None,
        input_object: str | None = None,
        input_id: str | None = None,
        decode: OutputKind = "prediction",
        output_path: str | None = None,
        output_object: str | None = None,
        timeout: float | None = None,
        on_error: Literal["fail", "record"] = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if decode not in ("prediction", "text", "files"):
            raise ValueError(f"decode must be 'prediction', 'text' or 'files', not {decode!r}")
        self.set_hub_options(
            service_name=service_name,
            hub_module=hub_module,
            input_format=input_format,
            deepaas_argument=deepaas_argument,
            deepaas_arguments=deepaas_arguments,
            warm_up=warm_up,
            warm_up_timeout=warm_up_timeout,
        )
        self.input_path = input_path
        self.input_data = input_data
        self.input_object = input_object
        self.input_id = input_id
        self.decode = decode
        self.output_path = output_path
        self.output_object = output_object
        self.timeout = timeout
        if on_error not in ("fail", "record"):
            raise ValueError(f"on_error must be 'fail' or 'record', not {on_error!r}")
        self.on_error = on_error

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._invoke(context)
        except AirflowException as exc:
            if self.on_error != "record":
                raise
            self.log.warning("recording the failure as this input's result: %s", exc)
            return self._failure(str(exc))

    def _failure(self, reason: str) -> dict[str, Any]:
        """A result saying the call failed: an ensemble counts the model as missing there."""
        try:
            cluster = self.hook.settings.name
        except Exception:
            cluster = self.oscar_conn_id  # the connection itself is what failed
        message = reason[:1000]
        service = self.service_name or self.hub_module
        return {
            "service": service,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "cluster": cluster,
            "input": self._input_id(),
            **self._origin(),
            "saved": [],
            "error": message,
            "prediction": {
                "status": "error",
                "labels": [],
                "probabilities": [],
                "message": message,
                "source": service,
            },
        }

    def _invoke(self, context: Context) -> dict[str, Any]:
        with task_outcome():
            endpoint = self.hook.settings.endpoint
            name = self.resolve_name()
            OscarServiceLink.persist(context, endpoint=endpoint, service=name)
            what = f"input {self._input_id()!r}"
            data = self.shaped(self._read_input(), self._file_name(), what)
            warm_up = self.warmed()
            try:
                response = self.hook.run_service(name, data, timeout=self.timeout)
            finally:
                self.cooled(warm_up)
            if response.status_code != 200:
                raise AirflowException(
                    f"service {self.service_name!r} answered {response.status_code}: "
                    f"{response.body[:500].decode(errors='replace')}"
                )
            output = decode_run_body(response.body)
            summary = self._summary(output, response.body)  # a failed inference saves nothing
            result: dict[str, Any] = {
                "service": name,
                **({"hub_module": self.hub_module} if self.hub_module else {}),
                "cluster": self.hook.settings.name,
                "input": self._input_id(),
                **self._origin(),
                "saved": self._save(output),
            }
            result.update(summary)
            if self.output_object and self.outlets:  # oscar:// outlets learn what was written
                prefix = self.output_object.rstrip("/")
                publish_objects(
                    context,
                    [s for s in result["saved"] if s == prefix or s.startswith(f"{prefix}/")],
                    cluster=cluster_name(self.hook.settings, self.oscar_conn_id),
                    extra={"service": self.service_name, "input": result["input"]},
                )
            return result

    def _summary(self, output: RunOutput, body: bytes) -> dict[str, Any]:
        if self.decode == "prediction":
            prediction = decode_prediction(body, source=self.service_name).raise_for_status()
            return {"prediction": prediction.to_dict()}
        if self.decode == "text":
            text = (
                output.text
                if output.text is not None
                else (output.data or b"").decode(errors="replace")
            )
            return {"text": text[:_TEXT_LIMIT], "truncated": len(text) > _TEXT_LIMIT}
        files = _files_of(output)
        return {"files": {n: len(b) for n, b in files.items()}}

    def _save(self, output: RunOutput) -> list[str]:
        """Save the output files; every destination is checked before anything is written."""
        files = _files_of(output)
        several = output.kind == "archive"
        paths: list[tuple[Path, bytes]] = []
        objects: list[tuple[str, bytes]] = []
        if self.output_path:
            target = Path(self.output_path)
            paths = [(_inside(target, n) if several else target, b) for n, b in files.items()]
        if self.output_object:
            bucket, key = split_path(self.output_object)
            objects = [
                (f"{bucket}/{_key_inside(bucket, key, n) if several else key}", b)
                for n, b in files.items()
            ]
        for path, content in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for object_path, content in objects:
            self.storage.upload_bytes(object_path, content)
        return [str(p) for p, _ in paths] + [o for o, _ in objects]


def _files_of(output: RunOutput) -> dict[str, bytes]:
    if output.kind == "archive":
        return dict(output.files)
    if output.kind == "file":
        return {"output": output.data or b""}
    return {"output.txt": (output.text or "").encode()}


def _inside(folder: Path, name: str) -> Path:
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise OscarResultError(f"output file name {name!r} would leave {folder}")
    return path


def _key_inside(bucket: str, prefix: str, name: str) -> str:
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise OscarResultError(f"output file name {name!r} would leave {bucket}/{prefix}")
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


class OscarSubmitJobOperator(HubTarget, _InputMixin, OscarBaseOperator):
    """Run a service asynchronously and (optionally) wait for the result without a worker.

    ``via="job"`` posts the input to ``/job`` under a job name derived from the DAG, run, task,
    map index and try (``X-Delegated-Job-ID``; when a cluster ignores it, the job is found by
    comparing job lists); the result is read from the job's log. ``via="bucket"`` uploads the
    input into the service's input folder under a key derived from the same identifiers, which
    starts the job as any upload does; the result is the output object whose name contains that
    key's token. Either way ``Succeeded`` alone is not trusted: the model's output decides.

    A service deployed from the AI4OS dashboard (``hub_module``, ``input_format``: see
    :class:`OscarRunServiceOperator`) answers a bucket upload with ``<name>.json`` (the result)
    and ``<name>.log`` (copied into the task log); the input is uploaded as ``<name>.json``.

    :param service_name: the OSCAR service; or
    :param hub_module: the AI4OS hub module the service runs.
    :param input_format: ``"raw"``, ``"deepaas"`` or ``"auto"`` (as for the synchronous run).
    :param deepaas_argument: the predict argument the file is given as.
    :param deepaas_arguments: other predict arguments, by name.
    :param wait_for_completion: wait for the job (and its output); otherwise return at once.
    :param decode: ``"prediction"`` (decoded and normalised; ``status: error`` fails the task)
        or ``"none"`` (just the job).
    :param timeout: seconds to wait for the result.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    """

    template_fields = (
        "service_name",
        "hub_module",
        "input_path",
        "input_data",
        "input_object",
        "input_id",
        "deepaas_arguments",
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
        decode: Literal["prediction", "none"] = "prediction",
        timeout: float = 3600.0,
        poll_interval: float = 5.0,
        fetch_logs: bool = True,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if via not in ("job", "bucket"):
            raise ValueError(f"via must be 'job' or 'bucket', not {via!r}")
        if decode not in ("prediction", "none"):
            raise ValueError(f"decode must be 'prediction' or 'none', not {decode!r}")
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
        self.deferrable = deferrable
        self._job_name: str | None = None

    # submission ---------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with task_outcome():
            self.resolve_name()
            token = self._token(context)
            name = self._input_name()
            raw = self._read_input()
            data = self.shaped(raw, self._file_name(), f"input {self._input_id()!r}")
            if data is not raw and not name.endswith(".json"):
                name += ".json"  # a dashboard deployment saves its answer for a .json input
            deadline = time.time() + self.timeout
            if self.via == "job":
                return self._via_job(context, token, data, deadline)
            return self._via_bucket(context, token, data, name, deadline)

    def _token(self, context: Context) -> str:
        ti = context["ti"]
        parts = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)
        return str(uuid.uuid5(_NAMESPACE, "|".join(map(str, parts))))

    def _via_job(self, context: Context, token: str, data: Any, deadline: float) -> dict[str, Any]:
        wanted = f"{job_prefix(self.service_name)}-{token}"
        self._job_name = wanted  # on_kill can delete it from the moment it is submitted
        before = self.hook.list_jobs(self.service_name)
        if wanted not in before:
            self.hook.submit_job(self.service_name, data, job_name=wanted)
        job = self._find_job(wanted, before)
        self._job_name = job
        self.log.info("submitted OSCAR job %s of service %s", job, self.service_name)
        OscarJobLogsLink.persist(
            context, endpoint=self.hook.settings.endpoint, service=self.service_name, job=job
        )
        if not self.wait_for_completion:
            return {"service": self.service_name, "job": job, "status": "submitted"}
        if self.deferrable:
            self.defer(
                trigger=OscarJobTrigger(
                    service_name=self.service_name,
                    job_name=job,
                    oscar_conn_id=self.oscar_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout + 60),
            )
        info = self._wait_for_job(job, deadline)
        return self._finish_job(job, info)

    def _find_job(self, wanted: str, before: Mapping[str, JobInfo]) -> str:
        """The submitted job: the requested name, or the one new job in the list."""
        for _ in range(10):
            after = self.hook.list_jobs(self.service_name)
            if wanted in after:
                return wanted
            new = sorted(set(after) - set(before))
            if len(new) == 1:
                self.log.warning("the cluster ignored X-Delegated-Job-ID; using %s", new[0])
                return new[0]
            if len(new) > 1:
                raise AirflowException(
                    f"the cluster ignored X-Delegated-Job-ID and {len(new)} jobs of "
                    f"{self.service_name!r} started at once; use via='bucket' to correlate"
                )
            time.sleep(0.5)
        raise AirflowException(f"the job submitted to {self.service_name!r} never appeared")

    def _wait_for_job(self, job: str, deadline: float) -> JobInfo:
        while True:
            try:
                jobs = self.hook.list_jobs(self.service_name)
            except OscarClientError as exc:
                if exc.status_code != 404:
                    raise
                raise AirflowFailException(
                    f"OSCAR job {job}: service {self.service_name!r} no longer exists: {exc}"
                ) from exc
            info = jobs.get(job)
            if info is None:
                raise AirflowException(f"OSCAR job {job} disappeared before it finished")
            if info.finished:
                return info
            if time.time() >= deadline:
                self._give_up(job, f"still {info.status} after {self.timeout:g} s")
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.time())))

    def _give_up(self, job: str, why: str) -> NoReturn:
        """Delete a job that outlived the wait (so a retry never runs twice), then fail."""
        self.hook.delete_job(self.service_name, job)
        raise AirflowException(f"OSCAR job {job} {why}; the job was deleted")

    def _finish_job(self, job: str, info: JobInfo) -> dict[str, Any]:
        logs = self.hook.get_job_logs(self.service_name, job)
        if self.fetch_logs or info.status != "Succeeded":
            log_remote(self, f"OSCAR job {job} log", logs)
        if info.status != "Succeeded":
            tail = "\n".join((logs or "").splitlines()[-20:])
            raise AirflowFailException(f"OSCAR job {job} ended {info.status}. Log tail:\n{tail}")
        result: dict[str, Any] = {
            "service": self.service_name,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "cluster": self.hook.settings.name,
            "input": self._input_id(),
            **self._origin(),
            "job": info.to_dict(),
        }
        if self.decode == "prediction":
            if not logs:
                raise AirflowFailException(f"OSCAR job {job} succeeded but left no log to read")
            try:
                prediction = decode_prediction(logs, source=job).raise_for_status()
            except OscarResultError as exc:
                raise AirflowFailException(
                    f"OSCAR job {job} succeeded but printed no model result: {exc}"
                ) from exc
            result["prediction"] = prediction.to_dict()
        return result

    # bucket submission --------------------------------------------------------------------

    def _via_bucket(
        self, context: Context, token: str, data: Any, name: str, deadline: float
    ) -> dict[str, Any]:
        service = self.hook.get_service(self.service_name)
        if service is None:
            raise OscarClientError(f"service {self.service_name!r} does not exist")
        inputs = [io for io in service.input or [] if io.provider_type == "minio"]
        outputs = [io for io in service.output or [] if io.provider_type == "minio"]
        if not inputs or not outputs:
            raise AirflowFailException(
                f"service {self.service_name!r} needs MinIO input and output paths for via='bucket'"
            )
        stem = token.split("-")[0]
        key = f"{inputs[0].path}/{stem}-{name}"
        out = outputs[0].path
        submitted = time.time()
        self.storage.upload_bytes(key, _as_bytes(data))
        out_bucket, out_folder = split_path(out)
        OscarOutputLink.persist(
            context,
            endpoint=self.hook.settings.endpoint,
            service=self.service_name,
            bucket=out_bucket,
            key=f"{out_folder}/",
        )
        self.log.info(
            "uploaded the input to %s; waiting for outputs containing %r in %s", key, stem, out
        )
        if not self.wait_for_completion:
            return {
                "service": self.service_name,
                "input": key,
                "token": stem,
                "status": "submitted",
            }
        if self.deferrable:
            self.defer(
                trigger=OscarOutputTrigger(
                    path=out,
                    prefix=True,
                    contains=stem,
                    newer_than=submitted,
                    oscar_conn_id=self.oscar_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                ),
                method_name="execute_complete_bucket",
                timeout=timedelta(seconds=self.timeout + 60),
            )
        while True:
            found = matching(self.storage.list_objects(out), stem, submitted)
            if found:
                return self._finish_bucket(out, stem, [o.key for o in found])
            if time.time() >= deadline:
                raise AirflowException(
                    f"no output containing {stem!r} in {out} after {self.timeout:g} s"
                )
            time.sleep(self.poll_interval)

    def _finish_bucket(self, output_path: str, token: str, keys: list[str]) -> dict[str, Any]:
        bucket, _ = split_path(output_path)
        objects = [f"{bucket}/{k}" for k in keys]
        result: dict[str, Any] = {
            "service": self.service_name,
            **({"hub_module": self.hub_module} if self.hub_module else {}),
            "cluster": self.hook.settings.name,
            "input": self._input_id(),
            **self._origin(),
            "token": token,
            "outputs": objects,
        }
        for log in (o for o in objects if o.endswith(".log")):  # a dashboard deployment's console
            log_remote(self, f"OSCAR output {log}", self.storage.download_bytes(log).decode())
        if self.decode == "prediction":
            path = min(objects, key=lambda o: (not o.endswith(".json"), o))
            prediction = decode_prediction(self.storage.download_bytes(path), source=path)
            result["prediction"] = prediction.raise_for_status().to_dict()
        return result

    # resumption after deferral ------------------------------------------------------------

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after :class:`OscarJobTrigger` fired."""
        event = event or {}
        job = event.get("job", "?")
        self._job_name = job
        with task_outcome():
            self.resolve_name()
            if event.get("status") in ("success", "failed"):
                return self._finish_job(job, JobInfo(**event["info"]))
            if event.get("status") == "missing":
                raise AirflowFailException(f"OSCAR job {job}: {event.get('message')}")
            if event.get("status") == "timeout":
                self._give_up(job, str(event.get("message")))
            raise AirflowException(f"waiting for OSCAR job {job} failed: {event.get('message')}")

    def execute_complete_bucket(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after :class:`OscarOutputTrigger` fired (the event carries all state)."""
        event = event or {}
        with task_outcome():
            self.resolve_name()
            if event.get("status") == "success":
                keys = [o["key"] for o in event["objects"]]
                return self._finish_bucket(event["path"], event["contains"], keys)
            raise AirflowException(f"no output in {event.get('path')}: {event.get('message')}")

    def on_kill(self) -> None:
        """Delete the remote job when the running task is killed."""
        if self._job_name:
            self.hook.delete_job(self.service_name, self._job_name)
