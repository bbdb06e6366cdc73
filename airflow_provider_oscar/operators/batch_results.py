"""A batch's results: checkpointed to the bucket as they come, published at the end.

**Checkpoint.** Every few seconds the records of the inputs that finished are written to
``<results_object>.parts/part-<time>-<id>.jsonl`` (one new object per write: S3 has no append,
and no writer ever overwrites another's part). A retry of the task reads the parts back and
runs only the inputs without a successful record, so half a batch done is half a batch never
run again. Jobs of recorded inputs are deleted only after their record is in a part.

**Publishing.** Small batches return their records in XCom; above ``results_threshold`` results
(or ``results_threshold_bytes`` of JSON) the records go to ``results_object`` as JSON lines
(one per input, each with its ``index``), and XCom holds its path and the counts.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_oscar.hooks.storage import split_path

if TYPE_CHECKING:
    from airflow_provider_oscar.hooks.s3 import S3Session
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

__all__ = ["Checkpoint", "Results", "json_line"]


def json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()


class Checkpoint:
    """Finished inputs' records in ``<path>.parts/`` (see the module)."""

    def __init__(self, s3: S3Session, path: str) -> None:
        self.s3 = s3
        self.path = path
        self.bucket, key = split_path(path)
        self.prefix = f"{key}.parts/"
        self.pending: list[dict[str, Any]] = []
        self.parts = 0

    async def load(self) -> dict[int, dict[str, Any]]:
        """The records written so far (by any try), by input index; the last one wins."""
        found: dict[int, dict[str, Any]] = {}
        parts = sorted(await self.s3.list(self.bucket, self.prefix), key=lambda o: o.key)
        for part in parts:
            stored = await self.s3.get(self.bucket, part.key)
            for line in (stored.data if stored else b"").splitlines():
                if line.strip():
                    record = json.loads(line)
                    found[int(record["index"])] = record
        return found

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)

    async def flush(self) -> int:
        """Write the pending records as one new part; how many were written."""
        if not self.pending:
            return 0
        records, self.pending = self.pending, []
        name = f"{self.prefix}part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
        try:
            await self.s3.put(
                self.bucket, name, b"".join(map(json_line, records)), "application/x-ndjson"
            )
        except BaseException:
            self.pending = records + self.pending
            raise
        self.parts += 1
        return len(records)


class Results:
    """Result records: kept in memory, or spilled to a JSON-lines file above a threshold."""

    def __init__(self, count_limit: int, byte_limit: int, *, spill: bool) -> None:
        self.count_limit = count_limit
        self.byte_limit = byte_limit
        self.spill = spill
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self.size = 0
        self.file: IO[bytes] | None = None

    def add(self, record: dict[str, Any]) -> None:
        line = json_line(record)
        self.count += 1
        self.size += len(line)
        if self.file is None and self.spill and self._over():
            # closed in publish() or close()
            self.file = tempfile.NamedTemporaryFile(prefix="oscar-batch-", suffix=".jsonl")  # noqa: SIM115
            for kept in sorted(self.records, key=lambda r: r["index"]):
                self.file.write(json_line(kept))
            self.records = []
        if self.file is not None:
            self.file.write(line)
        else:
            self.records.append(record)

    def _over(self) -> bool:
        return self.count > self.count_limit or self.size > self.byte_limit

    def publish(
        self, results_object: str | None, storage: OscarStorageHook | None, log: Any
    ) -> dict[str, Any]:
        """What XCom gets: the records (by input order), or where the JSON lines went."""
        try:
            if self.file is not None and results_object and storage is not None:
                self.file.flush()
                storage.upload_file(results_object, self.file.name)
                log.info(
                    "wrote %d results (%d bytes of JSON lines) to %s",
                    self.count,
                    self.size,
                    results_object,
                )
                return {"results_object": results_object}
            if self._over():
                log.warning(
                    "%d results (%d bytes) go to XCom; set results_object to write large "
                    "batches to a bucket instead",
                    self.count,
                    self.size,
                )
            return {"results": sorted(self.records, key=lambda r: r["index"])}
        finally:
            self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
