"""The stack's process supervision: by process id, whole trees, restarts, leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.processes import Spec, Supervisor, tree
from tests.helpers import alive, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
# A process that forks a child into a session (and process group) of its own, as Airflow does
# with each task, and prints the child's pid.
FORKER = [
    sys.executable,
    "-c",
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
    " start_new_session=True)\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n",
]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    running = Supervisor(tmp_path / "pids.json", say=lambda line: None)
    try:
        yield running
    finally:
        running.stop_all()


def spec(tmp_path: Path, name: str, argv: list[str]) -> Spec:
    return Spec(name, argv, dict(os.environ), tmp_path / f"{name}.log", stop_timeout=5)


def test_a_process_that_dies_is_started_again_and_recorded(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    first = supervisor.start(spec(tmp_path, "sleeper", SLEEPER)).pid
    recorded = json.loads((tmp_path / "pids.json").read_text())
    assert recorded["owner"] == os.getpid()
    assert recorded["processes"]["sleeper"]["pid"] == first
    assert supervisor.kill("sleeper") == first
    wait_until(lambda: supervisor.get("sleeper").restarts == 1)
    second = supervisor.get("sleeper").pid
    assert second != first and alive(second) and not alive(first)
    assert supervisor.get("sleeper").exits == [-signal.SIGKILL]
    wait_until(
        lambda: (
            json.loads((tmp_path / "pids.json").read_text())["processes"]["sleeper"]["pid"]
            == second
        )
    )


def test_stopping_reaches_what_a_process_forked_into_another_group(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    managed = supervisor.start(spec(tmp_path, "forker", FORKER))
    wait_until(lambda: (tmp_path / "forker.log").read_text().strip() != "")
    child = int((tmp_path / "forker.log").read_text().split()[0])
    assert os.getpgid(child) != os.getpgid(managed.pid)
    assert child in [pid for pid, _ in tree(managed.pid)]
    supervisor.stop_all()
    wait_until(lambda: not alive(child) and not alive(managed.pid), timeout=10)


def test_a_drill_kill_takes_the_whole_tree(supervisor: Supervisor, tmp_path: Path) -> None:
    managed = supervisor.start(spec(tmp_path, "forker", FORKER))
    wait_until(lambda: (tmp_path / "forker.log").read_text().strip() != "")
    child = int((tmp_path / "forker.log").read_text().split()[0])
    supervisor.kill("forker")
    wait_until(lambda: not alive(child) and not alive(managed.pid), timeout=10)


def test_a_later_start_stops_what_a_dead_start_left_and_nothing_else(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"
    died = Supervisor(pidfile, say=lambda line: None)
    left = died.start(spec(tmp_path, "left", SLEEPER)).pid
    died._stopping.set()  # as if its owner had died: nobody restarts anything now
    stranger = subprocess.Popen(SLEEPER)  # alive, but not what the record names
    try:
        record = json.loads(pidfile.read_text())
        record["owner"] = stranger.pid  # an owner whose start time does not match: dead
        record["processes"]["stranger"] = {"pid": stranger.pid, "started": 1}
        pidfile.write_text(json.dumps(record))
        later = Supervisor(pidfile, say=lambda line: None)
        assert later.running_owner() is None
        assert later.stop_leftovers() == ["left"]
        wait_until(lambda: not alive(left))
        assert stranger.poll() is None, "a process the record does not name was signalled"
        assert not pidfile.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_start_refuses_while_another_live_stack_owns_the_folder(tmp_path: Path) -> None:
    owner = subprocess.Popen(SLEEPER)
    try:
        started = int(Path(f"/proc/{owner.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        record = {"owner": owner.pid, "owner_started": started, "processes": {}}
        (tmp_path / "pids.json").write_text(json.dumps(record))
        assert Supervisor(tmp_path / "pids.json").running_owner() == owner.pid
    finally:
        owner.kill()
        owner.wait()
