"""The embedded OSCAR's container runtime against faas-supervisor 1.6.2 and the classic watchdog.

Each test pins one behaviour of the real supervisor (cited in docs/fidelity.md, section
"Supervisor"): what the pod log holds, what ``/run`` answers, how the event becomes the input
file, and what touches the bucket.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - supervisor - (?P<level>[A-Z]+) - (?P<message>.*)$"
)
ANY_PATH = re.compile(r"'/[^']*'")


def records(text: str) -> list[tuple[str, str]]:
    """``(level, message)`` of each log record, paths replaced by ``'<path>'``."""
    found = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            found.append((match["level"], ANY_PATH.sub("'<path>'", match["message"])))
    return found


def run(oscar: OscarLocal, service: dict[str, Any], body: bytes) -> httpx.Response:
    return httpx.post(
        f"{oscar.endpoint}/run/{service['name']}",
        content=body,
        headers={"Authorization": f"Bearer {service['token']}"},
        timeout=30,
    )


def job_log(
    oscar: OscarLocal, admin: httpx.Client, service: dict[str, Any], body: bytes, status: str
) -> str:
    """Submit a job with ``body``, wait until it ends with ``status``, return its log."""
    name = service["name"]
    job = f"{name}-{len(body)}-{abs(hash(body)) % 10**8}"
    response = httpx.post(
        f"{oscar.endpoint}/job/{name}",
        content=body,
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text

    def finished() -> str | None:
        info = admin.get(f"/system/logs/{name}").json()["jobs"].get(job)
        return info["status"] if info and info["status"] in ("Succeeded", "Failed") else None

    assert wait_until(finished) == status
    return admin.get(f"/system/logs/{name}/{job}").text


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def minio_event(bucket: str, key: str, source: str = "minio:s3") -> dict[str, Any]:
    record = {
        "eventSource": source,
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": {"key": key}},
    }
    return {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [record]}


def objects(s3: Minio, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))


@pytest.fixture
def with_output(
    deploy: Callable[..., dict], unique_name: Callable[[str], str]
) -> Callable[..., dict]:
    """Deploy a script whose one output path is ``<service>/out`` on ``minio.default``."""

    def make(script: str, **fields: Any) -> dict:
        name = unique_name("out")
        output = [{"storage_provider": "minio.default", "path": f"{name}/out"}]
        return deploy(script, name=name, output=output, **fields)

    return make


# the pod log ------------------------------------------------------------------------------


def test_job_log_is_the_supervisor_records_then_its_answer_without_the_console(
    oscar: OscarLocal, admin: httpx.Client, with_output: Callable[..., dict]
) -> None:
    service = with_output('echo to-console\necho result > "$TMP_OUTPUT_DIR/r.txt"\n')
    name = service["name"]
    log = job_log(oscar, admin, service, b64(b"input"), "Succeeded")
    assert records(log) == [
        ("INFO", "Reading storage configuration"),
        ("INFO", f"Using MinIO credentials for user: '{oscar.s3.access_key}'"),
        ("INFO", "SUPERVISOR: Initializing Binary supervisor"),
        ("INFO", "Found 'LOCAL' input provider"),
        ("INFO", "INPUT_FILE_PATH variable set to '<path>'"),
        ("INFO", "Script file found in '<path>'"),
        ("INFO", "Searching for files to upload in folder '<path>'"),
        ("INFO", f"Checking files for uploading to 'minio.default' on path: '{name}/out'"),
        ("INFO", f"Uploading file 'out/r.txt' to bucket '{name}'"),
        ("INFO", "Creating response"),
    ]
    assert log.endswith("\n" + b64(b"result\n").decode() + "\n")
    assert "to-console" not in log


def test_script_console_reaches_the_log_only_as_debug_records(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    script = 'echo "  first  "\necho second >&2\necho out > "$TMP_OUTPUT_DIR/o"\n'
    service = deploy(script, log_level="DEBUG")
    log = job_log(oscar, admin, service, b64(b"x"), "Succeeded")
    debug = [message for level, message in records(log) if level == "DEBUG"]
    assert debug == [
        f"EVENT received: {b64(b'x').decode()}",
        "CONTAINER OUTPUT:",
        "first",
        "second",
    ]
    assert "EVENT received: eA==\n\n" in log  # echo's newline ends the event's record
    assert "CONTAINER OUTPUT:\n \n" in log  # that record's message is 'CONTAINER OUTPUT:\n '
    assert log.endswith(" - Creating response\n" + b64(b"out\n").decode() + "\n")


def test_sync_answer_at_info_has_no_console_and_ends_with_the_base64_output(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo to-console\necho result > "$TMP_OUTPUT_DIR/r.txt"\n')
    response = run(oscar, service, b64(b"x"))
    assert response.status_code == 200
    assert ("INFO", "No MinIO user configuration found") in records(response.text)
    assert "to-console" not in response.text
    assert response.text.endswith("Creating response\n" + b64(b"result\n").decode() + "\n")


@pytest.mark.parametrize("level", ["WARNING", "NOTSET"])
def test_warning_and_notset_levels_leave_only_the_answer_of_a_clean_run(
    oscar: OscarLocal, deploy: Callable[..., dict], level: str
) -> None:
    """A logger at NOTSET defers to the root logger, which is at WARNING."""
    service = deploy("echo hi\n", log_level=level)
    assert run(oscar, service, b"").text == "hi\n\n"


def test_log_level_variable_of_the_container_overrides_the_service_log_level(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy(
        "echo hi\n", log_level="CRITICAL", environment={"variables": {"LOG_LEVEL": "DEBUG"}}
    )
    levels = {level for level, _ in records(run(oscar, service, b"").text)}
    assert levels == {"DEBUG", "INFO"}


def test_an_unknown_log_level_variable_stops_the_supervisor_before_anything(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo hi\n", environment={"variables": {"LOG_LEVEL": "verbose"}})
    response = run(oscar, service, b"")
    assert response.status_code == 500
    assert response.text.startswith("exit status 1\nTraceback (most recent call last):\n")
    assert response.text.endswith("ValueError: Unknown level: 'Level verbose'\n")


# the answer ------------------------------------------------------------------------------


def test_several_outputs_are_zipped_uncompressed_as_python_zipfile_does(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    script = (
        'printf "%0200d" 0 > "$TMP_OUTPUT_DIR/a.txt"\n'
        'mkdir "$TMP_OUTPUT_DIR/s"\necho b > "$TMP_OUTPUT_DIR/s/b"\n'
    )
    service = deploy(script, log_level="CRITICAL")
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(run(oscar, service, b"").text)))
    assert sorted(archive.namelist()) == ["a.txt", "s/b"]
    assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert archive.getinfo("a.txt").compress_size == 200


def test_console_answer_is_decoded_as_a_text_pipe_reads_it(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    """UTF-8 with undecodable bytes dropped, ``\\r\\n`` and ``\\r`` read as newlines."""
    service = deploy("printf 'a\\r\\nb\\rc\\377d\\n'\n", log_level="CRITICAL")
    assert run(oscar, service, b"").content == b"a\nb\ncd\n\n"


def test_a_storage_event_is_answered_with_the_console_even_with_output_files(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo console\necho r > "$TMP_OUTPUT_DIR/r.txt"\n', log_level="CRITICAL")
    event = json.dumps(minio_event(service["name"], "in/x.txt")).encode()
    assert run(oscar, service, event).text == "console\n\n"


# the watchdog in front of /run -----------------------------------------------------------


def test_invalid_base64_fails_the_supervisor_and_run_answers_500_exit_status_1(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo never\n")
    response = run(oscar, service, b"aGVsbG8")
    assert response.status_code == 500
    assert response.text.startswith("exit status 1\n")
    assert ("INFO", "Found 'LOCAL' input provider") in records(response.text)
    assert response.text.endswith("binascii.Error: Incorrect padding\n")
    assert "never" not in response.text


def test_invalid_base64_fails_the_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    log = job_log(oscar, admin, deploy("echo never\n"), b"aGVsbG8", "Failed")
    assert log.endswith("binascii.Error: Incorrect padding\n")
    assert not log.startswith("exit status")


def test_body_that_is_not_utf8_fails_the_supervisor(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    response = run(oscar, deploy("echo never\n"), b"\xff\xfe")
    assert response.status_code == 500
    assert response.text.endswith(
        "ValueError: string argument should contain only ASCII characters\n"
    )


# input decoding --------------------------------------------------------------------------


def test_a_json_object_body_is_written_as_json_dumps_rewrites_it(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('cat "$INPUT_FILE_PATH"\n', log_level="CRITICAL")
    body = '{"b":1,"a":[1,2.50],"c":"é"}'.encode()
    assert run(oscar, service, body).text == '{"b": 1, "a": [1, 2.5], "c": "\\u00e9"}\n'


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"12", "TypeError: argument of type 'int' is not iterable"),
        (b"null", "TypeError: argument of type 'NoneType' is not iterable"),
        (b'["a"]', "TypeError: write() argument must be str, not list"),
        (b'"an event"', "TypeError: string indices must be integers"),  # taken as delegated
    ],
)
def test_json_bodies_the_supervisor_cannot_handle_fail_it(
    oscar: OscarLocal, deploy: Callable[..., dict], body: bytes, error: str
) -> None:
    response = run(oscar, deploy("echo never\n"), body)
    assert response.status_code == 500
    assert response.text.splitlines()[-1].startswith(error)
    assert "never" not in response.text


def test_a_json_string_body_holding_base64_is_decoded(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('cat "$INPUT_FILE_PATH"\n', log_level="CRITICAL")
    assert run(oscar, service, b'"aGk="').text == "hi\n"


def test_an_api_gateway_event_gives_its_body_and_query_parameters(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('cat "$INPUT_FILE_PATH"; echo " $CONT_VAR_size"\n', log_level="CRITICAL")
    event = {"httpMethod": "POST", "body": "aGk=", "queryStringParameters": {"size": "10"}}
    assert run(oscar, service, json.dumps(event).encode()).text == "hi 10\n\n"


def test_a_job_body_travels_through_echo_which_collapses_whitespace(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    script = 'cat "$INPUT_FILE_PATH"; echo; printf "[%s]\\n" "$EVENT"\n'
    service = deploy(script, log_level="CRITICAL")
    log = job_log(oscar, admin, service, b'{"text":  "two   spaces"}\n', "Succeeded")
    assert log == '{"text": "two spaces"}\n[{"text":  "two   spaces"}\n]\n\n'


def test_file_stage_in_skips_the_input_file(oscar: OscarLocal, deploy: Callable[..., dict]) -> None:
    service = deploy('echo "input=${INPUT_FILE_PATH-unset}"\n', file_stage_in=True)
    text = run(oscar, service, b64(b"x")).text
    assert ("INFO", "Skipping download of input file.") in records(text)
    assert text.endswith("input=unset\n\n")


def test_a_delegated_storage_event_sets_the_storage_variables(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo "$STORAGE_OBJECT_KEY|$EVENT_TIME|$EVENT"\n', log_level="CRITICAL")
    inner = minio_event(service["name"], "in/a+b%2Bc.txt")
    body = json.dumps({"event": json.dumps(inner)}).encode()
    key, when, event = run(oscar, service, body).text.strip().split("|")
    assert (key, when) == ("in/a b+c.txt", "2026-01-01T00:00:00.000Z")
    assert json.loads(event) == inner


def test_a_storage_record_without_an_arn_fails_the_supervisor(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    event = minio_event("some-bucket", "x")
    del event["Records"][0]["s3"]["bucket"]["arn"]
    response = run(oscar, deploy("echo never\n"), json.dumps(event).encode())
    assert response.status_code == 500
    assert ("INFO", "Storage event found.") in records(response.text)
    assert response.text.endswith("KeyError: 'arn'\n")


# storage: only jobs have the MinIO secret -------------------------------------------------


def test_a_sync_run_of_a_storage_event_reads_and_writes_no_bucket(
    oscar: OscarLocal, s3: Minio, with_output: Callable[..., dict]
) -> None:
    service = with_output('cat "$INPUT_FILE_PATH"; echo; echo r > "$TMP_OUTPUT_DIR/r.txt"\n')
    name = service["name"]
    s3.put_object(name, "in/secret.txt", io.BytesIO(b"object content"), 14)
    event = minio_event(name, "in/secret.txt")
    text = run(oscar, service, json.dumps(event).encode()).text
    assert ("INFO", "No MinIO user configuration found") in records(text)
    assert ("INFO", "Found 'LOCAL' input provider") in records(text)
    assert not any(message.startswith(("Downloading", "Uploading")) for _, message in records(text))
    assert "object content" not in text
    assert json.loads(text.split("Creating response\n", 1)[1]) == event  # the event is the input
    assert objects(s3, name) == ["in/secret.txt", "out/"]


def test_a_job_downloads_the_object_of_its_storage_event_by_base_name(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict],
    s3: Minio,
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("down")
    service = deploy('cat "$INPUT_FILE_PATH"; echo " $STORAGE_OBJECT_KEY"\n', name=name)
    s3.make_bucket(f"{name}-data")
    s3.put_object(f"{name}-data", "deep/in/photo.jpg", io.BytesIO(b"pixels"), 6)
    event = json.dumps(minio_event(f"{name}-data", "deep/in/photo.jpg")).encode()
    log = job_log(oscar, admin, service, event, "Succeeded")
    assert records(log)[:9] == [
        ("INFO", "Storage event found."),
        (
            "INFO",
            f"event_records = {minio_event(f'{name}-data', 'deep/in/photo.jpg')['Records'][0]} ",
        ),
        ("INFO", "MINIO event created"),
        ("INFO", "Reading storage configuration"),
        ("INFO", f"Using MinIO credentials for user: '{oscar.s3.access_key}'"),
        ("INFO", "SUPERVISOR: Initializing Binary supervisor"),
        ("INFO", "Found 'MINIO' input provider"),
        ("INFO", f"Downloading item from bucket '{name}-data' with key 'deep/in/photo.jpg'"),
        (
            "INFO",
            f"Successful download of file 'deep/in/photo.jpg' from bucket '{name}-data' "
            "in path '<path>'",
        ),
    ]
    assert re.search(r"INPUT_FILE_PATH variable set to '/\S+/photo\.jpg'", log)
    assert log.endswith("Creating response\npixels deep/in/photo.jpg\n\n")


def test_user_isolation_sends_outputs_to_the_bucket_of_the_event(
    oscar: OscarLocal,
    admin: httpx.Client,
    s3: Minio,
    with_output: Callable[..., dict],
    unique_name: Callable[[str], str],
) -> None:
    mine = unique_name("mine")
    script = 'echo r > "$TMP_OUTPUT_DIR/r.txt"\n'
    s3.make_bucket(mine)  # createBuckets adds the output folder to each bucket_list bucket
    service = with_output(script, isolation_level="USER", bucket_list=[mine])
    name = service["name"]
    s3.put_object(mine, "in/a.txt", io.BytesIO(b"a"), 1)
    log = job_log(
        oscar, admin, service, json.dumps(minio_event(mine, "in/a.txt")).encode(), "Succeeded"
    )
    assert ("INFO", f"Uploading file 'out/r.txt' to bucket '{mine}'") in records(log)
    assert log.endswith(f"Creating response\n['{name}', 'out']\n{mine}/out\n\n")
    assert objects(s3, mine) == ["in/a.txt", "out/", "out/r.txt"]
    assert objects(s3, name) == ["out/"]


def test_a_job_for_a_missing_object_fails_as_boto3_does(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo never\n")
    event = json.dumps(minio_event(service["name"], "in/missing.txt")).encode()
    log = job_log(oscar, admin, service, event, "Failed")
    assert records(log)[-1] == (
        "ERROR",
        "An error occurred (404) when calling the HeadObject operation: Not Found",
    )
    assert log.endswith("There was an exception in _parse_input\nNot Found\n")


def test_a_job_for_an_aws_s3_event_finds_no_aws_credentials(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo never\n")
    event = json.dumps(minio_event("aws-bucket", "x.txt", source="aws:s3")).encode()
    log = job_log(oscar, admin, service, event, "Failed")
    assert ("INFO", "Found 'S3' input provider") in records(log)
    assert log.endswith("botocore.exceptions.NoCredentialsError: Unable to locate credentials\n")


def test_a_job_upload_to_a_missing_bucket_fails_as_boto3_does(
    oscar: OscarLocal, admin: httpx.Client, s3: Minio, with_output: Callable[..., dict]
) -> None:
    service = with_output('echo r > "$TMP_OUTPUT_DIR/r.txt"\n')
    s3.remove_object(service["name"], "out/")
    s3.remove_bucket(service["name"])
    log = job_log(oscar, admin, service, b"", "Failed")
    assert records(log)[-1] == (
        "ERROR",
        "An error occurred (NoSuchBucket) when calling the PutObject operation: "
        "The specified bucket does not exist",
    )


def test_a_provider_outside_the_embedded_oscar_fails_the_job_with_a_clear_error(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    remote = {"endpoint": "https://elsewhere.example", "access_key": "a", "secret_key": "b"}
    service = deploy(
        'echo r > "$TMP_OUTPUT_DIR/r.txt"\n',
        storage_providers={"minio": {"remote": remote}},
        output=[{"storage_provider": "minio.remote", "path": "far/out"}],
    )
    log = job_log(oscar, admin, service, b"", "Failed")
    assert records(log)[-1] == (
        "ERROR",
        "oscar-local: storage provider 'minio.remote' is outside the embedded OSCAR",
    )


def test_incomplete_credentials_of_a_provider_fail_the_supervisor(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo never\n", storage_providers={"s3": {"mine": {"access_key": "a"}}})
    response = run(oscar, service, b"")
    assert response.status_code == 500
    assert records(response.text)[-1] == (
        "ERROR",
        "The storage authentication of 'S3' is not well-defined.",
    )
