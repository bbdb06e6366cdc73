"""The plant ensemble on real AI4OS / EGI clusters: hub modules by name, photographs in, a
consensus top 5 out.

Each module of ``hub_modules`` (default ``plants-classification``) is found on each cluster of
``connections`` among the services the connection's user can see: the one whose image is
``ai4oshub/<module>`` or whose title (``PAPI_TITLE``) is the module, as the AI4OS dashboard
deploys it under a generated name (``ai4papi-<uuid>``). Once each is ready, and warmed up by a
first call that is repeated through the cuts of a cold start (``warm_up``), every photograph
(``images``, a list of ``bucket/key``; or every ``.jpg``, ``.jpeg`` and ``.png`` under
``image_prefix``) goes to every (cluster, module):

* ``via="run"``: a synchronous call each (``/run``); the answer is found in DEEPaaS's console;
* ``via="bucket"``: an upload to the service's input folder each; the answer is the ``.json``
  the service writes to its output folder, its console (``.log``) goes to the task log.

``input_format="auto"`` sends a dashboard deployment the JSON document it reads (the picture in
``oscar-files``, its type from its extension or content) and any other service the picture as
it is. The answers (top 5 of about 10,000 species, probabilities summing to less than 1) are
combined per picture by soft vote over the union of their labels, a label missing from a list
counting 0, into a consensus top 5. A call that fails, or a model answering ``status: error``,
counts as a missing model for that picture; the report (the ``aggregate`` task's XCom) names
where each picture is, so the OSCAR results page shows it beside the answers.

A picture is read through the calling cluster's MinIO: with several clusters each needs it
under the same ``bucket/key`` (or set the connections' ``minio_endpoint`` extra to one shared
MinIO).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator, OscarSubmitJobOperator
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARALLEL_CALLS = 4  # each call holds about 2 GiB and 1 vCPU on its cluster
CALL_LABEL = "{{ task.oscar_conn_id }} · {{ task.hub_module }} · {{ task.input_id }}"


@task
def plan_targets() -> list[dict[str, str | None]]:
    """One (cluster, module) pair per readiness check, warmed up or not."""
    params = get_current_context()["params"]
    warm_up = "call" if params["warm_up"] else None
    return [
        {"oscar_conn_id": conn_id, "hub_module": module, "warm_up": warm_up}
        for conn_id in dict.fromkeys(params["connections"])
        for module in dict.fromkeys(params["hub_modules"])
    ]


@task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
def plan_calls(via: str) -> list[dict[str, str]]:
    """The keyword arguments of one call per (picture, cluster, module) when the run goes
    ``via`` this way, else none. A cluster whose readiness check failed still gets its calls:
    they fail, and its models count as missing."""
    params = get_current_context()["params"]
    if params["via"] != via:
        return []
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
        {"oscar_conn_id": conn_id, "hub_module": module, "input_object": image, "input_id": image}
        for image in sorted(images)
        for conn_id in connections
        for module in dict.fromkeys(params["hub_modules"])
    ]


with DAG(
    dag_id="oscar_plant_ensemble_real",
    description="AI4OS plant classifiers on real OSCAR clusters, one consensus per photograph",
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
        "hub_modules": Param(
            ["plants-classification"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="AI4OS hub modules to ask on every cluster (image ai4oshub/<module>)",
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
        "via": Param(
            "run",
            enum=["run", "bucket"],
            description="run: synchronous calls; bucket: uploads to the services' input folders",
        ),
        "warm_up": Param(
            True,
            type="boolean",
            description="Call each service until it answers before the photographs go",
        ),
    },
    tags=["oscar", "composite-ai", "ai4os", "example"],
    doc_md=__doc__,
) as dag:
    ready = OscarServiceReadySensor.partial(
        task_id="service_ready",
        map_index_template="{{ task.oscar_conn_id }} · {{ task.hub_module }}",
        poke_interval=15,
        timeout=1800,
        mode="reschedule",
    ).expand_kwargs(plan_targets())
    run_calls = plan_calls.override(task_id="plan_run_calls")("run")
    bucket_calls = plan_calls.override(task_id="plan_bucket_calls")("bucket")
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        input_format="auto",
        decode="prediction",
        map_index_template=CALL_LABEL,
        max_active_tis_per_dagrun=PARALLEL_CALLS,
        on_error="record",
    ).expand_kwargs(run_calls)
    classify_via_bucket = OscarSubmitJobOperator.partial(
        task_id="classify_via_bucket",
        via="bucket",
        input_format="auto",
        decode="prediction",
        timeout=1800,
        map_index_template=CALL_LABEL,
        max_active_tis_per_dagrun=PARALLEL_CALLS,
    ).expand_kwargs(bucket_calls)
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=[classify.output, classify_via_bucket.output],
        method="soft_vote",
        top_k=5,
        missing="zero",
        min_models=1,
        abstain={"min_margin": 0.05},
        trigger_rule=TriggerRule.ALL_DONE,
    )
    ready >> [run_calls, bucket_calls]
