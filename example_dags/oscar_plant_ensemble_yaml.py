"""Declarative compositions: one Airflow DAG per YAML file in ``compositions/``.

Each ``compositions/*.yaml`` names clusters, services, inputs, fan-out and aggregation (see
:mod:`airflow_provider_oscar.compositions`); every file is validated in full before any DAG is
built, and a broken one shows up as this file's import error, with the line and field of every
problem. ``compositions/plant_ensemble.yaml`` is ``oscar_plant_ensemble`` (the Python DAG)
declared in YAML: ``oscar_plant_ensemble_yaml`` gives the same consensus for every specimen.
"""

from __future__ import annotations

from pathlib import Path

from airflow_provider_oscar.compositions import build_dag, load_compositions

for _composition in load_compositions(Path(__file__).parent / "compositions"):
    globals()[_composition.dag_id] = build_dag(_composition)
