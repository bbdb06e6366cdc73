"""The ``oscar-local`` console script, run as a subprocess."""

from __future__ import annotations

import json
import re
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


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``oscar-local --port 0 --password x`` until it said "Press Ctrl-C"; its output lines."""
    proc = subprocess.Popen(
        [*command(), "--port", "0", "--password", "x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    assert (connection["host"], connection["login"], connection["password"]) == (
        endpoint,
        "oscar",
        "x",
    )


def test_cli_server_answers_health_and_the_given_password(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    endpoint = endpoint_of(served[1])
    assert httpx.get(f"{endpoint}/health").text == "Ok"
    assert httpx.get(f"{endpoint}/system/info", auth=("oscar", "x")).status_code == 200


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
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_problem(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
