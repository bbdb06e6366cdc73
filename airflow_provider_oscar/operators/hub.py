"""What the invoking operators and the readiness sensor share for hub services: finding the
service (``service_name`` or ``hub_module``), the input format, and the warm-up."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_oscar.deepaas import (
    DEFAULT_ARGUMENT,
    INPUT_FORMATS,
    DeepaasFile,
    InputFormat,
    deepaas_document,
    resolve_format,
)
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.hooks.hub import find_service
from airflow_provider_oscar.hooks.oscar import Input, OscarHook
from airflow_provider_oscar.operators.inputs import as_bytes
from airflow_provider_oscar.warmup import (
    WarmUp,
    check_warm_up,
    raise_min_scale,
    restore_min_scale,
    warm_by_call,
)

__all__ = ["WARM_UP_TIMEOUT", "HubTarget", "check_target"]

WARM_UP_TIMEOUT = 1800.0


def check_target(
    service_name: str | None, hub_module: str | None, input_format: str = "raw"
) -> None:
    """Refuse options that cannot work together (at DAG parse time)."""
    if (service_name is None) == (hub_module is None):
        raise ValueError("give exactly one of service_name and hub_module")
    if input_format not in INPUT_FORMATS:
        choices = ", ".join(INPUT_FORMATS)
        raise ValueError(f"input_format must be one of {choices}, not {input_format!r}")


class HubTarget:
    """The service an operator calls and how its input is shaped (a mixin).

    Expects ``hook``, ``log``, ``service_name``, ``hub_module``, ``input_format``,
    ``deepaas_argument``, ``deepaas_arguments``, ``warm_up`` and ``warm_up_timeout``.
    """

    hook: OscarHook
    log: Any
    service_name: str  # "" until a hub module is resolved
    hub_module: str | None
    input_format: InputFormat
    deepaas_argument: str
    deepaas_arguments: Mapping[str, Any] | None
    warm_up: WarmUp | None
    warm_up_timeout: float
    _target: Service | None = None

    def set_hub_options(
        self,
        *,
        service_name: str | None,
        hub_module: str | None,
        input_format: InputFormat = "raw",
        deepaas_argument: str = DEFAULT_ARGUMENT,
        deepaas_arguments: Mapping[str, Any] | None = None,
        warm_up: WarmUp | None = None,
        warm_up_timeout: float = WARM_UP_TIMEOUT,
    ) -> None:
        check_target(service_name, hub_module, input_format)
        check_warm_up(warm_up)
        self.service_name = service_name or ""
        self.hub_module = hub_module
        self.input_format = input_format
        self.deepaas_argument = deepaas_argument
        self.deepaas_arguments = deepaas_arguments
        self.warm_up = warm_up
        self.warm_up_timeout = warm_up_timeout

    def target(self) -> Service:
        """The service (found by its hub module when one is given), read once per task."""
        if self._target is None:
            self._target = find_service(
                self.hook, service_name=self.service_name or None, hub_module=self.hub_module
            )
            if self.hub_module is not None:
                self.log.info(
                    "hub module %s is OSCAR service %s on %s",
                    self.hub_module,
                    self._target.name,
                    self.hook.settings.name,
                )
        return self._target

    def resolve_name(self) -> str:
        """Set ``service_name`` to the service's name (a lookup only for a hub module)."""
        if not self.service_name:
            self.service_name = self.target().name
        return self.service_name

    def shaped(self, data: Input, name: str | None, what: str) -> Input:
        """The input as the service reads it: as is, or as a DEEPaaS ``oscar-files`` document
        with ``name`` giving the file's type."""
        service = self.target() if self.input_format == "auto" else None
        if resolve_format(self.input_format, service) == "raw":
            return data
        content = as_bytes(data)
        files = {self.deepaas_argument: DeepaasFile(name, content)}
        return deepaas_document(files, self.deepaas_arguments, what=what)

    def warmed(self) -> dict[str, Any] | None:
        """Warm the service up as ``warm_up`` asks; what was done (``None``: nothing)."""
        if self.warm_up == "call":
            deadline = time.time() + self.warm_up_timeout
            return warm_by_call(self.hook, self.target(), deadline=deadline, log=self.log)
        if self.warm_up == "min_scale":
            return raise_min_scale(self.hook, self.target())
        return None

    def cooled(self, warm_up: dict[str, Any] | None) -> None:
        """Put back what :meth:`warmed` changed."""
        if not warm_up or warm_up.get("warm_up") != "min_scale":
            return
        if restore_min_scale(self.hook, warm_up["service"]):
            self.log.info(
                "OSCAR service %s: min_scale put back to %s",
                warm_up["service"],
                warm_up["min_scale_before"],
            )
