"""The plant ensemble on real OSCAR clusters running ``ai4oshub/plants-classification``.

The composition of ``oscar_plant_ensemble_two_clusters``, for photographs: once every service in
``services`` reports ready on every cluster in ``connections``, each image (``images``, a list of
``bucket/key``; or every ``.jpg``, ``.jpeg`` and ``.png`` under ``image_prefix``) goes to each
(cluster, service) in a synchronous call (one mapped task per call, ``input_object`` = the image).
The answers, the top 5 of about 10,000 species with probabilities summing to less than 1 (the
rest is the mass of the species not listed), are combined per image by soft vote over the union
of their labels, a label missing from a list counting 0 (``missing="zero"``), into a consensus
top 5. Calls that fail count as missing models; the report is the ``aggregate`` task's XCom.

Every output shape of the service and its OSCAR wrappers (flat or nested JSON, Python literals,
one file or a zip, after supervisor log lines) decodes the same way. An image is read through
the calling cluster's MinIO: with several clusters, each needs the object under the same
``bucket/key`` (or set the connections' ``minio_endpoint`` extra to one shared MinIO). A cold
service can take minutes to answer its first call; the calls are retried.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARALLEL_CALLS = 4  # each call holds about 2 GiB and 1 vCPU on its cluster

CALL_LABEL = "{{ task.oscar_conn_id }} · {{ task.service_name }} · {{ task.input_id }}"


@task
def plan_targets() -> list[dict[str, str]]:
    """One (cluster, service) pair per readiness check."""
    params = get_current_context()["params"]
    return [
        {"oscar_conn_id": conn_id, "service_name": service}
        for conn_id in dict.fromkeys(params["connections"])
        for service in dict.fromkeys(params["services"])
    ]


@task
def plan_calls() -> list[dict[str, str]]:
    """The keyword arguments of one ``classify`` task per (image, cluster, service)."""
    params = get_current_context()["params"]
    connections = list(dict.fromkeys(params["connections"]))
    images = list(dict.fromkeys(params["images"]))
    if not images and params["image_prefix"]:
        bucket, _ = split_path(params["image_prefix"])
        images = [
            f"{bucket}/{o.key}"
            for o in OscarStorageHook(connections[0]).list_objects(params["image_prefix"])
            if o.key.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not images:
        raise AirflowFailException("no images: give 'images' or an 'image_prefix' holding some")
    return [
        {
            "oscar_conn_id": conn_id,
            "service_name": service,
            "input_object": image,
            "input_id": image,
        }
        for image in sorted(images)
        for conn_id in connections
        for service in dict.fromkeys(params["services"])
    ]


with DAG(
    dag_id="oscar_plant_ensemble_real",
    description="ai4oshub/plants-classification on real OSCAR clusters, one consensus per image",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker costs seconds, not minutes (the hook already retries
    # the calls themselves while a cold service starts).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "connections": Param(
            ["oscar_default"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="One OSCAR connection id per cluster",
        ),
        "services": Param(
            ["plants-classification"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="Plant-classification services to ask on every cluster",
        ),
        "images": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Image objects as bucket/key (overrides image_prefix)",
        ),
        "image_prefix": Param(
            "plants-images/",
            type="string",
            description="bucket/prefix whose .jpg, .jpeg and .png objects are classified",
        ),
    },
    tags=["oscar", "composite-ai", "example"],
    doc_md=__doc__,
) as dag:
    ready = OscarServiceReadySensor.partial(
        task_id="service_ready",
        map_index_template="{{ task.oscar_conn_id }} · {{ task.service_name }}",
        poke_interval=15,
        timeout=900,
        mode="reschedule",
    ).expand_kwargs(plan_targets())
    calls = plan_calls()
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        decode="prediction",
        map_index_template=CALL_LABEL,
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        max_active_tis_per_dagrun=PARALLEL_CALLS,
        on_error="record",
    ).expand_kwargs(calls)
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output,
        method="soft_vote",
        top_k=5,
        missing="zero",
        min_models=1,
        abstain={"min_margin": 0.05},
        trigger_rule=TriggerRule.ALL_DONE,
    )
    ready >> classify
