"""The stack's settings: explicit drivers, shared settings, connections, secrets, and the pins."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from stack.settings import CLUSTERS, ROOT, StackSettings, read_env_file


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    monkeypatch.setenv("AIRFLOW__CORE__SOMETHING_FROM_OUTSIDE", "leaks")
    return StackSettings(tmp_path / "stack", overrides={"AIRFLOW__CORE__PARALLELISM": "3"})


def test_the_metadata_db_and_celery_results_name_their_postgres_driver(
    settings: StackSettings,
) -> None:
    env = settings.airflow_environment()
    database = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    results = make_url(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert database.get_dialect().driver == results.get_dialect().driver == "psycopg2"
    # The trap the explicit driver avoids: SQLAlchemy 2.1 reads a bare URL as psycopg 3, which
    # the stack does not install.
    bare = make_url("postgresql://airflow@127.0.0.1/airflow").get_dialect().driver
    assert bare != "psycopg2"


def test_every_process_gets_the_shared_settings_the_connections_and_nothing_inherited(
    settings: StackSettings,
) -> None:
    env = settings.airflow_environment()
    shared = read_env_file()
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {k: env[k] for k in shared if k != "AIRFLOW__CORE__PARALLELISM"} == {
        k: v for k, v in shared.items() if k != "AIRFLOW__CORE__PARALLELISM"
    }
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"  # an override wins
    assert "AIRFLOW__CORE__SOMETHING_FROM_OUTSIDE" not in env
    for conn_id, cluster in CLUSTERS.items():
        connection = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        assert connection["extra"]["cluster_id"] == cluster
        assert connection["host"] == settings.oscar_endpoint(conn_id)
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert [b["kwargs"]["path"] for b in bundles] == [str(ROOT / "example_dags")]


def test_secrets_are_made_once_kept_private_and_reused(
    settings: StackSettings, tmp_path: Path
) -> None:
    again = StackSettings(tmp_path / "stack")
    assert again.secrets == settings.secrets
    mode = stat.S_IMODE((tmp_path / "stack" / "secrets.json").stat().st_mode)
    assert mode == 0o600
    assert (
        len({settings.secrets.postgres, settings.secrets.redis, *settings.secrets.oscar.values()})
        == 4
    )


def test_the_env_file_is_plain_key_value_lines(tmp_path: Path) -> None:
    broken = tmp_path / "broken.env"
    broken.write_text("# fine\nAIRFLOW__A=1\nnot a setting\n")
    with pytest.raises(ValueError, match=r"broken.env:3: not a KEY=VALUE line"):
        read_env_file(broken)


def test_the_locked_celery_provider_imports() -> None:
    """An unpinned install pulls Celery 5.7, from which the provider cannot import ``retry``."""
    done = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
        env={**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-1500:]
