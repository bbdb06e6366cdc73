"""The plant ensemble of ``oscar_plant_ensemble_soft_vote`` as one batch task per model.

The same 120 calls (30 specimens x 4 models) and the same soft vote, but each model's 30 calls
fan out inside one ``OscarBatchInvokeOperator`` task instead of one task per call. The stack
benchmark (``benchmarks/stack_latency.py``) times both DAGs from trigger to end.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

PLANTS = Path(__file__).resolve().parents[2] / "example_dags" / "services" / "plants"
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths"]
SPECIMENS = sorted(PLANTS.glob("specimens/specimen-*.json"))
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())


def calls_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """One model's batch result as the per-call results the ensemble reads."""
    return [
        {
            "service": batch["service"],
            "cluster": record["cluster"],
            "input": record["input"],
            "prediction": record["prediction"],
        }
        for record in batch["results"]
        if record.get("status") == "ok"
    ]


with DAG(
    dag_id="oscar_plant_ensemble_batch",
    description="The plant ensemble with one batch task per model (latency benchmark)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["oscar", "composite-ai", "benchmark"],
    doc_md=__doc__,
) as dag:
    deploy = OscarDeployServiceOperator(
        task_id="deploy_classifiers", definition=str(PLANTS / "plants.yaml")
    )
    classify = OscarBatchInvokeOperator.partial(
        task_id="classify",
        inputs=[path.read_bytes() for path in SPECIMENS],
        input_ids=[path.stem for path in SPECIMENS],
        concurrency=10,
        map_index_template="{{ task.service_name }}",
    ).expand(service_name=MODELS)
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output.map(calls_of),
        method="soft_vote",
        top_k=3,
        min_models=2,
        abstain={"min_margin": 0.1},
        truth=TRUTH,
        trigger_rule="all_done",
    )
    deploy >> classify >> aggregate
