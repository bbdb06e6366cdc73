"""What every part of the ensemble package shares: errors, the abstain rule, names, checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_provider_oscar.errors import OscarError

METHODS = (
    "soft_vote",
    "weighted_mean",
    "geometric_mean",
    "max",
    "majority_vote",
    "borda",
    "rrf",
    "dawid_skene",
)
MISSING = ("zero", "residual")
RANK_METHODS = ("borda", "rrf")
SUM_METHODS = ("soft_vote", "weighted_mean", "majority_vote", "borda", "rrf")
TOLERANCE = 1e-6  # slack on probabilities and their sums, for float32 rounding
TIE_BITS = 40  # mantissa bits kept when comparing scores (about 12 significant digits)


class EnsembleError(OscarError, ValueError):
    """Arguments or predictions that cannot be aggregated; the message says which and why."""


@dataclass(frozen=True)
class AbstainRule:
    """Abstain on an input whose margin, winner's vote share or top score is below these.

    The margin and top-score thresholds are in the method's score units (probabilities for the
    probability methods, points for Borda, ``1 / (k0 + rank)`` sums for RRF).
    """

    min_margin: float = 0.0
    min_vote_share: float = 0.0
    min_top_score: float = 0.0


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def label_key(label: str) -> str:
    return " ".join(label.split()).casefold()
