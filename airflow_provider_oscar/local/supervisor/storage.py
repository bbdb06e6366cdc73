"""Storage as the supervisor sees it inside the container (faas-supervisor 1.6.2).

Sources: faassupervisor/storage/config.py ``StorageConfig`` (credential checks,
``download_input``, ``upload_output``), storage/providers/local.py, s3.py and minio.py.

The ``minio.default`` keys come only from the secret OSCAR mounts at
``/var/run/secrets/providers/minio.default``: job pods have it (grycap/oscar
``pkg/handlers/job.go``, ``MinIODefaultPath``), the Knative pods that answer ``/run`` do not
(``pkg/backends/knative.go`` mounts no secret). Without keys the supervisor falls back to its
LOCAL provider: the event itself becomes the input file and outputs are not uploaded. So a
synchronous run never touches the bucket, whatever its event says.

Other providers (a remote MinIO, S3, Onedata, WebDAV) are outside the embedded OSCAR: a run
that needs one fails with an ``oscar-local:`` error record saying so.
"""

from __future__ import annotations

import asyncio
import http
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from minio.error import S3Error

from airflow_provider_oscar.local.storage import ObjectStore
from airflow_provider_oscar.local.supervisor.events import Event, save_event
from airflow_provider_oscar.local.supervisor.logs import SupervisorExit, SupervisorLog, uncaught

# The keys each provider type needs in ``storage_providers`` (StorageConfig._validate_*_creds).
_REQUIRED_KEYS = {
    "s3": ("access_key", "secret_key"),
    "minio": ("access_key", "secret_key"),
    "onedata": ("oneprovider_host", "token", "space"),
    "webdav": ("hostname", "login", "password"),
}
_LOCAL = "LOCAL"
_INVALID_NAME = "Object name contains unsupported characters."


def botocore_error(name: str, message: str) -> Exception:
    """An exception that formats in a traceback as ``botocore.exceptions.<name>: <message>``."""
    kind = type(name, (Exception,), {"__module__": "botocore.exceptions"})
    return kind(message)


@dataclass
class _Auth:
    """``AuthData``: the provider a transfer goes through. ``store`` is set for the embedded
    OSCAR's own MinIO; ``creds`` is ``None`` for S3 without keys (boto3 then looks for
    credentials in the container, finds none, and fails)."""

    name: str
    creds: dict[str, Any] | None
    store: bool = False

    @property
    def type(self) -> str:
        return self.name.split(".", 1)[0].upper()


class StorageConfig:
    """The providers the supervisor can use, read from ``function_config.yaml``.

    ``minio_access_key`` is the access key of the mounted ``minio.default`` secret, or ``None``
    when the pod has no such secret (synchronous runs); ``store`` is a client of the embedded
    MinIO with that secret's keys.
    """

    def __init__(
        self,
        config: dict[str, Any],
        log: SupervisorLog,
        store: ObjectStore | None,
        minio_access_key: str | None,
    ) -> None:
        self.log = log
        self.store = store
        self.output: list[Any] = config.get("output") or []
        self.inputs: list[Any] = config.get("input") or []
        self.isolation_level = config.get("isolation_level", "")
        self.bucket_list = config.get("bucket_list", "")
        self.auth: dict[tuple[str, str], _Auth] = {("S3", "default"): _Auth("s3.default", None)}
        log.info("Reading storage configuration")
        self._read_providers(config.get("storage_providers") or {}, minio_access_key)

    def _read_providers(self, providers: dict[str, Any], minio_access_key: str | None) -> None:
        if not providers:
            self.log.warning("There is no storage provider defined for this function.")
        for kind, required in _REQUIRED_KEYS.items():
            entries = providers.get(kind)
            if not entries:
                continue
            if not isinstance(entries, dict):
                raise self._auth_error(kind)
            for provider_id, creds in entries.items():
                if kind == "minio" and provider_id == "default":
                    if minio_access_key is None:
                        self.log.info("No MinIO user configuration found")
                        continue
                    self.log.info(f"Using MinIO credentials for user: '{minio_access_key}'")
                    self.auth[("MINIO", "default")] = _Auth("minio.default", {}, store=True)
                    continue
                if not all(creds.get(key) not in (None, "") for key in required):
                    raise self._auth_error(kind)
                self.auth[(kind.upper(), provider_id)] = _Auth(f"{kind}.{provider_id}", creds)

    def _auth_error(self, kind: str) -> SupervisorExit:
        return self.log.fatal(
            f"The storage authentication of '{kind.upper()}' is not well-defined."
        )

    # input ---------------------------------------------------------------------------------

    async def download_input(self, event: Event, input_dir: Path) -> Path:
        """``StorageConfig.download_input``: the path of the input file."""
        auth = self._input_auth(event)
        provider = auth.type if auth else _LOCAL
        self.log.info(f"Found '{provider}' input provider")
        if auth is None:
            with uncaught(self.log, "events/unknown.py", "save_event"):
                return save_event(event, input_dir)
        assert event.bucket is not None and event.object_key is not None
        self.log.info(
            f"Downloading item from bucket '{event.bucket}' with key '{event.object_key}'"
        )
        target = posixpath.join(str(input_dir), event.file_name)
        if event.file_name in ("", ".", ".."):  # open(<directory>, 'wb')
            error = IsADirectoryError(21, "Is a directory", target)
            raise self.log.crash(error, "storage/providers/s3.py", "download_file")
        await self._transfer(auth, False, event.bucket, event.object_key, Path(target))
        self.log.info(
            f"Successful download of file '{event.object_key}' from bucket '{event.bucket}' "
            f"in path '{target}'"
        )
        return Path(target)

    def _input_auth(self, event: Event) -> _Auth | None:
        """``StorageConfig._get_input_auth_data``."""
        if event.kind == "ONEDATA":
            space = str(event.object_key).strip("/").split("/", maxsplit=1)[0]
            for entry in self.inputs:
                kind, provider_id = _split_provider(entry.get("storage_provider"))
                if kind == "ONEDATA":
                    with uncaught(self.log, "storage/config.py", "_get_input_auth_data"):
                        auth = self.auth[("ONEDATA", provider_id)]
                    if auth.creds and auth.creds.get("space") == space:
                        return auth
            raise self._auth_error("onedata")
        if event.kind == "UNKNOWN":
            return None
        kind = "WEBDAV" if event.kind == "DCACHE" else event.kind
        return self.auth.get((kind, event.provider_id))

    # output --------------------------------------------------------------------------------

    async def upload_output(self, output_dir: Path, event: Event, files: list[Path]) -> None:
        """``StorageConfig.upload_output``: each output path's prefix and suffix filters."""
        self.log.info(f"Searching for files to upload in folder '{output_dir}'")
        for output in self.output:
            self.log.info(
                f"Checking files for uploading to '{output['storage_provider']}' "
                f"on path: '{output['path']}'"
            )
            kind, provider_id = _split_provider(output["storage_provider"])
            self._isolate(output, kind, event)
            for file_path in files:
                name = str(file_path).replace(f"{output_dir}/", "").strip().lstrip("/")
                if not (
                    _matches(output, "prefix", name.startswith)
                    and _matches(output, "suffix", name.endswith)
                ):
                    continue
                auth = self.auth.get((kind or "", provider_id))
                if auth is None:
                    continue  # the LOCAL provider's upload_file does nothing
                path = output["path"]
                bucket = path.split("/")[0]
                parts = path.split("/", 1)
                key = f"{parts[1]}/{name}" if len(parts) > 1 else name
                self.log.info(f"Uploading file '{key}' to bucket '{bucket}'")
                await self._transfer(auth, True, bucket, key, file_path)

    def _isolate(self, output: dict[str, Any], kind: str | None, event: Event) -> None:
        """With ``isolation_level: USER``, outputs follow the event into the user's bucket."""
        if kind != "MINIO" or self.isolation_level != "USER" or event.bucket is None:
            return
        try:
            if event.bucket not in self.bucket_list:
                return
        except TypeError:
            return
        folder_key = output["path"].split("/")
        if len(folder_key) > 1:
            self.log.print(str(folder_key))
            self.log.print(event.bucket + "/" + "/".join(folder_key[1:]))
            output["path"] = event.bucket + "/" + "/".join(folder_key[1:])

    async def _transfer(self, auth: _Auth, upload: bool, bucket: str, key: str, path: Path) -> None:
        """One boto3 transfer; its failures end the supervisor as boto3's would."""
        step, function = (
            ("_parse_output", "upload_file") if upload else ("_parse_input", "download_file")
        )
        where = "storage/providers/s3.py"
        if auth.creds is None:
            error = botocore_error("NoCredentialsError", "Unable to locate credentials")
            raise self.log.crash(error, where, function)
        if not auth.store:
            raise self.log.fatal(
                f"oscar-local: storage provider '{auth.name}' is outside the embedded OSCAR"
            )
        assert self.store is not None  # the minio.default provider needs the mounted keys
        action = self.store.upload if upload else self.store.download
        try:
            await asyncio.to_thread(action, bucket, key, path)
        except S3Error as exc:
            if upload:
                message = exc.message or ""
                raise self.log.client_error(step, exc.code or "", message, "PutObject") from None
            # download_fileobj starts with a HEAD request, whose error answer has no body
            status = exc.response.status if exc.response is not None else 404
            raise self._head_error(step, status) from None
        except ValueError:  # a name MinIO refuses ('..' segments): 400 before any data
            if upload:
                raise self.log.client_error(
                    step, "XMinioInvalidObjectName", _INVALID_NAME, "PutObject"
                ) from None
            raise self._head_error(step, 400) from None
        except urllib3.exceptions.HTTPError:
            url = f"{self.store.settings.endpoint}/{bucket}/{key}"
            message = f'Could not connect to the endpoint URL: "{url}"'
            error = botocore_error("EndpointConnectionError", message)
            raise self.log.crash(error, where, function) from None
        except OSError as exc:
            raise self.log.crash(exc, where, function) from None

    def _head_error(self, step: str, status: int) -> SupervisorExit:
        phrase = http.HTTPStatus(status).phrase
        return self.log.client_error(step, str(status), phrase, "HeadObject")


def _split_provider(value: Any) -> tuple[str | None, str]:
    """``StrUtils.get_storage_type`` and ``get_storage_id``: ``"minio.x"`` is (MINIO, x)."""
    if not isinstance(value, str):
        return None, "default"
    parts = value.split(".", maxsplit=1)
    return parts[0].upper(), parts[1] if len(parts) == 2 else "default"


def _matches(output: dict[str, Any], field: str, test: Callable[[str], bool]) -> bool:
    values = output.get(field)
    return not values or any(test(value) for value in values)


def output_files(out_dir: Path) -> list[Path]:
    """``FileUtils.get_all_files_in_dir``, in ``os.walk`` order; the embedded OSCAR skips
    symbolic links, which would reach outside the job directory on the host."""
    found: list[Path] = []
    if out_dir.is_symlink():
        return found
    for root, dirs, names in os.walk(out_dir, followlinks=False):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found
