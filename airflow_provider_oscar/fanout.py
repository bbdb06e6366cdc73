"""Fan-out of many inputs with asyncio: bounded concurrency, per-input retries, progress.

Pure asyncio, no Airflow and no HTTP: :func:`fan_out` runs an ``attempt`` coroutine for every
:class:`Item` with at most ``concurrency`` in flight (a fixed pool of workers pulling from one
iterator, so a million inputs never become a million tasks), retries an input whose attempt
failed with a retryable error (after ``retry_delay``, doubled per attempt), and reports every
input's :class:`Outcome` as it completes. With ``stop_on_failure`` the first input that fails
for good stops the fan-out: no new input starts and the ones in flight are cancelled.

:class:`Progress` writes a line at a steady rate: done/total, failures, rate and ETA.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_oscar.errors import PERMANENT

__all__ = [
    "AttemptError",
    "FanOutSummary",
    "Item",
    "Outcome",
    "Progress",
    "default_retryable",
    "fan_out",
    "format_duration",
]

MAX_RETRY_DELAY = 60.0


@dataclass(frozen=True)
class Item:
    """One input: its position, how results name it, and what the attempt needs to read it."""

    index: int
    name: str
    source: Any = None


class AttemptError(Exception):
    """An attempt failed; ``cluster`` says where (results record it), ``cause`` why."""

    def __init__(self, cause: BaseException, cluster: str | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.cluster = cluster


@dataclass(frozen=True)
class Outcome:
    """How one input ended: ``record`` is its compact, JSON-plain result."""

    item: Item
    ok: bool
    record: dict[str, Any]
    attempts: int
    seconds: float
    error: BaseException | None = None


@dataclass
class FanOutSummary:
    """Counts of a finished (or stopped) fan-out."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: bool = False
    first_failure: Outcome | None = None
    seconds: float = 0.0


def default_retryable(exc: BaseException) -> bool:
    """Retry what a new attempt may fix: not refusals, invalid inputs or model errors."""
    cause = exc.cause if isinstance(exc, AttemptError) else exc
    return not isinstance(cause, PERMANENT)


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 5 s"``, ``"2 h 7 min"``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(eq=False)
class Progress:
    """Counts completions and writes ``report(line)`` every ``interval`` seconds while running."""

    total: int
    report: Callable[[str], None]
    interval: float = 10.0
    label: str = "batch"
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    failed: int = 0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def add(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.done >= self.total:
            eta = "done"
        elif rate > 0:
            eta = f"ETA {format_duration((self.total - self.done) / rate)}"
        else:
            eta = "ETA unknown"
        return (
            f"{self.label}: {self.done}/{self.total} done, {self.failed} failed, "
            f"{rate:.1f} inputs/s, {format_duration(elapsed)} elapsed, {eta}"
        )

    async def run(self) -> None:
        """Report until cancelled (the fan-out cancels it when it ends)."""
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            self.report(self.line())


class _Stop(Exception):
    """Raised by a worker when an input failed for good and the fan-out must stop."""


async def fan_out(
    items: Iterable[Item],
    attempt: Callable[[Item, int], Awaitable[dict[str, Any]]],
    *,
    concurrency: int,
    retries: int = 2,
    retry_delay: float = 1.0,
    retryable: Callable[[BaseException], bool] = default_retryable,
    stop_on_failure: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FanOutSummary:
    """Run ``attempt(item, attempt_number)`` for every item, ``concurrency`` at a time.

    ``attempt`` returns the fields of a successful result (e.g. ``cluster``, ``prediction``);
    :func:`fan_out` adds ``index``, ``input``, ``status``, ``seconds`` and, after retries,
    ``attempts``. A failure's record has ``error`` instead (and ``cluster`` when the exception is
    an :class:`AttemptError` naming one). Unexpected exceptions in ``on_outcome`` propagate.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    summary = FanOutSummary()
    source = iter(items)
    started = clock()

    async def run_one(item: Item) -> Outcome:
        begin = clock()
        number = 0
        while True:
            number += 1
            try:
                fields = await attempt(item, number)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if number <= retries and retryable(exc):
                    delay = min(retry_delay * 2 ** (number - 1), MAX_RETRY_DELAY)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                return _failure(item, exc, number, clock() - begin)
            record = {"index": item.index, "input": item.name, "status": "ok", **fields}
            return _finish(item, record, number, clock() - begin)

    async def worker() -> None:
        for item in source:
            outcome = await run_one(item)
            summary.total += 1
            if outcome.ok:
                summary.succeeded += 1
            else:
                summary.failed += 1
                summary.first_failure = summary.first_failure or outcome
            if progress is not None:
                progress.add(outcome.ok)
            if on_outcome is not None:
                on_outcome(outcome)
            if not outcome.ok and stop_on_failure:
                raise _Stop

    reporter = asyncio.ensure_future(progress.run()) if progress is not None else None
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, _Stop):
                summary.stopped = True
            elif error is not None:
                raise error
    finally:
        for task in [*workers, *([reporter] if reporter else [])]:
            task.cancel()
        for task in [*workers, *([reporter] if reporter else [])]:
            with contextlib.suppress(asyncio.CancelledError, _Stop):
                await task
    summary.seconds = clock() - started
    return summary


def _finish(item: Item, record: dict[str, Any], attempts: int, seconds: float) -> Outcome:
    record["seconds"] = round(seconds, 3)
    if attempts > 1:
        record["attempts"] = attempts
    return Outcome(item, True, record, attempts, seconds)


def _failure(item: Item, exc: BaseException, attempts: int, seconds: float) -> Outcome:
    cause = exc.cause if isinstance(exc, AttemptError) else exc
    record: dict[str, Any] = {"index": item.index, "input": item.name}
    record["cluster"] = exc.cluster if isinstance(exc, AttemptError) else None
    record["status"] = "error"
    record["error"] = f"{type(cause).__name__}: {cause}"[:1000]
    record["seconds"] = round(seconds, 3)
    if attempts > 1:
        record["attempts"] = attempts
    return Outcome(item, False, record, attempts, seconds, cause)
