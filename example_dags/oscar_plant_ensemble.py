"""Composite AI on OSCAR: four plant classifiers, a calibrated consensus, a person for the doubts.

Deploys the four classifiers of ``services/plants`` (different model families, each seeing two
different measurements) and sends all 150 Iris specimens to each of them, one task per model
fanning out inside the task (``OscarBatchInvokeOperator``). Every specimen carries its
cross-validation fold, so each service answers with the weights trained without it.

``aggregate`` then pools the four answers per specimen with a fitted calibration, cross-validated
on the same folds: the specimens of a fold are pooled with exponents fitted on the other folds'
labelled answers only. The report compares every model, the plain soft vote and the calibrated
ensemble (accuracy, log loss, Brier score, calibration error, with bootstrap intervals), and the
calibration fitted on all 150 is saved for later runs. ``review_doubts`` asks a person (Airflow's
human-in-the-loop) for the specimens the ensemble abstained on; unanswered after
``review_timeout_seconds`` they stay abstained. Runs unchanged on the embedded OSCAR
(``oscar_default``) or a real one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.ensemble_review import OscarEnsembleReviewOperator
from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

PLANTS = Path(__file__).parent / "services" / "plants"
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths"]
SPECIMENS = json.loads((PLANTS / "specimens" / "iris.json").read_text())
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())
FOLDS = {specimen["specimen"]: specimen["fold"] for specimen in SPECIMENS}
REPORTS = "plants-reports/oscar_plant_ensemble"

with DAG(
    dag_id="oscar_plant_ensemble",
    description="Four plant classifiers on OSCAR, a cross-validated calibrated consensus",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "review_timeout_seconds": Param(
            60,
            type="number",
            minimum=0,
            description="How long a person has to label the doubtful specimens",
        )
    },
    tags=["oscar", "composite-ai", "example"],
    doc_md=__doc__,
) as dag:
    deploy = OscarDeployServiceOperator(
        task_id="deploy_classifiers", definition=str(PLANTS / "plants.yaml")
    )
    classify = OscarBatchInvokeOperator.partial(
        task_id="classify",
        inputs=SPECIMENS,
        input_ids=list(FOLDS),
        concurrency=8,
        map_index_template="{{ task.service_name }}",
    ).expand(service_name=MODELS)
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output,
        top_k=3,
        min_models=3,
        abstain={"min_margin": 0.5},
        truth=TRUTH,
        fit_on=TRUTH,
        folds=FOLDS,
        fit_options={"pool": "log_linear"},
        calibration_object=f"{REPORTS}/calibration.json",
        report_object=REPORTS + "/{{ run_id | replace(':', '_') }}.json",
        trigger_rule="all_done",
    )
    review = OscarEnsembleReviewOperator(
        task_id="review_doubts",
        report=aggregate.output,
        review_timeout_seconds="{{ params.review_timeout_seconds }}",
    )
    deploy >> classify >> aggregate >> review
