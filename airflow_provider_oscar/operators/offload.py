"""Results out of XCom: above a size, the whole result goes to the bucket, XCom keeps a summary.

XCom lives in Airflow's database; a result of a few hundred kilobytes (long console text, files
kept inline, thousands of batch records) belongs in the cluster's MinIO. :func:`offload` writes
such a result as JSON to ``results_object`` (or to ``<service bucket>/.oscar-airflow/results/``)
and returns its summary with ``result_object``; :func:`read_results` gives consumers the whole
results back, reading a mapped task's XCom in one request and every offloaded result through
one S3 session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_oscar.aio import run_coroutine
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.hooks.correlation import STATE_FOLDER
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path

__all__ = ["DEFAULT_THRESHOLD", "default_location", "offload", "read_results"]

DEFAULT_THRESHOLD = 64 * 1024
_SUMMARY_KEYS = ("service", "cluster", "input", "job", "status", "token", "error", "outputs")
_SMALL = 4096  # a field this small (as JSON) stays in the summary too


def default_location(service: Service | None, name: str) -> str | None:
    """``<bucket>/.oscar-airflow/results/<name>.json`` in the service's MinIO output (or
    input) bucket; ``None`` when it has neither."""
    if service is None:
        return None
    for io in [*(service.output or []), *(service.input or [])]:
        if io.provider_type == "minio" and io.bucket:
            return f"{io.bucket}/{STATE_FOLDER}/results/{name}.json"
    return None


def offload(
    result: dict[str, Any],
    *,
    threshold: int,
    location: str | Callable[[], str | None] | None,
    storage: OscarStorageHook,
    log: Any,
) -> dict[str, Any]:
    """``result`` itself when small; else written to ``location`` (or where the callable
    says, asked only then), and its summary."""
    data = json.dumps(result, default=str).encode()
    if len(data) <= threshold:
        return result
    if callable(location):
        location = location()
    if not location:
        log.warning(
            "the result is %d bytes (over results_threshold_bytes=%d) but there is nowhere to "
            "write it: it goes to XCom whole; set results_object",
            len(data),
            threshold,
        )
        return result
    storage.upload_bytes(location, data, "application/json")
    log.info("wrote the %d-byte result to %s; XCom holds its summary", len(data), location)
    summary = {key: result[key] for key in _SUMMARY_KEYS if key in result}
    for key, value in result.items():
        if key not in summary and len(json.dumps(value, default=str)) <= _SMALL:
            summary[key] = value
    summary.update(result_object=location, result_bytes=len(data))
    return summary


def read_results(values: Any, oscar_conn_id: str = OscarStorageHook.default_conn_name) -> list[Any]:
    """The upstream results, whole: one XCom request for a mapped task (a slice of the lazy
    sequence, not one request per map index), offloaded results read back from the bucket."""
    items = list(values[:]) if isinstance(values, Sequence) else list(values)
    wanted = [
        (index, str(item["result_object"]))
        for index, item in enumerate(items)
        if isinstance(item, dict) and item.get("result_object") and "result_bytes" in item
    ]
    if not wanted:
        return items
    storage = OscarStorageHook(oscar_conn_id)

    async def fetch() -> list[bytes | None]:
        async with storage.as3() as s3:
            found = []
            for _, path in wanted:
                stored = await s3.get(*split_path(path))
                found.append(stored.data if stored else None)
            return found

    for (index, _), data in zip(wanted, run_coroutine(fetch), strict=True):
        if data is not None:
            items[index] = json.loads(data)
    return items
