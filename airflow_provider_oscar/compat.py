"""Airflow names and features whose home differs between the supported releases (3.1 to 3.3).

Import them from here, not from Airflow, in code that must run on Airflow 3.1: there the task
SDK has no ``airflow.sdk.exceptions.AirflowFailException`` (and its siblings) nor
``airflow.sdk.conf``; the same classes live in ``airflow.exceptions`` and
``airflow.configuration``, where Airflow 3.2 and later deprecate them.

:data:`AIRFLOW_V_3_3_PLUS` gates what came with 3.3: the triggerer calls a trigger's
``on_kill()`` when a user kills its deferred task (before, a kill and a triggerer restart look
alike to the trigger), and tasks have a ``task_state_store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version
from packaging.version import Version

AIRFLOW_V_3_3_PLUS = Version(Version(_airflow_version).base_version) >= Version("3.3.0")

if TYPE_CHECKING:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
else:
    try:
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
            TaskDeferred,
        )
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
            TaskDeferred,
        )
    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf

__all__ = [
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "conf",
    "task_state",
]


async def task_state(ti: Any) -> str | None:
    """The current state of a trigger's task instance (``"deferred"``, ``"failed"``, ...).

    Asked through the task SDK (the triggerer has no database access on Airflow 3); ``None``
    when the trigger runs without a task instance or the state cannot be read.
    """
    if ti is None:
        return None
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    try:
        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        state = states[ti.run_id][ti.task_id]
    except Exception:
        return None
    return str(getattr(state, "value", state)) if state is not None else None
