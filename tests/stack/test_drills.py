"""Deferred waits survive a killed triggerer; the ensemble survives a killed worker.

Both drills run once (the ``drills`` fixture, see :mod:`tests.stack.drills`); each test judges
one consequence from what users see (run and task states, task logs, the report) and from what
the clusters executed (``GET /local/counts``), never from what an operator believed it did.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from typing import Any

from airflow_provider_oscar.local.counts import input_digest
from tests.stack.drills import ENSEMBLE, JOB_SECONDS, LIFECYCLE, WAITS, Drills
from tests.stack.examples import PLANTS
from tests.stack.session import StackSession

TRIGGER_LOG = re.compile(r"attempt=\d+\.log\.trigger\.(\d+)\.log")
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths"]


def _delta(before: dict[str, Any], after: dict[str, Any], kind: str, service: str) -> Counter[str]:
    """How often each input of ``service`` ran (``runs``) or became a job (``jobs``) meanwhile."""
    done = Counter(after[kind].get(service, {}))
    done.subtract(before[kind].get(service, {}))
    return +done


def test_both_drilled_runs_succeed(drills: Drills) -> None:
    assert drills.states == {LIFECYCLE: "success", ENSEMBLE: "success"}, drills


def test_the_waits_deferred_to_the_triggerer_and_a_restarted_one_finished_them(
    stack: StackSession, drills: Drills
) -> None:
    assert drills.triggerer_killed_at is not None, "the triggerer was never killed"
    assert stack.stack.restarts("triggerer") >= 1
    tis = {t["task_id"]: t for t in stack.airflow.task_instances(LIFECYCLE, drills.lifecycle_run)}
    for task in WAITS:
        # Two triggerer jobs ran the wait: the one killed, and the one started after it.
        assert len(drills.triggerers.get(task, ())) >= 2, (task, drills.triggerers)
        assert tis[task]["state"] == "success"
        assert tis[task]["try_number"] == 1, f"{task} was retried instead of resumed"
        log = stack.log(LIFECYCLE, drills.lifecycle_run, task)
        assert "Pausing task as DEFERRED" in log
        # The triggerer's part of the log: one file per triggerer job (a killed one may not
        # have written its own), ending with the event that resumed the task.
        assert TRIGGER_LOG.search(log), log[:2000]
        assert "Trigger fired event" in log


def test_the_job_waited_for_ran_its_full_time_and_nothing_was_submitted_twice(
    stack: StackSession, drills: Drills
) -> None:
    before, after = drills.counts_before, drills.counts_after
    jobs = _delta(before, after, "jobs", "sleep")
    # One job by /job (submit_job) and one by the bucket upload (upload_input), once each.
    assert sum(jobs.values()) == 2 and set(jobs.values()) == {1}, jobs
    requests = Counter(after["requests"])
    requests.subtract(before["requests"])
    assert requests["POST /job/sleep"] == 1
    assert requests["POST /run/cowsay"] == 1
    info = stack.airflow.xcom(LIFECYCLE, drills.lifecycle_run, "job_done")
    assert info["status"] == "Succeeded"
    start, finish = (info[k] for k in ("start_time", "finish_time"))
    assert start and finish and finish > start


def test_a_killed_worker_cost_retries_not_answers(stack: StackSession, drills: Drills) -> None:
    assert drills.workers_killed, "no worker was seen running classify tasks"
    assert all(stack.stack.restarts(worker) >= 1 for worker in drills.workers_killed)
    classify = [
        t
        for t in stack.airflow.task_instances(ENSEMBLE, drills.ensemble_run)
        if t["task_id"] == "classify"
    ]
    assert len(classify) == 30 * len(MODELS) and {t["state"] for t in classify} == {"success"}
    retried = [t for t in classify if t["try_number"] > 1]
    assert retried, "the kill cost no task a try: it killed nothing"
    # A task running on the killed worker is failed when its heartbeats stop, then retried.
    assert {t["map_index"] for t in retried} & set(drills.running_at_kill)

    # On the cluster: every call ran, at most once per try that was made.
    runs = {m: _delta(drills.counts_before, drills.counts_after, "runs", m) for m in MODELS}
    for ti in classify:
        model, specimen = (part.strip() for part in ti["rendered_map_index"].split("·"))
        data = (PLANTS / "specimens" / f"{specimen}.json").read_bytes()
        executed = runs[model][input_digest(base64.b64encode(data))]
        assert 1 <= executed <= ti["try_number"], (ti["rendered_map_index"], executed)


def test_the_ensemble_counts_each_specimen_once_with_every_model(
    stack: StackSession, drills: Drills
) -> None:
    report = stack.airflow.xcom(ENSEMBLE, drills.ensemble_run, "aggregate")
    inputs = [item["input"] for item in report["inputs"]]
    specimens = sorted(p.stem for p in PLANTS.glob("specimens/specimen-*.json"))
    assert sorted(inputs) == specimens  # each exactly once
    assert report["models"] == MODELS
    assert all(not item["missing_models"] for item in report["inputs"])


def test_every_run_call_writes_one_info_line_to_the_task_log(
    stack: StackSession, drills: Drills
) -> None:
    log = stack.log(ENSEMBLE, drills.ensemble_run, "classify", map_index=0)
    lines = [line for line in log.splitlines() if "OSCAR call:" in line]
    assert len(lines) == 1, lines
    assert re.search(
        r"info OSCAR call: service plants-sepal on cluster alpha, /run answered 200 in "
        r"\d+\.\d\d s; top prediction Iris \w+ \(\d\.\d{3}\)",
        lines[0],
    ), lines[0]


def test_the_lifecycle_jobs_took_as_long_as_asked(stack: StackSession, drills: Drills) -> None:
    tis = {t["task_id"]: t for t in stack.airflow.task_instances(LIFECYCLE, drills.lifecycle_run)}
    assert tis["job_done"]["duration"] >= JOB_SECONDS * 0.8
