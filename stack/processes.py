"""Processes started, watched, restarted and stopped by their process id.

Each process leads its own process group (a new session), so a terminal's Ctrl-C reaches only
the process that started them. Stopping one reaches everything it forked, found by walking its
tree of children: a Celery worker's pool, and the tasks its pool runs (Airflow puts each task in
a process group of its own). Nothing else on the machine is ever signalled. The ids are recorded
in ``pids.json`` with their start times: a later start finds the processes of a start that died
without stopping them, and stops those (and only those).

A process that exits while the stack runs is started again, as a container's restart policy
would (``restart: unless-stopped``), after a back-off that grows with repeated failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_BACKOFF = 30.0


@dataclass
class Spec:
    """How to run one long-lived process.

    ``user`` is ``(uid, gid)`` to run as another user (Postgres refuses to run as root).
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path | None = None
    user: tuple[int, int] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0


@dataclass
class Managed:
    """A started process, and how often it had to be started again."""

    spec: Spec
    process: subprocess.Popen[bytes]
    restarts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid


def _stat(pid: int) -> list[str] | None:
    """Fields 3 and on of ``/proc/<pid>/stat`` (state first), or ``None`` for no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat[stat.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` when there is no such process.

    A pid and its start time name one process: a pid reused later has another start time.
    """
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def children(pid: int) -> list[int]:
    """The children of ``pid`` (of all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def tree(pid: int) -> list[tuple[int, int]]:
    """``pid`` and its descendants, each with its start time (to tell reused pids apart)."""
    found: dict[int, int] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        started = _start_time(current)
        if current in found or started is None:
            continue
        found[current] = started
        pending += children(current)
    return list(found.items())


def kill_tree(processes: list[tuple[int, int]]) -> None:
    """SIGKILL each of ``processes`` (from :func:`tree`) that is still that same process."""
    for pid, started in processes:
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Until the process ``pid`` (not a child of ours) has ended."""
    deadline = time.monotonic() + timeout
    while (fields := _stat(pid)) is not None and fields[0] != "Z":  # a zombie has ended
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Supervisor:
    """Starts processes in order, restarts those that exit, stops them in reverse order."""

    def __init__(self, pidfile: Path, say: Callable[[str], None] = print) -> None:
        self.pidfile = pidfile
        self.say = say
        self._managed: dict[str, Managed] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # starting -----------------------------------------------------------------------------

    def start(self, spec: Spec) -> Managed:
        """Start ``spec`` (and watch it from then on)."""
        with self._lock:
            managed = Managed(spec, self._spawn(spec))
            self._managed[spec.name] = managed
            self._record()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="stack-watch", daemon=True)
            self._watcher.start()
        return managed

    def _spawn(self, spec: Spec) -> subprocess.Popen[bytes]:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        uid, gid = spec.user or (None, None)
        with spec.log.open("ab") as log:
            return subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=None if uid is None else [],
            )

    def get(self, name: str) -> Managed:
        with self._lock:
            return self._managed[name]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._managed)

    # watching -----------------------------------------------------------------------------

    def _watch(self) -> None:
        failures: dict[str, int] = {}
        due: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, managed in list(self._managed.items()):
                    code = managed.process.poll()
                    if code is None or self._stopping.is_set():
                        continue
                    now = time.monotonic()
                    if name not in due:
                        failures[name] = failures.get(name, 0) + 1
                        due[name] = now + min(2.0 ** (failures[name] - 1), MAX_BACKOFF)
                        managed.exits.append(code)
                        self.say(f"{name} (pid {managed.pid}) exited with {code}; restarting")
                    if now >= due[name]:
                        del due[name]
                        managed.process = self._spawn(managed.spec)
                        managed.restarts += 1
                        self._record()

    # stopping -----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop every process, last started first: its signal, then SIGKILL after a while."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            for managed in reversed(list(self._managed.values())):
                self._stop(managed)
            self._managed.clear()
            self._record()

    def _stop(self, managed: Managed) -> None:
        process = managed.process
        forked = tree(process.pid)  # before the parents go: their children are then orphans
        if process.poll() is None:
            _signal_group(process.pid, managed.spec.stop_signal)
            try:
                process.wait(managed.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                self.say(f"{managed.spec.name} did not stop in time; killing it")
        # Whatever is left of it: its group, and what it forked into other groups (tasks).
        _signal_group(process.pid, signal.SIGKILL)
        kill_tree(forked + tree(process.pid))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def kill(self, name: str) -> int:
        """SIGKILL one process and everything it forked, as losing its machine would (a drill).

        Returns the pid of the process killed; the watcher starts it again.
        """
        with self._lock:
            pid = self._managed[name].pid
            for _ in range(3):  # a process forked meanwhile is caught by the next walk
                kill_tree(tree(pid))
        return pid

    # the record of pids -------------------------------------------------------------------

    def _record(self) -> None:
        entries = {
            name: {"pid": m.pid, "started": _start_time(m.pid)} for name, m in self._managed.items()
        }
        record = {
            "owner": os.getpid(),
            "owner_started": _start_time(os.getpid()),
            "processes": entries,
        }
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.pidfile.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        temporary.replace(self.pidfile)

    def running_owner(self) -> int | None:
        """The pid of another live stack process that owns the recorded processes, if any."""
        try:
            record = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        owner = int(record.get("owner") or 0)
        if owner and owner != os.getpid() and _start_time(owner) == record.get("owner_started"):
            return owner
        return None

    def stop_leftovers(self) -> list[str]:
        """Stop the processes a previous start recorded and left behind; their names."""
        try:
            record = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return []
        stopped = []
        for name, entry in reversed(list((record.get("processes") or {}).items())):
            pid = int(entry["pid"])
            if entry.get("started") and _start_time(pid) == entry["started"]:  # not a reused pid
                _signal_group(pid, signal.SIGTERM)
                if not _wait_gone(pid, 10):
                    _signal_group(pid, signal.SIGKILL)
                    _wait_gone(pid, 5)
                stopped.append(name)
        self.pidfile.unlink(missing_ok=True)
        return stopped
