"""Cross-validated calibration: every input scored by a fit that never saw its fold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_oscar.ensemble.aggregation import aggregate
from airflow_provider_oscar.ensemble.base import AbstainRule, EnsembleError
from airflow_provider_oscar.ensemble.calibration import fit


def cross_validate(
    predictions: Mapping[str, Mapping[str, Any]],
    truth: Mapping[str, str],
    folds: Mapping[str, Any],
    *,
    models: Sequence[str] | None = None,
    top_k: int = 5,
    min_models: int = 1,
    abstain: AbstainRule | None = None,
    **fit_options: Any,
) -> dict[str, Any]:
    """For each fold, :func:`~airflow_provider_oscar.ensemble.fit` on the labelled inputs of
    the other folds and aggregate the fold's inputs with that calibration.

    ``folds`` maps every input of ``predictions`` to its fold (any JSON-plain value);
    ``fit_options`` go to :func:`~airflow_provider_oscar.ensemble.fit`. Returns
    ``{"results": [...], "calibrations": {fold: calibration JSON}}``, the results in input order,
    as :func:`~airflow_provider_oscar.ensemble.aggregate` gives them.
    """
    unassigned = [i for i in predictions if i not in folds]
    if unassigned:
        raise EnsembleError(f"inputs without a fold: {', '.join(map(str, unassigned[:5]))}")
    names = list(models) if models is not None else None
    if names is None:
        names = list(dict.fromkeys(m for row in predictions.values() for m in row))
    results: dict[str, dict[str, Any]] = {}
    calibrations: dict[str, Any] = {}
    for fold in dict.fromkeys(folds[i] for i in predictions):
        train = {i: t for i, t in truth.items() if i in predictions and folds[i] != fold}
        if not train:
            raise EnsembleError(f"fold {fold!r}: no labelled input outside it to fit on")
        calibration = fit(
            {i: predictions[i] for i in train},
            train,
            models=names,
            **fit_options,
        )
        calibrations[str(fold)] = calibration.to_json()
        scored = {i: row for i, row in predictions.items() if folds[i] == fold}
        for result in aggregate(
            scored,
            models=names,
            top_k=top_k,
            min_models=min_models,
            abstain=abstain,
            calibration=calibration,
        ):
            result["method"] = {**result["method"], "fold": fold}
            results[result["input"]] = result
    return {"results": [results[i] for i in predictions], "calibrations": calibrations}
