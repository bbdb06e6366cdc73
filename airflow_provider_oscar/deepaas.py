"""The AI4OS hub's contract for DEEPaaS models on OSCAR: what a hub service takes and who it is.

Services deployed from the AI4OS dashboard are made by its API, ai4os/ai4-papi:

* ``ai4papi/routers/v1/inference/oscar.py`` ``create_service`` names them
  ``ai4papi-<uuid1>`` clipped to 39 characters and ``make_service_definition`` puts the
  deployment's title in the variable ``PAPI_TITLE`` (with ``PAPI_DESCRIPTION`` and
  ``PAPI_CREATED``), its image (``ai4oshub/<module>`` or ``deephdc/<module>``, from
  ``get_service_conf``) in ``image``;
* their script (``etc/oscar/service.yaml``) reads the input as a JSON document: every key but
  ``oscar-files`` becomes ``--<key> <value>`` of ``deepaas-cli predict`` (numbers as text), and
  each ``{"key": k, "file_format": f, "data": <base64>}`` of ``oscar-files`` is written to a
  file ``tmp-file-<random>.<f>`` passed as ``--<k> <file>``. DEEPaaS (``deepaas/cmd/cli.py``
  ``main``) guesses the file's MIME type from that name, so ``file_format`` must be the
  extension the model accepts (``png``, ``jpg``, ``jpeg`` for the image classifiers:
  ai4os-hub/ai4os-image-classification-tf ``imgclas/api.py`` ``catch_localfile_error``).

:func:`deepaas_document` builds that document, :func:`file_format` picks ``file_format``,
:func:`is_papi_service` and :func:`matches_hub_module` recognise the services.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.fdl import Service

__all__ = [
    "DEFAULT_ARGUMENT",
    "INPUT_FORMATS",
    "DeepaasFile",
    "InputFormat",
    "OscarInputError",
    "deepaas_document",
    "describe_service",
    "file_format",
    "hub_module_of",
    "is_papi_service",
    "matches_hub_module",
    "pick_hub_service",
    "resolve_format",
]

InputFormat = Literal["raw", "deepaas", "auto"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("raw", "deepaas", "auto")
#: The predict argument of the AI4OS image classifiers' image: ``imgclas/api.py``
#: ``get_predict_args`` names the file field ``files`` (``--files`` on deepaas-cli).
DEFAULT_ARGUMENT = "files"
#: ai4-papi ``create_service``: ``f"ai4papi-{uuid.uuid1()}"[:39]``.
PAPI_PREFIX = "ai4papi-"
#: ai4-papi ``make_service_definition``: the variables every dashboard deployment has.
PAPI_VARIABLES = ("PAPI_TITLE", "PAPI_DESCRIPTION", "PAPI_CREATED")
#: ai4-papi ``get_service_conf``: images come from these Docker Hub accounts.
HUB_ACCOUNTS = ("ai4oshub", "deephdc")
FILES_KEY = "oscar-files"

# A predict argument becomes the command-line option --<name> (ai4-papi service.yaml).
_ARGUMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,10}")
# Magic numbers of the image types a picture is likely to come as.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


class OscarInputError(OscarClientError):
    """An input cannot be sent in the requested format; the message names the input."""


@dataclass(frozen=True)
class DeepaasFile:
    """One file for a predict argument: its name (for the extension) and its bytes."""

    name: str | None
    data: bytes


def file_format(name: str | None, data: bytes, *, what: str = "input") -> str:
    """The ``file_format`` of a file: its extension, else the type its first bytes show.

    Raises :class:`OscarInputError` naming ``what`` when there is neither.
    """
    suffix = PurePosixPath(name).suffix[1:] if name else ""
    if suffix:
        if not _EXTENSION.fullmatch(suffix):
            raise OscarInputError(
                f"{what}: the extension {suffix!r} of {name!r} cannot be a file_format "
                "(letters and digits only)"
            )
        return suffix.lower()
    sniffed = sniff_format(data)
    if sniffed is None:
        known = ", ".join(sorted({kind for _, kind in _SIGNATURES} | {"webp"}))
        raise OscarInputError(
            f"{what}: {f'{name!r} has no extension' if name else 'the data has no file name'} "
            f"and its content is not an image type recognised from its first bytes ({known}); "
            "the model learns the type from the extension: give the input a file name with one"
        )
    return sniffed


def sniff_format(data: bytes) -> str | None:
    """The image type the first bytes of ``data`` show, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def deepaas_document(
    files: Mapping[str, DeepaasFile],
    arguments: Mapping[str, Any] | None = None,
    *,
    what: str = "input",
) -> dict[str, Any]:
    """The JSON document a hub service's script turns into ``deepaas-cli predict`` options.

    ``files`` maps predict arguments to files, ``arguments`` holds the other predict arguments
    (text, numbers and booleans as they are; lists and dicts as the Python literal text that
    DEEPaaS's CLI parses with ``ast.literal_eval``). Names that collide, that cannot be a
    command-line option, or values that cannot be one, raise :class:`OscarInputError`.
    """
    arguments = dict(arguments or {})
    if not files:
        raise OscarInputError(f"{what}: no file to send")
    for name in [*files, *arguments]:
        if not isinstance(name, str) or not _ARGUMENT.fullmatch(name):
            raise OscarInputError(
                f"{what}: {name!r} cannot be a predict argument: it becomes the option "
                "--<name>, so a letter or '_' followed by letters, digits, '_' or '-'"
            )
    if FILES_KEY in arguments:
        raise OscarInputError(f"{what}: {FILES_KEY!r} is the document's own key, not an argument")
    clash = sorted(set(files) & set(arguments))
    if clash:
        raise OscarInputError(
            f"{what}: predict argument {clash[0]!r} is given both as the file and in the other "
            "arguments; deepaas-cli would keep only the last"
        )
    document: dict[str, Any] = {
        FILES_KEY: [
            {
                "key": key,
                "file_format": file_format(file.name, file.data, what=what),
                "data": base64.b64encode(file.data).decode("ascii"),
            }
            for key, file in files.items()
        ]
    }
    for key, value in arguments.items():
        document[key] = _argument_value(key, value, what)
    return document


def _argument_value(key: str, value: Any, what: str) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple | dict):
        return repr(list(value) if isinstance(value, tuple) else value)
    raise OscarInputError(
        f"{what}: predict argument {key!r} is {type(value).__name__}; give text, a number, a "
        "boolean, a list or a dict"
    )


def is_papi_service(service: Service) -> bool:
    """Whether the AI4OS dashboard (ai4-papi) deployed ``service``: its name or variables say so."""
    variables = service.environment.variables or {}
    return service.name.startswith(PAPI_PREFIX) or any(v in variables for v in PAPI_VARIABLES)


def resolve_format(requested: InputFormat, service: Service | None) -> Literal["raw", "deepaas"]:
    """The format to send: ``auto`` is ``deepaas`` for a dashboard deployment, else ``raw``."""
    if requested not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {', '.join(INPUT_FORMATS)}: {requested!r}")
    if requested != "auto":
        return requested
    return "deepaas" if service is not None and is_papi_service(service) else "raw"


def hub_module_of(service: Service) -> str | None:
    """The hub module whose image the service runs (``ai4oshub/<module>[:tag]``), if any."""
    path = service.image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    path = path[: len(path) - len(last)] + last.split(":", 1)[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] in HUB_ACCOUNTS and parts[-1]:
        return parts[-1]
    return None


def matches_hub_module(service: Service, module: str) -> bool:
    """Whether ``service`` runs hub module ``module``: by its image or its ``PAPI_TITLE``."""
    wanted = _normal(module)
    if not wanted:
        return False
    title = (service.environment.variables or {}).get("PAPI_TITLE", "")
    image_module = hub_module_of(service)
    return (image_module is not None and image_module.lower() == wanted) or _normal(title) == wanted


def describe_service(service: Service) -> str:
    """How candidate lists show a service: its name, image and title."""
    title = (service.environment.variables or {}).get("PAPI_TITLE")
    extra = f", title {title!r}" if title else ""
    return f"{service.name} (image {service.image or '-'}{extra})"


def describe_services(services: Sequence[Service], limit: int = 20) -> str:
    """Up to ``limit`` services described, and how many more there are."""
    shown = "; ".join(describe_service(s) for s in services[:limit])
    more = len(services) - limit
    return f"{shown}; and {more} more" if more > 0 else shown or "none"


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def pick_hub_service(services: Sequence[Service], module: str, *, cluster: str) -> Service:
    """The one service among ``services`` that runs hub module ``module``.

    None or several raise :class:`OscarClientError` listing the candidates.
    """
    matches = [service for service in services if matches_hub_module(service, module)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise OscarClientError(
            f"OSCAR cluster {cluster}: no service you can see runs hub module {module!r} (image "
            f"ai4oshub/{module} or PAPI_TITLE {module!r}); the services: "
            f"{describe_services(services)}"
        )
    raise OscarClientError(
        f"OSCAR cluster {cluster}: {len(matches)} services run hub module {module!r}: "
        f"{describe_services(matches)}; give service_name to choose one"
    )
