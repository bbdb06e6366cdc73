"""The simplest plant ensemble: one task per call, a soft vote (declared in YAML as well).

Deploys the four classifiers of ``services/plants`` (each sees different measurements), sends
each specimen file (the 30 of fold 4, classified by weights that never saw them) to every model
at once (dynamic task mapping, one task per model and specimen), then aggregates their top-k
answers by soft vote and reports each model's accuracy against the ensemble's.
``compositions/plant_ensemble.yaml`` declares the same DAG; ``oscar_plant_ensemble`` is the
calibrated, cross-validated one. Runs unchanged on the embedded OSCAR (``oscar_default``) or a
real one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

PLANTS = Path(__file__).parent / "services" / "plants"
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths"]
SPECIMENS = sorted(PLANTS.glob("specimens/specimen-*.json"))
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())
REPORT = "plants-reports/oscar_plant_ensemble_soft_vote/{{ run_id | replace(':', '_') }}.json"

with DAG(
    dag_id="oscar_plant_ensemble_soft_vote",
    description="Plant classification by four models on OSCAR, one task per call, soft vote",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["oscar", "composite-ai", "example"],
    doc_md=__doc__,
) as dag:
    deploy = OscarDeployServiceOperator(
        task_id="deploy_classifiers", definition=str(PLANTS / "plants.yaml")
    )
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        map_index_template="{{ task.service_name }} · {{ task.input_id }}",
        retries=2,
    ).expand_kwargs(
        [
            {"service_name": model, "input_path": str(path), "input_id": path.stem}
            for path in SPECIMENS
            for model in MODELS
        ]
    )
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output,
        method="soft_vote",
        top_k=3,
        min_models=2,
        abstain={"min_margin": 0.1},
        truth=TRUTH,
        report_object=REPORT,
        trigger_rule="all_done",
    )
    deploy >> classify >> aggregate
