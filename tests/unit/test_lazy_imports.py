"""DAG files import the operators on every parse: heavy libraries wait until they are used."""

from __future__ import annotations

import json
import subprocess
import sys

OPERATOR_MODULES = [
    "airflow_provider_oscar.operators.service",
    "airflow_provider_oscar.operators.invoke",
    "airflow_provider_oscar.operators.batch",
    "airflow_provider_oscar.operators.ensemble",
    "airflow_provider_oscar.sensors.oscar",
    "airflow_provider_oscar.sensors.storage",
]
HEAVY = ["numpy", "minio", "oscar_python", "boto3", "moto", "fastapi", "uvicorn"]


def test_importing_the_operators_and_sensors_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        f"for name in {OPERATOR_MODULES!r}: __import__(name)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
