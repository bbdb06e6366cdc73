"""The batch operator as a DAG author sees it, against the embedded OSCAR over real HTTP.

Each test deploys its own service and runs the operator with a small fake task context. The
classifier below answers with the input's text as its top label, so every result can be matched
to its input; inputs containing ``bad`` make the model answer ``status: error``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, cast, overload
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context
from minio import Minio

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.faults import ErrorBurst, FailingJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

CLASSIFIER = """#!/bin/sh
if grep -q bad "$INPUT_FILE_PATH"; then
  printf '{"status": "error", "message": "not a plant"}\\n'
else
  label=$(head -c 60 "$INPUT_FILE_PATH" | tr -dc 'a-z0-9-')
  printf '{"status": "ok", "labels": ["%s", "other"], "probabilities": [0.9, 0.1]}\\n' "$label"
fi
"""
LEAVES = [f"leaf-{i}" for i in range(12)]
FAST = {"input_retry_delay": 0.05, "poll_interval": 0.1, "progress_interval": 0}


@pytest.fixture(autouse=True)
def _connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


def task_context(try_number: int = 1) -> Context:
    ti = SimpleNamespace(
        dag_id="batch",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="classify_all",
        map_index=-1,
        try_number=try_number,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


@pytest.fixture
def classifier(deploy: Callable[..., dict[str, Any]]) -> str:
    return str(deploy(CLASSIFIER, log_level="CRITICAL")["name"])


@pytest.fixture
def bucket(s3: Minio, unique_name: Callable[[str], str]) -> Iterator[str]:
    name = unique_name("batch")
    s3.make_bucket(name)
    yield name
    for item in s3.list_objects(name, recursive=True):
        s3.remove_object(name, item.object_name or "")
    s3.remove_bucket(name)


def put(s3: Minio, bucket: str, key: str, data: bytes) -> None:
    import io

    s3.put_object(bucket, key, io.BytesIO(data), len(data))


def batch(service: str, **kwargs: Any) -> OscarBatchInvokeOperator:
    """The operator under test; without inputs it classifies the twelve ``LEAVES``."""
    options = {**FAST, "concurrency": 4, **kwargs}
    if not {"inputs", "input_objects", "input_prefix"} & set(kwargs):
        options["inputs"] = LEAVES
    return OscarBatchInvokeOperator(task_id="classify_all", service_name=service, **options)


def labels(result: dict[str, Any]) -> dict[str, str]:
    return {r["input"]: r["prediction"]["labels"][0] for r in result["results"]}


def requests_to(oscar: OscarLocal, what: str) -> int:
    assert oscar.cluster is not None
    return request_counts(oscar.cluster)[what]


class LazyResults(Sequence[str]):
    """What an upstream mapped task's XCom looks like at run time: a sequence, not a list."""

    def __init__(self, values: list[str]) -> None:
        self._values = values

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)


# inputs: a list, an XCom, a prefix -----------------------------------------------------------


def test_a_list_is_classified_synchronously_with_one_result_per_input_in_order(
    oscar: OscarLocal, classifier: str
) -> None:
    result = batch(classifier).execute(task_context())
    assert (result["total"], result["succeeded"], result["failed"]) == (12, 12, 0)
    assert [r["input"] for r in result["results"]] == [str(i) for i in range(12)]
    assert [r["prediction"]["labels"][0] for r in result["results"]] == LEAVES
    first = result["results"][0]
    assert set(first) == {"index", "input", "cluster", "status", "prediction", "seconds"}
    assert first["cluster"] == oscar.endpoint and first["status"] == "ok"
    assert result["clusters"] == {oscar.endpoint: 12}
    assert requests_to(oscar, f"POST /run/{classifier}") == 12


def test_a_list_is_classified_as_async_jobs_named_after_the_task(
    oscar: OscarLocal, classifier: str
) -> None:
    op = batch(classifier, inputs=["fern", "moss", "ivy"], mode="async", input_ids=["a", "b", "c"])
    result = op.execute(task_context())
    assert labels(result) == {"a": "fern", "b": "moss", "c": "ivy"}
    jobs = [r["job"] for r in result["results"]]
    assert len(set(jobs)) == 3
    assert all(re.fullmatch(rf"{classifier}-[0-9a-f-]{{36}}", job) for job in jobs)
    assert requests_to(oscar, f"POST /job/{classifier}") == 3


def test_a_rerun_re_attaches_to_its_jobs_instead_of_running_the_inputs_again(
    oscar: OscarLocal, admin: httpx.Client, classifier: str
) -> None:
    """Without a bucket for a checkpoint the inputs are submitted again, and OSCAR 4.1
    refuses a second job of the same name: the rerun reads the first jobs' results."""
    first = batch(classifier, inputs=["fern", "moss"], mode="async", delete_jobs=False)
    second = batch(classifier, inputs=["fern", "moss"], mode="async", delete_jobs=False)
    context = task_context()
    jobs = [r["job"] for r in first.execute(context)["results"]]
    context["ti"].try_number = 2  # type: ignore[attr-defined]
    again = second.execute(context)
    assert [r["job"] for r in again["results"]] == jobs
    assert sorted(admin.get(f"/system/logs/{classifier}").json()["jobs"]) == sorted(jobs)


def test_an_upstream_xcom_sequence_and_rendered_json_text_are_both_inputs(
    classifier: str,
) -> None:
    from_xcom = batch(classifier, inputs=LazyResults(["oak", "elm"])).execute(task_context())
    from_text = batch(classifier, inputs='["ash", "yew"]').execute(task_context())
    assert labels(from_xcom) == {"0": "oak", "1": "elm"}
    assert labels(from_text) == {"0": "ash", "1": "yew"}


def test_every_object_under_a_prefix_is_an_input_named_after_its_key(
    s3: Minio, bucket: str, classifier: str
) -> None:
    for name in ("rose", "tulip", "lily"):
        put(s3, bucket, f"in/{name}.txt", name.encode())
    put(s3, bucket, "in/more/daisy.txt", b"daisy")
    put(s3, bucket, "elsewhere/weed.txt", b"weed")
    result = batch(classifier, input_prefix=f"{bucket}/in/").execute(task_context())
    assert labels(result) == {
        "lily": "lily",
        "more/daisy": "daisy",
        "rose": "rose",
        "tulip": "tulip",
    }


def test_an_empty_prefix_is_an_empty_batch_not_an_error(bucket: str, classifier: str) -> None:
    result = batch(classifier, input_prefix=f"{bucket}/nothing/").execute(task_context())
    assert (result["total"], result["results"]) == (0, [])


def test_objects_listed_by_an_upstream_task_are_read_and_sent_as_async_jobs(
    s3: Minio, bucket: str, classifier: str
) -> None:
    put(s3, bucket, "a/clover.bin", b"clover")
    put(s3, bucket, "b/thistle.bin", b"thistle")
    keys = LazyResults([f"{bucket}/a/clover.bin", f"{bucket}/b/thistle.bin"])
    result = batch(classifier, input_objects=keys, mode="async").execute(task_context())
    assert labels(result) == {"clover": "clover", "thistle": "thistle"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_text_results_are_the_answer_in_both_modes_not_the_supervisor_log(
    deploy: Callable[..., dict[str, Any]], mode: str
) -> None:
    """A job's log holds the supervisor's records, then the base64 of the output file."""
    service = deploy('tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/upper.txt"\n')
    op = batch(service["name"], inputs=["fern"], mode=mode, decode="text")
    (record,) = op.execute(task_context())["results"]
    assert record["text"] == "FERN"


def test_a_missing_object_fails_that_input_without_retrying_it(
    bucket: str, classifier: str
) -> None:
    op = batch(classifier, input_objects=[f"{bucket}/none.txt"], on_failure="continue")
    result = op.execute(task_context())
    assert result["failed_inputs"] == ["none"]
    assert "does not exist" in result["results"][0]["error"]
    assert "attempts" not in result["results"][0]


# retries and failure policies ----------------------------------------------------------------


def test_an_input_hit_by_a_server_error_is_retried_and_succeeds(
    oscar: OscarLocal, classifier: str
) -> None:
    oscar.faults.add(ErrorBurst(route=f"/run/{classifier}", status=500, count=2))
    result = batch(classifier, concurrency=1).execute(task_context())
    assert result["succeeded"] == 12
    assert [r.get("attempts", 1) for r in result["results"][:2]] == [3, 1]
    assert requests_to(oscar, f"POST /run/{classifier}") == 14


def test_an_async_job_that_failed_is_resubmitted_under_a_new_name(
    oscar: OscarLocal, classifier: str
) -> None:
    oscar.faults.add(FailingJobs(service=classifier))
    result = batch(classifier, inputs=["sedge"], mode="async").execute(task_context())
    (record,) = result["results"]
    assert (record["status"], record["attempts"]) == ("ok", 2)
    assert requests_to(oscar, f"POST /job/{classifier}") == 2


def test_continue_finishes_the_batch_and_reports_the_failed_inputs(classifier: str) -> None:
    inputs = ["bad-1", "reed", "bad-2", "rush"]
    result = batch(classifier, inputs=inputs, on_failure="continue").execute(task_context())
    assert (result["succeeded"], result["failed"]) == (2, 2)
    assert result["failed_inputs"] in (["0", "2"], ["2", "0"])
    failed = result["results"][0]
    assert failed["status"] == "error" and "not a plant" in failed["error"]
    assert "attempts" not in failed  # a model error is not retried
    assert result["results"][1]["prediction"]["labels"][0] == "reed"


def test_fail_stops_at_the_first_input_that_fails_for_good_and_fails_the_task(
    oscar: OscarLocal, classifier: str
) -> None:
    inputs = ["bad"] + [f"leaf-{i}" for i in range(30)]
    with pytest.raises(AirflowFailException, match=r"input '0' failed .*not a plant"):
        batch(classifier, inputs=inputs, concurrency=2).execute(task_context())
    assert requests_to(oscar, f"POST /run/{classifier}") < 10


# results and progress --------------------------------------------------------------------------


def test_results_above_the_threshold_go_to_the_bucket_as_json_lines(
    s3: Minio, bucket: str, classifier: str
) -> None:
    op = batch(classifier, results_object=f"{bucket}/results/run.jsonl", results_threshold=5)
    result = op.execute(task_context())
    assert "results" not in result
    assert result["results_object"] == f"{bucket}/results/run.jsonl"
    assert (result["total"], result["succeeded"]) == (12, 12)
    response = s3.get_object(bucket, "results/run.jsonl")
    lines = [json.loads(line) for line in response.read().decode().splitlines()]
    response.close()
    assert sorted(r["index"] for r in lines) == list(range(12))
    assert {r["input"]: r["prediction"]["labels"][0] for r in lines}["3"] == "leaf-3"


def test_results_below_the_threshold_stay_in_xcom_even_with_a_results_object(
    bucket: str, classifier: str
) -> None:
    op = batch(classifier, inputs=["fig"], results_object=f"{bucket}/r.jsonl")
    assert labels(op.execute(task_context())) == {"0": "fig"}


def test_progress_lines_appear_in_the_task_log_at_a_steady_rate(
    deploy: Callable[..., dict[str, Any]],
) -> None:
    slow = deploy("sleep 0.15\n" + CLASSIFIER.split("\n", 1)[1], log_level="CRITICAL")["name"]
    op = batch(slow, concurrency=3, progress_interval=0.2)
    with structlog.testing.capture_logs() as logs:
        op.execute(task_context())
    lines = [str(e["event"]) for e in logs if " done, " in str(e["event"])]
    assert len(lines) >= 3  # ~0.6 s of work, a line every 0.2 s, and the final one
    shape = r"OSCAR batch \S+: \d+/12 done, 0 failed, [\d.]+ inputs/s, \d+ s elapsed, "
    assert all(re.fullmatch(shape + r"(ETA (\d+ s|unknown)|done)", line) for line in lines)
    assert re.fullmatch(shape.replace(r"\d+/12", "12/12") + "done", lines[-1])


# concurrency from the cluster's status -------------------------------------------------------


@pytest.fixture(scope="module")
def two_cpu_oscar(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """An OSCAR with 2 CPUs to share (and the session's S3 store)."""
    with OscarLocal(settings=Settings(total_cpu=2.0), s3=oscar.s3) as server:
        yield server


@pytest.fixture
def on_two_cpus(
    two_cpu_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Deploy half-CPU classifiers on the 2-CPU OSCAR, which the default connection points at."""
    import httpx

    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", two_cpu_oscar.connection_json())
    auth = (two_cpu_oscar.user, two_cpu_oscar.password)
    names: list[str] = []
    with httpx.Client(base_url=two_cpu_oscar.endpoint, auth=auth) as admin:

        def deploy_half(**fields: Any) -> str:
            name = f"half-{uuid.uuid4().hex[:8]}"
            body = {"name": name, "image": "x", "script": CLASSIFIER, "cpu": "0.5", **fields}
            admin.post("/system/services", json=body).raise_for_status()
            names.append(name)
            return name

        yield deploy_half
        for name in names:
            admin.delete(f"/system/services/{name}")


def test_concurrency_is_sized_from_the_free_cpu_in_system_status(
    on_two_cpus: Callable[..., str],
) -> None:
    # 80 % of 2 free CPUs / 0.5 CPU per invocation = 3
    with structlog.testing.capture_logs() as logs:
        result = batch(on_two_cpus(), concurrency=None).execute(task_context())
    assert result["concurrency"] == 3
    assert result["succeeded"] == 12
    assert any("fits 3 parallel invocations" in str(e["event"]) for e in logs)


def test_a_sized_concurrency_is_capped_by_max_concurrency(
    on_two_cpus: Callable[..., str],
) -> None:
    op = batch(on_two_cpus(), concurrency=None, max_concurrency=2)
    assert op.execute(task_context())["concurrency"] == 2


def test_a_sized_concurrency_of_sync_runs_stays_within_the_services_max_scale(
    on_two_cpus: Callable[..., str],
) -> None:
    service = on_two_cpus(synchronous={"min_scale": 0, "max_scale": 1})
    assert batch(service, concurrency=None).execute(task_context())["concurrency"] == 1
