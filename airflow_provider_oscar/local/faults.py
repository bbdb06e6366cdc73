"""Fault injection for tests and benchmarks: what the embedded OSCAR should get wrong, and when.

A :class:`FaultPlan` is consulted by the HTTP layer (latency, error bursts, dropped
connections) and by the job runner (stuck and failing jobs). Each fault applies to requests
whose path starts with ``route`` (or to jobs of ``service``) and wears off after ``count`` uses
(``count: -1`` never wears off). The same plan is driven from Python or from the authenticated
``/local/faults`` route with one of the :data:`Fault` bodies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=1, ge=-1)

    @field_validator("count")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:  # 0 would never wear off: _take only counts down positive counts
            raise ValueError("count must be positive, or -1 for a fault that never wears off")
        return value


class Latency(_Fault):
    """Delay matching requests by ``seconds`` before they are handled."""

    kind: Literal["latency"] = "latency"
    route: str = "/"
    seconds: float = Field(gt=0, le=600)


class ErrorBurst(_Fault):
    """Answer matching requests with ``status`` (429 carries ``Retry-After: 1``)."""

    kind: Literal["error"] = "error"
    route: str = "/"
    status: Literal[429, 500, 502, 503, 504]


class Drop(_Fault):
    """Start a response to matching requests, then close the connection mid-body."""

    kind: Literal["drop"] = "drop"
    route: str = "/"


class StuckJobs(_Fault):
    """New jobs of ``service`` never start; they stay ``Pending`` (or ``Suspended``)."""

    kind: Literal["stuck"] = "stuck"
    service: str
    status: Literal["Pending", "Suspended"] = "Pending"


class FailingJobs(_Fault):
    """New jobs of ``service`` end ``Failed`` (the supervisor errors before the script runs)."""

    kind: Literal["fail"] = "fail"
    service: str


class DeploymentFault(_Fault):
    """``service``'s Knative service reports Ready=False: ``failed`` (no healthy pod) or
    ``degraded`` (some pods unhealthy), with ``reason``; its pods printed ``logs``. Until
    cleared."""

    kind: Literal["deployment"] = "deployment"
    count: int = Field(default=-1, ge=-1)
    service: str
    state: Literal["failed", "degraded"] = "failed"
    reason: str = "Revision failed: CrashLoopBackOff"
    logs: list[str] = Field(default_factory=list, max_length=1000)


class RotateToken(BaseModel):
    """Give ``service`` a new token now, as an update before OSCAR v4.0 does."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["rotate_token"] = "rotate_token"
    service: str


Fault = Annotated[
    Latency | ErrorBurst | Drop | StuckJobs | FailingJobs | DeploymentFault | RotateToken,
    Field(discriminator="kind"),
]
FAULT = TypeAdapter(Fault)
_F = TypeVar("_F", bound=_Fault)


class FaultPlan:
    """The active faults; thread-safe, consumed as requests and jobs arrive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, object]]:
        with self._lock:
            return [f.model_dump() for f in self._faults]

    def delay(self, path: str) -> float:
        hit = self._take(Latency, lambda f: path.startswith(f.route))
        return hit.seconds if hit else 0.0

    def error_status(self, path: str) -> int | None:
        hit = self._take(ErrorBurst, lambda f: path.startswith(f.route))
        return hit.status if hit else None

    def drops(self, path: str) -> bool:
        return self._take(Drop, lambda f: path.startswith(f.route)) is not None

    def stuck_status(self, service: str) -> str | None:
        hit = self._take(StuckJobs, lambda f: f.service == service)
        return hit.status if hit else None

    def fails(self, service: str) -> bool:
        return self._take(FailingJobs, lambda f: f.service == service) is not None

    def deployment_fault(self, service: str) -> DeploymentFault | None:
        return self._take(DeploymentFault, lambda f: f.service == service)

    def _take(self, kind: type[_F], matches: Callable[[_F], bool]) -> _F | None:
        with self._lock:
            for fault in self._faults:
                if isinstance(fault, kind) and matches(fault):
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            self._faults.remove(fault)
                    return fault
        return None
