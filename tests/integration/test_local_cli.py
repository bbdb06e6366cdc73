"""The ``oscar-local`` console script, run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_oscar.local.cli import parse_args

SCRIPT = Path(sys.executable).parent / "oscar-local"


def command() -> list[str]:
    found = shutil.which("oscar-local") or (str(SCRIPT) if SCRIPT.exists() else None)
    return [found] if found else [sys.executable, "-m", "airflow_provider_oscar.local.cli"]


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """``oscar-local --port 0 ARGS`` until it said "Press Ctrl-C"; the process, its stdout."""
    proc = subprocess.Popen(
        [*command(), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            break
    return proc, lines


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop the server; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    return proc.stderr.read()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``oscar-local --oscar-version 3.7 --password-file F`` (F holds "x"), and its stdout."""
    secret = tmp_path_factory.mktemp("cli") / "password"
    secret.write_text("x\n")
    proc, lines = start("--oscar-version", "3.7", "--password-file", str(secret))
    try:
        yield proc, lines
    finally:
        stop(proc)


def endpoint_of(lines: list[str]) -> str:
    match = re.search(r"OSCAR endpoint:\s+(http://127\.0\.0\.1:\d+)", "\n".join(lines))
    assert match, lines
    return match.group(1)


def test_cli_prints_the_endpoint_and_an_airflow_connection(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    _, lines = served
    endpoint = endpoint_of(lines)
    (conn_line,) = [line for line in lines if "AIRFLOW_CONN_OSCAR_DEFAULT=" in line]
    connection = json.loads(conn_line.split("=", 1)[1].strip("'"))
    assert connection["conn_type"] == "oscar"
    assert (connection["host"], connection["login"]) == (endpoint, "oscar")


def test_cli_never_echoes_a_password_it_was_given(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    (conn_line,) = [line for line in served[1] if "AIRFLOW_CONN_OSCAR_DEFAULT=" in line]
    assert json.loads(conn_line.split("=", 1)[1].strip("'"))["password"] != "x"


def test_cli_server_answers_health_and_the_password_from_the_file(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    endpoint = endpoint_of(served[1])
    assert httpx.get(f"{endpoint}/health").text == "Ok"
    assert httpx.get(f"{endpoint}/system/info", auth=("oscar", "x")).status_code == 200
    assert httpx.get(f"{endpoint}/system/info", auth=("oscar", "y")).status_code == 401


def test_cli_plays_the_release_it_was_asked_for(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    endpoint = endpoint_of(served[1])
    assert "OSCAR release:   v3.7.1" in served[1]
    info = httpx.get(f"{endpoint}/system/info", auth=("oscar", "x")).json()
    assert info["version"] == "v3.7.1"


def test_cli_takes_the_password_from_the_environment() -> None:
    proc, lines = start(env={"OSCAR_LOCAL_PASSWORD": "from-env"})
    try:
        endpoint = endpoint_of(lines)
        assert httpx.get(f"{endpoint}/system/info", auth=("oscar", "from-env")).status_code == 200
        assert not any("from-env" in line for line in lines)
    finally:
        assert "warning" not in stop(proc)


def test_cli_without_a_password_prints_the_generated_one_once() -> None:
    proc, lines = start(env={"OSCAR_LOCAL_PASSWORD": ""})
    try:
        (conn_line,) = [line for line in lines if "AIRFLOW_CONN_OSCAR_DEFAULT=" in line]
        password = json.loads(conn_line.split("=", 1)[1].strip("'"))["password"]
        assert len(password) >= 16
        assert sum(line.count(password) for line in lines) == 1
        endpoint = endpoint_of(lines)
        assert httpx.get(f"{endpoint}/system/info", auth=("oscar", password)).status_code == 200
    finally:
        stop(proc)


def test_cli_password_on_the_command_line_still_works_with_a_warning() -> None:
    proc, lines = start("--password", "visible")
    try:
        endpoint = endpoint_of(lines)
        assert httpx.get(f"{endpoint}/system/info", auth=("oscar", "visible")).status_code == 200
    finally:
        assert "--password is readable by every local user" in stop(proc)


def test_cli_listening_beyond_loopback_needs_allow_remote_and_warns() -> None:
    refused = subprocess.run(
        [*command(), "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address; add --allow-remote" in refused.stderr
    allowed = subprocess.Popen(
        [*command(), "--host", "0.0.0.0", "--allow-remote", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OSCAR_LOCAL_PASSWORD": secrets.token_urlsafe(24)},
    )
    try:
        assert allowed.stderr is not None
        assert "warning: listening on 0.0.0.0" in allowed.stderr.readline()
    finally:
        allowed.kill()
        allowed.wait()


def test_cli_stops_cleanly_on_sigint(served: tuple[subprocess.Popen[str], list[str]]) -> None:
    proc, lines = served
    endpoint = endpoint_of(lines)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{endpoint}/health", timeout=2)


def test_cli_port_out_of_range_gives_a_usage_error() -> None:
    result = subprocess.run(
        [*command(), "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: oscar-local")
    assert "--port 70000 is not a port number" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "eighty"], "invalid int value: 'eighty'"),
        (["--s3-endpoint", "http://127.0.0.1:9"], "needs --s3-access-key and --s3-secret-key"),
        (["--port", "-1"], "--port -1 is not a port number"),
        (["--oscar-version", "3.5"], "OSCAR version '3.5' is not emulated"),
        (["--password-file", "/no/such/file"], "--password-file /no/such/file"),
        (["--host", "192.0.2.1"], "add --allow-remote"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_problem(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_kills_no_job_for_its_age_unless_told() -> None:
    """job.go sets no ActiveDeadlineSeconds: a job runs until it ends."""
    assert parse_args([]).job_timeout is None
    assert parse_args(["--job-timeout", "60"]).job_timeout == 60.0
    assert parse_args([]).run_timeout == 300.0  # WRITE_TIMEOUT's default
