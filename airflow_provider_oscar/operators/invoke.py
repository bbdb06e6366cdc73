"""Invoking OSCAR services: synchronously (``/run``) and as asynchronous jobs.

Results pushed to XCom stay small and JSON-plain: a normalised prediction, console text, or the
names and sizes of output files, never raw images. Large outputs are saved to a path or a
bucket and XCom holds where they went; a result over ``results_threshold_bytes`` goes to
``results_object`` whole (:mod:`~airflow_provider_oscar.operators.offload`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from airflow.sdk import Context

from airflow_provider_oscar.answers import (
    DECODES,
    Answer,
    UnexpectedOutput,
    kept_inline,
    read_answer,
)
from airflow_provider_oscar.assets import cluster_name, publish_objects
from airflow_provider_oscar.compat import AirflowException
from airflow_provider_oscar.deepaas import DEFAULT_ARGUMENT, InputFormat
from airflow_provider_oscar.errors import OscarResultError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.links import OscarServiceLink
from airflow_provider_oscar.operators.base import OscarBaseOperator
from airflow_provider_oscar.operators.hub import WARM_UP_TIMEOUT, HubTarget
from airflow_provider_oscar.operators.inputs import InputMixin, log_remote, save_files
from airflow_provider_oscar.operators.offload import DEFAULT_THRESHOLD, default_location, offload
from airflow_provider_oscar.operators.submit import OscarSubmitJobOperator
from airflow_provider_oscar.warmup import WarmUp

__all__ = ["OscarRunServiceOperator", "OscarSubmitJobOperator", "log_remote"]


class OscarRunServiceOperator(HubTarget, InputMixin, OscarBaseOperator):
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
    :param decode: ``"auto"`` (a prediction when the answer parses as one, else its text or
        files), ``"prediction"`` (a plant-classification style result, normalised; a model
        answering ``status: error`` fails the task; any other answer fails naming what was
        expected, its raw output saved first), ``"text"``, ``"files"`` or ``"none"``.
    :param output_path: save the output there (a file, or a folder for several files).
    :param output_object: save the output to ``bucket/key`` (``bucket/prefix`` for several).
    :param timeout: seconds to wait for the answer (default: the connection's ``run_timeout``).
    :param results_object: ``bucket/key`` for a result over ``results_threshold_bytes``
        (default: under the service's bucket); XCom then holds its summary.
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
        "results_object",
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
        decode: str = "auto",
        output_path: str | None = None,
        output_object: str | None = None,
        timeout: float | None = None,
        on_error: Literal["fail", "record"] = "fail",
        results_object: str | None = None,
        results_threshold_bytes: int = DEFAULT_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {', '.join(DECODES)}, not {decode!r}")
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
        self.results_object = results_object
        self.results_threshold_bytes = results_threshold_bytes

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
            try:
                answer = read_answer(response.body, self.decode, source=self.service_name)
            except UnexpectedOutput as exc:  # keep the raw output, then say what was expected
                raise OscarResultError(f"{exc}; {self._keep_raw(exc)}") from exc
            result: dict[str, Any] = {
                "service": name,
                **({"hub_module": self.hub_module} if self.hub_module else {}),
                "cluster": self.hook.settings.name,
                "input": self._input_id(),
                **self._origin(),
                "saved": self._save(answer),
            }
            result.update(answer.fields)
            if answer.files and not result["saved"] and "files" in answer.fields:
                result["content_base64"] = kept_inline(answer.files)  # nowhere else to keep
            if self.output_object and self.outlets:  # oscar:// outlets learn what was written
                prefix = self.output_object.rstrip("/")
                publish_objects(
                    context,
                    [s for s in result["saved"] if s == prefix or s.startswith(f"{prefix}/")],
                    cluster=cluster_name(self.hook.settings, self.oscar_conn_id),
                    extra={"service": self.service_name, "input": result["input"]},
                )
            return offload(
                result,
                threshold=self.results_threshold_bytes,
                location=self._results_location,
                storage=self.storage,
                log=self.log,
            )

    def _save(self, answer: Answer) -> list[str]:
        """Save the output files where asked; every destination is checked first."""
        if not (self.output_path or self.output_object) or not answer.files:
            return []
        return save_files(
            answer.files,
            several=answer.several,
            output_path=self.output_path,
            output_object=self.output_object,
            storage=self.storage if self.output_object else None,
        )

    def _keep_raw(self, exc: UnexpectedOutput) -> str:
        """Save an output that did not decode; where it went (or why it could not be kept)."""
        answer = Answer({}, exc.files, exc.several)
        saved = self._save(answer)
        if not saved:
            location = self._results_location()
            if location:
                self.storage.upload_bytes(location, b"".join(exc.files.values()))
                saved = [location]
        if saved:
            return f"the raw output was saved to {', '.join(saved)}"
        sizes = ", ".join(f"{n} ({len(b)} bytes)" for n, b in exc.files.items())
        return f"the raw output ({sizes}) had nowhere to go: set output_path or output_object"

    def _results_location(self) -> str | None:
        if self.results_object:
            return self.results_object
        name = f"{self.task_id}-{self._input_id()}"
        return default_location(self.hook.get_service(self.service_name), name)
