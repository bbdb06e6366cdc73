"""Starting and stopping an embedded OSCAR: ``with OscarLocal() as oscar: ...``."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import uvicorn

from airflow_provider_oscar.local.api import create_app
from airflow_provider_oscar.local.cluster import LocalCluster, Settings
from airflow_provider_oscar.local.faults import FaultPlan
from airflow_provider_oscar.local.profiles import profile_for
from airflow_provider_oscar.local.storage import MotoProcess, ObjectStore, S3Settings


class OscarLocal:
    """An OSCAR-compatible server with its own S3 store, on a loopback port.

    ``oscar_version`` picks the release it behaves as (``"3.6"``, ``"3.7"``, ``"4.0"``, ``"4.1"``
    or a tag such as ``"v3.7.1"``; default 4.1). ``s3`` points it at an existing S3/MinIO
    endpoint instead of starting a moto server.
    ``data_dir`` holds job directories and the S3 server's log (a temporary directory, removed
    on stop, when not given).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        s3: S3Settings | None = None,
        settings: Settings | None = None,
        oscar_version: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.settings = settings or Settings()
        if oscar_version is not None:
            self.settings.oscar_version = oscar_version
        self.profile = profile_for(self.settings.oscar_version)  # refuses unknown versions
        if not self.settings.password:
            self.settings.password = secrets.token_urlsafe(18)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="oscar-local-"))
        self._s3 = s3
        self._moto: MotoProcess | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.cluster: LocalCluster | None = None

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> OscarLocal:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        s3 = self._s3
        if s3 is None:
            self._moto = MotoProcess(self.host, self.data_dir / "s3.log")
            s3 = self._moto.start()
        jobs_dir = self.data_dir / "jobs"
        jobs_dir.mkdir(exist_ok=True)
        self.cluster = LocalCluster(self.settings, ObjectStore(s3), jobs_dir)
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
        # Nagle's algorithm delays every response split into two writes by ~40 ms.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self.port = self._socket.getsockname()[1]
        self.cluster.runtime.endpoint = self.endpoint
        config = uvicorn.Config(
            create_app(self.cluster),
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            limit_concurrency=4096,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"oscar-local:{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(30) or not self._server.started:
            self.stop()
            raise RuntimeError(f"the embedded OSCAR did not start on {self.endpoint}")
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=15)
        if self._socket:
            self._socket.close()
        if self._moto:
            self._moto.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._server = self._thread = self._socket = self._moto = None

    def __enter__(self) -> OscarLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        assert self._server is not None and self._socket is not None and self.cluster is not None
        server, sock, cluster = self._server, self._socket, self.cluster

        async def main() -> None:
            await cluster.start()
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            ready.set()
            await serving
            await cluster.stop()

        asyncio.run(main())
        ready.set()

    # what clients need --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def user(self) -> str:
        return self.settings.user

    @property
    def password(self) -> str:
        return self.settings.password

    @property
    def faults(self) -> FaultPlan:
        assert self.cluster is not None, "start the server first"
        return self.cluster.faults

    @property
    def s3(self) -> S3Settings:
        assert self.cluster is not None, "start the server first"
        return self.cluster.store.settings

    def connection_uri(self) -> str:
        """An ``AIRFLOW_CONN_*`` URI for this server (type ``oscar``)."""
        extra = quote(json.dumps({"verify_ssl": False}), safe="")
        return (
            f"oscar://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/http?__extra__={extra}"
        )

    def connection_json(self) -> str:
        """The same connection in Airflow's JSON form."""
        return json.dumps(
            {
                "conn_type": "oscar",
                "host": self.endpoint,
                "login": self.user,
                "password": self.password,
                "extra": {"verify_ssl": False},
            }
        )
