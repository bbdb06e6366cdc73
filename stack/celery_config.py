"""The Celery settings of the stack's workers: Airflow's own, plus the provider imported early.

Every task runs in a process forked from a Celery pool process, and parses its DAG file there:
without this, each task imports the provider (and numpy, minio, pydantic models) afresh, about
a second of CPU per task. Celery's ``imports`` are imported by the worker before it forks its
pool, so every task inherits them. Point ``[celery] celery_config_options`` at ``CELERY_CONFIG``
(a deployment can do the same with a module of its own).
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

#: What the example DAGs and the provider's operators import when a task runs.
PRELOADED = (
    "airflow.sdk.execution_time.task_runner",
    "airflow_provider_oscar.assets",
    "airflow_provider_oscar.compositions",
    "airflow_provider_oscar.ensemble",
    "airflow_provider_oscar.hooks.storage",
    "airflow_provider_oscar.operators.batch",
    "airflow_provider_oscar.operators.ensemble",
    "airflow_provider_oscar.operators.invoke",
    "airflow_provider_oscar.operators.service",
    "airflow_provider_oscar.sensors.oscar",
    "airflow_provider_oscar.sensors.storage",
    "airflow_provider_oscar.triggers.events",
    "minio",
)

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": PRELOADED}
