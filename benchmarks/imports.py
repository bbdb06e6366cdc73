"""``import_overhead_ratio``: importing the provider's operators on top of ``airflow.sdk``.

A DAG file that uses the provider imports ``airflow.sdk`` and the operator modules; the DAG
processor parses it again and again in fresh interpreters. Each sample is a fresh interpreter
timing its own imports (interpreter start-up excluded): ``airflow.sdk`` alone, or
``airflow.sdk`` plus every operator module of the provider. Samples alternate, after one
untimed warm-up of each (which also writes the byte-code caches, as an installed package has
them); the figure is the ratio of the medians of the imports' CPU time (``time.process_time``:
on a shared machine, wall time mostly measures who else got the cores; the wall-time ratio is
in the detail). The detail also lists the heavy libraries (numpy, minio, oscar-python, ...) the
operator modules pulled in; they should be none.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from benchmarks.figures import Figure, render
from benchmarks.scale_support import prepare_airflow

SAMPLES = 9
OPERATORS = [
    "airflow_provider_oscar.operators.service",
    "airflow_provider_oscar.operators.invoke",
    "airflow_provider_oscar.operators.batch",
    "airflow_provider_oscar.operators.ensemble",
]
HEAVY = ["numpy", "minio", "oscar_python", "boto3", "moto", "fastapi", "uvicorn", "urllib3"]
_PROBE = """
import json, sys, time
start, cpu = time.perf_counter(), time.process_time()
import airflow.sdk
for name in {modules!r}:
    __import__(name)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"seconds": seconds, "cpu": cpu, "heavy": heavy}}))
"""


def _sample(modules: list[str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = _PROBE.format(modules=modules, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure() -> list[Figure]:
    prepare_airflow()
    _sample([])
    _sample(OPERATORS)  # warm-ups: configuration file, byte-code caches
    alone: list[float] = []
    provider: list[float] = []
    alone_wall: list[float] = []
    provider_wall: list[float] = []
    heavy: set[str] = set()
    baseline_heavy: set[str] = set()
    for _ in range(SAMPLES):
        first = _sample([])
        second = _sample(OPERATORS)
        alone.append(float(first["cpu"]))  # type: ignore[arg-type]
        provider.append(float(second["cpu"]))  # type: ignore[arg-type]
        alone_wall.append(float(first["seconds"]))  # type: ignore[arg-type]
        provider_wall.append(float(second["seconds"]))  # type: ignore[arg-type]
        baseline_heavy.update(first["heavy"])  # type: ignore[arg-type]
        heavy.update(second["heavy"])  # type: ignore[arg-type]
    ratio = statistics.median(provider) / statistics.median(alone)
    detail = {
        "samples": SAMPLES,
        "clock": "CPU time of the imports (time.process_time) in each fresh interpreter",
        "airflow_sdk_cpu_s": [round(s, 3) for s in alone],
        "with_operators_cpu_s": [round(s, 3) for s in provider],
        "wall_ratio": round(statistics.median(provider_wall) / statistics.median(alone_wall), 3),
        "operator_modules": OPERATORS,
        "heavy_modules_added": sorted(heavy - baseline_heavy),
    }
    return [Figure("import_overhead_ratio", ratio, "<=", 1.10, detail)]


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    print(json.dumps(figures[0].detail, indent=2))
