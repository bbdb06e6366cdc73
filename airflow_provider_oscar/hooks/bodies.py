"""Request bodies OSCAR takes: invocation inputs, service updates, and their limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import httpx

from airflow_provider_oscar.errors import OscarClientError, OscarDefinitionError
from airflow_provider_oscar.fdl import Service

#: The largest ``/job`` body: job.go puts it into the container's ``EVENT`` variable, and
#: ``execve`` refuses a string over MAX_ARG_STRLEN (32 pages: 131072 bytes) counting
#: ``EVENT=`` and the final NUL.
JOB_BODY_LIMIT = 131072 - len("EVENT=") - 1


def encode_input(data: bytes | str | Mapping[str, Any] | list[Any]) -> bytes:
    """The request body OSCAR's supervisor turns back into the input file.

    Everything is sent base64-encoded: bytes as they are, text as UTF-8, and JSON documents as
    their text (so keys such as ``event`` or ``Records`` are never mistaken for OSCAR events).
    """
    if isinstance(data, Mapping | list):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"input must be bytes, text or a JSON document, not {type(data).__name__}")
    return base64.b64encode(bytes(data))


#: Read-only fields of a stored service (``yaml:"-"`` in pkg/types/service.go), never sent.
_READ_ONLY = ("token", "volume_status", "deployment")


def update_body(service: Service, stored: Service | None) -> dict[str, Any]:
    """The POST or PUT body: the stored service, with what the definition sets laid over it.

    Fields the definition leaves out keep their stored values: ``owner``, ``volume``,
    ``kserve``, ``federation``, ``mount``, ``visibility``, ``allowed_users``,
    ``isolation_level``, ``expose``, labels, keys of newer releases, and so on. Secrets are
    the exception: OSCAR shows them empty and would store an empty value it is sent, so only
    the definition's own secrets (with values) are sent; leaving them out keeps the stored
    Kubernetes Secret as it is. Without a stored service (a create) the definition is the body.
    """
    given = service.model_dump(mode="json", exclude=set(_READ_ONLY))
    said = (service.model_fields_set | set(service.model_extra or {})) - set(_READ_ONLY)
    body = given if stored is None else stored.model_dump(mode="json", exclude=set(_READ_ONLY))
    if stored is not None:
        body.update({key: given[key] for key in said - {"environment"}})
    for key in ("input", "output"):
        entries = getattr(service if stored is None or key in said else stored, key)
        body[key] = [io.to_api() for io in entries] if entries else None
    environment = dict(body.get("environment") or {})
    if "variables" in service.environment.model_fields_set:
        environment["variables"] = service.environment.variables
    environment["secrets"] = check_secrets(service) or None
    body["environment"] = environment
    return body


def check_secrets(service: Service) -> dict[str, str]:
    """The definition's secrets; refuses empty values (a copy of what OSCAR shows)."""
    secrets = service.environment.secrets or {}
    empty = sorted(key for key, value in secrets.items() if value == "")
    if empty:
        raise OscarDefinitionError(
            f"service {service.name!r}: secret {', '.join(map(repr, empty))} has an empty value; "
            "OSCAR shows stored secrets empty and would store the empty value: give the secret's "
            "value, or leave environment.secrets out to keep the stored ones"
        )
    return dict(secrets)


def check_job_body(size: int, cluster: str, service: str) -> None:
    """Refuse a ``/job`` body that cannot reach the job (see :data:`JOB_BODY_LIMIT`)."""
    if size > JOB_BODY_LIMIT:
        raise OscarClientError(
            f"OSCAR cluster {cluster}: the input for a job of service {service!r} is {size} "
            f"bytes once base64-encoded, over the {JOB_BODY_LIMIT} bytes OSCAR can pass: the "
            "body travels in the job's EVENT environment variable, and Linux caps one variable "
            "at 128 KiB (MAX_ARG_STRLEN), so the container could not start. Send inputs over "
            "about 96 KiB through the bucket (via='bucket'), or synchronously (/run)",
            status_code=413,
            service=service,
        )


def needs_minio_user(response: httpx.Response) -> bool:
    """v4.1 job.go: an OIDC caller without a MinIO user gets 403 until a /system request."""
    return response.status_code == 403 and "MinIO user not provisioned" in response.text


def malformed_token(response: httpx.Response) -> bool:
    """run.go/job.go: 502 ``token is malformed`` for a bearer token that is no JWT."""
    return response.status_code == 502 and b"token is malformed" in response.content


def duplicate_service(response: httpx.Response) -> bool:
    """OSCAR's refusal of a POST for an existing name: 409 up to v4.0, 400 from v4.1."""
    return response.status_code in (400, 409) and (
        "service with the provided name already exists" in response.text
    )
