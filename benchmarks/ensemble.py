"""Ensemble aggregation: the vectorised code against a plain-Python dict implementation.

``ensemble_speedup_vs_dict``: 10,000 inputs x 5 models x top-5 over a 10,000-label vocabulary, soft
vote, both implementations in the same run on the same information; they must agree (same top-k
labels, every number within 1e-9). Times are the best of a few calls with the garbage collector
paused during each call, as ``timeit`` does; the detail also gives them with the collector running,
and splits the vectorised time into its phases.

The figure is the ratio of **process CPU times** (``time.process_time``: user plus system time,
page faults included). Both implementations are single-threaded, so this is the work each does;
wall-clock time on a machine shared with other jobs also counts the time spent waiting for a
core, which swings by several times from run to run. The wall-clock ratio is in the detail too,
and equals the CPU ratio on an idle machine.

The measured configuration is the large-batch one:

* **Predictions held as arrays**, as a classifier's batched top-k comes (``torch.topk``: label
  positions and probabilities per input and model): ``aggregate_arrays`` gets numpy arrays, the
  reference ``aggregate_arrays_reference`` the same arrays as nested lists (``tolist()``, done
  before timing, in its favour) and normalises each vocabulary entry once, as a reasonable
  pure-Python program would. The time of both includes checking the predictions, building the
  label vocabulary and building the JSON-plain results.
* **No provenance** (``provenance=False``, in both): for 10,000 inputs the per-model provenance is
  a copy of the whole input (50,000 lists of labels and of probabilities, 50,000 dicts), which the
  caller already holds; building it is the same Python-object work in both implementations and
  most of the vectorised time. The operator keeps the default (provenance on) for XCom.

The detail also gives, in the same run, the speed-ups with the predictions as mappings
(``aggregate`` against ``aggregate_reference``, what the operator does with XCom results), with and
without provenance: there reading the 50,000 input dicts (a pass of dict and list accesses per
field, about 100 ms) dominates the vectorised time and caps the speed-up well below the goal.
"""

from __future__ import annotations

import gc
import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from airflow_provider_oscar import ensemble
from airflow_provider_oscar.ensemble import aggregation, output, parts, reading, scoring
from benchmarks.ensemble_reference import (
    aggregate_arrays_reference,
    aggregate_reference,
    differences,
)
from benchmarks.figures import Figure, render

INPUTS, MODELS, TOP, VOCABULARY = 10_000, 5, 5, 10_000
REPEATS = 5  # calls of each implementation in the measured configuration; 3 elsewhere


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
    species = _species(vocabulary)
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


def _species(vocabulary: int) -> list[str]:
    return [f"Species {n:05d}" for n in range(vocabulary)]


def as_arrays(
    predictions: dict[str, dict[str, dict[str, Any]]], vocabulary: int = VOCABULARY, top: int = TOP
) -> dict[str, Any]:
    """The same predictions as ``aggregate_arrays`` takes them: a model error does not answer."""
    words = _species(vocabulary)
    position = {word: n for n, word in enumerate(words)}
    models = list(dict.fromkeys(m for row in predictions.values() for m in row))
    labels = np.full((len(predictions), len(models), top), -1, np.int64)
    probabilities = np.zeros(labels.shape)
    answered = np.zeros(labels.shape[:2], bool)
    for i, row in enumerate(predictions.values()):
        for m, model in enumerate(models):
            prediction = row.get(model)
            if prediction and prediction["status"].casefold() == "ok":
                n = len(prediction["labels"])
                labels[i, m, :n] = [position[label] for label in prediction["labels"]]
                probabilities[i, m, :n] = prediction["probabilities"]
                answered[i, m] = True
    return {
        "inputs": list(predictions),
        "models": models,
        "vocabulary": words,
        "labels": labels,
        "probabilities": probabilities,
        "answered": answered,
    }


def _best(run: Callable[[], Any], collect_garbage: bool, repeats: int) -> tuple[float, float, Any]:
    """Best CPU and wall times of ``repeats`` calls, and the last call's result (freed outside
    the timing)."""
    cpu, wall, result = math.inf, math.inf, None
    for _ in range(repeats):
        del result
        gc.collect()
        if not collect_garbage:
            gc.disable()
        try:
            started, started_wall = time.process_time(), time.perf_counter()
            result = run()
            wall = min(wall, time.perf_counter() - started_wall)
            cpu = min(cpu, time.process_time() - started)
        finally:
            gc.enable()
    return cpu, wall, result


def _compare(
    fast: Callable[[], Any],
    slow: Callable[[], Any],
    collect_garbage: bool = False,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time both on the same information, check they agree, and give the speed-up."""
    fast_cpu, fast_wall, got = _best(fast, collect_garbage, repeats)
    slow_cpu, slow_wall, expected = _best(slow, collect_garbage, repeats)
    mismatches = differences(got, expected)
    if mismatches:
        raise AssertionError(f"vectorised and dict results differ: {mismatches[:5]}")
    return {
        "speedup": slow_cpu / fast_cpu,
        "dict_seconds": slow_cpu,
        "vectorised_seconds": fast_cpu,
        "speedup_wall": slow_wall / fast_wall,
        "dict_wall_seconds": slow_wall,
        "vectorised_wall_seconds": fast_wall,
        "results_identical": True,
    }


def _phases(arrays: dict[str, Any]) -> dict[str, float]:
    """The measured configuration's best CPU time per phase (garbage collector paused), summed
    over the chunks of inputs that ``aggregate_arrays`` works through."""
    phases = ("read_and_check", "entries_and_candidates", "score", "rank_and_build_results")
    best = dict.fromkeys(phases, math.inf)
    rule = ensemble.AbstainRule()
    for _ in range(3):
        gc.collect()
        gc.disable()
        spent = dict.fromkeys(phases, 0.0)
        try:
            t0 = time.process_time()
            read = reading.read_arrays(
                arrays["inputs"],
                arrays["models"],
                arrays["vocabulary"],
                arrays["labels"],
                arrays["probabilities"],
                arrays["answered"],
                False,
            )
            w = aggregation.model_weights(None, read.models)
            shown = np.array(read.display, dtype=object)
            step = aggregation.CHUNK_ENTRIES // math.ceil(read.entries_per_input)
            spent["read_and_check"] += time.process_time() - t0
            results = []
            for lo in range(0, len(read.inputs), step):
                t1 = time.process_time()
                part = parts.build_part(read, lo, min(lo + step, len(read.inputs)))
                parts.check_coverage(part, w, 1, None)
                t2 = time.process_time()
                scores = scoring.score_part(part, "soft_vote", w, "zero", 1e-6, 60.0, None)
                t3 = time.process_time()
                results += output.build_results(part, scores, 5, None, rule, {}, shown)
                t4 = time.process_time()
                spent["entries_and_candidates"] += t2 - t1
                spent["score"] += t3 - t2
                spent["rank_and_build_results"] += t4 - t3
        finally:
            gc.enable()
        del results
        for phase in phases:
            best[phase] = min(best[phase], spent[phase])
    return best


def measure() -> list[Figure]:
    """Time both implementations in each configuration, check they agree, return the speed-up."""
    predictions = make_predictions()
    arrays = as_arrays(predictions)
    lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arrays.items()}

    def arrays_fast() -> Any:
        return ensemble.aggregate_arrays(**arrays, provenance=False)

    def arrays_slow() -> Any:
        return aggregate_arrays_reference(**lists, provenance=False)

    measured = _compare(arrays_fast, arrays_slow, repeats=REPEATS)
    gc_running = _compare(arrays_fast, arrays_slow, collect_garbage=True)
    same_batch = differences(arrays_fast(), ensemble.aggregate(predictions, provenance=False))
    if same_batch:
        raise AssertionError(f"arrays and mappings give different results: {same_batch[:5]}")
    mappings = {
        "provenance": _compare(
            lambda: ensemble.aggregate(predictions), lambda: aggregate_reference(predictions)
        ),
        "no_provenance": _compare(
            lambda: ensemble.aggregate(predictions, provenance=False),
            lambda: aggregate_reference(predictions, provenance=False),
        ),
    }
    detail = {
        "inputs": INPUTS,
        "models": MODELS,
        "top": TOP,
        "vocabulary": VOCABULARY,
        "method": "soft_vote",
        "input_form": "arrays (aggregate_arrays; the reference gets the same as nested lists)",
        "provenance": False,
        "clock": "process CPU time (time.process_time), best of the repeats",
        "repeats": REPEATS,
        **measured,
        "gc_running": {k: v for k, v in gc_running.items() if k != "results_identical"},
        "vectorised_phase_seconds": _phases(arrays),
        "mappings_input": mappings,
    }
    return [Figure("ensemble_speedup_vs_dict", measured["speedup"], ">=", 20, detail)]


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    for figure in figures:
        print(figure.name, json.dumps(figure.detail, indent=2))
