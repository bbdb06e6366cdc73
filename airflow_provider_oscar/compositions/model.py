"""A composition's model: its fields and their types; the errors that say where a problem is."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from airflow_provider_oscar.errors import OscarDefinitionError

DataPath = tuple[str | int, ...]
DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Issue:
    """One problem of a composition: where (file, line, field) and what."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f" line {self.line}" if self.line else "")
        return (
            f"{where}, field {self.field}: {self.message}"
            if self.field
            else (f"{where}: {self.message}")
        )


class CompositionError(OscarDefinitionError):
    """A composition that cannot be turned into a DAG; ``issues`` lists every problem found.

    An :class:`~airflow_provider_oscar.errors.OscarDefinitionError` (so a ``ValueError``).
    """

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(map(str, issues)))

    def __reduce__(self) -> tuple[type[CompositionError], tuple[list[Issue]]]:
        """Pickle by the issues, so a copy has the same ``issues`` and message."""
        return type(self), (self.issues,)


# the model ------------------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(_Spec):
    """An OSCAR cluster, reached through an Airflow connection of type ``oscar``."""

    connection: str = Field(min_length=1)


class ServiceSpec(_Spec):
    """A service to call: on every cluster, or on ``cluster`` / ``clusters``."""

    name: str = Field(min_length=1)
    cluster: str | None = None
    clusters: list[str] | None = Field(default=None, min_length=1)
    fdl: str | None = None

    def on(self, every: list[str]) -> list[str]:
        if self.cluster is not None:
            return [self.cluster]
        return list(self.clusters) if self.clusters else list(every)


class InputsSpec(_Spec):
    """What to send: local files (``paths``, ``glob``) or objects (``objects``, ``prefix``)."""

    paths: list[str] | None = Field(default=None, min_length=1)
    glob: str | None = None
    objects: list[str] | None = Field(default=None, min_length=1)
    prefix: str | None = None
    suffixes: list[str] | None = None
    id: Literal["stem", "name", "path"] = "stem"


class FanoutSpec(_Spec):
    """How the calls (every input to every service on its clusters, one task each) run."""

    retries: int = Field(default=2, ge=0)
    retry_delay: float = Field(default=300.0, ge=0)
    on_error: Literal["fail", "record"] = "fail"
    max_active: int | None = Field(default=None, ge=1)


class AbstainSpec(_Spec):
    min_margin: float = Field(default=0.0, ge=0)
    min_vote_share: float = Field(default=0.0, ge=0, le=1)
    min_top_score: float = Field(default=0.0, ge=0)


class AggregateSpec(_Spec):
    """How the answers for one input combine (see :mod:`airflow_provider_oscar.ensemble`)."""

    method: str = "soft_vote"
    top_k: int = Field(default=5, ge=1)
    weights: dict[str, float] | None = None
    min_models: int = Field(default=1, ge=1)
    abstain: AbstainSpec | None = None
    missing: str = "zero"
    num_classes: int | None = Field(default=None, ge=1)
    truth: Any = None
    report: str | None = None
    asset: str | None = None

    @field_validator("method", "missing")
    @classmethod
    def _choice(cls, value: str, info: ValidationInfo) -> str:
        from airflow_provider_oscar.ensemble import METHODS, MISSING  # numpy: not at parse time

        choices = METHODS if info.field_name == "method" else MISSING
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @field_validator("truth")
    @classmethod
    def _truth(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return value
        raise ValueError("must be a JSON file path or a mapping of input id to label")


class Composition(_Spec):
    """A validated composition (read with :func:`load_composition`)."""

    dag_id: str
    description: str | None = None
    schedule: Any = None
    start_date: date | None = None
    catchup: bool = False
    tags: list[str] = Field(default_factory=list)
    clusters: dict[str, ClusterSpec] = Field(min_length=1)
    services: list[ServiceSpec] = Field(min_length=1)
    inputs: InputsSpec
    fanout: FanoutSpec = Field(default_factory=FanoutSpec)
    aggregate: AggregateSpec = Field(default_factory=AggregateSpec)
    source: str = Field(default="", exclude=True)

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str) -> str:
        if not DAG_ID.match(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (at most 250)")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("must be null, a preset or cron string, or a list of asset URIs")

    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """A path of the composition, relative to its file."""
        return (self.base_dir / relative).resolve()

    def models(self) -> list[tuple[str, str]]:
        """Every (cluster, service) pair called, in the composition's order."""
        every = list(self.clusters)
        return list(dict.fromkeys((c, s.name) for s in self.services for c in s.on(every)))

    def local_inputs(self) -> list[tuple[str, str]] | None:
        """``(input id, file)`` of file inputs (``None`` for bucket inputs), sorted by path."""
        if self.inputs.paths is not None:
            files = [self.resolve(p) for p in self.inputs.paths]
        elif self.inputs.glob is not None:
            pattern = str(self.base_dir / self.inputs.glob)  # an absolute glob stays as it is
            files = sorted(Path(p).resolve() for p in glob.glob(pattern) if Path(p).is_file())
        else:
            return None
        files = [f for f in files if suffix_ok(f.name, self.inputs.suffixes)]
        return [(input_id(str(f), f.name, self.inputs.id), str(f)) for f in files]


def suffix_ok(name: str, suffixes: list[str] | None) -> bool:
    return not suffixes or any(name.endswith(s) for s in suffixes)


def input_id(path: str, name: str, how: str) -> str:
    if how == "path":
        return path
    return name if how == "name" else PurePosixPath(name).stem
