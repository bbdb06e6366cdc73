"""Service definitions of hub modules as the AI4OS dashboard makes them, for the embedded OSCAR.

Written from ai4os/ai4-papi ``ai4papi/routers/v1/inference/oscar.py`` (``create_service``,
``make_service_definition``) and ``etc/oscar/service.yaml`` (the template), nothing copied:

* name ``ai4papi-<uuid1>``, clipped to 39 characters (OSCAR's limit);
* ``log_level: CRITICAL``, ``alpine: false``, the module's image, ``cpu`` as text and
  ``memory`` in ``Mi`` (the dashboard's defaults: 2 CPUs and 3000 MB, ``etc/oscar/user.yaml``);
* variables ``PAPI_TITLE`` (the deployment's title), ``PAPI_DESCRIPTION``, ``PAPI_CREATED``
  (``%Y-%m-%d %H:%M:%S``);
* input ``<name>/inputs`` and output ``<name>/outputs`` in ``minio.default``;
* the script: :file:`script.sh` here, written from the template's contract.

On the embedded OSCAR the service runs on this machine, where no image provides ``deepaas-cli``:
``standin=True`` puts the stand-in model of :file:`bin/` first on the service's ``PATH`` (a
variable of the service, as an image's ``PATH`` would be). Leave it out for a real cluster.
"""

from __future__ import annotations

import datetime
import os
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "script.sh"
STANDIN_BIN = HERE / "bin"
IMAGE = "ai4oshub/plants-classification"
NAME_LIMIT = 39


def papi_name() -> str:
    """A fresh dashboard-style service name."""
    return f"ai4papi-{uuid.uuid1()}"[:NAME_LIMIT]


def service_definition(
    title: str,
    *,
    image: str = IMAGE,
    description: str = "",
    cpu: float = 2,
    memory_mb: int = 3000,
    name: str | None = None,
    standin: bool = True,
) -> dict[str, Any]:
    """One dashboard deployment of ``image`` titled ``title``, as a service definition."""
    name = name or papi_name()
    variables = {
        "PAPI_TITLE": title,
        "PAPI_DESCRIPTION": description,
        "PAPI_CREATED": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    }
    if standin:
        variables["PATH"] = os.pathsep.join(
            [str(STANDIN_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        )
    return {
        "log_level": "CRITICAL",
        "alpine": False,
        "name": name,
        "image": image,
        "cpu": f"{cpu:g}",
        "memory": f"{memory_mb}Mi",
        "environment": {"variables": variables},
        "input": [{"storage_provider": "minio.default", "path": f"{name}/inputs"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/outputs"}],
        "script": SCRIPT.read_text(),
    }
