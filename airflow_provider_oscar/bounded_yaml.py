"""YAML documents read within bounds: their size, and how much their aliases expand.

PyYAML composes an alias as the very node its anchor names, so nine lines of ``&a``/``*a`` can
stand for a billion values ("billion laughs"): nothing is copied while reading, but whatever
walks, validates or serialises the result does the copying. So documents (FDL files, the
composition files, and the scripts they name) are read up to :data:`MAX_DOCUMENT_BYTES`, and
the values aliases add, counted as if expanded, may not pass :data:`MAX_ALIAS_VALUES`. Merge
keys (``<<: *defaults``) and a few reused blocks stay far below it. A recursive alias (a node
that contains itself) is refused too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_DOCUMENT_BYTES = 4 << 20
MAX_ALIAS_VALUES = 100_000

__all__ = ["MAX_ALIAS_VALUES", "MAX_DOCUMENT_BYTES", "YamlLimitError", "compose", "load", "read"]


class YamlLimitError(ValueError):
    """A document over a bound; the message says which."""


def read(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """A UTF-8 file's text, refusing files over ``limit`` bytes without reading them whole.

    Raises :class:`OSError` and :class:`UnicodeDecodeError` as :meth:`Path.read_text` does.
    """
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise YamlLimitError(f"over {_size(limit)}")
    return data.decode("utf-8")


def compose(text: str) -> yaml.Node | None:
    """The document's node graph (PyYAML's safe loader), once it is known to be in bounds.

    Raises :class:`yaml.YAMLError` for invalid YAML and :class:`YamlLimitError` over a bound.
    """
    _check_size(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None:
        _check_expansion(node)
    return node


def load(text: str) -> Any:
    """``yaml.safe_load`` within the bounds of :func:`compose`."""
    _check_size(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(text: str) -> None:
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise YamlLimitError(f"the document is over {_size(MAX_DOCUMENT_BYTES)}")


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a graph whose aliases, expanded, add over :data:`MAX_ALIAS_VALUES` values."""
    expanded: dict[int, int] = {}  # node id -> values in its expanded subtree
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            written = len(expanded)  # each node counted once, as in the text
            if expanded[key] - written > MAX_ALIAS_VALUES:
                raise YamlLimitError(
                    f"its aliases expand to over {MAX_ALIAS_VALUES} values (line "
                    f"{node.start_mark.line + 1}); write the values out or reuse fewer"
                )
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise YamlLimitError(f"a recursive alias at line {node.start_mark.line + 1}")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
