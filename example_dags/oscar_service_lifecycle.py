"""Every OSCAR operator and sensor once: deploy, wait, invoke three ways, clean up.

Deploys the ``cowsay`` and ``sleep`` services, waits until they are ready, asks the cow to speak
synchronously (``/run``), submits an asynchronous job to ``sleep`` and waits for it with a
sensor, uploads an input into the ``sleep`` service's bucket and waits for its output object,
then deletes both services (also when something failed). Every wait is deferrable: the ``sleep``
service takes ``job_seconds`` (a param) per input, so the waits hand over to the triggerer
rather than holding a worker slot.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_oscar.fdl import load_fdl
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator, OscarSubmitJobOperator
from airflow_provider_oscar.operators.service import (
    OscarDeleteServiceOperator,
    OscarDeployServiceOperator,
)
from airflow_provider_oscar.sensors.oscar import OscarJobSensor, OscarServiceReadySensor
from airflow_provider_oscar.sensors.storage import OscarOutputSensor

SERVICES = Path(__file__).parent / "services"
# The sleep service of services/sleep, taking the run's ``job_seconds`` per input.
(_SLEEP,) = load_fdl(SERVICES / "sleep" / "sleep.yaml")
SLEEP = _SLEEP.model_dump(mode="json", exclude={"token"})
SLEEP["environment"]["variables"]["SLEEP_SECONDS"] = "{{ params.job_seconds }}"

with DAG(
    dag_id="oscar_service_lifecycle",
    description="Deploy, wait for, invoke (sync, job, bucket) and delete OSCAR services",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "job_seconds": Param(
            10, type="number", minimum=0, description="How long the sleep service takes per input"
        )
    },
    tags=["oscar", "example"],
    doc_md=__doc__,
) as dag:
    deploy_cowsay = OscarDeployServiceOperator(
        task_id="deploy_cowsay", definition=str(SERVICES / "cowsay" / "cowsay.yaml")
    )
    deploy_sleep = OscarDeployServiceOperator(
        task_id="deploy_sleep", definition=SLEEP, wait_for_ready=False
    )
    sleep_ready = OscarServiceReadySensor(
        task_id="sleep_ready", service_name="sleep", poke_interval=1, deferrable=True
    )
    say_hello = OscarRunServiceOperator(
        task_id="say_hello",
        service_name="cowsay",
        input_data={"message": "Hello from Airflow, run {{ run_id }}"},
        decode="text",
    )
    submit = OscarSubmitJobOperator(
        task_id="submit_job",
        service_name="sleep",
        input_data="an asynchronous nap",
        wait_for_completion=False,
        decode="none",
    )
    job_done = OscarJobSensor(
        task_id="job_done",
        service_name="sleep",
        job_name="{{ ti.xcom_pull(task_ids='submit_job')['job'] }}",
        poke_interval=1,
        timeout=300,
        deferrable=True,
    )
    upload = OscarSubmitJobOperator(
        task_id="upload_input",
        service_name="sleep",
        via="bucket",
        input_data="data for the sleep service",
        wait_for_completion=False,
        decode="none",
    )
    output_ready = OscarOutputSensor(
        task_id="output_ready",
        path="sleep/output",
        prefix=True,
        contains="{{ ti.xcom_pull(task_ids='upload_input')['token'] }}",
        poke_interval=1,
        timeout=300,
        deferrable=True,
    )
    clean_up = OscarDeleteServiceOperator.partial(
        task_id="delete_service", trigger_rule="all_done"
    ).expand(service_name=["cowsay", "sleep"])

    deploy_cowsay >> say_hello
    deploy_sleep >> sleep_ready >> [submit, upload]
    submit >> job_done
    upload >> output_ready
    [say_hello, job_done, output_ready] >> clean_up
