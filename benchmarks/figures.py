"""The record every benchmark returns, and how a run is printed and saved."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Figure:
    """One measured ratio with its goal, e.g. ``Figure("x_ratio", 1.08, "<=", 1.25)``."""

    name: str
    value: float
    op: str
    goal: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return _COMPARE[self.op](self.value, self.goal)


def render(figures: Iterable[Figure]) -> str:
    """A plain-text table: figure, value, goal, met."""
    rows = [("figure", "value", "goal", "met")]
    rows += [
        (f.name, f"{f.value:.3f}", f"{f.op} {f.goal:g}", "yes" if f.met else "NO") for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def save(figures: Iterable[Figure], path: Path) -> None:
    """Write every figure (with its detail) as JSON; figures of benchmarks not run this time
    keep their last measurement."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({f.name: {**asdict(f), "met": f.met} for f in figures})
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
