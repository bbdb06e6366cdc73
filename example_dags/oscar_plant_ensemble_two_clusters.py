"""Two OSCAR clusters, three classifiers on each: a consensus that survives losing a cluster.

Deploys the classifiers of ``services/plants`` on every cluster named in the
``connections`` param (one Airflow connection per cluster, default ``oscar_default`` and
``oscar_second``; one deploy task each), sends every specimen to three of them on every cluster
at once
(one mapped task per call) and combines the six answers per specimen by soft vote. Give each
connection a ``cluster_id`` extra (e.g. ``"alpha"``, ``"beta"``): models are then named
``<cluster>/<service>`` (``<endpoint>/<service>`` without one).

The clusters share nothing, neither the API nor the MinIO. When one becomes unreachable mid-run,
its calls fail after the hook's retries and are recorded as ``error`` answers
(``on_error="record"``), and the aggregation (``all_done``, ``min_models=1``) still gives every
specimen a consensus from the other cluster, listing the lost cluster's models as missing. The
report is the ``aggregate`` task's XCom: writing it to one cluster's bucket would make the run
depend on that cluster again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

PLANTS = Path(__file__).parent / "services" / "plants"
CONNECTIONS = ["oscar_default", "oscar_second"]
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width"]
SPECIMENS = {path.stem: path for path in sorted(PLANTS.glob("specimens/specimen-*.json"))}
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())

CALL_LABEL = "{{ task.oscar_conn_id }} · {{ task.service_name }} · {{ task.input_id }}"


@task
def cluster_connections() -> list[str]:
    """The connection ids from the ``connections`` param, one per cluster."""
    return list(dict.fromkeys(get_current_context()["params"]["connections"]))


@task
def plan_calls() -> list[dict[str, str]]:
    """The keyword arguments of one ``classify`` task per (specimen, cluster, model)."""
    params = get_current_context()["params"]
    unknown = sorted(set(params["specimens"]) - set(SPECIMENS))
    if unknown:
        raise AirflowFailException(f"unknown specimens {unknown}; known: {sorted(SPECIMENS)}")
    return [
        {
            "oscar_conn_id": conn_id,
            "service_name": model,
            "input_path": str(SPECIMENS[specimen]),
            "input_id": specimen,
        }
        for specimen in params["specimens"]
        for conn_id in dict.fromkeys(params["connections"])
        for model in MODELS
    ]


with DAG(
    dag_id="oscar_plant_ensemble_two_clusters",
    description="Three plant classifiers on each of two OSCAR clusters, one soft-vote consensus",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "connections": Param(
            CONNECTIONS,
            type="array",
            items={"type": "string"},
            minItems=1,
            description="One OSCAR connection id per cluster",
        ),
        "specimens": Param(
            list(SPECIMENS),
            type="array",
            items={"type": "string"},
            minItems=1,
            description="Specimen ids (services/plants/specimens) to classify",
        ),
    },
    tags=["oscar", "composite-ai", "multi-cluster", "example"],
    doc_md=__doc__,
) as dag:
    deploy = OscarDeployServiceOperator.partial(
        task_id="deploy_classifiers",
        definition=str(PLANTS / "plants.yaml"),
        map_index_template="{{ task.oscar_conn_id }}",
        retries=1,
        retry_delay=timedelta(seconds=2),
    ).expand(oscar_conn_id=cluster_connections())
    calls = plan_calls()
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        map_index_template=CALL_LABEL,
        # Run when every deployment has finished and at least one succeeded: a cluster that is
        # down from the start also leaves the others to answer.
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        # A call that still fails after the hook's retries becomes an ``error`` answer: the
        # aggregation then counts that model as missing for the specimen.
        on_error="record",
    ).expand_kwargs(calls)
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output,
        method="soft_vote",
        top_k=3,
        min_models=1,
        abstain={"min_margin": 0.1},
        truth=TRUTH,
        trigger_rule=TriggerRule.ALL_DONE,
    )
    deploy >> classify
