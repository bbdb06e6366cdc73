"""Declarative compositions: a YAML file (services, inputs, fan-out, aggregation) becomes a DAG.

For those who compose visually (Node-RED, Elyra) or simply prefer data to code. A composition
names the clusters (an Airflow connection each), the services to call on them, the inputs, how
the calls fan out, and how their answers are aggregated::

    dag_id: oscar_plant_ensemble_yaml
    schedule: null                      # or "@daily", a cron, or a list of asset URIs
    start_date: 2026-01-01
    clusters:
      local: {connection: oscar_default}
    services:                           # each on every cluster, unless `cluster(s)` says
      - {name: plants-sepal, fdl: ../services/plants/plants.yaml}
    inputs:                             # exactly one of paths, glob, objects, prefix
      glob: ../services/plants/specimens/specimen-*.json
    fanout: {retries: 2, on_error: fail}
    aggregate:
      method: soft_vote
      top_k: 3
      min_models: 2
      abstain: {min_margin: 0.1}
      truth: ../services/plants/specimens/truth.json
      report: plants-reports/{{ dag.dag_id }}/{{ run_id | replace(':', '_') }}.json

:func:`load_composition` reads and validates a file completely before anything is built; every
problem is reported with its line and field (``plant_ensemble.yaml line 12, field
aggregate.method: ...``) in one :class:`CompositionError`. :func:`build_dag` then makes the DAG
with the provider's operators: one deploy task per cluster and FDL file, one ``classify`` task per
(input, cluster, service), mapped at run time from the ``inputs`` param (empty: all inputs), and an
``aggregate`` task (:class:`~airflow_provider_oscar.operators.ensemble.OscarEnsembleOperator`).
Relative paths are relative to the composition file. Files (``paths``, ``glob``) are read where
the tasks run, like a Python DAG's; bucket inputs (``objects``, ``prefix``) are read through the
first cluster's connection.
"""

from airflow_provider_oscar.compositions.dag import build_dag
from airflow_provider_oscar.compositions.model import Composition, CompositionError, Issue
from airflow_provider_oscar.compositions.reading import load_composition, load_compositions

__all__ = [
    "Composition",
    "CompositionError",
    "Issue",
    "build_dag",
    "load_composition",
    "load_compositions",
]
