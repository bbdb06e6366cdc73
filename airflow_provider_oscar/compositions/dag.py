"""Building a composition's DAG with the provider's operators."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.compositions.model import Composition, input_id, suffix_ok

if TYPE_CHECKING:
    from airflow.sdk import DAG


def _truth(c: Composition) -> dict[str, str] | None:
    if isinstance(c.aggregate.truth, str):
        return dict(json.loads(c.resolve(c.aggregate.truth).read_text()))
    return dict(c.aggregate.truth) if c.aggregate.truth else None


def _doc(c: Composition) -> str:
    models = ", ".join(f"{s} on {cl}" for cl, s in c.models())
    return (
        f"{c.description or 'A declarative OSCAR composition.'}\n\n"
        f"Built from `{Path(c.source).name}`: {models}; inputs aggregated by "
        f"`{c.aggregate.method}` (top {c.aggregate.top_k}). The `inputs` param restricts a run "
        "to some input ids."
    )


def build_dag(composition: Composition) -> DAG:
    """The DAG of a composition read by :func:`load_composition`."""
    import pendulum
    from airflow.sdk import DAG, Asset, Param, TriggerRule, task

    from airflow_provider_oscar.compat import AirflowFailException
    from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
    from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
    from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

    c = composition
    connections = {name: spec.connection for name, spec in c.clusters.items()}
    first = connections[next(iter(c.clusters))]
    models = c.models()
    local = c.local_inputs()
    objects = list(c.inputs.objects or [])
    prefix, suffixes, how = c.inputs.prefix, c.inputs.suffixes, c.inputs.id
    schedule: Any = c.schedule
    if isinstance(schedule, list):
        schedule = [Asset(uri=uri) for uri in schedule]
    start = (
        pendulum.datetime(c.start_date.year, c.start_date.month, c.start_date.day, tz="UTC")
        if c.start_date
        else None
    )

    def available() -> list[tuple[str, str, str]]:
        """``(input id, operator argument, value)`` of every input the composition names."""
        if local is not None:
            return [(i, "input_path", f) for i, f in local]
        if objects:
            paths = objects
        else:
            from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path

            assert prefix is not None
            bucket, _ = split_path(prefix)
            paths = [
                f"{bucket}/{o.key}"
                for o in OscarStorageHook(first).list_objects(prefix)
                if suffix_ok(o.key, suffixes)
            ]
        return [(input_id(p, PurePosixPath(p).name, how), "input_object", p) for p in paths]

    with DAG(
        dag_id=c.dag_id,
        description=c.description,
        schedule=schedule,
        start_date=start,
        catchup=c.catchup,
        tags=list(c.tags),
        # Every task calls OSCAR (deployments, the calls, the report): all retry alike.
        default_args={
            "retries": c.fanout.retries,
            "retry_delay": pendulum.duration(seconds=c.fanout.retry_delay),
        },
        params={
            "inputs": Param(
                [],
                type="array",
                items={"type": "string"},
                description="Input ids to process (none: every input of the composition)",
            )
        },
        doc_md=_doc(c),
    ) as dag:

        @task(task_id="plan_calls")
        def plan_calls(params: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
            """One ``classify`` call per (input, cluster, service) for the inputs of the run."""
            inputs = available()
            wanted = list((params or {}).get("inputs") or [])
            if wanted:
                unknown = sorted(set(wanted) - {i for i, _, _ in inputs})
                if unknown:
                    raise AirflowFailException(
                        f"unknown inputs {unknown}; known: {sorted(i for i, _, _ in inputs)}"
                    )
                inputs = [entry for entry in inputs if entry[0] in wanted]
            if not inputs:
                raise AirflowFailException("the composition's inputs are empty: nothing to call")
            return [
                {
                    "oscar_conn_id": connections[cluster],
                    "service_name": service,
                    argument: value,
                    "input_id": input_id,
                }
                for input_id, argument, value in inputs
                for cluster, service in models
            ]

        deploys = []
        groups = dict.fromkeys(
            (cluster, s.fdl)
            for s in c.services
            if s.fdl is not None
            for cluster in s.on(list(c.clusters))
        )
        for n, (cluster, fdl) in enumerate(groups):
            assert fdl is not None
            suffix = "" if sum(1 for cl, _ in groups if cl == cluster) == 1 else f"_{n}"
            deploys.append(
                OscarDeployServiceOperator(
                    task_id=f"deploy_{cluster}{suffix}",
                    definition=str(c.resolve(fdl)),
                    oscar_conn_id=connections[cluster],
                )
            )
        classify = OscarRunServiceOperator.partial(
            task_id="classify",
            map_index_template=(
                "{{ task.oscar_conn_id }} · {{ task.service_name }} · {{ task.input_id }}"
                if len(connections) > 1
                else "{{ task.service_name }} · {{ task.input_id }}"
            ),
            on_error=c.fanout.on_error,
            max_active_tis_per_dagrun=c.fanout.max_active,
        ).expand_kwargs(plan_calls())
        spec = c.aggregate
        OscarEnsembleOperator(
            task_id="aggregate",
            results=classify.output,
            method=spec.method,
            weights=spec.weights,
            top_k=spec.top_k,
            missing=spec.missing,
            num_classes=spec.num_classes,
            min_models=spec.min_models,
            abstain=spec.abstain.model_dump(exclude_unset=True) if spec.abstain else None,
            truth=_truth(c),
            report_object=spec.report,
            oscar_conn_id=first,
            outlets=[Asset(uri=spec.asset)] if spec.asset else [],
            trigger_rule=TriggerRule.ALL_DONE,
        )
        for deploy in deploys:
            deploy >> classify
    return dag
