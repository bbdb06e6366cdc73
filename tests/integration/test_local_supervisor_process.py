"""Nothing a service script starts outlives its run, not even what leaves its session.

In a pod the container's end kills every process in it; on the host the embedded OSCAR runs
each script under a child subreaper (airflow_provider_oscar/local/supervisor/reaper.py) and
kills everything below it when the run ends, times out or is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.supervisor import process
from airflow_provider_oscar.local.supervisor.process import ConsoleReader, run_script
from tests.helpers import alive, wait_for_pid, wait_until

# A sleeper in a session of its own: killing the script's process group does not reach it.
DETACHED = "setsid sh -c 'echo $$ > \"$PID_FILE\"; exec sleep 300' > /dev/null 2>&1 < /dev/null &"
# The same, from a subshell that exits at once: the sleeper is orphaned while the run goes on.
ORPHANED = f"( {DETACHED} )"
LEAVING = pytest.mark.parametrize("start", [DETACHED, ORPHANED], ids=["setsid", "setsid-orphan"])


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pid"
    yield path
    if path.exists() and path.read_text().strip():  # never leave a sleeper behind
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(path.read_text()), signal.SIGKILL)


def submit(oscar: OscarLocal, service: dict, job: str) -> None:
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=b"",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201


def status(admin: httpx.Client, service: str, job: str) -> str | None:
    info = admin.get(f"/system/logs/{service}").json()["jobs"].get(job)
    return info["status"] if info else None


@LEAVING
def test_a_cancelled_job_kills_what_its_script_started_in_another_session(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict],
    pid_file: Path,
    start: str,
) -> None:
    service = deploy(
        f"{start}\nsleep 300\n", environment={"variables": {"PID_FILE": str(pid_file)}}
    )
    job = f"{service['name']}-cancel"
    submit(oscar, service, job)
    sleeper = wait_for_pid(pid_file)
    assert os.getsid(sleeper) == sleeper  # it did leave the script's session
    assert admin.delete(f"/system/logs/{service['name']}/{job}").status_code == 204
    wait_until(lambda: not alive(sleeper), timeout=5)


@LEAVING
def test_a_finished_job_leaves_no_process_of_another_session_behind(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict],
    pid_file: Path,
    start: str,
) -> None:
    script = f'{start}\nwhile [ ! -s "$PID_FILE" ]; do sleep 0.01; done\necho done\n'
    service = deploy(script, environment={"variables": {"PID_FILE": str(pid_file)}})
    job = f"{service['name']}-ends"
    submit(oscar, service, job)
    assert wait_until(lambda: status(admin, service["name"], job) == "Succeeded")
    sleeper = wait_for_pid(pid_file)
    wait_until(lambda: not alive(sleeper), timeout=2)


def test_a_run_at_its_time_limit_ends_with_everything_it_started(
    tmp_path: Path, pid_file: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_text(f"{ORPHANED}\necho started\nsleep 300\n")
    env = {"PATH": os.environ["PATH"], "PID_FILE": str(pid_file)}
    lines: list[str] = []
    started = time.monotonic()
    timed_out = asyncio.run(run_script(script, tmp_path, env, 1.0, ConsoleReader(lines.append)))
    assert timed_out
    assert time.monotonic() - started < 5
    assert lines == ["started\n"]
    assert not alive(wait_for_pid(pid_file))


def test_a_script_ends_when_its_output_closes_not_when_its_shell_exits(tmp_path: Path) -> None:
    """The supervisor reads to end of file: a background process holding the output delays
    the end of the run, one that closed it does not."""
    script = tmp_path / "script.sh"
    script.write_text("(sleep 0.6; echo late) &\nsleep 30 > /dev/null 2>&1 &\necho early\n")
    lines: list[str] = []
    started = time.monotonic()
    timed_out = asyncio.run(
        run_script(script, tmp_path, dict(os.environ), 10, ConsoleReader(lines.append))
    )
    assert not timed_out
    assert lines == ["early\n", "late\n"]
    assert 0.6 <= time.monotonic() - started < 5


def test_a_run_after_the_fork_server_died_starts_a_new_one(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo ran\n")

    def once() -> list[str]:
        lines: list[str] = []
        asyncio.run(run_script(script, tmp_path, dict(os.environ), 10, ConsoleReader(lines.append)))
        return lines

    assert once() == ["ran\n"]
    server = process._SERVER._process
    assert server is not None
    server.kill()
    server.wait()
    assert once() == ["ran\n"]
    assert process._SERVER._process is not server


def test_scripts_end_when_the_embedded_oscar_process_dies(tmp_path: Path, pid_file: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text(f"{ORPHANED}\nsleep 300\n")
    dying = f"""
import asyncio, os, pathlib
from airflow_provider_oscar.local.supervisor import process
from airflow_provider_oscar.local.supervisor.process import ConsoleReader, run_script

async def main():
    env = dict(os.environ, PID_FILE={str(pid_file)!r})
    run = run_script(pathlib.Path({str(script)!r}), pathlib.Path({str(tmp_path)!r}), env, None,
                     ConsoleReader(print))
    asyncio.ensure_future(run)
    pid_file = pathlib.Path({str(pid_file)!r})
    while not (pid_file.exists() and pid_file.read_text().strip()):
        await asyncio.sleep(0.02)
    os.kill(os.getpid(), 9)

asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", dying], timeout=30, check=False)
    wait_until(lambda: not alive(wait_for_pid(pid_file)), timeout=5)
