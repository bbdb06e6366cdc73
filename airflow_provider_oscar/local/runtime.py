"""Runs a service script the way OSCAR's FaaS Supervisor does, on the host with ``/bin/sh``.

For each execution: classify the event (base64, JSON, MinIO storage event naming an object to
download), prepare fresh ``TMP_INPUT_DIR``/``TMP_OUTPUT_DIR``, run the script with the
supervisor's variables plus the service's variables and secrets, upload outputs (jobs), and
build the synchronous body (base64 of one file, base64 of a zip, or the console text). The
script's exit code is ignored, exactly as the supervisor does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import os
import re
import shutil
import signal
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from airflow_provider_oscar.local.storage import ObjectStore
from airflow_provider_oscar.local.types.service import LOG_LEVELS, Service

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_LEVEL_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}
CONSOLE_LIMIT = 16 * 1024 * 1024


class SupervisorError(Exception):
    """What makes the real supervisor exit with 1 (the job then ends ``Failed``)."""


@dataclass
class Invocation:
    """One execution request: the service, its secret values and the event body."""

    service: Service
    secrets: dict[str, str]
    event: bytes
    job_name: str | None
    timeout: float | None
    fail: bool = False


@dataclass
class Outcome:
    """What an execution produced."""

    log: str
    body: bytes = b""
    failed: bool = False
    timed_out: bool = False
    outputs: list[str] = field(default_factory=list)


@dataclass
class _Event:
    data: bytes = b""
    object_bucket: str | None = None
    object_key: str | None = None
    event_time: str | None = None
    raw: str = ""


class _Log:
    """Supervisor log lines, formatted as Python logging does in the supervisor."""

    def __init__(self, level: str) -> None:
        self.threshold = _LEVEL_RANK.get(level, _LEVEL_RANK["INFO"])
        self.lines: list[str] = []

    def __call__(self, level: str, message: str) -> None:
        if _LEVEL_RANK[level] >= self.threshold and level != "NOTSET":
            now = datetime.now()
            stamp = now.strftime("%Y-%m-%d %H:%M:%S") + f",{now.microsecond // 1000:03d}"
            self.lines.append(f"{stamp} - supervisor - {level} - {message}\n")

    def text(self) -> str:
        return "".join(self.lines)


class Runtime:
    """Executes invocations in fresh directories under ``work_root``."""

    def __init__(self, store: ObjectStore, work_root: Path, endpoint: str = "") -> None:
        self.store = store
        self.work_root = work_root
        self.endpoint = endpoint
        self.path = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )

    async def execute(self, call: Invocation) -> Outcome:
        service = call.service
        log = _Log(service.log_level)
        # unique even when a job name is reused while its predecessor is still cleaning up
        workdir = self.work_root / f"{call.job_name or 'run'}-{uuid.uuid4().hex[:12]}"
        in_dir, out_dir = workdir / "input", workdir / "output"
        for folder in (in_dir, out_dir, workdir / "tmp"):
            folder.mkdir(parents=True)
        real = workdir.resolve()  # a script may swap its directory for a link: never follow it
        try:
            log("INFO", "Supervisor started")
            event = classify(call.event)
            input_path = await self._stage_input(event, in_dir, log)
            if call.fail:
                raise SupervisorError("injected failure: the job's pod was evicted")
            env = self._environment(call, event, workdir, input_path)
            script = workdir / "script.sh"
            script.write_text(service.script)
            log("INFO", "Executing user script")
            console, timed_out = await _run_script(script, workdir, env, call.timeout)
            if timed_out:
                log("ERROR", f"Script killed: it exceeded the time limit of {call.timeout:g} s")
            outputs = output_files(out_dir) if _unmoved(workdir, real) else {}
            if not _unmoved(workdir, real):
                log("ERROR", "The script replaced its job directory: no outputs are collected")
            if call.job_name and not timed_out:
                await self._upload(service, outputs, log)
            body = sync_body(outputs, console)
            pod_log = _merge_log(log, console)
            prefix = "" if service.log_level == "CRITICAL" else log.text()
            return Outcome(
                log=pod_log,
                body=prefix.encode() + body + b"\n",
                failed=timed_out,
                timed_out=timed_out,
                outputs=sorted(outputs),
            )
        except SupervisorError as exc:
            log("ERROR", str(exc))
            return Outcome(log=log.text(), body=log.text().encode(), failed=True)
        finally:
            if workdir.is_symlink():
                workdir.unlink()  # the link only, not what it points to
            elif _unmoved(workdir, real):
                shutil.rmtree(workdir, ignore_errors=True)

    async def _stage_input(self, event: _Event, in_dir: Path, log: _Log) -> Path:
        if event.object_key is None or event.object_bucket is None:
            log("INFO", "Received input event of unknown type, writing it to a file")
            path = in_dir / f"event-file-{uuid.uuid4()}"
            path.write_bytes(event.data)
            return path
        key = event.object_key
        name = key.rsplit("/", 1)[-1]
        if not name or name in (".", "..") or ".." in key.split("/"):
            raise SupervisorError(f"refusing object key {key!r}: it would leave the input dir")
        log("INFO", f"Downloading item from bucket '{event.object_bucket}' with key '{key}'")
        path = in_dir / name
        try:
            await asyncio.to_thread(self.store.download, event.object_bucket, key, path)
        except Exception as exc:
            raise SupervisorError(f"Error downloading {event.object_bucket}/{key}: {exc}") from exc
        log("INFO", f"Successful download of file '{key}' from bucket '{event.object_bucket}'")
        return path

    def _environment(
        self, call: Invocation, event: _Event, workdir: Path, input_path: Path
    ) -> dict[str, str]:
        service = call.service
        env = {
            "PATH": self.path,
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "LANG": "C.UTF-8",
            **(service.environment.variables or {}),
            **call.secrets,
            "INPUT_FILE_PATH": str(input_path),
            "TMP_INPUT_DIR": str(input_path.parent),
            "TMP_OUTPUT_DIR": str(workdir / "output"),
            "OSCAR_SERVICE_NAME": service.name,
            "OSCAR_SERVICE_TOKEN": service.token,
            "OSCAR_SERVICE_BASE_PATH": "",
            "OSCAR_ENDPOINT": self.endpoint,
        }
        if call.job_name:  # OSCAR puts the /job body into the pod's EVENT
            env["JOB_UUID"] = call.job_name
            env["RESOURCE_ID"] = "oscar-local"
            env["EVENT"] = call.event.decode("utf-8", errors="replace")
        if event.object_key is not None:  # the supervisor sets EVENT for storage events
            env["EVENT"] = event.raw
            env["STORAGE_OBJECT_KEY"] = event.object_key
            env["EVENT_TIME"] = event.event_time or ""
        return env

    async def _upload(self, service: Service, outputs: dict[str, Path], log: _Log) -> None:
        for target in service.output or []:
            if target.provider_type != "minio" or target.provider_id != "default":
                log("WARNING", f"Storage provider '{target.storage_provider}' is not available")
                continue
            for name, path in sorted(outputs.items()):
                if not target.accepts(name):
                    continue
                key = f"{target.folder}/{name}" if target.folder else name
                log("INFO", f"Uploading file '{name}' to bucket '{target.bucket}' as '{key}'")
                try:
                    await asyncio.to_thread(self.store.upload, target.bucket, key, path)
                except Exception as exc:
                    raise SupervisorError(f"Error uploading {target.bucket}/{key}: {exc}") from exc


def classify(body: bytes) -> _Event:
    """Turn a request body into the input the supervisor would stage (§5.2 of the reference)."""
    text = body.decode("utf-8", errors="replace")
    try:
        document: Any = json.loads(body)
    except ValueError:
        return _Event(data=_b64(body), raw=text)
    if isinstance(document, dict):
        if "httpMethod" in document:
            inner = document.get("body") or ""
            return classify(
                inner.encode() if isinstance(inner, str) else json.dumps(inner).encode()
            )
        if "event" in document:
            inner = document["event"]
            return classify(
                inner.encode() if isinstance(inner, str) else json.dumps(inner).encode()
            )
        records = document.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            record = records[0]
            if record.get("eventSource") in ("minio:s3", "aws:s3"):
                try:
                    bucket = record["s3"]["bucket"]["name"]
                    key = unquote_plus(record["s3"]["object"]["key"])
                except (KeyError, TypeError) as exc:
                    raise SupervisorError(f"storage event without {exc}") from None
                return _Event(
                    object_bucket=str(bucket),
                    object_key=str(key),
                    event_time=str(record.get("eventTime", "")),
                    raw=text,
                )
    return _Event(data=body, raw=text)


def _b64(body: bytes) -> bytes:
    cleaned = _NOT_BASE64.sub(b"", body)
    try:
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SupervisorError(f"Unable to decode the input as base64: {exc}") from None


async def _run_script(
    script: Path, workdir: Path, env: dict[str, str], timeout: float | None
) -> tuple[str, bool]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        str(script),
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            if size < CONSOLE_LIMIT:
                chunks.append(chunk[: CONSOLE_LIMIT - size])
            size += len(chunk)
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
    finally:
        # Like a pod's teardown, also end what the script left running in the background.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            await proc.wait()
    return b"".join(chunks).decode("utf-8", errors="replace"), timed_out


def _unmoved(workdir: Path, real: Path) -> bool:
    """Whether the job directory is still the directory it was created as (not a link)."""
    return not workdir.is_symlink() and workdir.resolve() == real


def output_files(out_dir: Path) -> dict[str, Path]:
    """Regular files the script left under ``TMP_OUTPUT_DIR`` (symlinks are never followed)."""
    found: dict[str, Path] = {}
    if out_dir.is_symlink():  # os.walk would follow a script's symlink at the top
        return found
    for root, dirs, files in os.walk(out_dir, followlinks=False):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(out_dir).as_posix()] = path
    return found


def sync_body(outputs: dict[str, Path], console: str) -> bytes:
    """The synchronous response: base64 of one file, base64 zip of several, or the console."""
    if not outputs:
        return console.encode()
    if len(outputs) == 1:
        (path,) = outputs.values()
        return base64.b64encode(path.read_bytes())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(outputs.items()):
            archive.write(path, name)
    return base64.b64encode(buffer.getvalue())


def _merge_log(log: _Log, console: str) -> str:
    text = log.text() + console
    if console and not console.endswith("\n"):
        text += "\n"
    return text
