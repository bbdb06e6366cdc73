"""Declarative compositions: a YAML file (services, inputs, fan-out, aggregation) becomes a DAG.

For those who compose visually (Node-RED, Elyra) or simply prefer data to code. A composition
names the clusters (an Airflow connection each), the services to call on them, the inputs, how
the calls fan out, and how their answers are aggregated::

    dag_id: oscar_plant_ensemble_yaml
    schedule: null                      # or "@daily", a cron, or a list of asset URIs
    start_date: 2026-01-01
    clusters:
      local: {connection: oscar_default}
    services:                           # each on every cluster, unless `cluster(s)` says
      - {name: plants-sepal, fdl: ../services/plants/plants.yaml}
    inputs:                             # exactly one of paths, glob, objects, prefix
      glob: ../services/plants/specimens/specimen-*.json
    fanout: {retries: 2, on_error: fail}
    aggregate:
      method: soft_vote
      top_k: 3
      min_models: 2
      abstain: {min_margin: 0.1}
      truth: ../services/plants/specimens/truth.json
      report: plants-reports/{{ dag.dag_id }}/{{ run_id | replace(':', '_') }}.json

:func:`load_composition` reads and validates a file completely before anything is built; every
problem is reported with its line and field (``plant_ensemble.yaml line 12, field
aggregate.method: ...``) in one :class:`CompositionError`. :func:`build_dag` then makes the DAG
with the provider's operators: one deploy task per cluster and FDL file, one ``classify`` task per
(input, cluster, service), mapped at run time from the ``inputs`` param (empty: all inputs), and an
``aggregate`` task (:class:`~airflow_provider_oscar.operators.ensemble.OscarEnsembleOperator`).
Relative paths are relative to the composition file. Files (``paths``, ``glob``) are read where
the tasks run, like a Python DAG's; bucket inputs (``objects``, ``prefix``) are read through the
first cluster's connection.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from airflow_provider_oscar import bounded_yaml
from airflow_provider_oscar.errors import OscarDefinitionError

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = [
    "Composition",
    "CompositionError",
    "Issue",
    "build_dag",
    "load_composition",
    "load_compositions",
]

DataPath = tuple[str | int, ...]
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
        if not _DAG_ID.match(value):
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
        files = [f for f in files if _suffix_ok(f.name, self.inputs.suffixes)]
        return [(_input_id(str(f), f.name, self.inputs.id), str(f)) for f in files]


def _suffix_ok(name: str, suffixes: list[str] | None) -> bool:
    return not suffixes or any(name.endswith(s) for s in suffixes)


def _input_id(path: str, name: str, how: str) -> str:
    if how == "path":
        return path
    return name if how == "name" else PurePosixPath(name).stem


# reading with line numbers ------------------------------------------------------------------


def _parse(text: str, file: str) -> tuple[Any, dict[DataPath, int]]:
    """The YAML document and the line of every value in it, by data path."""
    try:
        root = bounded_yaml.compose(text)
    except bounded_yaml.YamlLimitError as exc:
        raise CompositionError([Issue(file, None, None, f"refused: {exc}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot be read"
        line = mark.line + 1 if mark else None
        raise CompositionError([Issue(file, line, None, f"not valid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise CompositionError([Issue(file, None, None, f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise CompositionError([Issue(file, None, None, "nested too deeply to be read")]) from None
    if root is None:
        raise CompositionError([Issue(file, 1, None, "the file is empty")])
    constructor = yaml.SafeLoader("")
    marks: dict[DataPath, int] = {}

    def construct(node: yaml.Node, path: DataPath) -> Any:
        try:
            return constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # unknown tags, impossible dates (2026-13-45), malformed !!binary ...
            problem = getattr(exc, "problem", None) or str(exc)
            line = node.start_mark.line + 1
            raise CompositionError(
                [Issue(file, line, _field(path), f"not valid YAML: {problem}")]
            ) from None

    def walk(node: yaml.Node, path: DataPath, active: frozenset[int]) -> Any:
        marks.setdefault(path, node.start_mark.line + 1)
        if id(node) in active:
            raise CompositionError(
                [Issue(file, node.start_mark.line + 1, _field(path), "a recursive alias")]
            )
        inner = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)  # merge keys (<<)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = construct(key_node, path)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise CompositionError(
                        [Issue(file, line, _field(path), "keys must be plain scalars")]
                    )
                here = (*path, str(key))
                if str(key) in mapping:
                    raise CompositionError([Issue(file, line, _field(here), "given twice")])
                marks[here] = line
                mapping[str(key)] = walk(value_node, here, inner)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, i), inner) for i, item in enumerate(node.value)]
        return construct(node, path)

    try:
        return walk(root, (), frozenset()), marks
    except RecursionError:
        raise CompositionError([Issue(file, None, None, "nested too deeply to be read")]) from None


def _field(path: DataPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _line(marks: Mapping[DataPath, int], path: DataPath) -> int | None:
    """The line of ``path`` or of its nearest ancestor present in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in marks:
            return marks[path[:end]]
    return None


def _allowed_fields(path: DataPath) -> list[str] | None:
    """The fields the model takes at ``path`` (for "unknown field" messages)."""
    kind: Any = Composition
    for part in path:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(part, str):
            info = kind.model_fields.get(part)
            if info is None:
                return None
            kind = info.annotation
        elif get_origin(kind) in (list, dict):
            kind = get_args(kind)[-1]  # a list's items, a mapping's values
        else:
            return None
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [n for n, f in kind.model_fields.items() if not f.exclude]
    return None


def _unwrap(kind: Any) -> Any:
    """``X | None`` → ``X``."""
    args = [a for a in get_args(kind) if a is not type(None)]
    if get_origin(kind) not in (list, dict) and len(args) == 1:
        return args[0]
    return kind


def _message(error: Mapping[str, Any], path: DataPath) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(path[:-1])
        known = f"; known fields: {', '.join(allowed)}" if allowed else ""
        return f"unknown field{known}"
    if kind == "missing":
        return "required, but missing"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if "input" in error and not isinstance(error["input"], dict | list):
        message += f" (got {error['input']!r})"
    return message


def load_composition(path: str | Path) -> Composition:
    """Read and validate a composition file; raise :class:`CompositionError` listing problems."""
    path = Path(path)
    name = path.name
    try:
        text = bounded_yaml.read(path)
    except (OSError, UnicodeDecodeError, bounded_yaml.YamlLimitError) as exc:
        raise CompositionError([Issue(name, None, None, f"cannot be read: {exc}")]) from None
    data, marks = _parse(text, name)
    if not isinstance(data, dict):
        raise CompositionError([Issue(name, 1, None, "must be a mapping of fields")])
    try:
        composition = Composition.model_validate({**data, "source": str(path.resolve())})
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            where: DataPath = tuple(error["loc"])
            issues.append(Issue(name, _line(marks, where), _field(where), _message(error, where)))
        raise CompositionError(issues) from None
    issues = [
        Issue(name, _line(marks, where), _field(where), message)
        for where, message in _check(composition)
    ]
    if issues:
        raise CompositionError(issues)
    return composition


def load_compositions(folder: str | Path, pattern: str = "*.yaml") -> list[Composition]:
    """Every composition in ``folder``; all problems of all files in one error."""
    compositions: list[Composition] = []
    issues: list[Issue] = []
    seen: dict[str, str] = {}
    for path in sorted(Path(folder).glob(pattern)):
        try:
            composition = load_composition(path)
        except CompositionError as exc:
            issues.extend(exc.issues)
            continue
        if composition.dag_id in seen:
            issues.append(
                Issue(
                    path.name,
                    None,
                    "dag_id",
                    f"{composition.dag_id!r} is also {seen[composition.dag_id]}'s",
                )
            )
            continue
        seen[composition.dag_id] = path.name
        compositions.append(composition)
    if issues:
        raise CompositionError(issues)
    return compositions


# checks across fields -----------------------------------------------------------------------


def _check(c: Composition) -> list[tuple[DataPath, str]]:
    """Problems the field types cannot express: references, files, counts."""
    problems: list[tuple[DataPath, str]] = []
    for name in c.clusters:
        if not _NAME.match(name):
            problems.append(
                (("clusters", name), "cluster names are letters, digits, '_', '.', '-'")
            )
    seen: set[tuple[str, str]] = set()
    fdl_services: dict[str, list[str] | str] = {}
    for i, service in enumerate(c.services):
        if service.cluster is not None and service.clusters is not None:
            problems.append((("services", i, "clusters"), "give cluster or clusters, not both"))
        named = [service.cluster] if service.cluster else list(service.clusters or [])
        field = "cluster" if service.cluster else "clusters"
        for j, cluster in enumerate(named):
            if cluster not in c.clusters:
                where: DataPath = (
                    ("services", i, field) if field == "cluster" else ("services", i, field, j)
                )
                problems.append(
                    (where, f"unknown cluster {cluster!r}; clusters: {list(c.clusters)}")
                )
        for pair in ((cl, service.name) for cl in service.on(list(c.clusters))):
            if pair in seen:
                problems.append(
                    (("services", i, "name"), f"{pair[1]!r} is called twice on {pair[0]!r}")
                )
            seen.add(pair)
        if service.fdl is not None:
            if service.fdl not in fdl_services:
                fdl_services[service.fdl] = _fdl_names(c.resolve(service.fdl))
            names = fdl_services[service.fdl]
            if isinstance(names, str):
                problems.append((("services", i, "fdl"), names))
            elif service.name not in names:
                problems.append(
                    (
                        ("services", i, "fdl"),
                        f"{service.fdl} defines no service {service.name!r} (it defines {names})",
                    )
                )
    problems.extend(_check_inputs(c))
    problems.extend(_check_aggregate(c))
    problems.extend(_check_schedule(c))
    return problems


def _fdl_names(path: Path) -> list[str] | str:
    from airflow_provider_oscar.fdl import load_fdl

    if not path.is_file():
        return f"no FDL file at {path}"
    try:
        return [s.name for s in load_fdl(path)]
    except OscarDefinitionError as exc:
        return f"{path.name} is not a valid FDL file: {exc}"


def _check_inputs(c: Composition) -> list[tuple[DataPath, str]]:
    spec = c.inputs
    given = [k for k in ("paths", "glob", "objects", "prefix") if getattr(spec, k) is not None]
    if len(given) != 1:
        return [
            (
                ("inputs",),
                f"give exactly one of paths, glob, objects, prefix (got {given or 'none'})",
            )
        ]
    problems: list[tuple[DataPath, str]] = []
    if spec.paths is not None:
        for i, path in enumerate(spec.paths):
            if not c.resolve(path).is_file():
                problems.append((("inputs", "paths", i), f"no file at {c.resolve(path)}"))
    if spec.glob is not None and not c.local_inputs():
        problems.append((("inputs", "glob"), f"matches no file under {c.base_dir}"))
    for i, obj in enumerate(spec.objects or []):
        bucket, _, key = obj.strip("/").partition("/")
        if not bucket or not key:
            problems.append((("inputs", "objects", i), "objects are 'bucket/key'"))
    if spec.prefix is not None and not spec.prefix.strip("/"):
        problems.append((("inputs", "prefix"), "a prefix is 'bucket/folder/'"))
    local = c.local_inputs()
    if local:
        ids = [i for i, _ in local]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            problems.append((("inputs", "id"), f"inputs share the ids {twice}; use id: path"))
    return problems


def _check_aggregate(c: Composition) -> list[tuple[DataPath, str]]:
    spec = c.aggregate
    models = c.models()
    problems: list[tuple[DataPath, str]] = []
    if spec.min_models > len(models):
        problems.append(
            (
                ("aggregate", "min_models"),
                f"{spec.min_models} models required, {len(models)} called",
            )
        )
    if spec.weights:
        if len(c.clusters) > 1:
            problems.append(
                (("aggregate", "weights"), "weights need a composition with one cluster")
            )
        services = {s for _, s in models}
        for name in spec.weights:
            if name not in services:
                problems.append(
                    (
                        ("aggregate", "weights", name),
                        f"not a service of this composition: {sorted(services)}",
                    )
                )
    if spec.method == "weighted_mean" and not spec.weights:
        problems.append((("aggregate", "weights"), "method weighted_mean needs weights"))
    if isinstance(spec.truth, str):
        path = c.resolve(spec.truth)
        try:
            truth = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            problems.append((("aggregate", "truth"), f"cannot read {path}: {exc}"))
        else:
            if not isinstance(truth, dict):
                problems.append((("aggregate", "truth"), f"{path.name} is not a mapping of labels"))
    if spec.asset is not None:
        problems.extend(_uri_problem(("aggregate", "asset"), spec.asset))
    if spec.report is not None and "/" not in spec.report.strip("/"):
        problems.append((("aggregate", "report"), "the report goes to 'bucket/key'"))
    return problems


def _check_schedule(c: Composition) -> list[tuple[DataPath, str]]:
    problems: list[tuple[DataPath, str]] = []
    if isinstance(c.schedule, list):
        for i, uri in enumerate(c.schedule):
            problems.extend(_uri_problem(("schedule", i), uri))
    elif isinstance(c.schedule, str) and c.start_date is None:
        problems.append((("start_date",), f"a start_date is needed for schedule {c.schedule!r}"))
    return problems


def _uri_problem(where: DataPath, uri: str) -> list[tuple[DataPath, str]]:
    from urllib.parse import urlsplit

    from airflow_provider_oscar.assets import SCHEME, sanitize_uri

    parts = urlsplit(uri)
    if parts.scheme == SCHEME:
        try:
            sanitize_uri(parts)
        except ValueError as exc:
            return [(where, str(exc))]
    elif not parts.scheme and not uri.strip():
        return [(where, "an asset URI or name cannot be empty")]
    return []


# building the DAG ---------------------------------------------------------------------------


def _truth(c: Composition) -> dict[str, str] | None:
    if isinstance(c.aggregate.truth, str):
        return dict(json.loads(c.resolve(c.aggregate.truth).read_text()))
    return dict(c.aggregate.truth) if c.aggregate.truth else None


def _doc(c: Composition) -> str:
    models = ", ".join(f"{s} on {cl}" for cl, s in c.models())
    return (
        f"{c.description or 'A declarative OSCAR composition.'}\n\n"
        f"Built from `{Path(c.source).name}`: {models}; inputs aggregated by "
        f"`{c.aggregate.method}` (top {c.aggregate.top_k}). The `inputs` param restricts a run "
        "to some input ids."
    )


def build_dag(composition: Composition) -> DAG:
    """The DAG of a composition read by :func:`load_composition`."""
    import pendulum
    from airflow.sdk import DAG, Asset, Param, TriggerRule, task

    from airflow_provider_oscar.compat import AirflowFailException
    from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
    from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
    from airflow_provider_oscar.operators.service import OscarDeployServiceOperator

    c = composition
    connections = {name: spec.connection for name, spec in c.clusters.items()}
    first = connections[next(iter(c.clusters))]
    models = c.models()
    local = c.local_inputs()
    objects = list(c.inputs.objects or [])
    prefix, suffixes, how = c.inputs.prefix, c.inputs.suffixes, c.inputs.id
    schedule: Any = c.schedule
    if isinstance(schedule, list):
        schedule = [Asset(uri=uri) for uri in schedule]
    start = (
        pendulum.datetime(c.start_date.year, c.start_date.month, c.start_date.day, tz="UTC")
        if c.start_date
        else None
    )

    def available() -> list[tuple[str, str, str]]:
        """``(input id, operator argument, value)`` of every input the composition names."""
        if local is not None:
            return [(i, "input_path", f) for i, f in local]
        if objects:
            paths = objects
        else:
            from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path

            assert prefix is not None
            bucket, _ = split_path(prefix)
            paths = [
                f"{bucket}/{o.key}"
                for o in OscarStorageHook(first).list_objects(prefix)
                if _suffix_ok(o.key, suffixes)
            ]
        return [(_input_id(p, PurePosixPath(p).name, how), "input_object", p) for p in paths]

    with DAG(
        dag_id=c.dag_id,
        description=c.description,
        schedule=schedule,
        start_date=start,
        catchup=c.catchup,
        tags=list(c.tags),
        # Deployments and the report call OSCAR too: they retry as the calls do.
        default_args={
            "retries": c.fanout.retries,
            "retry_delay": pendulum.duration(seconds=c.fanout.retry_delay),
        },
        params={
            "inputs": Param(
                [],
                type="array",
                items={"type": "string"},
                description="Input ids to process (none: every input of the composition)",
            )
        },
        doc_md=_doc(c),
    ) as dag:

        @task(task_id="plan_calls")
        def plan_calls(params: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
            """One ``classify`` call per (input, cluster, service) for the inputs of the run."""
            inputs = available()
            wanted = list((params or {}).get("inputs") or [])
            if wanted:
                unknown = sorted(set(wanted) - {i for i, _, _ in inputs})
                if unknown:
                    raise AirflowFailException(
                        f"unknown inputs {unknown}; known: {sorted(i for i, _, _ in inputs)}"
                    )
                inputs = [entry for entry in inputs if entry[0] in wanted]
            if not inputs:
                raise AirflowFailException("the composition's inputs are empty: nothing to call")
            return [
                {
                    "oscar_conn_id": connections[cluster],
                    "service_name": service,
                    argument: value,
                    "input_id": input_id,
                }
                for input_id, argument, value in inputs
                for cluster, service in models
            ]

        deploys = []
        groups = dict.fromkeys(
            (cluster, s.fdl)
            for s in c.services
            if s.fdl is not None
            for cluster in s.on(list(c.clusters))
        )
        for n, (cluster, fdl) in enumerate(groups):
            assert fdl is not None
            suffix = "" if sum(1 for cl, _ in groups if cl == cluster) == 1 else f"_{n}"
            deploys.append(
                OscarDeployServiceOperator(
                    task_id=f"deploy_{cluster}{suffix}",
                    definition=str(c.resolve(fdl)),
                    oscar_conn_id=connections[cluster],
                )
            )
        classify = OscarRunServiceOperator.partial(
            task_id="classify",
            map_index_template=(
                "{{ task.oscar_conn_id }} · {{ task.service_name }} · {{ task.input_id }}"
                if len(connections) > 1
                else "{{ task.service_name }} · {{ task.input_id }}"
            ),
            retries=c.fanout.retries,
            retry_delay=pendulum.duration(seconds=c.fanout.retry_delay),
            on_error=c.fanout.on_error,
            max_active_tis_per_dagrun=c.fanout.max_active,
        ).expand_kwargs(plan_calls())
        spec = c.aggregate
        OscarEnsembleOperator(
            task_id="aggregate",
            results=classify.output,
            method=spec.method,
            weights=spec.weights,
            top_k=spec.top_k,
            missing=spec.missing,
            num_classes=spec.num_classes,
            min_models=spec.min_models,
            abstain=spec.abstain.model_dump(exclude_unset=True) if spec.abstain else None,
            truth=_truth(c),
            report_object=spec.report,
            oscar_conn_id=first,
            outlets=[Asset(uri=spec.asset)] if spec.asset else [],
            trigger_rule=TriggerRule.ALL_DONE,
        )
        for deploy in deploys:
            deploy >> classify
    return dag
