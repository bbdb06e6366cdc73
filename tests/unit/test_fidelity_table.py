"""The fidelity table names, for every emulated behaviour, a test that exists and an emulator
module that exists: a renamed test or module cannot leave a row pointing at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "fidelity.md"
LOCAL = ROOT / "airflow_provider_oscar" / "local"

_TEST_CELL = re.compile(r"`(test_[a-z0-9_]+\.py)?::([A-Za-z0-9_]+)`")
_MODULE = re.compile(r"`([a-z_]+(?:/[a-z_]+)*\.py)(?::[A-Za-z0-9_.]+)?`")


def _rows() -> list[str]:
    return [line for line in TABLE.read_text().splitlines() if line.startswith("| ")]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def _references() -> list[tuple[str, str]]:
    """(test file, test name) for every test cell; ``::name`` reuses the cell's last file."""
    found = []
    for row in _rows():
        cells = row.split("|")
        if len(cells) < 3:
            continue
        current = ""
        for file, name in _TEST_CELL.findall(cells[-2]):
            current = file or current
            found.append((current, name))
    return found


def test_every_row_names_a_test_that_exists() -> None:
    references = _references()
    assert len(references) > 50  # the table is read, not silently empty
    index: dict[str, set[str]] = {}
    missing = []
    for file, name in references:
        if not file:
            missing.append(f"::{name} (no file)")
            continue
        candidates = list((ROOT / "tests").rglob(file))
        if not candidates:
            missing.append(f"{file} (no such file)")
            continue
        tests = index.setdefault(file, set().union(*(_tests_in(p) for p in candidates)))
        if name not in tests:
            missing.append(f"{file}::{name}")
    assert not missing, "rows of docs/fidelity.md name tests that do not exist: " + ", ".join(
        missing
    )


def test_every_emulator_module_named_exists() -> None:
    named = set()
    for row in _rows():
        cells = row.split("|")
        if len(cells) >= 4:
            named.update(_MODULE.findall(cells[-3]))
    assert len(named) > 10
    missing = sorted(m for m in named if not (LOCAL / m).is_file())
    assert not missing, f"docs/fidelity.md names emulator modules that do not exist: {missing}"
