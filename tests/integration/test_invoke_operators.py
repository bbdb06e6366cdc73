"""The run and submit-job operators as a DAG author sees them, against the embedded OSCAR.

Every test deploys its own uniquely named service and runs the operator with a small fake task
context over real HTTP. Deferrable tests play the triggerer: they rebuild the trigger from its
serialised form, run it to its first event, and resume a fresh operator with that event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context
from airflow.sdk.module_loading import import_string
from minio import Minio

from airflow_provider_oscar.compat import AirflowException, AirflowFailException, TaskDeferred
from airflow_provider_oscar.hooks.transport import client_options
from airflow_provider_oscar.local.faults import ErrorBurst, FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.invoke import (
    OscarRunServiceOperator,
    OscarSubmitJobOperator,
)
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger
from tests.helpers import wait_until

PLANTS = Path(__file__).resolve().parents[2] / "example_dags" / "services" / "plants"
SEPAL_SCRIPT = (PLANTS / "scripts" / "plants-sepal.sh").read_text()  # writes a Python literal
PETAL_SCRIPT = (PLANTS / "scripts" / "plants-petal-length.sh").read_text()  # writes strict JSON
SETOSA = PLANTS / "specimens" / "specimen-005.json"  # both models: Iris setosa
VERSICOLOR = PLANTS / "specimens" / "specimen-055.json"  # petal-length model: Iris versicolor
VIRGINICA = PLANTS / "specimens" / "specimen-105.json"  # petal-length model: Iris virginica
ECHO_SCRIPT = '#!/bin/sh\nprintf "got: "\ncat "$INPUT_FILE_PATH"\n'
FILES_SCRIPT = (
    "#!/bin/sh\n"
    'printf "leaf" > "$TMP_OUTPUT_DIR/a.txt"\n'
    'mkdir "$TMP_OUTPUT_DIR/sub"\n'
    'cat "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/sub/b.txt"\n'
)
# One output file that is itself a zip whose member climbs out of any folder it is unpacked to.
ESCAPING_ZIP_SCRIPT = (
    "#!/bin/sh\n"
    "python3 - <<'PY'\n"
    "import os, zipfile\n"
    "path = os.path.join(os.environ['TMP_OUTPUT_DIR'], 'evil.zip')\n"
    "with zipfile.ZipFile(path, 'w') as archive:\n"
    "    archive.writestr('fine.txt', 'fine')\n"
    "    archive.writestr('../escape.txt', 'escaped')\n"
    "PY\n"
)
POLL = 0.2


# fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


def task_context(
    *,
    run_id: str | None = None,
    task_id: str = "classify",
    map_index: int = -1,
    try_number: int = 1,
) -> Context:
    """The part of an Airflow task context the operators use."""
    ti = SimpleNamespace(
        dag_id="invoke_operators",
        run_id=run_id or f"manual__{uuid.uuid4()}",
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


@pytest.fixture
def context() -> Context:
    return task_context()


def bucket_io(name: str) -> dict[str, Any]:
    """Input and output folders for service ``name`` in a bucket of the same name."""
    return {
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/out"}],
    }


@pytest.fixture
def plants(deploy: Callable[..., dict[str, Any]], unique_name: Callable[[str], str]) -> str:
    """A strict-JSON plants classifier with input and output folders."""
    name = unique_name("plants")
    return str(deploy(PETAL_SCRIPT, name=name, **bucket_io(name))["name"])


@pytest.fixture
def bucket(s3: Minio, unique_name: Callable[[str], str]) -> Iterator[str]:
    """An empty bucket, removed with its objects afterwards."""
    name = unique_name("bucket")
    s3.make_bucket(name)
    yield name
    for item in s3.list_objects(name, recursive=True):
        s3.remove_object(name, item.object_name or "")
    s3.remove_bucket(name)


def read_object(s3: Minio, path: str) -> bytes:
    bucket, key = path.split("/", 1)
    response = s3.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def uploaded_inputs(s3: Minio, service: str) -> list[str]:
    """The keys in the input folder of a service made with :func:`bucket_io`."""
    objects = s3.list_objects(service, prefix="in/", recursive=True)
    return [o.object_name or "" for o in objects if not (o.object_name or "/").endswith("/")]


def jobs_of(admin: httpx.Client, service: str) -> dict[str, Any]:
    response = admin.get(f"/system/logs/{service}")
    response.raise_for_status()
    return dict(response.json()["jobs"])


def top_label(result: dict[str, Any]) -> str:
    return str(result["prediction"]["labels"][0])


async def resume_after_deferral(
    make_operator: Callable[[], OscarSubmitJobOperator], context: Context
) -> tuple[TaskDeferred, dict[str, Any]]:
    """Execute until the operator defers, run the trigger as the triggerer would (rebuilt from
    its serialised form), and resume a fresh operator instance with the event's payload."""
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    trigger = import_string(classpath)(**kwargs)
    event = await trigger.run().__anext__()
    payload = json.loads(json.dumps(event.payload))  # what the metadata DB would hand back
    kwargs = json.loads(json.dumps(deferred.value.kwargs or {}))  # next_kwargs, likewise
    resumed = getattr(make_operator(), deferred.value.method_name)
    return deferred.value, resumed(context=context, event=payload, **kwargs)


async def submit(
    make_operator: Callable[[], OscarSubmitJobOperator], context: Context
) -> dict[str, Any]:
    """Run a submit operator to its result, deferring through the trigger when it defers."""
    if not make_operator().deferrable:
        return make_operator().execute(context)
    return (await resume_after_deferral(make_operator, context))[1]


def remote_log_lines(logs: list[MutableMapping[str, Any]], job: str) -> list[str]:
    """The remote log lines copied into the task log for ``job``, in order."""
    lines: list[str] = []
    for entry in logs:
        title, _, body = str(entry["event"]).partition("]:\n")
        if title.startswith(f"OSCAR job {job} log ["):
            lines.extend(body.splitlines())
    return lines


# run: one input of each kind ---------------------------------------------------------------


def test_run_sends_a_local_file_and_names_the_result_after_it(
    oscar: OscarLocal, plants: str, context: Context
) -> None:
    op = OscarRunServiceOperator(task_id="classify", service_name=plants, input_path=str(SETOSA))
    result = op.execute(context)
    assert result["service"] == plants
    assert result["cluster"] == oscar.endpoint
    assert result["input"] == "specimen-005"
    assert result["saved"] == []
    assert top_label(result) == "Iris setosa"


def test_run_sends_bytes_as_the_content_of_the_input_file(plants: str, context: Context) -> None:
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_data=VERSICOLOR.read_bytes()
    )
    assert top_label(op.execute(context)) == "Iris versicolor"


def test_run_sends_text_to_the_script_unchanged(
    deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy(ECHO_SCRIPT)["name"]
    text = "Größe: 5 cm\nline two, with 'quotes' and {braces"
    op = OscarRunServiceOperator(
        task_id="echo", service_name=service, input_data=text, decode="text"
    )
    assert op.execute(context)["text"] == f"got: {text}"


def test_run_sends_a_dict_as_a_json_document(plants: str, context: Context) -> None:
    specimen = json.loads(VIRGINICA.read_text())
    op = OscarRunServiceOperator(task_id="classify", service_name=plants, input_data=specimen)
    assert top_label(op.execute(context)) == "Iris virginica"


def test_run_sends_json_text_rendered_from_a_template(plants: str) -> None:
    params = {"specimen": json.loads(VERSICOLOR.read_text())}
    context = cast(Context, {**task_context(), "params": params})
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_data="{{ params.specimen | tojson }}"
    )
    op.render_template_fields(context)
    assert isinstance(op.input_data, str)
    assert top_label(op.execute(context)) == "Iris versicolor"


def test_run_reads_its_input_from_a_bucket_object(
    plants: str, s3: Minio, bucket: str, context: Context
) -> None:
    s3.fput_object(bucket, "specimens/specimen-105.json", str(VIRGINICA))
    op = OscarRunServiceOperator(
        task_id="classify",
        service_name=plants,
        input_object=f"{bucket}/specimens/specimen-105.json",
    )
    result = op.execute(context)
    assert (result["input"], top_label(result)) == ("specimen-105", "Iris virginica")


def test_run_names_the_result_after_input_id_when_given(plants: str, context: Context) -> None:
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_path=str(SETOSA), input_id="leaf-7"
    )
    assert op.execute(context)["input"] == "leaf-7"


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param({}, id="none"),
        pytest.param({"input_path": str(SETOSA), "input_data": b"{}"}, id="path-and-data"),
        pytest.param({"input_data": b"{}", "input_object": "bucket/key"}, id="data-and-object"),
    ],
)
def test_run_fails_without_retry_unless_exactly_one_input_is_given(
    plants: str, context: Context, inputs: dict[str, Any]
) -> None:
    op = OscarRunServiceOperator(task_id="classify", service_name=plants, **inputs)
    with pytest.raises(AirflowFailException, match="exactly one of input_path"):
        op.execute(context)


# run: decoding and saving ------------------------------------------------------------------


def test_run_decodes_a_python_literal_prediction(
    deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy(SEPAL_SCRIPT, environment={"variables": {"TOP_K": "2"}})["name"]
    op = OscarRunServiceOperator(task_id="classify", service_name=service, input_path=str(SETOSA))
    prediction = op.execute(context)["prediction"]
    assert prediction["status"] == "ok"
    assert prediction["labels"] == ["Iris setosa", "Iris versicolor"]
    assert prediction["probabilities"][0] > 0.95  # naive Bayes on the sepals: 0.988
    assert prediction["probabilities"] == sorted(prediction["probabilities"], reverse=True)


def test_run_decodes_console_text_without_the_supervisor_log_lines(
    deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy(ECHO_SCRIPT, log_level="INFO")["name"]
    op = OscarRunServiceOperator(
        task_id="echo", service_name=service, input_data="hello", decode="text"
    )
    result = op.execute(context)
    assert (result["text"], result["truncated"]) == ("got: hello", False)


def test_run_lists_the_files_of_a_zipped_multi_file_output(
    deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy(FILES_SCRIPT)["name"]
    op = OscarRunServiceOperator(
        task_id="files", service_name=service, input_data="seed!", decode="files"
    )
    assert op.execute(context)["files"] == {"a.txt": 4, "sub/b.txt": 5}


def test_run_saves_a_multi_file_output_into_the_output_path_folder(
    deploy: Callable[..., dict[str, Any]], context: Context, tmp_path: Path
) -> None:
    service = deploy(FILES_SCRIPT)["name"]
    folder = tmp_path / "outputs"
    op = OscarRunServiceOperator(
        task_id="files",
        service_name=service,
        input_data="seed!",
        decode="files",
        output_path=str(folder),
    )
    saved = op.execute(context)["saved"]
    assert sorted(saved) == [str(folder / "a.txt"), str(folder / "sub" / "b.txt")]
    assert (folder / "a.txt").read_text() == "leaf"
    assert (folder / "sub" / "b.txt").read_text() == "seed!"


def test_run_saves_a_multi_file_output_under_the_output_object_prefix(
    deploy: Callable[..., dict[str, Any]], context: Context, s3: Minio, bucket: str
) -> None:
    service = deploy(FILES_SCRIPT)["name"]
    op = OscarRunServiceOperator(
        task_id="files",
        service_name=service,
        input_data="seed!",
        decode="files",
        output_object=f"{bucket}/results/run-1",
    )
    saved = op.execute(context)["saved"]
    assert sorted(saved) == [f"{bucket}/results/run-1/a.txt", f"{bucket}/results/run-1/sub/b.txt"]
    assert read_object(s3, f"{bucket}/results/run-1/sub/b.txt") == b"seed!"


def test_run_saves_a_single_output_file_to_the_output_path_itself(
    plants: str, context: Context, tmp_path: Path
) -> None:
    target = tmp_path / "predictions" / "specimen-005.json"
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_path=str(SETOSA), output_path=str(target)
    )
    result = op.execute(context)
    assert result["saved"] == [str(target)]
    assert json.loads(target.read_text())["labels"][0] == "Iris setosa"


def test_run_refuses_to_unpack_a_zip_member_outside_the_output_path_folder(
    deploy: Callable[..., dict[str, Any]], context: Context, tmp_path: Path
) -> None:
    service = deploy(ESCAPING_ZIP_SCRIPT)["name"]
    folder = tmp_path / "outputs"
    op = OscarRunServiceOperator(
        task_id="files",
        service_name=service,
        input_data="x",
        decode="files",
        output_path=str(folder),
    )
    with pytest.raises(AirflowFailException, match=r"entry '\.\./escape\.txt' cannot be saved"):
        op.execute(context)
    assert not (tmp_path / "escape.txt").exists()
    assert not (folder / "fine.txt").exists()  # checked before anything was written


def test_run_refuses_to_upload_a_zip_member_outside_the_output_object_prefix(
    deploy: Callable[..., dict[str, Any]], context: Context, s3: Minio, bucket: str
) -> None:
    service = deploy(ESCAPING_ZIP_SCRIPT)["name"]
    op = OscarRunServiceOperator(
        task_id="files",
        service_name=service,
        input_data="x",
        decode="files",
        output_object=f"{bucket}/results/run-1",
    )
    with pytest.raises(AirflowFailException, match=r"entry '\.\./escape\.txt' cannot be saved"):
        op.execute(context)
    assert [o.object_name for o in s3.list_objects(bucket, recursive=True)] == []


# run: failures -----------------------------------------------------------------------------


def test_run_fails_without_retry_with_the_models_message_on_status_error(
    plants: str, context: Context
) -> None:
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_data="this is not a specimen"
    )
    with pytest.raises(AirflowFailException, match="input is not a JSON specimen"):
        op.execute(context)


def test_run_does_not_save_the_output_of_a_model_that_answered_status_error(
    plants: str, context: Context, tmp_path: Path
) -> None:
    target = tmp_path / "prediction.json"
    op = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_data="garbage", output_path=str(target)
    )
    with pytest.raises(AirflowFailException):
        op.execute(context)
    assert not target.exists()


def test_run_answered_500_fails_retryably_with_the_answer_body(
    oscar: OscarLocal, plants: str, context: Context
) -> None:
    oscar.faults.add(ErrorBurst(route=f"/run/{plants}", status=500))
    op = OscarRunServiceOperator(task_id="classify", service_name=plants, input_path=str(SETOSA))
    with pytest.raises(AirflowException) as failure:
        op.execute(context)
    assert not isinstance(failure.value, AirflowFailException)
    assert "500" in str(failure.value)
    assert "injected fault: HTTP 500" in str(failure.value)


# submit via /job ---------------------------------------------------------------------------


def job_operator(service: str, **kwargs: Any) -> Callable[[], OscarSubmitJobOperator]:
    """A factory of identical submit operators (a resumed task is a fresh instance)."""
    arguments = {"input_path": str(SETOSA), "poll_interval": POLL, "timeout": 20.0, **kwargs}
    return lambda: OscarSubmitJobOperator(task_id="classify", service_name=service, **arguments)


MODES = [pytest.param(False, id="waiting"), pytest.param(True, id="deferrable")]


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_job_returns_the_prediction_printed_by_the_job(
    oscar: OscarLocal, plants: str, context: Context, deferrable: bool
) -> None:
    result = await submit(job_operator(plants, deferrable=deferrable), context)
    assert (result["service"], result["cluster"]) == (plants, oscar.endpoint)
    assert result["input"] == "specimen-005"
    assert result["job"]["status"] == "Succeeded"
    assert result["job"]["name"].startswith(f"{plants}-")
    assert top_label(result) == "Iris setosa"


async def test_submit_job_defers_to_a_job_trigger_bounded_by_the_timeout(
    plants: str, context: Context
) -> None:
    deferred, _ = await resume_after_deferral(
        job_operator(plants, deferrable=True, timeout=20.0), context
    )
    assert isinstance(deferred.trigger, OscarJobTrigger)
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout is not None and deferred.timeout.total_seconds() >= 20.0


def test_submit_job_names_the_job_after_dag_run_task_and_map_index_never_the_try(
    admin: httpx.Client, plants: str
) -> None:
    run_id = f"manual__{uuid.uuid4()}"
    make = job_operator(plants, wait_for_completion=False)

    def job_name(**ti: Any) -> str:
        return str(make().execute(task_context(run_id=run_id, **ti))["job"])

    first = job_name(map_index=0)
    names = {first, job_name(map_index=1)}
    assert len(names) == 2
    assert job_name(map_index=0, try_number=2) == first  # a retry re-attaches
    assert job_name(map_index=0) == first  # a fresh operator, equal task instance fields
    assert set(jobs_of(admin, plants)) == names
    assert all(name.startswith(f"{plants}-") and len(name) <= 63 for name in names)


def test_submit_job_re_executed_with_the_same_try_does_not_submit_again(
    admin: httpx.Client, plants: str, context: Context
) -> None:
    make = job_operator(plants)
    first = make().execute(context)
    second = make().execute(context)
    assert second["job"]["name"] == first["job"]["name"]
    assert list(jobs_of(admin, plants)) == [first["job"]["name"]]


def test_submit_job_to_a_service_with_a_long_name_gets_a_valid_job_name(
    deploy: Callable[..., dict[str, Any]],
    unique_name: Callable[[str], str],
    context: Context,
) -> None:
    service = deploy(PETAL_SCRIPT, name=unique_name("plants-with-a-long-name"))["name"]
    result = job_operator(service)().execute(context)
    assert result["job"]["name"].startswith(f"{service[:16]}-")
    assert len(result["job"]["name"]) <= 63
    assert top_label(result) == "Iris setosa"


def test_submit_job_finds_its_job_by_listing_when_the_cluster_ignores_the_name(
    admin: httpx.Client, plants: str, context: Context
) -> None:
    op = job_operator(plants)()
    real = httpx.HTTPTransport()

    def without_job_name(request: httpx.Request) -> httpx.Response:  # as OSCAR before v4.1
        request.headers.pop("X-Delegated-Job-ID", None)
        response = real.handle_request(request)
        response.read()
        return response

    options = client_options(op.hook.settings)
    op.hook._client = httpx.Client(transport=httpx.MockTransport(without_job_name), **options)
    result = op.execute(context)
    assert list(jobs_of(admin, plants)) == [result["job"]["name"]]
    assert top_label(result) == "Iris setosa"


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_job_copies_the_remote_log_into_the_task_log_in_chunks(
    deploy: Callable[..., dict[str, Any]], context: Context, deferrable: bool
) -> None:
    service = deploy('#!/bin/sh\nseq 1 450 | sed "s/^/remote line /"\n', log_level="CRITICAL")
    make = job_operator(service["name"], decode="none", deferrable=deferrable, live_logs=False)
    with structlog.testing.capture_logs() as logs:
        result = await submit(make, context)
    lines = remote_log_lines(logs, result["job"]["name"])
    assert lines == [f"remote line {n}" for n in range(1, 451)]
    chunks = [e for e in logs if str(e["event"]).startswith(f"OSCAR job {result['job']['name']}")]
    assert len(chunks) == 3


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_job_that_failed_fails_without_retry_with_the_log_tail(
    oscar: OscarLocal, plants: str, context: Context, deferrable: bool
) -> None:
    oscar.faults.add(FailingJobs(service=plants))
    with pytest.raises(AirflowFailException, match="ended Failed") as failure:
        await submit(job_operator(plants, deferrable=deferrable), context)
    assert "Log tail:" in str(failure.value)
    assert "injected failure: the job's pod was evicted" in str(failure.value)


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_job_that_succeeded_without_printing_a_result_fails_clearly(
    deploy: Callable[..., dict[str, Any]], context: Context, deferrable: bool
) -> None:
    script = '#!/bin/sh\necho "model weights missing" >&2\nexit 3\n'
    service = deploy(script)["name"]
    with pytest.raises(AirflowFailException, match="succeeded but printed no model result") as e:
        await submit(job_operator(service, deferrable=deferrable, decode="prediction"), context)
    assert "model weights missing" in str(e.value)


def test_submit_job_fails_without_retry_with_the_models_message_on_status_error(
    plants: str, context: Context
) -> None:
    op = job_operator(plants, input_path=None, input_data="not a specimen")()
    with pytest.raises(AirflowFailException, match="input is not a JSON specimen"):
        op.execute(context)


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_job_stuck_pending_times_out_retryably(
    oscar: OscarLocal, plants: str, context: Context, deferrable: bool
) -> None:
    oscar.faults.add(StuckJobs(service=plants))
    started = time.monotonic()
    with pytest.raises(AirflowException, match="Pending") as failure:
        await submit(job_operator(plants, deferrable=deferrable, timeout=1.0), context)
    assert not isinstance(failure.value, AirflowFailException)
    assert 1.0 <= time.monotonic() - started < 5.0


def test_submit_job_without_waiting_returns_while_the_job_is_pending(
    oscar: OscarLocal, admin: httpx.Client, plants: str, context: Context
) -> None:
    oscar.faults.add(StuckJobs(service=plants))
    result = job_operator(plants, wait_for_completion=False)().execute(context)
    assert result == {
        "service": plants,
        "job": result["job"],
        "created": True,
        "status": "submitted",
    }
    assert jobs_of(admin, plants)[result["job"]]["status"] == "Pending"


def test_submit_job_refuses_two_inputs_before_submitting_anything(
    admin: httpx.Client, plants: str, context: Context
) -> None:
    op = job_operator(plants, input_data=b"{}")()
    with pytest.raises(AirflowFailException, match="exactly one of input_path"):
        op.execute(context)
    assert jobs_of(admin, plants) == {}


def test_submit_job_killed_while_waiting_deletes_the_running_job(
    admin: httpx.Client, deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy("#!/bin/sh\nsleep 30\n")["name"]
    op = job_operator(service, timeout=120.0)()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(op.execute, context)
        job = wait_until(
            lambda: next(
                (n for n, j in jobs_of(admin, service).items() if j["status"] == "Running"), None
            )
        )
        wait_until(lambda: op._submission)  # killed while waiting, not while still submitting
        op.on_kill()
        with pytest.raises(AirflowException, match="was deleted before it finished"):
            waiting.result(timeout=60)  # three listings without the job, however loaded
    assert job not in jobs_of(admin, service)


# submit via bucket -------------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_via_bucket_returns_the_prediction_in_the_output_named_with_its_token(
    plants: str, s3: Minio, context: Context, deferrable: bool
) -> None:
    make = job_operator(plants, via="bucket", input_path=str(VERSICOLOR), deferrable=deferrable)
    result = await submit(make, context)
    assert result["token"]
    (output,) = result["outputs"]
    assert output.startswith(f"{plants}/out/")
    assert result["token"] in output.rsplit("/", 1)[1]
    assert result["input"] == "specimen-055"
    assert top_label(result) == "Iris versicolor"
    assert uploaded_inputs(s3, plants) == [f"in/{result['token']}-specimen-055.json"]


async def test_submit_via_bucket_defers_to_the_job_its_upload_started(
    plants: str, context: Context
) -> None:
    deferred, result = await resume_after_deferral(
        job_operator(plants, via="bucket", deferrable=True), context
    )
    assert isinstance(deferred.trigger, OscarJobTrigger)
    assert deferred.trigger.job_name == result["job"]["name"]
    assert deferred.trigger.input_object == f"{plants}/in/{result['token']}-specimen-005.json"
    assert deferred.method_name == "execute_complete"


@pytest.mark.parametrize("deferrable", MODES)
async def test_submit_via_bucket_concurrent_map_indexes_each_get_their_own_output(
    plants: str, deferrable: bool
) -> None:
    run_id = f"manual__{uuid.uuid4()}"
    specimens = {0: (SETOSA, "Iris setosa"), 1: (VIRGINICA, "Iris virginica")}

    def make(index: int) -> Callable[[], OscarSubmitJobOperator]:
        path = str(specimens[index][0])
        return job_operator(plants, via="bucket", input_path=path, deferrable=deferrable)

    contexts = {i: task_context(run_id=run_id, map_index=i) for i in specimens}
    if deferrable:
        results = await asyncio.gather(*(submit(make(i), contexts[i]) for i in specimens))
    else:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(make(i)().execute, contexts[i]) for i in specimens]
            results = [f.result(timeout=30) for f in futures]
    assert results[0]["token"] != results[1]["token"]
    for index, result in enumerate(results):
        assert [result["token"] in o for o in result["outputs"]] == [True]
        assert top_label(result) == specimens[index][1]


def test_submit_via_bucket_without_waiting_returns_the_uploaded_input_and_token(
    plants: str, s3: Minio, context: Context
) -> None:
    result = job_operator(plants, via="bucket", wait_for_completion=False)().execute(context)
    assert result["status"] == "submitted"
    assert uploaded_inputs(s3, plants) == [f"in/{result['token']}-specimen-005.json"]


def test_submit_via_bucket_refuses_a_service_without_bucket_folders(
    deploy: Callable[..., dict[str, Any]], context: Context
) -> None:
    service = deploy(PETAL_SCRIPT)["name"]
    with pytest.raises(AirflowFailException, match="needs MinIO input and output paths"):
        job_operator(service, via="bucket")().execute(context)


def _persisted_link(context: Context, link: type) -> dict[str, Any]:
    pushes = context["ti"].xcom_push.call_args_list  # type: ignore[attr-defined]
    values = [c.kwargs["value"] for c in pushes if c.kwargs["key"] == link.persist_key()]
    assert values, f"{link.__name__} was not persisted"
    return values[-1]


def test_run_persists_the_service_link_before_invoking(
    oscar: OscarLocal, plants: str, context: Context
) -> None:
    from airflow_provider_oscar.links import OscarServiceLink

    OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_path=str(SETOSA)
    ).execute(context)
    data = _persisted_link(context, OscarServiceLink)
    assert OscarServiceLink().page(data) == f"services/{plants}/settings"
    assert data["endpoint"] == oscar.endpoint


def test_submitted_job_persists_its_logs_link_and_bucket_jobs_their_output_link(
    plants: str, context: Context
) -> None:
    from airflow_provider_oscar.links import OscarJobLogsLink, OscarOutputLink

    result = job_operator(plants, wait_for_completion=False)().execute(context)
    assert _persisted_link(context, OscarJobLogsLink)["job"] == result["job"]
    job_operator(plants, via="bucket", wait_for_completion=False)().execute(context)
    output = _persisted_link(context, OscarOutputLink)
    assert OscarOutputLink().page(output) == f"minio/{plants}/out/"


def test_run_recording_errors_returns_the_model_error_as_the_result(
    oscar: OscarLocal, plants: str, context: Context
) -> None:
    result = OscarRunServiceOperator(
        task_id="classify", service_name=plants, input_data="garbage", on_error="record"
    ).execute(context)
    assert result["prediction"]["status"] == "error"
    assert result["error"] == result["prediction"]["message"]
    assert (result["service"], result["cluster"], result["saved"]) == (plants, oscar.endpoint, [])


def test_run_recording_errors_still_fails_on_a_bad_argument() -> None:
    with pytest.raises(ValueError, match="on_error must be"):
        OscarRunServiceOperator(task_id="classify", service_name="x", on_error="ignore")  # type: ignore[arg-type]
