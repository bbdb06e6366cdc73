"""Reading a composition file: YAML with the line of every value, validated in full, every
problem reported with its line and field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from airflow_provider_oscar import bounded_yaml
from airflow_provider_oscar.compositions.checks import check
from airflow_provider_oscar.compositions.model import (
    Composition,
    CompositionError,
    DataPath,
    Issue,
)


def _parse(text: str, file: str) -> tuple[Any, dict[DataPath, int]]:
    """The YAML document and the line of every value in it, by data path."""
    try:
        return _parse_nodes(text, file)
    except RecursionError:
        raise CompositionError([Issue(file, None, None, "nested too deeply to be read")]) from None


def _parse_nodes(text: str, file: str) -> tuple[Any, dict[DataPath, int]]:
    try:
        root = bounded_yaml.compose(text)
    except bounded_yaml.YamlLimitError as exc:
        raise CompositionError([Issue(file, None, None, f"refused: {exc}")]) from None
    except yaml.MarkedYAMLError as exc:
        # PyYAML's scanner, parser and composer always give the problem and its mark
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise CompositionError(
            [Issue(file, line, None, f"not valid YAML: {exc.problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise CompositionError([Issue(file, None, None, f"not valid YAML: {exc}")]) from None
    if root is None:
        raise CompositionError([Issue(file, 1, None, "the file is empty")])
    constructor = yaml.SafeLoader("")
    marks: dict[DataPath, int] = {}

    def construct(node: yaml.Node, path: DataPath) -> Any:
        try:
            # scalars, and keys: a collection as a key is refused below, whatever it holds
            return constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # unknown tags, impossible dates (2026-13-45), malformed !!binary ...
            problem = getattr(exc, "problem", None) or str(exc)
            line = node.start_mark.line + 1
            raise CompositionError(
                [Issue(file, line, _field(path), f"not valid YAML: {problem}")]
            ) from None

    def walk(node: yaml.Node, path: DataPath) -> Any:  # compose refused recursive aliases
        marks.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)  # merge keys (<<)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = construct(key_node, path)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str | int | float | bool):
                    raise CompositionError(
                        [Issue(file, line, _field(path), "keys must be plain scalars")]
                    )
                here = (*path, str(key))
                if str(key) in mapping:
                    raise CompositionError([Issue(file, line, _field(here), "given twice")])
                marks[here] = line
                mapping[str(key)] = walk(value_node, here)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return construct(node, path)

    return walk(root, ()), marks


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
        for where, message in check(composition)
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
