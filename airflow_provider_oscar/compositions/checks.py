"""Checks across a composition's fields: references, files, counts."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_oscar.compositions.model import NAME, Composition, DataPath
from airflow_provider_oscar.errors import OscarDefinitionError


def check(c: Composition) -> list[tuple[DataPath, str]]:
    """Problems the field types cannot express: references, files, counts."""
    problems: list[tuple[DataPath, str]] = []
    for name in c.clusters:
        if not NAME.match(name):
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
