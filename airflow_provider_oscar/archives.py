"""The zip archive a synchronous run answers with several output files, unpacked within bounds.

OSCAR's supervisor zips the files a script left when there are several, under their paths
relative to the output folder, uncompressed (faas-supervisor 2.0.1, ``faassupervisor/utils.py``,
``FileUtils.zip_file_list``: ``ZipFile(path, 'w')``, whose default is ``ZIP_STORED``). A real
answer therefore unpacks to about its own size. Before any member is inflated, an archive is
refused when it has over :data:`MAX_ENTRIES` files, unpacks to over :data:`MAX_UNPACKED_BYTES`,
or unpacks to over :data:`MAX_RATIO` times its size (from :data:`RATIO_FLOOR` on); the sizes
are the ones the archive declares, which :mod:`zipfile` enforces while reading. Member names
must be relative paths that name a file where the operators save outputs: not empty, not
absolute, without ``.``, ``..`` or empty segments, each once, and no file also a folder.
"""

from __future__ import annotations

import io
import re
import zipfile

from airflow_provider_oscar.errors import OscarResultError

MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 256 << 20
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20
_DRIVE = re.compile(r"[A-Za-z]:")


def unzip(data: bytes) -> dict[str, bytes]:
    """Every file member of the archive by name; :class:`OscarResultError` when refused."""
    # zipfile raises a wide, undocumented range of exceptions on corrupt input.
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        # (ZipInfo.is_dir fails on an empty name, which _check_names reports)
        members = [info for info in archive.infolist() if not info.filename.endswith("/")]
    except Exception as exc:
        raise OscarResultError(
            f"output looks like a zip archive but cannot be read: {exc}"
        ) from exc
    if not members:
        raise OscarResultError("zip archive holds no files")
    _check_bounds(members, len(data))
    _check_names([info.filename for info in members])
    try:
        return {info.filename: archive.read(info) for info in members}
    except Exception as exc:
        raise OscarResultError(f"zip archive member cannot be read: {exc}") from exc


def _check_bounds(members: list[zipfile.ZipInfo], size: int) -> None:
    if len(members) > MAX_ENTRIES:
        raise OscarResultError(
            f"zip archive holds {len(members)} files, over the limit of {MAX_ENTRIES}"
        )
    unpacked = sum(info.file_size for info in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise OscarResultError(
            f"zip archive unpacks to {unpacked} bytes, over the {MAX_UNPACKED_BYTES}-byte limit"
        )
    if unpacked >= RATIO_FLOOR and unpacked > MAX_RATIO * size:
        raise OscarResultError(
            f"zip archive of {size} bytes unpacks to {unpacked} bytes, over {MAX_RATIO} times "
            "its size (OSCAR stores output files uncompressed): refused as a zip bomb"
        )


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    folders: set[str] = set()
    for name in names:
        problem = _name_problem(name)
        if problem is None and name in seen:
            problem = "it is in the archive twice"
        if problem is not None:
            raise OscarResultError(f"zip archive entry {name!r} cannot be saved: {problem}")
        seen.add(name)
        parts = name.split("/")
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    clash = sorted(seen & folders)
    if clash:
        raise OscarResultError(
            f"zip archive entry {clash[0]!r} cannot be saved: it is a file and a folder"
        )


def _name_problem(name: str) -> str | None:
    if not name:
        return "the name is empty"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "the name is an absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "the name has an empty, '.' or '..' segment"
    return None
