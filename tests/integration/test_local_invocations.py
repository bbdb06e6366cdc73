"""Synchronous and asynchronous invocations of the embedded OSCAR, and the supervisor contract."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from oscar_python.client import Client

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

SUPERVISOR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - supervisor - INFO - ")


@pytest.fixture
def client(oscar: OscarLocal) -> Client:
    return Client(
        {
            "cluster_id": "local",
            "endpoint": oscar.endpoint,
            "user": oscar.user,
            "password": oscar.password,
            "ssl": False,
        }
    )


def run(oscar: OscarLocal, service: dict[str, Any], data: bytes | str) -> httpx.Response:
    """POST ``/run`` with the service token; ``str`` data is sent base64-encoded."""
    content = base64.b64encode(data.encode()) if isinstance(data, str) else data
    return httpx.post(
        f"{oscar.endpoint}/run/{service['name']}",
        content=content,
        headers={"Authorization": f"Bearer {service['token']}"},
        timeout=30,
    )


def submit(oscar: OscarLocal, service: dict[str, Any], data: bytes, job: str) -> httpx.Response:
    return httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=data,
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )


def finished_log(admin: httpx.Client, service: str, job: str) -> str:
    """Wait for ``job`` to finish and return its log."""

    def status() -> str | None:
        info = admin.get(f"/system/logs/{service}").json()["jobs"].get(job)
        return info["status"] if info and info["status"] in ("Succeeded", "Failed") else None

    assert wait_until(status) == "Succeeded"
    return admin.get(f"/system/logs/{service}/{job}").text


def quiet(script: str) -> dict[str, Any]:
    return {"log_level": "CRITICAL", "script": script}


# oscar-python ----------------------------------------------------------------------------


def test_oscar_python_sync_run_returns_base64_of_the_single_output(
    client: Client, deploy: Callable[..., dict]
) -> None:
    name = deploy('tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/up.txt"\n')["name"]
    response = client.run_service(name, input="hello oscar")
    assert response.status_code == 200
    assert base64.b64decode(response.text.splitlines()[-1]) == b"HELLO OSCAR"


def test_oscar_python_async_run_answers_201_and_starts_a_job(
    client: Client, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("cat $INPUT_FILE_PATH\n")["name"]
    response = client.run_service(name, input="queued", async_call=True)
    assert (response.status_code, response.text) == (201, "")
    jobs = wait_until(lambda: client.list_jobs(name).json()["jobs"])
    (job,) = jobs
    assert job.startswith(f"{name}-")
    assert "queued" in finished_log(admin, name, job)


def test_oscar_python_reads_and_removes_job_logs(
    client: Client, deploy: Callable[..., dict], oscar: OscarLocal
) -> None:
    service = deploy("echo logged-line\n")
    job = f"{service['name']}-one"
    submit(oscar, service, b"", job)
    wait_until(
        lambda: client.list_jobs(service["name"]).json()["jobs"][job]["status"] == "Succeeded"
    )
    assert "logged-line" in client.get_job_logs(service["name"], job).text
    assert client.remove_job(service["name"], job).status_code == 204
    assert job not in client.list_jobs(service["name"]).json()["jobs"]


# input decoding --------------------------------------------------------------------------


def test_run_decodes_base64_dropping_characters_outside_the_alphabet(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet('cat "$INPUT_FILE_PATH"\n'))
    wrapped = b"aGVs\r\nbG8g*d29y\nbGQ="
    assert run(oscar, service, wrapped).text == "hello world\n"


def test_input_file_of_an_http_event_is_event_file_uuid_in_tmp_input_dir(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet('echo "$INPUT_FILE_PATH" "$TMP_INPUT_DIR"\n'))
    path, folder = run(oscar, service, "x").text.split()
    directory, _, name = path.rpartition("/")
    assert directory == folder
    assert re.fullmatch(r"event-file-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", name)


def test_each_run_gets_fresh_input_and_output_directories(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    script = (
        'ls -A "$TMP_INPUT_DIR" | wc -l; ls -A "$TMP_OUTPUT_DIR" | wc -l; echo "$TMP_OUTPUT_DIR"\n'
        'touch "$TMP_INPUT_DIR/leftover" "$TMP_OUTPUT_DIR/../leftover"\n'
    )
    service = deploy(**quiet(script))
    first = run(oscar, service, "a").text.split()
    second = run(oscar, service, "b").text.split()
    assert first[:2] == second[:2] == ["1", "0"]
    assert first[2] != second[2]


def test_service_variables_and_secrets_are_in_the_environment(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(
        **quiet('echo "$COLOUR/$API_KEY"\n'),
        environment={"Variables": {"COLOUR": "green"}, "secrets": {"API_KEY": "s3cr3t"}},
    )
    assert run(oscar, service, "").text == "green/s3cr3t\n\n"


def test_script_runs_with_bin_sh_ignoring_its_shebang(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet("#!/bin/false\necho ran by sh\n"))
    assert run(oscar, service, "").text == "ran by sh\n\n"


def test_sync_run_has_no_job_uuid(oscar: OscarLocal, deploy: Callable[..., dict]) -> None:
    service = deploy(**quiet('echo "job=${JOB_UUID-unset}"\n'))
    assert run(oscar, service, "").text == "job=unset\n\n"


def test_sync_run_of_an_http_event_has_no_storage_variables(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet('echo "${STORAGE_OBJECT_KEY-unset} ${EVENT-unset}"\n'))
    assert run(oscar, service, "aGk=").text == "unset unset\n\n"


# synchronous responses -------------------------------------------------------------------


def test_sync_body_is_base64_of_a_zip_when_there_are_several_outputs(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    script = (
        'echo one > "$TMP_OUTPUT_DIR/a.txt"\nmkdir "$TMP_OUTPUT_DIR/sub"\n'
        'echo two > "$TMP_OUTPUT_DIR/sub/b.txt"\n'
    )
    service = deploy(**quiet(script))
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(run(oscar, service, "").text)))
    assert sorted(archive.namelist()) == ["a.txt", "sub/b.txt"]
    assert archive.read("sub/b.txt") == b"two\n"


def test_sync_body_is_the_console_output_when_there_is_no_output_file(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    """stdout and stderr merged, then the newline of the supervisor's ``print``."""
    service = deploy(**quiet("echo to-stdout\necho to-stderr >&2\necho again\n"))
    assert run(oscar, service, "").text == "to-stdout\nto-stderr\nagain\n\n"


def test_sync_body_is_preceded_by_supervisor_log_lines_unless_critical(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo result > "$TMP_OUTPUT_DIR/r.txt"\n')
    lines = run(oscar, service, "").text.splitlines()
    assert len(lines) > 1
    assert all(SUPERVISOR_LINE.match(line) for line in lines[:-1])
    assert base64.b64decode(lines[-1]) == b"result\n"


def test_critical_log_level_leaves_only_the_result(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet('echo result > "$TMP_OUTPUT_DIR/r.txt"\n'))
    assert run(oscar, service, "").text == base64.b64encode(b"result\n").decode() + "\n"


def test_failing_script_still_answers_200(oscar: OscarLocal, deploy: Callable[..., dict]) -> None:
    service = deploy(**quiet("echo broken\nexit 3\n"))
    response = run(oscar, service, "")
    assert (response.status_code, response.text) == (200, "broken\n\n")


def test_sync_run_does_not_create_a_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet("echo hi\n"))
    run(oscar, service, "")
    assert admin.get(f"/system/logs/{service['name']}").json() == {"jobs": {}}


def test_sync_runs_of_a_service_with_max_scale_1_run_one_at_a_time(
    oscar: OscarLocal, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    script = 'echo started >> "$LOG"\nwhile [ ! -e "$GATE" ]; do sleep 0.02; done\n'
    variables = {"LOG": str(tmp_path / "log"), "GATE": str(tmp_path / "gate")}
    service = deploy(script, synchronous={"max_scale": 1}, environment={"variables": variables})

    def started() -> int:
        log = tmp_path / "log"
        return len(log.read_text().split()) if log.exists() else 0

    callers = [threading.Thread(target=run, args=(oscar, service, "")) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        assert wait_until(started) == 1
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert started() == 1
            time.sleep(0.05)
    finally:
        (tmp_path / "gate").touch()
        for caller in callers:
            caller.join(10)
    assert started() == 2


# asynchronous runs -----------------------------------------------------------------------


def test_job_answers_201_with_an_empty_body(oscar: OscarLocal, deploy: Callable[..., dict]) -> None:
    service = deploy("true\n")
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=b"aGk=",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert (response.status_code, response.content) == (201, b"")
    assert "location" not in response.headers


def test_delegated_job_id_header_names_the_job_and_job_uuid(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo "uuid=$JOB_UUID"\n')
    job = f"{service['name']}-chosen"
    assert submit(oscar, service, b"", job).status_code == 201
    assert f"uuid={job}" in finished_log(admin, service["name"], job)


def test_job_event_variable_holds_the_raw_body(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo "event=$EVENT"\n')
    job = f"{service['name']}-event"
    submit(oscar, service, b'{"a": 1}', job)
    assert 'event={"a": 1}' in finished_log(admin, service["name"], job)


def test_job_log_without_output_files_ends_with_the_console_as_the_answer(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy('cat "$INPUT_FILE_PATH"; echo\n')
    job = f"{service['name']}-log"
    submit(oscar, service, base64.b64encode(b"payload"), job)
    lines = finished_log(admin, service["name"], job).splitlines()
    assert all(SUPERVISOR_LINE.match(line) for line in lines[:-2])
    assert lines[-3].endswith(" - Creating response")
    assert lines[-2:] == ["payload", ""]


def test_failing_script_leaves_the_job_succeeded(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo oops\nexit 1\n")
    job = f"{service['name']}-fails"
    submit(oscar, service, b"", job)
    assert "oops" in finished_log(admin, service["name"], job)


def test_job_outputs_go_to_every_output_path_through_its_filters(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict],
    s3: Any,
    unique_name: Callable[[str], str],
) -> None:
    script = (
        'for f in out_a.json out_b.txt log_c.json; do echo $f > "$TMP_OUTPUT_DIR/$f"; done\n'
        'mkdir "$TMP_OUTPUT_DIR/deep"; echo d > "$TMP_OUTPUT_DIR/deep/d.json"\n'
    )
    name = unique_name("outs")
    service = deploy(
        script,
        name=name,
        output=[
            {"storage_provider": "minio", "path": "all"},
            {"storage_provider": "minio.default", "path": f"{name}/json/only", "suffix": [".json"]},
            {
                "storage_provider": "minio",
                "path": f"{name}/x",
                "prefix": ["out_"],
                "suffix": [".txt"],
            },
        ],
    )
    job = f"{name}-outputs"
    submit(oscar, service, b"", job)
    finished_log(admin, name, job)
    keys = sorted(o.object_name for o in s3.list_objects(name, recursive=True))
    assert keys == [
        "all/",  # createBuckets makes each output folder
        "all/deep/d.json",
        "all/log_c.json",
        "all/out_a.json",
        "all/out_b.txt",
        "json/only/",
        "json/only/deep/d.json",
        "json/only/log_c.json",
        "json/only/out_a.json",
        "x/",
        "x/out_b.txt",
    ]
    assert s3.get_object(name, "x/out_b.txt").read() == b"out_b.txt\n"


def test_json_event_with_an_event_key_is_unwrapped_as_a_delegated_event(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(**quiet('cat "$INPUT_FILE_PATH"\n'))
    inner = base64.b64encode(b"delegated").decode()
    assert run(oscar, service, json.dumps({"event": inner}).encode()).text == "delegated\n"
