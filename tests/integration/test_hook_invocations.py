"""OscarHook's synchronous runs (``/run``) and job submissions (``/job``) over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_oscar.errors import OscarClientError, OscarRunCutError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_invocations_test"
ECHO = '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n'
COUNTED = '#!/bin/sh\necho run >> "$COUNT_FILE"\ncat "$INPUT_FILE_PATH"\n'


@pytest.fixture
def hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", oscar.connection_json())
    return OscarHook(CONN_ID)


@pytest.fixture
def echo(deploy: Callable[..., dict[str, Any]]) -> str:
    """A quiet service whose console output is its input."""
    return str(deploy(ECHO, log_level="CRITICAL")["name"])


@pytest.fixture
def counted(deploy: Callable[..., dict[str, Any]], tmp_path: Path) -> tuple[str, Path]:
    """A service that appends a line to a file each time its script runs."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    env = {"variables": {"COUNT_FILE": str(runs)}}
    return str(deploy(COUNTED, log_level="CRITICAL", environment=env)["name"]), runs


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_run_sends_text_that_reaches_the_script_unchanged(hook: OscarHook, echo: str) -> None:
    response = hook.run_service(echo, "héllo wörld")
    assert response.status_code == 200
    assert response.body.decode().rstrip("\n") == "héllo wörld"


def test_run_sends_bytes_that_reach_the_script_unchanged(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    script = '#!/bin/sh\ncp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.bin"\n'
    name = deploy(script, log_level="CRITICAL")["name"]
    data = bytes(range(256))
    assert base64.b64decode(hook.run_service(name, data).body) == data


def test_run_sends_a_mapping_as_its_json_text(hook: OscarHook, echo: str) -> None:
    document = {"event": "not an OSCAR event", "Records": [1, 2]}
    assert json.loads(hook.run_service(echo, document).body) == document


def test_run_returns_a_single_output_file_base64_encoded(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    script = '#!/bin/sh\nprintf result > "$TMP_OUTPUT_DIR/out.txt"\n'
    name = deploy(script, log_level="CRITICAL")["name"]
    assert base64.b64decode(hook.run_service(name, "x").body) == b"result"


def test_run_returns_several_output_files_as_a_base64_zip(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    script = '#!/bin/sh\necho a > "$TMP_OUTPUT_DIR/a.txt"\necho b > "$TMP_OUTPUT_DIR/b.txt"\n'
    name = deploy(script, log_level="CRITICAL")["name"]
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(hook.run_service(name, "x").body)))
    assert sorted(archive.namelist()) == ["a.txt", "b.txt"]


def test_run_of_an_unknown_service_is_a_client_error(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError, match="'no-such-service' does not exist"):
        hook.run_service("no-such-service", "x")


def test_run_longer_than_its_timeout_fails_clearly(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\nsleep 3\n", log_level="CRITICAL")["name"]
    with pytest.raises(OscarRunCutError, match=rf"POST /run/{name}: no answer came within the run"):
        hook.run_service(name, "x", timeout=0.5)


def test_run_after_the_token_rotated_re_reads_it_and_runs_once(
    hook: OscarHook, counted: tuple[str, Path], oscar: OscarLocal
) -> None:
    name, runs = counted
    hook.run_service(name, "first")
    new_token = rotate_token(oscar, name)
    assert hook.run_service(name, "second").body.rstrip(b"\n") == b"second"
    assert lines(runs) == 2
    assert hook.get_service_token(name) == new_token


def test_run_with_a_token_that_stays_refused_is_a_client_error_after_one_re_read(
    hook: OscarHook, echo: str, oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook.get_service_token(echo)
    rotate_token(oscar, echo)
    stale = "0" * 64
    monkeypatch.setattr(
        "airflow_provider_oscar.hooks.api.parse_service",
        _with_token(stale),
    )
    with pytest.raises(OscarClientError, match="answered 401") as caught:
        hook.run_service(echo, "x")
    assert caught.value.status_code == 401


def test_submit_job_with_a_name_creates_that_job(
    hook: OscarHook, echo: str, unique_name: Callable[[str], str]
) -> None:
    job = unique_name(echo)
    hook.submit_job(echo, "payload", job_name=job)
    assert job in hook.list_jobs(echo)


def test_submit_job_without_a_name_creates_a_job_named_after_the_service(
    hook: OscarHook, echo: str
) -> None:
    hook.submit_job(echo, "payload")
    (job,) = hook.list_jobs(echo)
    assert job.startswith(f"{echo}-")


def test_submit_job_with_an_invalid_name_is_a_client_error(hook: OscarHook, echo: str) -> None:
    with pytest.raises(OscarClientError, match="job name 'Not_A_Label' must consist of lower"):
        hook.submit_job(echo, "payload", job_name="Not_A_Label")


def test_submit_job_after_the_token_rotated_re_reads_it(
    hook: OscarHook, echo: str, oscar: OscarLocal, unique_name: Callable[[str], str]
) -> None:
    hook.get_service_token(echo)
    rotate_token(oscar, echo)
    job = unique_name(echo)
    hook.submit_job(echo, "payload", job_name=job)
    assert list(hook.list_jobs(echo)) == [job]


def rotate_token(oscar: OscarLocal, name: str) -> str:
    """Give the service a new token, as OSCAR before v4.1 did on every update."""
    assert oscar.cluster is not None
    return oscar.cluster.state.rotate_token(name)


def _with_token(token: str) -> Callable[[Any], Any]:
    """``parse_service`` that reports a wrong token, as a cluster mid-rotation might."""
    from airflow_provider_oscar.fdl import parse_service

    def parse(data: Any) -> Any:
        return parse_service(data).model_copy(update={"token": token})

    return parse
