"""``Stack``: the whole topology, started in order and stopped in reverse.

Postgres, Redis and the two embedded OSCARs, then ``airflow db migrate``, then the API server,
scheduler, DAG processor, triggerer and Celery workers together; ready when the API server
reports every part healthy and each worker has said it is ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from stack import components
from stack.client import AirflowClient
from stack.components import StackError, wait_until
from stack.processes import Managed, Spec, Supervisor, children
from stack.settings import CLUSTERS, USERNAME, StackSettings

#: The components of the API server's health report that must be healthy.
HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class Stack:
    """Start with ``with Stack(settings) as stack:``; leaving the block stops everything."""

    def __init__(self, settings: StackSettings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.supervisor = Supervisor(settings.root / "pids.json", say)
        self.started_seconds = 0.0

    # lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 240.0) -> Stack:
        began = time.monotonic()
        owner = self.supervisor.running_owner()
        if owner is not None:
            raise StackError(f"a stack already runs from {self.settings.root} (pid {owner})")
        leftovers = self.supervisor.stop_leftovers()
        if leftovers:
            self.say(f"stopped what an earlier start left running: {', '.join(leftovers)}")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began
        return self

    def _start(self, timeout: float) -> None:
        settings = self.settings
        settings.logs.mkdir(parents=True, exist_ok=True)
        components.prepare_postgres(settings, settings.logs / "initdb.log")
        postgres = self._launch(components.postgres_spec(settings))
        redis = self._launch(components.redis_spec(settings))
        oscars = {c: self._launch(components.oscar_spec(settings, c)) for c in CLUSTERS}
        self._ready(postgres, lambda: components.postgres_ready(settings), 60)
        components.migrate(settings)
        self._ready(redis, lambda: components.redis_ready(settings), 30)
        for conn_id, oscar in oscars.items():
            self._ready(oscar, lambda c=conn_id: components.oscar_ready(settings, c), 60)  # type: ignore[misc]
        # Every Airflow component at once: each spends its first seconds importing Airflow.
        specs = components.airflow_specs(settings)
        offsets = {spec.name: components.log_size(spec) for spec in specs}
        api, *others = [self._launch(spec) for spec in specs]
        self._ready(api, self._api_up, timeout)
        for managed in others:
            if managed.spec.name.startswith("worker-"):
                offset = offsets[managed.spec.name]
                check = lambda s=managed.spec, o=offset: components.worker_ready(s, o)  # noqa: E731
                self._ready(managed, check, timeout)
        wait_until(self._healthy, "Airflow's scheduler, triggerer and DAG processor", timeout)

    def _launch(self, spec: Spec) -> Managed:
        return self.supervisor.start(spec)

    def _ready(self, managed: Managed, check: Callable[[], bool], timeout: float) -> None:
        def alive() -> None:
            code = managed.process.poll()
            if code is not None:
                raise StackError(
                    f"{managed.spec.name} exited with {code}" + _tail(managed.spec.log)
                )

        wait_until(check, managed.spec.name, timeout, alive)

    def _api_up(self) -> bool:
        components.health(self.settings)
        return self.settings.passwords_file.exists()

    def _healthy(self) -> bool:
        report = components.health(self.settings)
        return all(report.get(part) == "healthy" for part in HEALTH_PARTS)

    def stop(self) -> None:
        self.supervisor.stop_all()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # using it -----------------------------------------------------------------------------

    def client(self) -> AirflowClient:
        """A REST API client logged in as the stack's admin."""
        return AirflowClient(self.settings.api_url, USERNAME, self.settings.password())

    def restarts(self, name: str) -> int:
        """How often ``name`` was started again after it died."""
        return self.supervisor.get(name).restarts

    def busy_workers(self) -> list[str]:
        """Celery workers running at least one task now (a task is a pool process's child)."""
        busy = []
        for name in self.supervisor.names():
            pool = children(self.supervisor.get(name).pid) if name.startswith("worker-") else []
            if any(children(process) for process in pool):
                busy.append(name)
        return busy


def _tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- {log.name} (tail) ---\n" + "\n".join(text)
