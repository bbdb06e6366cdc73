"""``make ui``: the Airflow UI with the OSCAR provider, on an embedded OSCAR, until Ctrl-C.

Starts an embedded OSCAR on loopback, a throw-away Airflow home (SQLite) whose DAGs folder is
``example_dags/``, and ``airflow standalone`` (API server with the UI, scheduler, DAG processor,
triggerer) on 127.0.0.1; stores ``oscar_default`` in the metadata DB (so the UI lists it and its
*Test* button works: ``[core] test_connection = Enabled``), then prints the URL and the login.
Ctrl-C stops Airflow (SIGINT, which ``airflow standalone`` handles by stopping its components)
and the embedded OSCAR, and removes the Airflow home unless ``--keep`` was given.

:class:`AirflowStandalone` is also what the browser tests (``tests/ui``) start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"
AIRFLOW = Path(sys.executable).with_name("airflow")
PASSWORDS = "simple_auth_manager_passwords.json.generated"
USERNAME = "admin"
# Runs airflow with SIGINT restored: a process started in the background by a non-interactive
# shell inherits SIGINT as ignored, and `airflow standalone` then cannot be stopped cleanly.
_EXEC_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class StandaloneError(RuntimeError):
    """Airflow did not come up, or a request to it failed; the message ends with its log."""


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


def airflow_environment(home: Path, port: int, **overrides: str) -> dict[str, str]:
    """The environment of the standalone: this process's, without any ``AIRFLOW*`` variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            # The standalone starts its components as `airflow ...` from PATH.
            "PATH": os.pathsep.join([str(AIRFLOW.parent), env.get("PATH", os.defpath)]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # 2 cores: the default of 32 forks as many executor workers.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    env.update(overrides)
    return env


class AirflowStandalone:
    """``airflow standalone`` in a throw-away home, driven over its REST API.

    ``with AirflowStandalone(home) as airflow:`` starts it and waits until the API answers;
    leaving the block sends SIGINT and waits for a clean stop (then SIGTERM/SIGKILL to its
    process group, which it leads).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.home = home
        self.port = free_port(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "standalone.log"
        self._env = airflow_environment(home, self.port, **dict(env or {}))
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> AirflowStandalone:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WITH_SIGINT, str(AIRFLOW), "standalone"],
                env=self._env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us; we forward it
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop(timeout=10)
            raise
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while True:
            self.check_running()
            try:
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise StandaloneError(
                    f"Airflow did not answer within {self._start_timeout:.0f} s" + self.log_tail()
                )
            time.sleep(0.5)
        while not (self.home / PASSWORDS).exists():
            self.check_running()
            if time.monotonic() > deadline:
                raise StandaloneError(f"no {PASSWORDS} in {self.home}")
            time.sleep(0.2)

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGINT, then SIGTERM and SIGKILL to the process group; returns the exit code."""
        process = self._process
        if process is None:
            return None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGINT:
                    process.send_signal(sig)
                else:
                    os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait)
        # Components that outlived the standalone (they share its process group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self._process = None
        return process.returncode

    def __enter__(self) -> AirflowStandalone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_running(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StandaloneError(
                f"airflow standalone exited with {self._process.returncode}" + self.log_tail()
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- airflow standalone log (tail) ---\n" + "\n".join(text)

    # the REST API -------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return USERNAME

    @property
    def password(self) -> str:
        passwords = json.loads((self.home / PASSWORDS).read_text())
        return str(passwords[USERNAME])

    def token(self) -> str:
        if self._token is None:
            response = httpx.post(
                f"{self.url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=30,
            )
            self._check(response)
            self._token = str(response.json()["access_token"])
        return self._token

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """An httpx client for ``/api/v2`` with the admin's bearer token."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        with httpx.Client(base_url=f"{self.url}/api/v2", headers=headers, timeout=30) as client:
            yield client

    def _check(self, response: httpx.Response) -> None:
        if response.is_error:
            raise StandaloneError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )

    def add_connection(self, conn_id: str, connection: Mapping[str, Any]) -> None:
        """Store a connection in the metadata DB (``connection`` in ``connection_json`` form)."""
        body = {
            "connection_id": conn_id,
            "conn_type": connection["conn_type"],
            "host": connection.get("host"),
            "login": connection.get("login"),
            "password": connection.get("password"),
            "port": connection.get("port"),
            "schema": connection.get("schema"),
            "description": connection.get("description"),
            "extra": json.dumps(connection.get("extra") or {}),
        }
        with self.api() as api:
            self._check(api.post("/connections", json=body))

    def wait_for_dag(self, dag_id: str, timeout: float = 90.0) -> None:
        """Until the DAG processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while api.get(f"/dags/{dag_id}").status_code != 200:
                self.check_running()
                if time.monotonic() > deadline:
                    raise StandaloneError(f"{dag_id} was not parsed in {timeout:.0f} s")
                time.sleep(1)

    def trigger(self, dag_id: str) -> str:
        """Unpause ``dag_id`` and start a run now; returns its run id."""
        with self.api() as api:
            self._check(api.patch(f"/dags/{dag_id}", json={"is_paused": False}))
            response = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
            self._check(response)
            return str(response.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Until the run ends; returns its state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while True:
                response = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
                self._check(response)
                state = str(response.json()["state"])
                if state in ("success", "failed"):
                    return state
                self.check_running()
                if time.monotonic() > deadline:
                    raise StandaloneError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s")
                time.sleep(2)


def oscar_connection(oscar: Any, description: str) -> dict[str, Any]:
    """The connection of an embedded OSCAR, as ``add_connection`` stores it.

    The port is stored too (it is also in the endpoint): Airflow 3.3.0 to 3.3.2 refuse the
    connection list's *Test* button for connections without a port (apache/airflow#73298).
    """
    connection: dict[str, Any] = json.loads(oscar.connection_json())
    connection["port"] = oscar.port
    connection["description"] = description
    return connection


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="for the UI (default 8080)")
    parser.add_argument("--home", type=Path, help="the Airflow home (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home on exit")
    parser.add_argument(
        "--trigger", metavar="DAG_ID", help="unpause and run this DAG once it is parsed"
    )
    args = parser.parse_args(argv)
    if not AIRFLOW.exists():
        print(f"{AIRFLOW} is missing: run `make setup` first", file=sys.stderr)
        return 1

    from airflow_provider_oscar.local.server import OscarLocal

    # Ctrl-C and SIGTERM stop everything cleanly, even when started in the background (which
    # leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    home = args.home or Path(tempfile.mkdtemp(prefix="oscar-ui-airflow-"))
    started = time.monotonic()
    airflow = AirflowStandalone(home, port=args.port)
    try:
        with OscarLocal() as oscar:
            print(f"embedded OSCAR at {oscar.endpoint} (user {oscar.user})", flush=True)
            print(f"starting airflow standalone (log: {airflow.log_path}) ...", flush=True)
            with airflow:
                airflow.add_connection(
                    "oscar_default",
                    oscar_connection(oscar, "The embedded OSCAR started by `make ui`"),
                )
                if args.trigger:
                    airflow.wait_for_dag(args.trigger)
                    run_id = airflow.trigger(args.trigger)
                    print(f"triggered {args.trigger}: {run_id}", flush=True)
                print(
                    f"\nAirflow is up after {time.monotonic() - started:.0f} s:\n"
                    f"  URL       {airflow.url}\n"
                    f"  login     {airflow.username} / {airflow.password}\n"
                    f"  OSCAR     {airflow.url}/plugin/oscar (clusters, services, results)\n"
                    f"  DAGs      {DAGS}\n"
                    "The DAGs start paused: unpause and trigger oscar_plant_ensemble to see\n"
                    "ensemble results. Press Ctrl-C to stop.",
                    flush=True,
                )
                try:
                    while True:
                        airflow.check_running()
                        time.sleep(1)
                except KeyboardInterrupt:
                    print("\nstopping airflow and the embedded OSCAR ...", flush=True)
    except KeyboardInterrupt:  # Ctrl-C while starting, or a second one while stopping
        print("\nstopping ...", flush=True)
        airflow.stop(timeout=5)
    except StandaloneError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if not args.keep and args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
