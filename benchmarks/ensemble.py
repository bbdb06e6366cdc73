"""Ensemble aggregation: the vectorised ``aggregate`` against a plain-Python dict implementation.

``ensemble_speedup_vs_dict``: 10,000 inputs x 5 models x top-5 over a 10,000-label vocabulary, soft
vote, both implementations in the same run on the same inputs; they must agree (same top-k labels,
every number within 1e-9). The vectorised time includes reading the input dicts and building the
JSON-plain results, as users pay it. Times are the best of a few calls with the garbage collector
paused during each call, as ``timeit`` does; the detail also gives them with the collector running,
and splits the vectorised time into its phases.
"""

from __future__ import annotations

import gc
import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_oscar import ensemble
from benchmarks.ensemble_reference import aggregate_reference, differences
from benchmarks.figures import Figure, render

INPUTS, MODELS, TOP, VOCABULARY = 10_000, 5, 5, 10_000
REPEATS = 3


def make_predictions(
    inputs: int = INPUTS,
    models: int = MODELS,
    top: int = TOP,
    vocabulary: int = VOCABULARY,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Plant-classifier-like outputs: each model lists the input's true species 60 % of the time,
    probabilities descending and summing to 0.6-0.99; 1 % of the outputs are model errors."""
    rng = random.Random(seed)
    species = [f"Species {n:05d}" for n in range(vocabulary)]
    predictions: dict[str, dict[str, dict[str, Any]]] = {}
    for i in range(inputs):
        truth = rng.randrange(vocabulary)
        row: dict[str, dict[str, Any]] = {}
        for m in range(models):
            if rng.random() < 0.01:
                row[f"model-{m}"] = {"status": "error", "message": "out of memory"}
                continue
            listed = rng.sample(range(vocabulary), top)
            if truth not in listed and rng.random() < 0.6:
                listed[rng.randrange(top)] = truth
            raw = sorted((rng.random() for _ in range(top)), reverse=True)
            scale = rng.uniform(0.6, 0.99) / sum(raw)
            row[f"model-{m}"] = {
                "status": "OK",
                "labels": [species[n] for n in listed],
                "probabilities": [p * scale for p in raw],
            }
        predictions[f"img-{i:05d}"] = row
    return predictions


def _best(run: Callable[[], Any], collect_garbage: bool) -> tuple[float, Any]:
    """Best time of ``REPEATS`` calls, and the last call's result (freed outside the timing)."""
    best, result = math.inf, None
    for _ in range(REPEATS):
        del result
        gc.collect()
        if not collect_garbage:
            gc.disable()
        try:
            started = time.perf_counter()
            result = run()
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best, result


def _phases(predictions: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """The vectorised path's best time per phase (garbage collector paused)."""
    best = {"read_and_check": math.inf, "score": math.inf, "rank_and_build_results": math.inf}
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            batch = ensemble._collect(predictions, None)
            w = ensemble._model_weights(None, batch.models)
            ensemble._check_coverage(batch, w, 1, None)
            t1 = time.perf_counter()
            scores = ensemble._score(batch, "soft_vote", w, "zero", 1e-6, 60.0, None)
            t2 = time.perf_counter()
            results = ensemble._results(batch, scores, 5, None, ensemble.AbstainRule(), {})
            t3 = time.perf_counter()
        finally:
            gc.enable()
        del results
        for phase, seconds in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            best[phase] = min(best[phase], seconds)
    return best


def measure() -> list[Figure]:
    """Time both implementations on the same inputs, check they agree, return the speed-up."""
    predictions = make_predictions()
    fast, got = _best(lambda: ensemble.aggregate(predictions), collect_garbage=False)
    slow, expected = _best(lambda: aggregate_reference(predictions), collect_garbage=False)
    mismatches = differences(got, expected)
    if mismatches:
        raise AssertionError(f"vectorised and dict results differ: {mismatches[:5]}")
    del got, expected
    fast_gc, _ = _best(lambda: ensemble.aggregate(predictions), collect_garbage=True)
    slow_gc, _ = _best(lambda: aggregate_reference(predictions), collect_garbage=True)
    detail = {
        "inputs": INPUTS,
        "models": MODELS,
        "top": TOP,
        "vocabulary": VOCABULARY,
        "method": "soft_vote",
        "repeats": REPEATS,
        "dict_seconds": slow,
        "vectorised_seconds": fast,
        "dict_seconds_gc_running": slow_gc,
        "vectorised_seconds_gc_running": fast_gc,
        "speedup_gc_running": slow_gc / fast_gc,
        "vectorised_phase_seconds": _phases(predictions),
        "results_identical": True,
    }
    return [Figure("ensemble_speedup_vs_dict", slow / fast, ">=", 20, detail)]


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    for figure in figures:
        print(figure.name, json.dumps(figure.detail, indent=2))
