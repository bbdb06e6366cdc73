"""Two failure drills on the running stack, run together (their DAGs share no OSCAR service).

* **Triggerer**: ``oscar_service_lifecycle`` with jobs long enough that ``job_done`` and
  ``output_ready`` defer; once the triggerer runs both, it is killed with SIGKILL (with what it
  forked) and started again, as a restart policy would.
* **Workers**: ``oscar_plant_ensemble_soft_vote`` (one task per call); while classify tasks run,
  every Celery worker running a task is killed with SIGKILL with everything it forked (its
  tasks too) and started again. Only when no lifecycle task is running: that run loses nothing.

What happened is recorded for the tests to judge: the runs' states, which triggerer job ran each
deferred task, what the clusters executed before and after, what was running at each kill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.stack.session import StackSession

LIFECYCLE, ENSEMBLE = "oscar_service_lifecycle", "oscar_plant_ensemble_soft_vote"
WAITS = ("job_done", "output_ready")
#: How long the lifecycle's jobs take: the deferred waits must outlast the triggerer's restart
#: and the hand-over of its triggers (``triggerer_health_check_threshold``).
JOB_SECONDS = 45
TIMEOUT = 420.0


@dataclass
class Drills:
    """What the drills did and saw."""

    lifecycle_run: str = ""
    ensemble_run: str = ""
    states: dict[str, str] = field(default_factory=dict)
    #: task id -> the triggerer job ids seen running its trigger
    triggerers: dict[str, set[int]] = field(default_factory=dict)
    triggerer_killed_at: float | None = None
    #: the workers killed: every one that ran a task at that moment
    workers_killed: list[str] = field(default_factory=list)
    #: map indexes of the classify tasks running when the workers were killed
    running_at_kill: list[int] = field(default_factory=list)
    counts_before: dict[str, Any] = field(default_factory=dict)
    counts_after: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


#: Each classify call takes this long during the drill (injected latency on the models'
#: ``/run``), so a task the API reports running is still running when its worker is killed.
CALL_SECONDS = 2.0


def run_drills(session: StackSession) -> Drills:
    airflow, stack = session.airflow, session.stack
    drills = Drills(counts_before=session.counts())
    began = time.monotonic()
    airflow.wait_for_dags([LIFECYCLE, ENSEMBLE])
    slow_calls = {"kind": "latency", "route": "/run/plants-", "seconds": CALL_SECONDS, "count": -1}
    with session.oscar() as oscar:
        oscar.post("/local/faults", json=slow_calls).raise_for_status()
    drills.lifecycle_run = airflow.trigger(LIFECYCLE, {"job_seconds": JOB_SECONDS})
    drills.ensemble_run = airflow.trigger(ENSEMBLE)
    runs = {LIFECYCLE: drills.lifecycle_run, ENSEMBLE: drills.ensemble_run}
    waiting_since: float | None = None
    while len(drills.states) < len(runs):
        if time.monotonic() - began > TIMEOUT:
            raise TimeoutError(f"the drill runs did not end within {TIMEOUT:.0f} s: {drills}")
        lifecycle = airflow.task_instances(LIFECYCLE, drills.lifecycle_run)
        for ti in lifecycle:
            trigger = ti.get("trigger") or {}
            if ti["state"] == "deferred" and trigger.get("triggerer_id"):
                drills.triggerers.setdefault(ti["task_id"], set()).add(trigger["triggerer_id"])
        waiting = all(task in drills.triggerers for task in WAITS)
        if waiting and waiting_since is None:
            waiting_since = time.monotonic()
        quiet = not any(ti["state"] in ("running", "queued") for ti in lifecycle)
        if waiting and quiet and not drills.workers_killed:
            _kill_busy_workers(session, drills)
            if drills.workers_killed:
                with session.oscar() as oscar:  # the rest of the run at full speed
                    oscar.delete("/local/faults").raise_for_status()
        if (
            waiting_since is not None
            and drills.triggerer_killed_at is None
            and (drills.workers_killed or time.monotonic() - waiting_since > 10)
        ):
            stack.supervisor.kill("triggerer")
            drills.triggerer_killed_at = time.monotonic()
        for dag_id, run_id in runs.items():
            state = airflow.run(dag_id, run_id)["state"]
            if state in ("success", "failed"):
                drills.states.setdefault(dag_id, state)
        time.sleep(0.5)
    drills.counts_after = session.counts()
    drills.seconds = time.monotonic() - began
    return drills


def _kill_busy_workers(session: StackSession, drills: Drills) -> None:
    """Kill every worker that runs a task now (once some classify tasks are running).

    Which worker runs which task is not known here, so all busy ones go: a classify task the
    API reported running is then surely on a killed worker (its call takes ``CALL_SECONDS``).
    """
    running = [
        ti["map_index"]
        for ti in session.airflow.task_instances(ENSEMBLE, drills.ensemble_run, state="running")
        if ti["task_id"] == "classify"
    ]
    busy = session.stack.busy_workers()
    if running and busy:
        drills.workers_killed = busy
        drills.running_at_kill = running
        for worker in busy:
            session.stack.supervisor.kill(worker)
