"""Every OSCAR operator and sensor once: deploy, wait, invoke three ways, clean up.

Deploys the ``cowsay`` and ``sleep`` services, waits until they are ready, asks the cow to speak
synchronously (``/run``), submits an asynchronous job and waits for it with a sensor, uploads an
input into the ``sleep`` service's bucket and waits for its output object, then deletes both
services (also when something failed). Every wait is deferrable.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator, OscarSubmitJobOperator
from airflow_provider_oscar.operators.service import (
    OscarDeleteServiceOperator,
    OscarDeployServiceOperator,
)
from airflow_provider_oscar.sensors.oscar import OscarJobSensor, OscarServiceReadySensor
from airflow_provider_oscar.sensors.storage import OscarOutputSensor

SERVICES = Path(__file__).parent / "services"

with DAG(
    dag_id="oscar_service_lifecycle",
    description="Deploy, wait for, invoke (sync, job, bucket) and delete OSCAR services",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["oscar", "example"],
    doc_md=__doc__,
) as dag:
    deploy_cowsay = OscarDeployServiceOperator(
        task_id="deploy_cowsay", definition=str(SERVICES / "cowsay" / "cowsay.yaml")
    )
    deploy_sleep = OscarDeployServiceOperator(
        task_id="deploy_sleep",
        definition=str(SERVICES / "sleep" / "sleep.yaml"),
        wait_for_ready=False,
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
        service_name="cowsay",
        input_data="an asynchronous moo",
        wait_for_completion=False,
        decode="none",
    )
    job_done = OscarJobSensor(
        task_id="job_done",
        service_name="cowsay",
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

    deploy_cowsay >> [say_hello, submit]
    submit >> job_done
    deploy_sleep >> sleep_ready >> upload >> output_ready
    [say_hello, job_done, output_ready] >> clean_up
