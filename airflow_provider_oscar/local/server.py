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
from airflow_provider_oscar.local.cluster import LocalCluster
from airflow_provider_oscar.local.faults import FaultPlan
from airflow_provider_oscar.local.profiles import profile_for
from airflow_provider_oscar.local.s3.front import S3Front
from airflow_provider_oscar.local.s3.server import MinIOServer
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.local.storage import MotoProcess, S3Settings


class OscarLocal:
    """An OSCAR-compatible server with its own MinIO, each on a loopback port.

    ``oscar_version`` picks the release it behaves as (``"3.6"``, ``"3.7"``, ``"4.0"``, ``"4.1"``
    or a tag such as ``"v3.7.1"``; default 4.1). The MinIO (``s3_port``, a free one by default)
    keeps its objects in a moto server it starts, or in the S3/MinIO endpoint ``s3`` points at
    (whose keys are then the root user's).
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
        s3_port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.s3_port = s3_port
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
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._front: S3Front | None = None
        self.minio: MinIOServer | None = None
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
        api_socket = self._bind(self.port)
        s3_socket = self._bind(self.s3_port)
        self.port = api_socket.getsockname()[1]
        self.s3_port = s3_socket.getsockname()[1]
        self.minio = MinIOServer(s3)
        self.minio.endpoint = f"http://{self.host}:{self.s3_port}"
        self.cluster = LocalCluster(self.settings, self.minio, jobs_dir)
        self.cluster.runtime.endpoint = self.endpoint
        self._front = S3Front(self.minio)
        self._servers = [_server(create_app(self.cluster)), _server(self._front)]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"oscar-local:{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(30) or not all(server.started for server in self._servers):
            self.stop()
            raise RuntimeError(f"the embedded OSCAR did not start on {self.endpoint}")
        return self

    def _bind(self, port: int) -> socket.socket:
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
        # Nagle's algorithm delays every response split into two writes by ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        self._sockets.append(sock)
        return sock

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread:
            self._thread.join(timeout=15)
        for sock in self._sockets:
            sock.close()
        if self._moto:
            self._moto.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._servers, self._sockets = [], []
        self._thread = self._moto = None

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
        assert self.cluster is not None and self._front is not None
        cluster, front, servers = self.cluster, self._front, self._servers
        sockets = list(self._sockets)

        async def main() -> None:
            await cluster.start()
            serving = [
                asyncio.create_task(server.serve(sockets=[sock]))
                for server, sock in zip(servers, sockets, strict=True)
            ]
            while not all(s.started for s in servers) and not any(t.done() for t in serving):
                await asyncio.sleep(0.01)
            ready.set()
            await asyncio.gather(*serving, return_exceptions=True)
            await cluster.stop()
            await front.aclose()

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
        """The MinIO endpoint with the root user's keys (what the admin's ``/system/config``
        gives)."""
        assert self.minio is not None, "start the server first"
        return self.minio.root

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


def _server(app: object) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        server_header=False,  # Gin and MinIO write their own (or none)
        timeout_keep_alive=30,
        limit_concurrency=4096,
        backlog=4096,
    )
    return uvicorn.Server(config)
