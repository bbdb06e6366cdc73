"""The embedded OSCAR's object store and its blocking client.

By default a moto server runs in a child process (its own state, so several embedded OSCARs in
one process never share buckets); any S3 endpoint with keys (e.g. a MinIO server) can stand in.
Clients never reach it directly: the embedded MinIO (:mod:`.s3`) stands in front of it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Settings:
    """Where the store is and the keys that open it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @property
    def secure(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"

    def minio_provider(self) -> dict[str, object]:
        """The ``minio_provider`` block of ``/system/config``."""
        return {
            "endpoint": self.endpoint,
            "verify": self.secure,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
        }


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int
    last_modified: datetime | None


class MotoProcess:
    """A moto S3 server in a child process on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.endpoint = ""

    def start(self, timeout: float = 30.0) -> S3Settings:
        port = free_port(self.host)
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.endpoint = f"http://{self.host}:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the S3 server (moto) exited with {self._proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
                return S3Settings(
                    self.endpoint, "minio" + secrets.token_hex(6), secrets.token_urlsafe(24)
                )
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the S3 server (moto) did not answer on {self.endpoint}")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log:
            self._log.close()
        self._proc = self._log = None


class ObjectStore:
    """Blocking S3 operations the server needs (call them through ``asyncio.to_thread``)."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        parts = urlsplit(settings.endpoint)
        self.client = Minio(
            parts.netloc,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )

    def remove_bucket(self, bucket: str) -> bool:
        """Delete a bucket with every object in it; False if it did not exist."""
        if not self.client.bucket_exists(bucket):
            return False
        names = [
            DeleteObject(o.object_name)
            for o in self.client.list_objects(bucket, recursive=True)
            if o.object_name
        ]
        for error in self.client.remove_objects(bucket, names):
            log.warning("could not delete %s/%s: %s", bucket, error.name, error.message)
        self.client.remove_bucket(bucket)
        return True

    def bucket_names(self) -> list[str]:
        return [b.name for b in self.client.list_buckets()]

    def list(self, bucket: str, prefix: str = "") -> list[StoredObject]:
        try:
            return [
                StoredObject(o.object_name or "", o.etag or "", o.size or 0, o.last_modified)
                for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
            ]
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise

    def upload(self, bucket: str, key: str, path: Path) -> None:
        self.client.fput_object(bucket, key, str(path))

    def download(self, bucket: str, key: str, path: Path) -> None:
        self.client.fget_object(bucket, key, str(path))


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
