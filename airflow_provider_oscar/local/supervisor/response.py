"""The answer the supervisor prints when it is done (faas-supervisor 1.6.2).

Source: faassupervisor/faas/binary/supervisor.py ``BinarySupervisor.create_response``. Only an
event of type ``UNKNOWN`` (a request body, not a storage event) answers with its outputs:
base64 of the single file under ``TMP_OUTPUT_DIR``, or base64 of a zip of several
(utils.py ``FileUtils.zip_file_list``: ``ZipFile(path, 'w')``, so ZIP_STORED, members named by
their path under the folder, in ``os.walk`` order). Otherwise, and when there is no file, the
answer is the script's console output.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path


def create_response(kind: str, output_dir: Path, files: list[Path], console: str) -> str:
    """``create_response``: ``files`` are those under ``output_dir``, ``console`` the output."""
    if kind == "UNKNOWN":
        if len(files) == 1:
            return base64.b64encode(files[0].read_bytes()).decode()
        if len(files) > 1:
            return base64.b64encode(zip_stored(files, output_dir)).decode()
    return console


def zip_stored(files: list[Path], folder: Path) -> bytes:
    """A zip of ``files``, uncompressed, named by their path under ``folder``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
