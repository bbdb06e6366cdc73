"""Warming a service up before the calls that matter, so a cold start does not cut them.

A synchronous call to a service scaled to zero waits for Knative to start a pod, and on a cold
node for the image to be pulled (2-3 GB for the AI4OS models): longer than OSCAR's write
timeout (``WRITE_TIMEOUT``, 300 s, grycap/oscar ``pkg/types/config.go``), after which the
connection closes without an answer. Two ways out:

* ``"call"``: send a cheap call and send it again, as long as it is cut or times out, until
  an answer comes back; the pod is then up and the next calls find it warm (Knative keeps it
  for its scale-to-zero grace period). For a service deployed from the AI4OS dashboard the call
  is the empty document ``{}``: the script starts DEEPaaS, which answers at once that no input
  was given;
* ``"min_scale"``: raise the service's ``synchronous.min_scale`` (Knative's
  ``autoscaling.knative.dev/min-scale``) so a pod stays up for the run, and put it back after
  (:func:`restore_min_scale`). Updating a service makes Knative start a new revision, so wait
  for the deployment to be ready again (the readiness sensor does).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from airflow_provider_oscar.deepaas import is_papi_service
from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.fdl import Service, Synchronous
from airflow_provider_oscar.hooks.oscar import Input, OscarHook

__all__ = ["WARM_UPS", "WarmUp", "raise_min_scale", "restore_min_scale", "warm_by_call"]

WarmUp = Literal["call", "min_scale"]
WARM_UPS: tuple[WarmUp, ...] = ("call", "min_scale")
RETRY_INTERVAL = 5.0  # seconds between warm-up calls that were cut
#: The service label that holds the ``min_scale`` a warm-up raised, until it is put back.
MIN_SCALE_LABEL = "airflow-provider-oscar/min-scale-before"


def check_warm_up(value: str | None) -> None:
    """Refuse a ``warm_up`` option that is not ``None``, ``"call"`` or ``"min_scale"``."""
    if value is not None and value not in WARM_UPS:
        raise ValueError(f"warm_up must be None, 'call' or 'min_scale', not {value!r}")


def warm_up_input(service: Service) -> Input:
    """The cheap input of a warm-up call: ``{}`` for a dashboard deployment, else nothing."""
    return {} if is_papi_service(service) else b""


def warm_by_call(
    hook: OscarHook,
    service: Service,
    *,
    deadline: float,
    log: Any,
    data: Input | None = None,
    call_timeout: float | None = None,
    interval: float = RETRY_INTERVAL,
) -> dict[str, Any]:
    """Call ``service`` until an answer comes back (whatever the script answered).

    A call that is cut or times out is sent again after ``interval`` seconds until
    ``deadline`` (epoch seconds), then the last error is raised; a refusal (4xx) is raised at
    once. Returns how it went: ``{"warm_up": "call", "attempts", "seconds", "status_code"}``.
    """
    data = warm_up_input(service) if data is None else data
    started, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        try:
            response = hook.run_service(service.name, data, timeout=call_timeout)
        except OscarClientError:
            raise
        except OscarApiError as exc:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise
            log.info(
                "warm-up call %d of %s got no answer (%s); calling again",
                attempts,
                service.name,
                exc,
            )
            time.sleep(min(interval, remaining))
            continue
        seconds = round(time.monotonic() - started, 3)
        log.info("OSCAR service %s answered its warm-up call after %.1f s", service.name, seconds)
        return {
            "warm_up": "call",
            "attempts": attempts,
            "seconds": seconds,
            "status_code": response.status_code,
        }


def raise_min_scale(hook: OscarHook, service: Service, min_scale: int = 1) -> dict[str, Any]:
    """Keep at least ``min_scale`` pods of ``service`` up until :func:`restore_min_scale`.

    The value found is kept in the service's label :data:`MIN_SCALE_LABEL`, so raising again
    (a rescheduled sensor, a retry) changes nothing and the restore finds it wherever it runs.
    Nothing changes when the service already keeps that many pods.
    """
    labels = service.labels or {}
    if MIN_SCALE_LABEL in labels:
        before = int(labels[MIN_SCALE_LABEL])
    else:
        before = service.synchronous.min_scale
        if before < min_scale:
            hook.apply_service(
                _with_min_scale(service, min_scale, {**labels, MIN_SCALE_LABEL: str(before)})
            )
    return {"warm_up": "min_scale", "service": service.name, "min_scale_before": before}


def restore_min_scale(hook: OscarHook, name: str) -> bool:
    """Put back the ``min_scale`` :func:`raise_min_scale` found; whether anything changed."""
    service = hook.get_service(name)
    labels = dict((service.labels if service else None) or {})
    if service is None or MIN_SCALE_LABEL not in labels:
        return False
    before = int(labels.pop(MIN_SCALE_LABEL))
    hook.apply_service(_with_min_scale(service, before, labels))
    return True


def _with_min_scale(service: Service, min_scale: int, labels: dict[str, str]) -> Service:
    synchronous = Synchronous(min_scale=min_scale, max_scale=service.synchronous.max_scale)
    return service.model_copy(update={"synchronous": synchronous, "labels": labels})
