"""The deferrable batch, one step at a time (async mode, one cluster).

Each step runs in the worker for seconds: it records the jobs the trigger saw end (reading their
answers, checkpointing them, deleting the jobs), submits the next inputs up to ``concurrency``,
and defers again on :class:`~airflow_provider_oscar.triggers.batch.OscarJobsTrigger` with the
jobs in flight; the state between steps (jobs in flight, generations, attempts) travels in the
deferral's kwargs and the records in the checkpoint. A retry of the task starts again from the
checkpoint and re-attaches to the jobs its earlier steps left running.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.aio import run_coroutine
from airflow_provider_oscar.compat import AirflowException
from airflow_provider_oscar.errors import PERMANENT, OscarError
from airflow_provider_oscar.fanout import Item, Outcome
from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.operators.batch_clusters import Cluster
from airflow_provider_oscar.operators.batch_results import Results
from airflow_provider_oscar.operators.batch_run import (
    BatchRun,
    BatchState,
    JobFailed,
    JobTimedOut,
    failure_exception,
    split_done,
)
from airflow_provider_oscar.triggers.batch import OscarJobsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

FAILED_IDS_LIMIT = 1000


class _Stop(Exception):
    """An input failed for good with on_failure='fail': the deferrable batch stops."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class DeferrableSteps:
    """The steps of a deferrable batch, for :class:`OscarBatchInvokeOperator`."""

    def __init__(self, op: OscarBatchInvokeOperator) -> None:
        self.op = op
        self.log = self.op.log

    def step(
        self, context: Context, state: dict[str, Any] | None, event: dict[str, Any] | None
    ) -> dict[str, Any]:
        clusters = self.op._clusters()
        run = self.op._new_run(context, clusters, self.op._checkpoint_path(context, clusters[0]))
        inline = self.op._inline_items()
        after, records, stopped = run_coroutine(lambda: self._advance(run, state, event, inline))
        if stopped is not None:
            raise stopped
        if after.in_flight:
            deadline = min(after.deadlines.values())
            self.op.defer(
                trigger=OscarJobsTrigger(
                    service_name=self.op.service_name,
                    job_names=sorted(after.in_flight),
                    enough=max(1, len(after.in_flight) // 2),
                    oscar_conn_id=clusters[0].conn_id,
                    poll_interval=self.op.poll_interval,
                    deadline=deadline,
                ),
                method_name="execute_complete",
                kwargs={"state": after.to_json()},
                timeout=timedelta(seconds=max(deadline - time.time(), 0) + 60),
            )
        return self._publish_records(run, records)

    async def _advance(
        self,
        run: BatchRun,
        saved: dict[str, Any] | None,
        event: dict[str, Any] | None,
        inline: list[Item] | None,
    ) -> tuple[BatchState, list[dict[str, Any]], Exception | None]:
        state = BatchState.from_json(saved)
        run.generation = {int(k): v for k, v in state.generation.items()}
        stopped: Exception | None = None
        async with contextlib.AsyncExitStack() as stack:
            await run.open(stack, sized=saved is None and self.op.concurrency is None)
            cluster = run.clusters[0]
            items = {item.index: item for item in await self.op._items(run, inline)}
            if saved is None:
                state.concurrency = run.sized_concurrency()
            concurrency = state.concurrency
            try:
                await self._collect(run, cluster, state, event or {}, items)
                await run.flush()  # what was just recorded is done: never submitted again
                previous = await run.previous()
                _, todo = split_done(run, list(items.values()), previous)
                queue = [i for i in todo if i.index not in state.in_flight.values()]
                while queue and len(state.in_flight) < concurrency:
                    await self._submit_one(run, cluster, state, queue.pop(0))
            except _Stop as stop:
                stopped = stop.error
                await self._abandon(cluster, state)
            finally:
                state.generation = {str(k): v for k, v in run.generation.items()}
                await run.flush()
            records = [] if state.in_flight else list((await run.previous()).values())
        return state, records, stopped

    async def _collect(
        self,
        run: BatchRun,
        cluster: Cluster,
        state: BatchState,
        event: dict[str, Any],
        items: dict[int, Item],
    ) -> None:
        """Record the jobs the event says ended (or disappeared, or timed out)."""
        if event.get("status") == "error":
            raise AirflowException(f"waiting for the batch's jobs failed: {event.get('message')}")
        ended: dict[str, JobInfo | None] = {
            job: JobInfo(**info) for job, info in (event.get("ended") or {}).items()
        }
        ended.update({job: None for job in event.get("gone") or []})
        now = time.time()
        if event.get("status") == "timeout":
            ended.update(
                {j: None for j, d in state.deadlines.items() if d <= now and j not in ended}
            )
        for job, info in ended.items():
            index = state.in_flight.pop(job, None)
            deadline = state.deadlines.pop(job, now)
            if index is None:
                continue
            item = items[index]
            started = time.monotonic()
            try:
                if info is None and deadline <= now:
                    assert cluster.session is not None
                    await cluster.session.adelete_job(self.op.service_name, job)
                    raise JobTimedOut(
                        f"OSCAR job {job} did not end within {self.op.job_timeout:g} s"
                    )
                if info is None:
                    run.generation[index] = run.generation.get(index, 0) + 1
                    raise JobFailed(f"OSCAR job {job} is no longer in the job list")
                fields = await run.collect(cluster, index, job, info)
            except OscarError as exc:
                self._failed_attempt(run, state, item, exc)
                continue
            record = {"index": index, "input": item.name, "status": "ok", "cluster": cluster.name}
            record.update(job=job, **fields, seconds=round(time.monotonic() - started, 3))
            run.record(Outcome(item, True, record, state.attempts.get(str(index), 0) + 1, 0.0))

    def _failed_attempt(self, run: BatchRun, state: BatchState, item: Item, exc: Exception) -> None:
        key = str(item.index)
        state.attempts[key] = state.attempts.get(key, 0) + 1
        if (
            not isinstance(exc, (*PERMANENT, JobTimedOut))
            and state.attempts[key] <= self.op.input_retries
        ):
            self.log.warning("input %s: %s; trying it again", item.name, exc)
            return  # not recorded: the next step submits it again
        record = {"index": item.index, "input": item.name, "cluster": run.clusters[0].name}
        record.update(status="error", error=f"{type(exc).__name__}: {exc}"[:1000])
        outcome = Outcome(item, False, record, state.attempts[key], 0.0, exc)
        run.record(outcome)
        if self.op.on_failure == "fail":
            raise _Stop(failure_exception(outcome))

    async def _submit_one(
        self, run: BatchRun, cluster: Cluster, state: BatchState, item: Item
    ) -> None:
        try:
            job = await run.submit(cluster, item.index, await run.load(item))
        except OscarError as exc:
            self._failed_attempt(run, state, item, exc)
            return
        state.in_flight[job] = item.index
        state.deadlines[job] = time.time() + self.op.job_timeout

    async def _abandon(self, cluster: Cluster, state: BatchState) -> None:
        assert cluster.session is not None
        for job in list(state.in_flight):
            with contextlib.suppress(OscarError):
                await cluster.session.adelete_job(self.op.service_name, job)
        state.in_flight.clear()

    def _publish_records(self, run: BatchRun, records: list[dict[str, Any]]) -> dict[str, Any]:
        results = Results(
            self.op.results_threshold,
            self.op.results_threshold_bytes,
            spill=self.op.results_object is not None,
        )
        for record in sorted(records, key=lambda r: int(r["index"])):
            results.add({k: v for k, v in record.items() if k != "try"})
        failed = [str(r["input"]) for r in records if r.get("status") != "ok"]
        result: dict[str, Any] = {
            "service": self.op.service_name,
            "mode": self.op.mode,
            "total": len(records),
            "succeeded": len(records) - len(failed),
            "failed": len(failed),
            "failed_inputs": failed[:FAILED_IDS_LIMIT],
            "deferrable": True,
        }
        result.update(results.publish(self.op.results_object, self.op.storage, self.log))
        return result
