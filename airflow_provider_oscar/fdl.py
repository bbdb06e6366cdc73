"""Typed OSCAR service definitions (FDL) and their JSON form.

The models follow OSCAR v4.1.2's Go structs (``pkg/types/service.go``): every field is declared,
in the Go field order, so ``Service.to_api()`` yields the keys in the order OSCAR answers them.
Nested structures OSCAR owns and the provider only carries (``federation``, ``volume``,
``kserve``, ``expose``, ``volume_status``, ``deployment``) stay plain mappings. Decoding is as
lenient as Go's ``encoding/json``: keys match case-insensitively (``Variables`` is
``variables``); keys this model does not know (fields of other releases, such as ``replicas``
up to v4.0) are kept and sent back as they came, so an update never drops them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_oscar import bounded_yaml
from airflow_provider_oscar.errors import OscarDefinitionError

__all__ = [
    "Environment",
    "Service",
    "StorageIO",
    "load_fdl",
    "parse_service",
]

SERVICE_NAME_MAX = 39
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _GoStruct(BaseModel):
    """Base model decoding keys case-insensitively, as Go does, and keeping unknown ones."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_key_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            names[name.lower()] = name
            if info.alias:
                names[info.alias.lower()] = info.alias
        folded: dict[str, Any] = {}
        for key, value in data.items():
            target = names.get(str(key).lower()) or key
            if target not in folded or key == target:
                folded[target] = value
        return folded


class StorageIO(_GoStruct):
    """One ``input``/``output`` entry: a provider id and a ``bucket/folder`` path."""

    storage_provider: str = ""
    path: str = ""
    suffix: list[str] | None = None
    prefix: list[str] | None = None

    @property
    def provider_type(self) -> str:
        return self.storage_provider.split(".", 1)[0].lower()

    @property
    def provider_id(self) -> str:
        parts = self.storage_provider.split(".", 1)
        return parts[1] if len(parts) == 2 and parts[1] else "default"

    @property
    def bucket(self) -> str:
        return self.path.strip("/").split("/", 1)[0]

    @property
    def folder(self) -> str:
        parts = self.path.strip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    def accepts(self, relative_name: str) -> bool:
        """Whether an output file passes this entry's prefix and suffix filters."""
        base = relative_name
        ok_prefix = not self.prefix or any(base.startswith(p) for p in self.prefix)
        ok_suffix = not self.suffix or any(base.endswith(s) for s in self.suffix)
        return ok_prefix and ok_suffix

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"storage_provider": self.storage_provider, "path": self.path}
        if self.suffix:
            data["suffix"] = self.suffix
        if self.prefix:
            data["prefix"] = self.prefix
        return data


class Synchronous(_GoStruct):
    min_scale: int = 0
    max_scale: int = 0


class Environment(_GoStruct):
    """Variables and secrets injected into the service's environment."""

    variables: dict[str, str] | None = None
    secrets: dict[str, str] | None = None

    @field_validator("variables", "secrets", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value


class Mount(_GoStruct):
    storage_provider: str = ""
    path: str = ""


class Service(_GoStruct):
    """An OSCAR service, as POSTed to ``/system/services`` and returned by GET."""

    name: str = ""
    cluster_id: str = ""
    memory: str = "256Mi"
    cpu: str = "0.2"
    total_memory: str = ""
    total_cpu: str = ""
    ephemeral_storage_request: str = ""
    enable_gpu: bool = False
    enable_sgx: bool = False
    image_prefetch: bool = False
    synchronous: Synchronous = Field(default_factory=Synchronous)
    federation: dict[str, Any] | None = None
    log_level: str = "INFO"
    image: str = ""
    alpine: bool = False
    token: str = ""
    file_stage_in: bool = False
    input: list[StorageIO] | None = None
    output: list[StorageIO] | None = None
    script: str = ""
    image_pull_secrets: list[str] | None = None
    expose: dict[str, Any] = Field(default_factory=dict)
    environment: Environment = Field(default_factory=Environment)
    annotations: dict[str, str] = Field(default_factory=dict)
    vo: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    storage_providers: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] | None = None
    owner: str = ""
    namespace: str = ""
    interlink_node_name: str = ""
    visibility: str = "private"
    allowed_users: list[str] | None = None
    isolation_level: str = ""
    bucket_list: list[str] | None = None
    mount: Mount = Field(default_factory=Mount)
    volume: dict[str, Any] | None = None
    volume_status: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    kserve: dict[str, Any] | None = None

    @field_validator("cpu", "memory", "total_cpu", "total_memory", mode="before")
    @classmethod
    def _quantity_as_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return str(value)
        return value

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        upper = value.upper()
        return upper if upper in LOG_LEVELS else "INFO"

    @field_validator("annotations", "labels", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def cpu_cores(self) -> float:
        """The CPU limit in cores (``"500m"`` is 0.5)."""
        return parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes (``"256Mi"`` is 268435456)."""
        return parse_memory(self.memory)

    def to_api(self) -> dict[str, Any]:
        """The JSON body OSCAR sends and accepts, keys in Go struct order."""
        data = self.model_dump(mode="json")
        data["input"] = [io.to_api() for io in self.input] if self.input else None
        data["output"] = [io.to_api() for io in self.output] if self.output else None
        for optional in _OMIT_EMPTY:
            if not data[optional]:
                del data[optional]
        return data


#: ``omitempty`` fields of pkg/types/service.go (v4.1.2) that the model may hold empty.
_OMIT_EMPTY = (
    "federation",
    "image_pull_secrets",
    "clusters",
    "namespace",
    "volume",
    "volume_status",
    "deployment",
    "kserve",
)


def parse_cpu(quantity: str) -> float:
    """A Kubernetes CPU quantity (``"1"``, ``"0.5"``, ``"500m"``) in cores."""
    text = quantity.strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise OscarDefinitionError(f"cpu {quantity!r} is not a CPU quantity") from None
    if not math.isfinite(cores) or cores < 0:  # float() takes "nan", "inf" and "-1"
        raise OscarDefinitionError(f"cpu {quantity!r} is not a CPU quantity")
    return cores


_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(" + "|".join(u for u in _MEMORY_UNITS if u) + ")?$")


def parse_memory(quantity: str) -> int:
    """A Kubernetes memory quantity (``"512Mi"``, ``"2G"``, ``"1000"``) in bytes."""
    match = _MEMORY.match(quantity.strip())
    if not match:
        raise OscarDefinitionError(f"memory {quantity!r} is not a memory quantity")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])


def check_service_name(name: str) -> None:
    """Refuse names OSCAR (Kubernetes) would refuse, naming the rule that failed."""
    check_dns_label(name, "service name", SERVICE_NAME_MAX)


def check_dns_label(name: str, what: str, limit: int) -> None:
    """Refuse ``name`` unless it is a DNS-1123 label of at most ``limit`` characters."""
    if not name:
        raise OscarDefinitionError(f"{what} is empty")
    if len(name) > limit:
        raise OscarDefinitionError(f"{what} {name!r} has {len(name)} characters; at most {limit}")
    if not _DNS_LABEL.fullmatch(name):
        raise OscarDefinitionError(
            f"{what} {name!r} must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character"
        )


def job_prefix(service: str) -> str:
    """The job-name prefix OSCAR derives from a service name (jobs are ``<prefix>-<uuid>``)."""
    return service[:16] if len(service) >= 25 else service


def parse_service(data: Any) -> Service:
    """Validate a JSON-like mapping as a service definition."""
    if not isinstance(data, dict):
        raise OscarDefinitionError(
            f"a service definition must be a mapping, not {type(data).__name__}"
        )
    try:
        return Service.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])  # Service has no model-wide check
        raise OscarDefinitionError(f"field {where}: {first['msg']}") from None


def load_fdl(source: str | Path | dict[str, Any], cluster_id: str | None = None) -> list[Service]:
    """Read the services of an FDL file, YAML text or mapping, as oscar-cli does.

    ``script`` paths are resolved relative to the FDL file (and must stay inside its folder)
    and replaced by their content; the top-level ``storage_providers`` and ``clusters`` are
    merged into every service. With ``cluster_id`` only the services under that cluster key are
    returned. Documents and scripts are read within :mod:`.bounded_yaml`'s bounds.
    """
    base_dir = Path.cwd()
    if isinstance(source, dict):
        document: Any = source
    else:
        text, base_dir = _read_source(source)
        try:
            document = bounded_yaml.load(text)
        except bounded_yaml.YamlLimitError as exc:
            raise OscarDefinitionError(f"FDL is refused: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise OscarDefinitionError(f"FDL is not valid YAML{where}: {exc}") from None
        except RecursionError:
            raise OscarDefinitionError("FDL is nested too deeply to be read") from None
    if not isinstance(document, dict):
        raise OscarDefinitionError("FDL must be a mapping with a 'functions' key")
    functions = document.get("functions")
    entries = functions.get("oscar") if isinstance(functions, dict) else None
    if not isinstance(entries, list) or not entries:
        raise OscarDefinitionError("FDL has no 'functions.oscar' list of services")
    shared_storage = _mapping(document.get("storage_providers"), "storage_providers")
    shared_clusters = _mapping(document.get("clusters"), "clusters")
    services = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise OscarDefinitionError(
                f"functions.oscar[{index}] must map one cluster id to a service"
            )
        ((cluster, definition),) = entry.items()
        if cluster_id is not None and cluster != cluster_id:
            continue
        if not isinstance(definition, dict):
            raise OscarDefinitionError(f"functions.oscar[{index}].{cluster} must be a mapping")
        merged = dict(definition)
        merged["cluster_id"] = str(cluster)
        merged["script"] = _script_text(merged.get("script"), base_dir, index)
        where = f"functions.oscar[{index}].{cluster}"
        if shared_storage:
            own = _mapping(merged.get("storage_providers"), f"{where}.storage_providers")
            merged["storage_providers"] = _merge(shared_storage, own)
        if shared_clusters:
            own = _mapping(merged.get("clusters"), f"{where}.clusters")
            merged["clusters"] = _merge(shared_clusters, own)
        services.append(parse_service(merged))
    if not services:
        raise OscarDefinitionError(f"FDL has no service for cluster {cluster_id!r}")
    return services


def _read_source(source: str | Path) -> tuple[str, Path]:
    path = Path(source)
    looks_like_path = isinstance(source, Path) or (
        "\n" not in str(source) and len(str(source)) < 4096
    )
    if looks_like_path and path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not _is_file(path):
            raise OscarDefinitionError(f"FDL file {_shown(str(path))} does not exist")
        return _read_text(path, "FDL file"), path.resolve().parent
    return str(source), Path.cwd()


def _script_text(script: Any, base_dir: Path, index: int) -> str:
    if not isinstance(script, str) or not script:
        raise OscarDefinitionError(f"functions.oscar[{index}]: 'script' is required")
    if "\n" in script:
        return script
    path = base_dir / script
    if not _inside(path, base_dir):
        raise OscarDefinitionError(
            f"functions.oscar[{index}]: script file {_shown(script)} is outside the FDL's "
            f"folder {str(base_dir)!r}: script paths are relative to it and stay inside it "
            "(no absolute path, no '..' out of it)"
        )
    if not _is_file(path):
        raise OscarDefinitionError(
            f"functions.oscar[{index}]: script file {_shown(script)} not found next to the FDL"
        )
    return _read_text(path, f"functions.oscar[{index}]: script file")


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, links resolved, is in ``folder`` (names the OS refuses are not)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):
        return False


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; names the OS cannot even look up (too long, NUL) are not."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_text(path: Path, what: str) -> str:
    try:
        return bounded_yaml.read(path)
    except (OSError, UnicodeDecodeError, bounded_yaml.YamlLimitError) as exc:
        raise OscarDefinitionError(f"{what} {_shown(str(path))} cannot be read: {exc}") from None


def _shown(text: str, limit: int = 200) -> str:
    """``repr(text)``, shortened to about ``limit`` characters for messages."""
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A mapping field of the FDL (absent or empty: ``{}``); anything else is an error."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise OscarDefinitionError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _merge(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(shared)  # the values are read, never changed: no deeper copy
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
