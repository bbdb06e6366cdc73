"""What the scale benchmarks share: an Airflow home, an embedded OSCAR in its own process.

The batch benchmarks run OSCAR in a separate process, as a worker and a cluster are in real
life: the embedded OSCAR (server, runtime, S3) then does not compete for the benchmark
process's interpreter lock.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import httpx


def prepare_airflow() -> None:
    """A throw-away Airflow home (no examples) unless one is configured."""
    if "AIRFLOW_HOME" not in os.environ:
        os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-airflow-")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def task_context(task_id: str = "bench") -> dict[str, Any]:
    """The part of an Airflow task context the batch operator reads."""
    ti = SimpleNamespace(
        dag_id="bench",
        run_id=f"bench__{secrets.token_hex(6)}",
        task_id=task_id,
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return {"ti": ti}


@dataclass
class OscarProcess:
    endpoint: str
    user: str
    password: str

    def connection_json(self, **extra: Any) -> str:
        return json.dumps(
            {
                "conn_type": "oscar",
                "host": self.endpoint,
                "login": self.user,
                "password": self.password,
                "extra": {"verify_ssl": False, **extra},
            }
        )

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.endpoint, auth=(self.user, self.password), timeout=60)

    def deploy(self, service: dict[str, Any]) -> dict[str, Any]:
        with self.admin() as client:
            client.post("/system/services", json=service).raise_for_status()
            return dict(client.get(f"/system/services/{service['name']}").json())


@contextmanager
def oscar_process(*args: str) -> Iterator[OscarProcess]:
    """``oscar-local`` on a free loopback port in a child process (stopped on exit)."""
    password = secrets.token_urlsafe(12)
    command = [sys.executable, "-m", "airflow_provider_oscar.local.cli", "--port", "0"]
    env = {**os.environ, "OSCAR_LOCAL_PASSWORD": password}
    child = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        found = re.search(r"OSCAR endpoint:\s+(\S+)\s+\(user (\S+)\)", line)
        if not found:
            raise RuntimeError(f"oscar-local did not start: {line!r}")
        yield OscarProcess(found.group(1), found.group(2).rstrip(")"), password)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def rss_bytes() -> int:
    """This process's resident memory, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
