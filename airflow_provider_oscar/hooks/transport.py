"""Sending the API's steps: a sync and an async driver with one retry policy.

Transient failures are retried with exponential backoff and jitter, bounded in attempts and
time: connection failures before a request was sent always; for idempotent requests also read
errors, dropped connections, 429 and 500/502/503/504 (job logs: not 500, which OSCAR answers
while a job has no pod); for invocations (``/run``, ``/job``), which must not run twice, only
429 and the 502/503 that Knative answers while the service is cold. ``Retry-After`` is
honoured; the jitter is as small as the backoff. Every invocation ends with one info line in
the task log: service, cluster, outcome, duration (retries included) and, for a ``/run`` that
answered a classification, its top prediction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from airflow_provider_oscar.errors import OscarApiError, OscarResultError, OscarRunCutError
from airflow_provider_oscar.hooks.api import ClusterSettings, Step, malformed_token
from airflow_provider_oscar.results import decode_prediction

T = TypeVar("T")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAYBE_SENT = (httpx.ReadTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
_RETRY_STATUS = {
    "idempotent": frozenset({429, 500, 502, 503, 504}),
    "logs": frozenset({429, 502, 503, 504}),
    "invoke": frozenset({429, 502, 503}),
    "never": frozenset(),
}
MAX_RETRY_AFTER = 60.0
MAX_TOTAL_SECONDS = 600.0
_PREDICTION_BYTES = 64 * 1024  # larger answers are not decoded for the log line


class RetryPolicy:
    """When and how long to retry one request."""

    def __init__(self, settings: ClusterSettings, log: logging.Logger | Any) -> None:
        self.settings = settings
        self.log = log
        # backoff * 2**(attempt - 1), at most 30 s, plus up to ``backoff`` of jitter; spelt
        # with strategies whose arguments every tenacity Airflow 3.1+ may bring has.
        self._backoff = wait_exponential(multiplier=settings.backoff, max=30.0) + wait_random(
            0, settings.backoff
        )

    def arguments(self, request: httpx.Request) -> dict[str, Any]:
        policy = request.extensions.get("oscar_retry", "idempotent")
        statuses = _RETRY_STATUS[policy]

        def transient_error(exc: BaseException) -> bool:
            return isinstance(exc, _NOT_SENT) or (
                policy in ("idempotent", "logs") and isinstance(exc, _MAYBE_SENT)
            )

        def transient_answer(response: httpx.Response) -> bool:
            # a 502 for a bearer token that is no JWT is no cold start: it stays 502
            return response.status_code in statuses and not malformed_token(response)

        return {
            "retry": retry_if_exception(transient_error) | retry_if_result(transient_answer),
            "stop": stop_after_attempt(self.settings.retries + 1)
            | stop_after_delay(MAX_TOTAL_SECONDS),
            "wait": self._wait,
            "before_sleep": self._note,
            "retry_error_callback": _last_outcome,
        }

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = outcome.result().headers.get("retry-after", "")
            if after.replace(".", "", 1).isdigit():
                return min(float(after), MAX_RETRY_AFTER)
        return float(self._backoff(state))

    def report(self, request: httpx.Request, started: float, attempts: int, outcome: Any) -> None:
        """One info line for an invocation (``/run``, ``/job``): what it was and how it ended."""
        if request.extensions.get("oscar_retry") != "invoke":
            return
        route, _, service = request.url.path.strip("/").partition("/")
        if isinstance(outcome, httpx.Response):
            result = f"answered {outcome.status_code}"
        else:
            result = f"failed ({type(outcome).__name__}: {outcome})"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        self.log.info(
            "OSCAR call: service %s on cluster %s, /%s %s in %.2f s%s%s",
            service,
            self.settings.name,
            route,
            result,
            time.monotonic() - started,
            tries,
            _top_prediction(route, outcome),
        )

    def _note(self, state: RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None
        if outcome.failed:
            what = f"{type(outcome.exception()).__name__}: {outcome.exception()}"
        else:
            what = f"HTTP {outcome.result().status_code}"
        request = state.args[0] if state.args else None
        target = f"{request.method} {request.url.path}" if request is not None else "request"
        self.log.warning(
            "OSCAR cluster %s: %s failed (%s); retry %d of %d in %.1f s",
            self.settings.name,
            target,
            what,
            state.attempt_number,
            self.settings.retries,
            state.upcoming_sleep,
        )


def _top_prediction(route: str, outcome: Any) -> str:
    """``"; top prediction <label> (<probability>)"`` for a classification ``/run`` answer."""
    if route != "run" or not isinstance(outcome, httpx.Response) or not outcome.is_success:
        return ""
    if len(outcome.content) > _PREDICTION_BYTES:
        return ""
    try:
        prediction = decode_prediction(outcome.content)
    except OscarResultError:  # console text, files: no classification to show
        return ""
    if not prediction.ok:
        return f"; the model answered an error: {prediction.message}"
    if not prediction.labels:
        return ""
    return f"; top prediction {prediction.labels[0]} ({prediction.probabilities[0]:.3f})"


def _last_outcome(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()  # the last response, or the last exception re-raised


def _unreachable(
    settings: ClusterSettings, request: httpx.Request, exc: httpx.HTTPError, seconds: float
) -> OscarApiError:
    target = f"{request.method} {request.url.path}"
    if request.extensions.get("oscar_invocation") == "run" and isinstance(exc, _MAYBE_SENT):
        if isinstance(exc, httpx.ReadTimeout):
            limit = (request.extensions.get("timeout") or {}).get("read") or seconds
            why = (
                f"no answer came within the run timeout ({limit:g} s, the connection's "
                "'run_timeout' or the operator's 'timeout')"
            )
        else:
            why = f"the connection closed after {seconds:.1f} s without an answer"
        return OscarRunCutError(
            f"OSCAR cluster {settings.name}: {target}: {why}. The run may have happened, so it "
            "is not sent again. OSCAR closes a synchronous run this way when it outlasts the "
            "server's write timeout (WRITE_TIMEOUT, 300 s by default), and a cold start counts "
            "against that time: warm the service (synchronous.min_scale: 1), run long "
            "inferences as jobs (OscarSubmitJobOperator), or raise WRITE_TIMEOUT"
        )
    return OscarApiError(
        f"OSCAR cluster {settings.name}: {target} failed: "
        f"{type(exc).__name__}: {exc or 'no answer'}"
    )


class Driver:
    """Runs steps over a blocking :class:`httpx.Client`."""

    def __init__(self, client: httpx.Client, policy: RetryPolicy) -> None:
        self.client = client
        self.policy = policy

    def __call__(self, step: Step[T]) -> T:
        try:
            request = next(step)
            while True:
                request = step.send(self.send(request))
        except StopIteration as done:
            return done.value

    def send(self, request: httpx.Request) -> httpx.Response:
        retrying = Retrying(**self.policy.arguments(request))
        started = time.monotonic()
        try:
            response = retrying(self._send_once, request)
        except httpx.HTTPError as exc:
            self.policy.report(request, started, _attempts(retrying), exc)
            elapsed = time.monotonic() - started
            raise _unreachable(self.policy.settings, request, exc, elapsed) from exc
        self.policy.report(request, started, _attempts(retrying), response)
        return response

    def _send_once(self, request: httpx.Request) -> httpx.Response:
        response = self.client.send(request, follow_redirects=_follows(request))
        response.read()
        return response


class AsyncDriver:
    """Runs steps over an :class:`httpx.AsyncClient`; never blocks the event loop."""

    def __init__(self, client: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self.client = client
        self.policy = policy

    async def __call__(self, step: Step[T]) -> T:
        try:
            request = next(step)
            while True:
                request = step.send(await self.send(request))
        except StopIteration as done:
            return done.value

    async def send(self, request: httpx.Request) -> httpx.Response:
        retrying = AsyncRetrying(**self.policy.arguments(request))
        started = time.monotonic()
        try:
            response: httpx.Response = await retrying(self._send_once, request)
        except httpx.HTTPError as exc:
            self.policy.report(request, started, _attempts(retrying), exc)
            elapsed = time.monotonic() - started
            raise _unreachable(self.policy.settings, request, exc, elapsed) from exc
        self.policy.report(request, started, _attempts(retrying), response)
        return response

    async def _send_once(self, request: httpx.Request) -> httpx.Response:
        response = await self.client.send(request, follow_redirects=_follows(request))
        await response.aread()
        return response


def _attempts(retrying: Retrying | AsyncRetrying) -> int:
    return int(retrying.statistics.get("attempt_number", 1))


def _follows(request: httpx.Request) -> bool:
    """Whether redirects are followed for this request (not when it carries a refresh token)."""
    return bool(request.extensions.get("oscar_follow_redirects", True))


def client_options(settings: ClusterSettings) -> dict[str, Any]:
    """Options shared by the sync and async clients of one cluster."""
    return {"verify": settings.verify_ssl, "timeout": settings.timeout, "follow_redirects": True}


Factory = Callable[[Any], Step[T]]
