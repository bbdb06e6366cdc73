"""Ensemble aggregation against real libraries on the same data: ranx and crowd-kit.

**ranx** (``fuse`` with ``norm=None``) on the top-5 lists of 5 models for 10,000 and 100,000
inputs over a 10,000-label vocabulary (``benchmarks.ensemble.make_predictions``; 1 % of the
answers are model errors, given to ranx as empty lists):

* ``rrf`` (``k = 60``) is our ``rrf``: the same sum of ``1 / (60 + rank)``;
* ``sum`` (CombSUM) ranks as our ``soft_vote`` (a sum and a mean of the same numbers per input);
* ``max`` (CombMAX) is our ``max``;
* ``bordafuse`` differs by definition: it gives a list's labels ``n - rank + 1`` points and
  labels a list leaves out ``(n - k + 1) / 2``, where ``n`` is the number of labels any model
  listed for the input; ours gives ``k - rank + 1`` and 0. So labels listed by fewer models rank
  differently and only part of the rankings can agree.

Agreement is counted per input on the top 5: ``identical``, ``ties`` (same scores, only the order
within equal scores differs: ours breaks ties by support then label, ranx keeps its own order)
or ``different``.

**crowd-kit** on the top-1 answers of 5 models over 1,000 classes, each model right with
probability 0.85 ... 0.45 and otherwise answering one of three look-alike classes:
``MajorityVote`` against our ``majority_vote`` (agreement on the inputs with a single most-voted
label: crowd-kit breaks ties by column order, ours by the soft-vote score), and ``DawidSkene``
(100 iterations, ``tol`` 1e-5, its defaults) against ours. crowd-kit's Dawid-Skene keeps dense
(answer x class) tables: at 100,000 x 5 over 1,000 classes its joined table alone is 500,000 x
1,000 floats (4 GB), and at 20,000 x 5 it already took 4.5 minutes of CPU and about 6 GB of
memory on the 2-core, 24 GB machine of the README's figures; 100,000 would need about five times
both, more memory than that machine has. So it is measured at ``DS_PEER_INPUTS``, ours on the
same answers and, for its time and memory (``tracemalloc`` peak), at 100,000. With 1,000
classes ours takes an input's candidate classes from its answers (see ``dawid_skene``), so the
estimates agree on nearly every input, not all.

Times: the best of a few calls, process CPU time (ranx runs in parallel on every core, so its CPU
time is its work; wall times are in the detail). Inputs are prepared before timing for both:
arrays for ours, ranx ``Run`` objects, crowd-kit data frames.
"""

from __future__ import annotations

import gc
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from airflow_provider_oscar.ensemble import aggregate_arrays
from airflow_provider_oscar.ensemble.dawid_skene import dawid_skene
from benchmarks.ensemble import as_arrays, make_predictions
from benchmarks.figures import Figure

SIZES = (10_000, 100_000)
CLASSES, MODELS = 1_000, 5
ACCURACY = (0.85, 0.75, 0.65, 0.55, 0.45)
DS_INPUTS, DS_PEER_INPUTS = 100_000, 20_000
RANX = {"rrf": "rrf", "soft_vote": "sum", "max": "max", "borda": "bordafuse"}


def _best(run: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best CPU and wall seconds of ``repeats`` calls, and the last result; the garbage
    collector paused during each call (as ``timeit`` does: the peers' millions of objects would
    otherwise be scanned on our time, and ours on theirs)."""
    cpu, wall, result = math.inf, math.inf, None
    for _ in range(repeats):
        del result
        gc.collect()
        gc.disable()
        try:
            started, started_wall = time.process_time(), time.perf_counter()
            result = run()
            wall = min(wall, time.perf_counter() - started_wall)
            cpu = min(cpu, time.process_time() - started)
        finally:
            gc.enable()
    return cpu, wall, result


def _ranx_runs(arrays: dict[str, Any]) -> list[Any]:
    from ranx import Run

    words = arrays["vocabulary"]
    runs = []
    for m, model in enumerate(arrays["models"]):
        lists = {}
        for i, name in enumerate(arrays["inputs"]):
            listed = arrays["labels"][i, m] if arrays["answered"][i, m] else []
            lists[name] = {
                words[j]: float(p)
                for j, p in zip(listed, arrays["probabilities"][i, m], strict=False)
                if j >= 0
            }
        runs.append(Run(lists, name=model))
    return runs


def _agreement(ours: list[dict[str, Any]], theirs: Any) -> dict[str, int]:
    """Per input: identical top 5, the same scores in another order within ties, or different."""
    counts = {"identical": 0, "ties": 0, "different": 0}
    for result in ours:
        ranked = sorted(theirs[result["input"]].items(), key=lambda kv: -kv[1])[:5]
        labels = [label for label, _ in ranked]
        if labels == result["top_k"]["labels"]:
            counts["identical"] += 1
            continue
        scores = [score for _, score in ranked]  # both best first: equal ranks, equal scores
        tied = np.allclose(scores, result["top_k"]["scores"], rtol=1e-9, atol=0)
        counts["ties" if tied else "different"] += 1
    return counts


def _ranx_figures(size: int) -> list[Figure]:
    from ranx import fuse

    arrays = as_arrays(make_predictions(size))
    runs = _ranx_runs(arrays)
    figures = []
    for ours, theirs in RANX.items():
        params = {"k": 60} if theirs == "rrf" else None
        fuse(runs[:2], norm=None, method=theirs, params=params)  # compile numba's code first
        repeats = 3 if size <= 10_000 else 2
        our_cpu, our_wall, results = _best(
            lambda ours=ours: aggregate_arrays(**arrays, method=ours, provenance=False), repeats
        )
        their_cpu, their_wall, fused = _best(
            lambda theirs=theirs, params=params: fuse(
                runs, norm=None, method=theirs, params=params
            ),
            repeats,
        )
        detail = {
            "inputs": size,
            "models": MODELS,
            "top": 5,
            "vocabulary": len(arrays["vocabulary"]),
            "ranx_method": theirs,
            "ours_cpu_seconds": our_cpu,
            "ranx_cpu_seconds": their_cpu,
            "ours_wall_seconds": our_wall,
            "ranx_wall_seconds": their_wall,
            "wall_ratio": their_wall / our_wall,
            "agreement": _agreement(results, fused),
        }
        name = f"ranx_{theirs}_vs_ours_{size // 1000}k_cpu_ratio"
        figures.append(Figure(name, their_cpu / our_cpu, ">", 1, detail))
    return figures


def top1_answers(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 answers ``(inputs, models)`` over ``CLASSES`` classes, and the true classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, CLASSES, size)
    alike = rng.integers(0, CLASSES, (CLASSES, 3))
    wrong = alike[truth[:, None], rng.integers(0, 3, (size, MODELS))]
    right = rng.random((size, MODELS)) < np.array(ACCURACY)
    return np.where(right, truth[:, None], wrong), truth


def _frame(answers: np.ndarray) -> Any:
    import pandas as pd

    i, m = np.nonzero(answers >= 0)
    return pd.DataFrame({"task": i, "worker": m, "label": answers[i, m]})


def _majority_figure(size: int) -> Figure:
    from crowdkit.aggregation import MajorityVote

    answers, _ = top1_answers(size)
    frame = _frame(answers)
    words = [f"class-{c:04d}" for c in range(CLASSES)]
    inputs = [str(i) for i in range(size)]
    arrays = {
        "inputs": inputs,
        "models": [f"m{m}" for m in range(MODELS)],
        "vocabulary": words,
        "labels": answers[:, :, None],
        "probabilities": np.ones((*answers.shape, 1)),
    }
    our_cpu, _, ours = _best(
        lambda: aggregate_arrays(**arrays, method="majority_vote", top_k=1, provenance=False), 3
    )
    their_cpu, _, theirs = _best(lambda: MajorityVote().fit_predict(frame), 3)
    votes = (answers[:, :, None] == answers[:, None, :]).sum(axis=2)  # per answer, its votes
    top = np.where(votes == votes.max(axis=1, keepdims=True), answers, -1)
    single = top.max(axis=1) == np.where(top >= 0, top, CLASSES).min(axis=1)
    same = np.array([r["winner"] for r in ours]) == np.array(
        [words[c] for c in theirs.sort_index()]
    )
    detail = {
        "inputs": size,
        "models": MODELS,
        "classes": CLASSES,
        "ours_cpu_seconds": our_cpu,
        "crowdkit_cpu_seconds": their_cpu,
        "single_winner_inputs": int(single.sum()),
        "agree_where_single_winner": int(same[single].sum()),
        "agree_where_tied": int(same[~single].sum()),
        "tied_inputs": int((~single).sum()),
    }
    name = f"crowdkit_majority_vote_vs_ours_{size // 1000}k_cpu_ratio"
    return Figure(name, their_cpu / our_cpu, ">", 1, detail)


def _dawid_skene_figures() -> list[Figure]:
    from crowdkit.aggregation import DawidSkene

    answers, truth = top1_answers(DS_INPUTS)
    our_cpu, our_wall, fitted = _best(lambda: dawid_skene(answers), 2)
    tracemalloc.start()
    dawid_skene(answers)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    ours_big = _winners(fitted, DS_INPUTS)
    peer = answers[:DS_PEER_INPUTS]
    small_cpu, _, small = _best(lambda: dawid_skene(peer), 2)
    model = DawidSkene(n_iter=100, tol=1e-5)
    frame = _frame(peer)
    their_cpu, _, probas = _best(lambda: model.fit_predict_proba(frame), 1)
    theirs = probas.idxmax(axis=1).sort_index().to_numpy()
    mine = _winners(small, DS_PEER_INPUTS)
    their_reliability = [
        float(
            probas.to_numpy()[
                np.arange(DS_PEER_INPUTS), probas.columns.get_indexer(peer[:, m])
            ].mean()
        )
        for m in range(MODELS)
    ]
    detail = {
        "inputs": DS_PEER_INPUTS,
        "models": MODELS,
        "classes": CLASSES,
        "ours_cpu_seconds": small_cpu,
        "crowdkit_cpu_seconds": their_cpu,
        "crowdkit_iterations": len(model.loss_history_),
        "ours_iterations": small.iterations,
        "same_winner": int((mine == theirs).sum()),
        "different_winner": int((mine != theirs).sum()),
        "reliability_ours": [round(float(x), 4) for x in small.reliability],
        "reliability_crowdkit": [round(x, 4) for x in their_reliability],
        "accuracy_ours": float((mine == truth[:DS_PEER_INPUTS]).mean()),
        "accuracy_crowdkit": float((theirs == truth[:DS_PEER_INPUTS]).mean()),
        "why_not_100k": "crowd-kit's dense tables: about 6 GB at 20,000 x 5, five times that "
        "at 100,000, more than the 24 GB machine has",
    }
    ours_100k = {
        "inputs": DS_INPUTS,
        "cpu_seconds": our_cpu,
        "wall_seconds": our_wall,
        "iterations": fitted.iterations,
        "accuracy": float((ours_big == truth).mean()),
        "peak_traced_mb": peak,
    }
    return [
        Figure("crowdkit_dawid_skene_vs_ours_cpu_ratio", their_cpu / small_cpu, ">=", 10, detail),
        Figure("dawid_skene_100k_peak_mb", peak, "<", 200, ours_100k),
    ]


def _winners(fitted: Any, n: int) -> np.ndarray:
    best = np.full(n, -1)
    order = np.lexsort((-fitted.posterior, fitted.cand_input))
    first = np.r_[True, fitted.cand_input[order][1:] != fitted.cand_input[order][:-1]]
    best[fitted.cand_input[order][first]] = fitted.cand_label[order][first]
    return best


def measure() -> list[Figure]:
    try:
        import crowdkit  # noqa: F401
        import ranx  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"the peers are not installed ({exc}): run `make bench`") from None
    figures: list[Figure] = []
    for size in SIZES:
        figures += _ranx_figures(size)
        figures.append(_majority_figure(size))
    return figures + _dawid_skene_figures()


if __name__ == "__main__":
    import json

    from benchmarks.figures import render

    found = measure()
    print(render(found))
    for figure in found:
        print(figure.name, json.dumps(figure.detail, indent=2))
