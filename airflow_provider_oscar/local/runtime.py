"""An OSCAR service container, on the host: its environment, its configuration and the
faas-supervisor run that handles one event (see :mod:`.supervisor` for which release and why).

The container gets the event two ways. A job runs ``sh -c "echo $EVENT | supervisor"``
(grycap/oscar ``pkg/handlers/job.go``): the body travels in the ``EVENT`` variable and
``echo`` of the unquoted variable splits it into words and rejoins them with single spaces,
adding a newline. A synchronous request reaches the supervisor through the classic watchdog
(openfaas/classic-watchdog 0.2.1 ``handler.go`` ``pipeRequest``), which pipes the body as it
is and answers with the supervisor's combined stderr and stdout: 200 when it exits with 0, and
500 with ``exit status N``, a newline and that output when it does not.

The supervisor's steps (faassupervisor/supervisor.py ``Supervisor.__init__`` and ``run``):
parse the event, read the storage configuration, stage the input, run the script, upload the
outputs, print the answer. Its console is the job's log; the script's own lines reach it only
as DEBUG records.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.storage import ObjectStore
from airflow_provider_oscar.local.supervisor.events import Event, EventParser
from airflow_provider_oscar.local.supervisor.logs import (
    SupervisorExit,
    SupervisorLog,
    resolve_level,
    uncaught,
)
from airflow_provider_oscar.local.supervisor.process import ConsoleReader, run_script
from airflow_provider_oscar.local.supervisor.response import create_response
from airflow_provider_oscar.local.supervisor.storage import StorageConfig, output_files
from airflow_provider_oscar.local.types.gojson import encode
from airflow_provider_oscar.local.types.service import Service

_IFS = re.compile(r"[ \t\n]+")


@dataclass
class Invocation:
    """One execution request: the service, its secret values and the event body.

    ``job_name`` is set for a job (pod with the MinIO secret, body through ``EVENT``) and
    ``None`` for a synchronous run; ``timeout`` is the embedded OSCAR's own limit, if any.
    """

    service: Service
    secrets: dict[str, str]
    event: bytes
    job_name: str | None
    timeout: float | None
    fail: bool = False


@dataclass
class Outcome:
    """What an execution produced: the pod's log and the watchdog's answer body."""

    log: str
    body: bytes = b""
    failed: bool = False
    timed_out: bool = False


class Runtime:
    """Executes invocations in fresh directories under ``work_root``."""

    def __init__(
        self, store: ObjectStore, work_root: Path, release: Release, endpoint: str = ""
    ) -> None:
        self.store = store
        self.release = release
        self.work_root = work_root
        self.endpoint = endpoint
        self.path = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )

    async def execute(self, call: Invocation) -> Outcome:
        # unique even when a job name is reused while its predecessor is still cleaning up
        workdir = self.work_root / f"{call.job_name or 'run'}-{uuid.uuid4().hex[:12]}"
        for folder in ("input", "output", "tmp"):
            (workdir / folder).mkdir(parents=True)
        real = workdir.resolve()  # a script may swap its directory for a link: never follow it
        log = SupervisorLog(0)
        try:
            environment = self._container_environment(call, workdir)
            with uncaught(log, "logger.py", "configure_logger"):
                log = SupervisorLog(resolve_level(call.service.log_level, environment))
            timed_out = await self._supervise(call, log, environment, workdir, real)
        except SupervisorExit:
            console = log.text()
            return Outcome(console, f"exit status 1\n{console}".encode(), failed=True)
        finally:
            if workdir.is_symlink():
                workdir.unlink()  # the link only, not what it points to
            elif _unmoved(workdir, real):
                shutil.rmtree(workdir, ignore_errors=True)
        console = log.text()
        return Outcome(console, console.encode(), failed=timed_out, timed_out=timed_out)

    async def _supervise(
        self,
        call: Invocation,
        log: SupervisorLog,
        environment: dict[str, str],
        workdir: Path,
        real: Path,
    ) -> bool:
        """``Supervisor(event).run()``; True when the embedded OSCAR's time limit ended it."""
        in_dir, out_dir = workdir / "input", workdir / "output"
        config = function_config(call.service, self.release)
        stdin = self._stdin(call)
        log.debug(f"EVENT received: {stdin}")
        parser = EventParser(log, config["input"])
        with uncaught(log, "events/__init__.py", "parse_event"):
            event = parser.parse(stdin)
        job = call.job_name is not None
        with uncaught(log, "storage/config.py", "_parse_config"):
            storage = StorageConfig(
                config, log, self.store, self.store.settings.access_key if job else None
            )
        log.info("SUPERVISOR: Initializing Binary supervisor")
        env = {
            **environment,
            "TMP_INPUT_DIR": str(in_dir),
            "TMP_OUTPUT_DIR": str(out_dir),
            **parser.variables,
        }
        await self._stage_input(config, storage, event, in_dir, env, log)
        if call.fail:
            raise log.fatal("oscar-local: injected failure: the job's pod was evicted")

        script = workdir / "script.sh"
        script.write_text(call.service.script)
        log.info(f"Script file found in '{script}'")
        log.debug("CONTAINER OUTPUT:\n ")
        console = ConsoleReader(lambda line: log.debug(line.strip()))
        if await run_script(script, workdir, env, call.timeout, console):
            assert call.timeout is not None
            log.error(f"oscar-local: the script exceeded the time limit of {call.timeout:g} s")
            return True

        files = output_files(out_dir) if _unmoved(workdir, real) else []
        if not _unmoved(workdir, real):
            log.error("The script replaced its job directory: no outputs are collected")
        await storage.upload_output(out_dir, event, files)
        log.info("Creating response")
        log.print(create_response(event.kind, out_dir, files, "".join(console.text)))
        return False

    async def _stage_input(
        self,
        config: dict[str, Any],
        storage: StorageConfig,
        event: Event,
        in_dir: Path,
        env: dict[str, str],
        log: SupervisorLog,
    ) -> None:
        """``Supervisor._parse_input``, skipped when the service sets ``file_stage_in``."""
        if config.get("file_stage_in") is True:
            log.info("Skipping download of input file.")
            return
        path = await storage.download_input(event, in_dir)
        if path.is_file():
            env["INPUT_FILE_PATH"] = str(path)
            log.info(f"INPUT_FILE_PATH variable set to '{path}'")

    def _container_environment(self, call: Invocation, workdir: Path) -> dict[str, str]:
        """The variables of the container before the supervisor adds its own."""
        service = call.service
        env = {
            "PATH": self.path,
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "LANG": "C.UTF-8",
            **(service.environment.variables or {}),
            **call.secrets,
            "OSCAR_SERVICE_NAME": service.name,
            "OSCAR_SERVICE_TOKEN": service.token,
            "OSCAR_SERVICE_BASE_PATH": "",
            "OSCAR_ENDPOINT": self.endpoint,
        }
        if call.job_name:
            env["JOB_UUID"] = call.job_name
            env["RESOURCE_ID"] = "oscar-local"
            env["EVENT"] = call.event.decode("utf-8", errors="replace")
        return env

    @staticmethod
    def _stdin(call: Invocation) -> str:
        """What the supervisor reads: ``echo $EVENT`` in a job, the raw body behind the
        watchdog (read as Python does under a container's default POSIX locale)."""
        if call.job_name is None:
            return call.event.decode("utf-8", errors="surrogateescape")
        words = call.event.decode("utf-8", errors="replace").strip(" \t\n")
        return " ".join(_IFS.split(words)) + "\n" if words else "\n"


def function_config(service: Service, release: Release) -> dict[str, Any]:
    """The service's ``function_config.yaml`` as the supervisor loads it.

    OSCAR writes the whole service there (``pkg/types/service.go`` ``ToYAML``): a missing
    ``input`` or ``output`` is an empty list, and ``storage_providers`` always has
    ``minio.default`` (``pkg/handlers/create.go`` adds it with hidden keys).
    """
    config: dict[str, Any] = encode(service, release)  # fresh: the run may change its outputs
    config["input"] = config.get("input") or []
    config["output"] = config.get("output") or []
    providers = config.get("storage_providers") or {}
    providers.setdefault("minio", {}).setdefault("default", {"access_key": "hidden"})
    config["storage_providers"] = providers
    return config


def _unmoved(workdir: Path, real: Path) -> bool:
    """Whether the job directory is still the directory it was created as (not a link)."""
    return not workdir.is_symlink() and workdir.resolve() == real
