"""docker-compose.yaml, its Dockerfile and .env.example: what users run the provider with.

No Docker engine is needed: the compose file is read with pyyaml (its ``${VAR:-default}``
values resolved as compose would with no .env), and ``docker compose config`` validates it
where a compose client is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_oscar.local import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
# Processes that resolve `oscar_default`: tasks run in the Celery workers, deferred waits in the
# triggerer, the connection test in the api-server.
RESOLVES_CONNECTION = ["airflow-worker", "airflow-triggerer", "airflow-apiserver"]
SHARED_SETTINGS = ROOT / "stack" / "airflow.env"
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")  # not $${escaped}


def _interpolate(value: Any) -> Any:
    """Compose's interpolation with no .env and no environment: every default applies."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _compose_client() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_config_accepts_the_file() -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no compose client: neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # no variables: the defaults must do
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_celery_airflow_postgres_redis_minio_and_the_embedded_oscar(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) >= {
        "postgres",
        "redis",
        "minio",
        "oscar",
        "airflow-init",
        *AIRFLOW_COMMANDS,
    }
    shared = dict(
        line.split("=", 1)
        for line in SHARED_SETTINGS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name, command in AIRFLOW_COMMANDS.items():
        assert _command(services[name]) == command.split(), name
        assert services[name]["env_file"] == ["stack/airflow.env"], name
        env = _env(services[name])
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        # explicit drivers: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")


def test_every_airflow_service_and_the_oscar_run_the_dockerfile_image_with_the_provider(
    services: dict[str, dict[str, Any]],
) -> None:
    images = set()
    for name in ["airflow-init", "oscar", *AIRFLOW_COMMANDS]:
        build = services[name]["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
        assert build["args"]["AIRFLOW_VERSION"].startswith("3.3."), name
        images.add(services[name]["image"])
    assert len(images) == 1, "one image for every service, built once"


def test_dockerfile_installs_the_provider_wheel_into_the_pinned_official_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.\d+$", dockerfile, re.MULTILINE)
    assert "pip wheel" in dockerfile  # the provider is built into a wheel ...
    install = re.search(r"pip install .*", dockerfile)
    assert install and '"apache-airflow==${AIRFLOW_VERSION}"' in install.group()
    assert ".whl" in install.group()  # ... and that wheel installed next to a pinned Airflow
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r[:1] not in "#"]
    assert rules[0] == "*", "the build context holds only what the Dockerfile copies"
    assert "!airflow_provider_oscar/" in rules


def test_the_connection_reaches_every_process_that_resolves_it(
    services: dict[str, dict[str, Any]],
) -> None:
    password = _env(services["oscar"])["OSCAR_LOCAL_PASSWORD"]
    for name in [*RESOLVES_CONNECTION, "airflow-dag-processor"]:
        conn = json.loads(_env(services[name])["AIRFLOW_CONN_OSCAR_DEFAULT"])
        assert conn["conn_type"] == "oscar", name
        assert conn["host"] == "http://oscar:8000", name
        assert (conn["login"], conn["password"]) == ("oscar", password), name


def test_airflow_services_share_the_execution_api_and_jwt_secret(
    services: dict[str, dict[str, Any]],
) -> None:
    envs = [_env(services[name]) for name in AIRFLOW_COMMANDS]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        assert len({env[key] for env in envs}) == 1 and envs[0][key], key
    url = envs[0]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert url == "http://airflow-apiserver:8080/execution/"


def test_the_example_dags_are_the_dags_folder_of_the_parsing_and_running_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ["airflow-dag-processor", "airflow-worker"]:
        assert "./example_dags:/opt/airflow/dags:ro" in services[name]["volumes"], name


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name == "airflow-init":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    check = " ".join(services["oscar"]["healthcheck"]["test"])
    assert "http://localhost:8000/health" in check


def test_airflow_waits_for_the_database_migration_and_a_healthy_oscar(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in AIRFLOW_COMMANDS:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends["oscar"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["oscar"]["depends_on"]["minio"]["condition"] == "service_healthy"
    init = _env(services["airflow-init"])
    assert init["_AIRFLOW_DB_MIGRATE"] == "true" and init["_AIRFLOW_WWW_USER_CREATE"] == "true"


def test_embedded_oscar_stores_in_minio_and_its_command_parses(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    oscar, minio = _env(services["oscar"]), _env(services["minio"])
    assert oscar["OSCAR_LOCAL_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
    assert oscar["OSCAR_LOCAL_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    command = _command(services["oscar"])
    assert command[0] == "oscar-local"
    for key, value in oscar.items():
        monkeypatch.setenv(key, value)
    args = cli.parse_args(command[1:])  # the same flags and env fallbacks as the real CLI
    assert args.host == "0.0.0.0" and args.port == 8000
    assert args.s3_endpoint == "http://minio:9000"
    assert (args.s3_access_key, args.s3_secret_key) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert args.password == oscar["OSCAR_LOCAL_PASSWORD"]


def test_published_ports_are_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["oscar"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]


def test_env_example_documents_every_variable_the_compose_file_reads() -> None:
    used = set(_VARIABLE.findall(json.dumps(yaml.safe_load(COMPOSE.read_text()))))
    documented = {
        line.lstrip("# ").split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if re.match(r"^#? ?[A-Z][A-Z0-9_]*=", line)
    }
    assert {name for name, _ in used} <= documented
