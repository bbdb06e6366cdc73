"""Where the stack lives, its secrets and ports, and the environment of every Airflow process.

Secrets are made once and kept in ``<root>/secrets.json`` (mode 0600), so a second start reuses
the database they protect; ports are picked free at every start. The Airflow settings shared
with docker-compose.yaml come from ``stack/airflow.env``; this module adds what only this
machine knows (addresses, secrets, folders) and the OSCAR connections, which every process gets
in its environment: the workers run tasks, the triggerer runs deferred waits, the API server
tests connections and the DAG processor parses DAGs that name clusters.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = Path(__file__).with_name("airflow.env")
EXAMPLES = ROOT / "example_dags"
BIN = Path(sys.executable).parent
#: The OSCAR connections of the stack and the cluster id each one's ``cluster_id`` extra gives.
CLUSTERS = {"oscar_default": "alpha", "oscar_second": "beta"}
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
#: The login of the stack's UI and REST API (the simple auth manager makes the password).
USERNAME = "admin"


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line: {line!r}")
        values[key.strip()] = value.strip()
    return values


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")  # pragma: no cover


@dataclass
class Secrets:
    """Passwords and keys of one stack, made on its first start."""

    postgres: str
    redis: str
    fernet_key: str
    jwt_secret: str
    api_secret: str
    oscar: dict[str, str]

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        from cryptography.fernet import Fernet

        made = cls(
            postgres=secrets.token_urlsafe(18),
            redis=secrets.token_urlsafe(18),
            fernet_key=Fernet.generate_key().decode(),
            jwt_secret=secrets.token_urlsafe(32),
            api_secret=secrets.token_urlsafe(32),
            oscar={conn_id: secrets.token_urlsafe(18) for conn_id in CLUSTERS},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(made), handle, indent=1)
        return made


@dataclass
class Ports:
    """The loopback ports of one start."""

    postgres: int
    redis: int
    api: int
    trigger_logs: int
    oscar: dict[str, int] = field(default_factory=dict)

    @classmethod
    def pick(cls, api: int | None = None) -> Ports:
        return cls(
            postgres=free_port(),
            redis=free_port(),
            api=free_port(api),
            trigger_logs=free_port(),
            oscar={conn_id: free_port() for conn_id in CLUSTERS},
        )


class StackSettings:
    """Everything a start of the stack in ``root`` needs to know.

    :param root: the stack's folder (``.stack`` for ``make stack``).
    :param api_port: the API server's port when free (else any).
    :param dag_folders: more folders of DAGs, each its own DAG bundle beside ``example_dags``.
    :param overrides: Airflow settings over ``airflow.env`` (e.g. short timeouts for drills).
    :param workers: how many Celery workers.
    """

    def __init__(
        self,
        root: Path,
        *,
        api_port: int | None = None,
        dag_folders: Mapping[str, Path] | None = None,
        overrides: Mapping[str, str] | None = None,
        workers: int = 2,
    ) -> None:
        self.root = root.resolve()
        self.home = self.root / "airflow"
        self.logs = self.root / "logs"
        self.postgres_data = self.root / "postgres"
        self.sockets = self.root / "run"
        self.redis_data = self.root / "redis"
        self.secrets = Secrets.load_or_create(self.root / "secrets.json")
        self.ports = Ports.pick(api_port)
        self.bundles = {"oscar-examples": EXAMPLES, **dict(dag_folders or {})}
        self.overrides = dict(overrides or {})
        self.workers = workers

    # addresses ----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def database_url(self) -> str:
        return (
            f"postgresql+psycopg2://airflow:{self.secrets.postgres}"
            f"@127.0.0.1:{self.ports.postgres}/airflow"
        )

    @property
    def broker_url(self) -> str:
        return f"redis://:{self.secrets.redis}@127.0.0.1:{self.ports.redis}/0"

    def oscar_endpoint(self, conn_id: str) -> str:
        return f"http://127.0.0.1:{self.ports.oscar[conn_id]}"

    def oscar_data(self, conn_id: str) -> Path:
        return self.root / "oscar" / conn_id

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def password(self) -> str:
        """The UI login's password (written by the API server on its first start)."""
        return str(json.loads(self.passwords_file.read_text())[USERNAME])

    # connections and environment ----------------------------------------------------------

    def connection(self, conn_id: str) -> dict[str, Any]:
        """The OSCAR connection ``conn_id`` in Airflow's JSON form."""
        return {
            "conn_type": "oscar",
            "host": self.oscar_endpoint(conn_id),
            "login": "oscar",
            "password": self.secrets.oscar[conn_id],
            "extra": {"cluster_id": CLUSTERS[conn_id]},
        }

    def airflow_environment(self) -> dict[str, str]:
        """The environment of every Airflow process: no inherited ``AIRFLOW*`` variable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(read_env_file())
        bundles = [
            {"name": name, "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(path)}}
            for name, path in self.bundles.items()
        ]
        env.update(
            {
                "PATH": os.pathsep.join([str(BIN), env.get("PATH", os.defpath)]),
                # Workers import the provider before forking (stack.celery_config).
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "stack.celery_config.CELERY_CONFIG",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                # `db+postgresql://` alone would mean psycopg 3 to SQLAlchemy 2.1.
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.database_url}",
                "AIRFLOW__CORE__FERNET_KEY": self.secrets.fernet_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.secrets.jwt_secret,
                "AIRFLOW__API__SECRET_KEY": self.secrets.api_secret,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.ports.api),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "tasks"),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports.trigger_logs),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            }
        )
        for conn_id in CLUSTERS:
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(self.connection(conn_id))
        env.update(self.overrides)
        return env
