"""What the invocation operators share: one input from a file, data or an object; saving the
output files; copying remote logs into the task log."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.errors import OscarResultError
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path

LOG_CHUNK_LINES = 200


class InputMixin:
    """One input from exactly one of a local file, inline data or a bucket object."""

    input_path: str | None
    input_data: Any
    input_object: str | None
    input_id: str | None
    oscar_conn_id: str

    def _check_one_input(self) -> None:
        given = [
            n for n in ("input_path", "input_data", "input_object") if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise AirflowFailException(
                f"give exactly one of input_path, input_data, input_object (got {given or 'none'})"
            )

    @cached_property
    def storage(self) -> OscarStorageHook:
        return OscarStorageHook(self.oscar_conn_id)

    def _input_name(self) -> str:
        """A file name for the input (what scripts see as its basename)."""
        if self.input_path is not None:
            return Path(self.input_path).name
        if self.input_object is not None:
            return PurePosixPath(self.input_object).name
        return "input.json" if isinstance(self.input_data, Mapping | list) else "input"

    def _file_name(self) -> str | None:
        """The input's own file name: none for inline bytes or text (their type is sniffed)."""
        if self.input_data is not None and not isinstance(self.input_data, Mapping | list):
            return None
        return self._input_name()

    def _input_id(self) -> str:
        """How results name this input: ``input_id``, or the input's file name without suffix."""
        return self.input_id or PurePosixPath(self._input_name()).stem

    def _origin(self) -> dict[str, Any]:
        """Where the input came from, for the results page (the object, never its bytes)."""
        if self.input_object is None:
            return {}
        return {"input_object": self.input_object, "oscar_conn_id": self.oscar_conn_id}

    def _read_input(self) -> bytes | str | Mapping[str, Any] | list[Any]:
        """The input's content."""
        self._check_one_input()
        if self.input_path is not None:
            path = Path(self.input_path)
            if not path.is_file():
                raise AirflowFailException(f"input_path {self.input_path!r} is not a file")
            return path.read_bytes()
        if self.input_object is not None:
            return self.storage.download_bytes(self.input_object)
        data = self.input_data
        if isinstance(data, str) and data.lstrip().startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                data = json.loads(data)  # a rendered template of a JSON document
        if not isinstance(data, bytes | str | Mapping | list):
            raise AirflowFailException(
                f"input_data must be bytes, text or a JSON document, not {type(data).__name__}"
            )
        return data


def as_bytes(data: bytes | str | Mapping[str, Any] | list[Any]) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data).encode()


def inside(folder: Path, name: str) -> Path:
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise OscarResultError(f"output file name {name!r} would leave {folder}")
    return path


def key_inside(bucket: str, prefix: str, name: str) -> str:
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise OscarResultError(f"output file name {name!r} would leave {bucket}/{prefix}")
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


def save_files(
    files: Mapping[str, bytes],
    *,
    several: bool,
    output_path: str | None,
    output_object: str | None,
    storage: OscarStorageHook | None,
) -> list[str]:
    """Save output files to a local path and/or ``bucket/key``; every destination is checked
    before anything is written. Returns where they went."""
    paths: list[tuple[Path, bytes]] = []
    objects: list[tuple[str, bytes]] = []
    if output_path:
        target = Path(output_path)
        paths = [(inside(target, n) if several else target, b) for n, b in files.items()]
    if output_object:
        bucket, key = split_path(output_object)
        objects = [
            (f"{bucket}/{key_inside(bucket, key, n) if several else key}", b)
            for n, b in files.items()
        ]
    for path, content in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for object_path, content in objects:
        assert storage is not None
        storage.upload_bytes(object_path, content)
    return [str(p) for p, _ in paths] + [o for o, _ in objects]


def log_remote(operator: Any, title: str, text: str | None, *, skip: int = 0) -> None:
    """Copy a remote log into the task log in chunks (huge single records get dropped);
    ``skip`` leaves out the first lines (already copied while the job ran)."""
    lines = (text or "").splitlines()[skip:]
    if not lines:
        operator.log.info("%s: %s", title, "(empty)" if not skip else "(no new lines)")
        return
    for start in range(0, len(lines), LOG_CHUNK_LINES):
        chunk = "\n".join(lines[start : start + LOG_CHUNK_LINES])
        first = skip + start + 1
        operator.log.info(
            "%s [lines %d-%d]:\n%s", title, first, first + len(chunk.splitlines()) - 1, chunk
        )
