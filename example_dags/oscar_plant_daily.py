"""Daily plant classification of what arrived in a bucket, one result object next to each input.

Every day, lists the objects that arrived under the ``inbox`` param (default
``plants-inbox/specimens/`` on ``oscar_default``) during the run's data interval (``LastModified``
in ``[data_interval_start, data_interval_end)``), classifies each with ``plants-petal-width``
(one mapped task per object, ``input_object`` = the object) and saves the model's output file
next to its input as ``<key>.prediction.json``. A run without a data interval (a manual run
without a logical date) takes every input that has no result yet, which also catches up on
inputs whose classification failed.

Re-running is idempotent: result keys derive from input keys, and an input whose result exists
is skipped (with ``reprocess`` on, it is classified again and its result overwritten), so no run
ever writes a duplicate. The inbox bucket is created when missing, ready for uploads. The service
must be deployed once beforehand, e.g. by ``oscar_plant_ensemble`` or
``oscar-cli apply services/plants/plants.yaml``; each run waits until it is ready.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor

CONNECTION = "oscar_default"
SERVICE = "plants-petal-width"
INBOX = "plants-inbox/specimens/"
RESULT_SUFFIX = ".prediction.json"

log = logging.getLogger(__name__)


def result_key(input_key: str) -> str:
    """Where the result of ``input_key`` goes: next to it."""
    return f"{input_key}{RESULT_SUFFIX}"


@task
def select_new_inputs(
    data_interval_start: datetime | None = None, data_interval_end: datetime | None = None
) -> list[dict[str, str]]:
    """The ``classify`` arguments for each input that arrived in the data interval."""
    params = get_current_context()["params"]
    storage = OscarStorageHook(CONNECTION)
    bucket, _ = split_path(params["inbox"])
    if not storage.get_client().bucket_exists(bucket):
        storage.get_client().make_bucket(bucket)
        log.info("created the inbox bucket %s; nothing to classify yet", bucket)
        return []
    objects = storage.list_objects(params["inbox"])
    results = {o.key for o in objects if o.key.endswith(RESULT_SUFFIX)}
    inputs = [o for o in objects if not o.key.endswith(RESULT_SUFFIX)]
    if data_interval_start is not None and data_interval_end is not None:
        inputs = [
            o
            for o in inputs
            if o.last_modified and data_interval_start <= o.last_modified < data_interval_end
        ]
        log.info(
            "%d inputs arrived in [%s, %s)", len(inputs), data_interval_start, data_interval_end
        )
    else:
        log.info("no data interval: taking every input without a result")
    if not params["reprocess"]:
        inputs = [o for o in inputs if result_key(o.key) not in results]
    log.info("%d inputs to classify", len(inputs))
    return [
        {"input_object": f"{bucket}/{key}", "output_object": f"{bucket}/{result_key(key)}"}
        for key in sorted(o.key for o in inputs)
    ]


with DAG(
    dag_id="oscar_plant_daily",
    description="Classify every day the plant specimens that arrived in a bucket",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "inbox": Param(INBOX, type="string", description="bucket/prefix of the inputs"),
        "reprocess": Param(
            False, type="boolean", description="classify inputs that already have a result again"
        ),
    },
    tags=["oscar", "scheduled", "example"],
    doc_md=__doc__,
) as dag:
    ready = OscarServiceReadySensor(
        task_id="classifier_ready",
        service_name=SERVICE,
        oscar_conn_id=CONNECTION,
        poke_interval=10,
        timeout=600,
        mode="reschedule",
    )
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        service_name=SERVICE,
        oscar_conn_id=CONNECTION,
        map_index_template="{{ task.input_object }}",
    ).expand_kwargs(select_new_inputs())
    ready >> classify
