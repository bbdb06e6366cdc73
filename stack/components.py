"""The stack's components: what each runs, how it is prepared, and how it is known to be ready.

Postgres and Redis are the system's (Debian's ``postgresql`` and ``redis-server``); Postgres
refuses to run as root, so a root start runs it as the ``postgres`` user with its data folder
handed over to that user. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from stack.processes import Spec
from stack.settings import BIN, StackSettings


class StackError(RuntimeError):
    """A component could not be prepared or did not become ready."""


def wait_until(
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
) -> None:
    """Poll ``ready`` until it is true; ``alive`` raises when the component died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        try:
            if ready():
                return
        except Exception:  # not up yet: refused connections, half-started servers
            pass
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(0.3)


# Postgres ---------------------------------------------------------------------------------


def postgres_program(name: str) -> str:
    """A PostgreSQL server program (``initdb``, ``postgres``): Debian's newest, else on PATH.

    Debian keeps them in ``/usr/lib/postgresql/<major>/bin`` (``initdb`` is not on PATH), so
    both programs come from the same release.
    """
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    found = candidates[-1] if candidates else shutil.which(name)
    if found:
        return found
    raise StackError(
        f"PostgreSQL's {name} was not found: install Debian's postgresql package "
        "(make stack does when run as root)"
    )


def _postgres_user() -> tuple[int, int] | None:
    """Who runs Postgres: the ``postgres`` user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root needs a 'postgres' user to run PostgreSQL") from None
    return entry.pw_uid, entry.pw_gid


def _hand_over(path: Path, user: tuple[int, int] | None) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is not None:
        os.chown(path, *user)


def prepare_postgres(settings: StackSettings, log: Path) -> None:
    """``initdb`` on the first start: superuser ``airflow`` with the stack's password."""
    user = _postgres_user()
    if user is not None:  # the postgres user must reach its folders (a mkdtemp root is 0700)
        settings.root.chmod(settings.root.stat().st_mode | 0o011)
    _hand_over(settings.sockets, user)
    if (settings.postgres_data / "PG_VERSION").exists():
        return
    _hand_over(settings.postgres_data, user)
    with tempfile.NamedTemporaryFile("w", dir=settings.sockets, delete=False) as pwfile:
        pwfile.write(settings.secrets.postgres + "\n")
    try:
        if user is not None:
            os.chown(pwfile.name, *user)
        argv = [
            postgres_program("initdb"),
            "--pgdata",
            str(settings.postgres_data),
            "--username",
            "airflow",
            f"--pwfile={pwfile.name}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        uid, gid = user or (None, None)
        with log.open("ab") as output:
            done = subprocess.run(
                argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
                user=uid,
                group=gid,
                extra_groups=None if uid is None else [],
            )
        if done.returncode:
            raise StackError(f"initdb failed ({done.returncode}); see {log}")
    finally:
        os.unlink(pwfile.name)


def postgres_spec(settings: StackSettings) -> Spec:
    return Spec(
        name="postgres",
        argv=[
            postgres_program("postgres"),
            "-D",
            str(settings.postgres_data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={settings.ports.postgres}",
            "-c",
            f"unix_socket_directories={settings.sockets}",
            "-c",
            "max_connections=200",
            # A lost transaction at a crash, never a corrupt database: a dev stack's trade.
            "-c",
            "synchronous_commit=off",
        ],
        env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"},
        log=settings.logs / "postgres.log",
        user=_postgres_user(),
        stop_signal=signal.SIGINT,  # fast shutdown
    )


def postgres_ready(settings: StackSettings) -> bool:
    """Postgres answers, and the ``airflow`` database exists (created on the first start)."""
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1",
        port=settings.ports.postgres,
        user="airflow",
        password=settings.secrets.postgres,
        dbname="postgres",
        connect_timeout=2,
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if cursor.fetchone() is None:
                cursor.execute("CREATE DATABASE airflow")
    finally:
        connection.close()
    return True


# Redis ------------------------------------------------------------------------------------


def redis_spec(settings: StackSettings) -> Spec:
    settings.redis_data.mkdir(parents=True, exist_ok=True)
    config = settings.redis_data / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        "bind 127.0.0.1\n"
        f"port {settings.ports.redis}\n"
        f"dir {settings.redis_data}\n"
        f"requirepass {settings.secrets.redis}\n"
        'save ""\n'
        "appendonly no\n"
    )
    program = shutil.which("redis-server")
    if program is None:
        raise StackError(
            "redis-server was not found: install Debian's redis-server package "
            "(make stack does when run as root)"
        )
    return Spec("redis", [program, str(config)], dict(os.environ), settings.logs / "redis.log")


def redis_ready(settings: StackSettings) -> bool:
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=settings.ports.redis,
        password=settings.secrets.redis,
        socket_connect_timeout=2,
    )
    try:
        return bool(client.ping())
    finally:
        client.close()


# embedded OSCARs --------------------------------------------------------------------------


def oscar_spec(settings: StackSettings, conn_id: str) -> Spec:
    data = settings.oscar_data(conn_id)
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["OSCAR_LOCAL_PASSWORD"] = settings.secrets.oscar[conn_id]
    argv = [
        str(BIN / "oscar-local"),
        "--port",
        str(settings.ports.oscar[conn_id]),
        "--data-dir",
        str(data),
    ]
    return Spec(f"oscar:{conn_id}", argv, env, settings.logs / f"oscar-{conn_id}.log")


def oscar_ready(settings: StackSettings, conn_id: str) -> bool:
    response = httpx.get(f"{settings.oscar_endpoint(conn_id)}/health", timeout=2)
    return response.status_code == 200


# Airflow ----------------------------------------------------------------------------------


def airflow_specs(settings: StackSettings) -> list[Spec]:
    """The Airflow components, in the order they start."""
    env = settings.airflow_environment()
    airflow = str(BIN / "airflow")
    concurrency = env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "4")
    commands = {
        "api-server": ["api-server", "--workers", "1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
    }
    for number in range(1, settings.workers + 1):
        commands[f"worker-{number}"] = [
            "celery",
            "worker",
            "--concurrency",
            concurrency,
            "--celery-hostname",
            f"worker-{number}@%h",
            "--skip-serve-logs",
            "--without-mingle",
            "--without-gossip",
        ]
    return [
        Spec(name, [airflow, *command], env, settings.logs / f"{name}.log", cwd=settings.home)
        for name, command in commands.items()
    ]


def migrate(settings: StackSettings) -> None:
    """``airflow db migrate`` (quick when the database is up to date)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    log = settings.logs / "migrate.log"
    with log.open("ab") as output:
        done = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=settings.airflow_environment(),
            cwd=settings.home,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode:
        raise StackError(f"airflow db migrate failed ({done.returncode}); see {log}")


def health(settings: StackSettings) -> dict[str, str]:
    """The status of each part in the API server's ``/api/v2/monitor/health``."""
    response = httpx.get(f"{settings.api_url}/api/v2/monitor/health", timeout=5)
    response.raise_for_status()
    return {part: str((body or {}).get("status")) for part, body in response.json().items()}


def log_size(spec: Spec) -> int:
    """How long ``spec``'s log is now: readiness checks read only what comes after."""
    try:
        return spec.log.stat().st_size
    except FileNotFoundError:
        return 0


def worker_ready(spec: Spec, offset: int) -> bool:
    """Celery logs ``<hostname> ready.`` once the worker consumes its queues."""
    with spec.log.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return f"{spec.name}@" in text and " ready." in text
