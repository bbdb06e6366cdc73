"""Fitting an ensemble on labelled inputs, and applying the fit (pure numpy).

:func:`fit` learns, from the models' top-k answers on inputs whose true label is known:

1. **a temperature per model** ``T_m``: each list becomes ``p^(1/T_m)`` renormalised over all
   ``C`` classes, the unlisted ones sharing the residual mass evenly (``r_m / (C - k_m)`` each);
   ``T_m`` minimises that model's log loss (``T > 1`` softens an over-confident model);
2. **a weight per model** ``w_m`` (summing to 1): Caruana et al.'s greedy ensemble selection
   with replacement (ICML 2004), or a non-negative stacking fit (the log loss of the weighted
   mean minimised over the simplex by exponentiated gradient), or equal weights;
3. **a temperature for the pooled vector** ``T``: the weighted mean of the rescaled lists,
   raised to ``1/T`` and renormalised over the ``C`` classes (temperature scaling after pooling,
   Rahaman and Thiery, NeurIPS 2021).

With ``pool="log_linear"`` the models are pooled by a weighted geometric mean instead (a
product of experts: ``s(c) ∝ exp(Σ_m a_m log max(v_m(c), floor))``), whose exponents ``a_m >= 0``
are fitted jointly on the log loss (convex in them) by projected gradient descent; they take the
place of the three steps above (stored as weights ``a_m / Σ a`` and a pooled temperature
``1 / Σ a``). It suits models that see different evidence: their log-probabilities add up.

Each temperature is one number minimising a log loss that is convex in ``1/T``: a golden-section
search over ``log(1/T)`` in ``[1/100, 100]``. The result is a :class:`Calibration`, JSON-plain
through :meth:`Calibration.to_json`, that :func:`~airflow_provider_oscar.ensemble.aggregate`
applies (``calibration=``) with the soft vote. ``C`` is ``num_classes`` when given, else the
number of labels seen in the fitting batch (enough when the models list every class).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from airflow_provider_oscar.ensemble.base import EnsembleError, is_int, is_real, label_key
from airflow_provider_oscar.ensemble.log_linear import fit_exponents
from airflow_provider_oscar.ensemble.parts import Part, build_part
from airflow_provider_oscar.ensemble.reading import read_mappings
from airflow_provider_oscar.ensemble.scoring import Scores, score_part

KIND = "oscar-ensemble-calibration"
WEIGHT_FITS = ("caruana", "stacking", "equal")
POOLS = ("linear", "log_linear")
LOG_FLOOR = 1e-15  # probabilities below this count as this in a log loss
_BETA_RANGE = (math.log(1e-2), math.log(1e2))  # search range of log(1/T)


@dataclass(frozen=True)
class Calibration:
    """Temperatures and weights fitted by :func:`fit`; ``to_json``/``from_json`` round-trip."""

    models: dict[str, dict[str, float]]  # model -> {"temperature", "weight"}
    temperature: float  # of the pooled vector
    num_classes: int
    weights_fit: str = "caruana"
    pool: str = "linear"
    floor: float = 1e-6  # of the log-linear pool
    fitted_on: int = 0  # labelled inputs
    log_loss: dict[str, float | None] | None = None  # before (equal, T=1) and after, in-sample

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "models": {m: dict(v) for m, v in self.models.items()},
            "temperature": self.temperature,
            "num_classes": self.num_classes,
            "weights_fit": self.weights_fit,
            "pool": self.pool,
            "floor": self.floor,
            "fitted_on": self.fitted_on,
            "log_loss": dict(self.log_loss or {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        """Read and check a calibration; :class:`EnsembleError` names what is wrong."""
        if isinstance(data, Calibration):
            return data
        if not isinstance(data, Mapping) or data.get("kind") != KIND:
            raise EnsembleError(f"not an ensemble calibration (expected kind {KIND!r})")
        models = data.get("models")
        if not isinstance(models, Mapping) or not models:
            raise EnsembleError("calibration: 'models' must map model names to their fit")
        for name, entry in models.items():
            good = isinstance(entry, Mapping) and all(
                is_real(entry.get(k)) for k in ("temperature", "weight")
            )
            if not good or entry["temperature"] <= 0 or entry["weight"] < 0:
                raise EnsembleError(
                    f"calibration: model {name!r} needs a temperature > 0 and a weight >= 0"
                )
        if sum(float(e["weight"]) for e in models.values()) <= 0:
            raise EnsembleError("calibration: the model weights sum to zero")
        if not is_real(data.get("temperature")) or data["temperature"] <= 0:
            raise EnsembleError("calibration: 'temperature' must be a number > 0")
        if not is_int(data.get("num_classes")) or data["num_classes"] < 1:
            raise EnsembleError("calibration: 'num_classes' must be an integer >= 1")
        pool = data.get("pool", "linear")
        if pool not in POOLS:
            raise EnsembleError(f"calibration: 'pool' must be one of {', '.join(POOLS)}")
        floor = data.get("floor", 1e-6)
        if not is_real(floor) or not 0 < floor < 1:
            raise EnsembleError("calibration: 'floor' must be a number with 0 < floor < 1")
        return cls(
            models={
                str(m): {"temperature": float(e["temperature"]), "weight": float(e["weight"])}
                for m, e in models.items()
            },
            temperature=float(data["temperature"]),
            num_classes=int(data["num_classes"]),
            weights_fit=str(data.get("weights_fit", "caruana")),
            pool=str(pool),
            floor=float(floor),
            fitted_on=int(data.get("fitted_on") or 0),
            log_loss=dict(data.get("log_loss") or {}),
        )

    def weights(self, models: Sequence[str]) -> np.ndarray:
        """The weights of ``models``, in that order; every model must have been fitted."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise EnsembleError(
                f"the calibration has no fit for models: {', '.join(unknown)}; "
                f"it knows {', '.join(self.models)}"
            )
        return np.array([self.models[m]["weight"] for m in models])

    def betas(self, models: Sequence[str]) -> np.ndarray:
        """``1 / T_m`` of ``models``, in that order."""
        return np.array([1.0 / self.models[m]["temperature"] for m in models])


def fit(
    predictions: Mapping[str, Mapping[str, Any]],
    truth: Mapping[str, str],
    *,
    models: Sequence[str] | None = None,
    num_classes: int | None = None,
    weights: str = "caruana",
    temperatures: bool = True,
    pooled_temperature: bool = True,
    rounds: int = 50,
    pool: str = "linear",
    floor: float = 1e-6,
) -> Calibration:
    """Fit per-model temperatures, model weights and a pooled temperature on labelled inputs.

    ``predictions`` is what :func:`~airflow_provider_oscar.ensemble.aggregate` takes; only the
    inputs in ``truth`` (input id → true label) are used, and every one of them must have
    predictions. ``weights`` is ``caruana`` (greedy selection with replacement, ``rounds``
    picks, started from the best single model), ``stacking`` or ``equal``. ``temperatures`` and
    ``pooled_temperature`` switch the two kinds of temperature off (then 1). ``pool="log_linear"``
    fits the exponents of a weighted geometric mean instead (``floor`` bounds the probabilities
    below, as the geometric mean's ``floor``); ``weights`` and the switches then do not apply.
    """
    if pool not in POOLS:
        raise EnsembleError(f"unknown pool {pool!r}; expected {', '.join(POOLS)}")
    if not is_real(floor) or not 0 < floor < 1:
        raise EnsembleError(f"floor must be a number with 0 < floor < 1, got {floor!r}")
    if weights not in WEIGHT_FITS:
        raise EnsembleError(f"unknown weights fit {weights!r}; expected {', '.join(WEIGHT_FITS)}")
    if not is_int(rounds) or rounds < 1:
        raise EnsembleError(f"rounds must be an integer >= 1, got {rounds!r}")
    if num_classes is not None and (not is_int(num_classes) or num_classes < 1):
        raise EnsembleError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    unknown = [i for i in truth if i not in predictions]
    if unknown:
        raise EnsembleError(f"truth names inputs without predictions: {', '.join(unknown[:5])}")
    if not truth:
        raise EnsembleError("nothing to fit on: no input has a known label")
    labelled = {i: predictions[i] for i in truth}
    read = read_mappings(labelled, models, provenance=False)
    part = build_part(read, 0, len(read.inputs))
    n_classes = num_classes if num_classes is not None else len(read.display)
    if n_classes < len(read.display):
        raise EnsembleError(
            f"num_classes={n_classes} is less than the {len(read.display)} labels listed"
        )
    target = _truth_ids(part, [truth[i] for i in read.inputs])
    n_models = len(read.models)
    equal = score_part(part, "soft_vote", np.ones(n_models), "residual", floor, 60.0, n_classes)
    if pool == "log_linear":
        a = fit_exponents(part, target, n_classes, floor)
        total = float(a.sum())
        w, beta, betas = a / total, total, np.ones(n_models)
        pooled = score_part(part, "geometric_mean", w, "residual", floor, 60.0, n_classes)
        after = sharpen(part, pooled, beta, n_classes)
        return Calibration(
            models={
                m: {"temperature": 1.0, "weight": float(x)}
                for m, x in zip(read.models, w, strict=True)
            },
            temperature=1.0 / beta,
            num_classes=int(n_classes),
            weights_fit="log_linear",
            pool=pool,
            floor=floor,
            fitted_on=len(read.inputs),
            log_loss={
                "equal_weights": _log_loss(part, equal, target),
                "calibrated": _log_loss(part, after, target),
            },
        )
    betas = np.ones(n_models)
    if temperatures:
        betas = np.array(
            [_fit_model_beta(part, target, n_classes, m) for m in range(len(read.models))]
        )
    scaled = scale_part(part, betas, n_classes)
    q = _truth_probabilities(scaled, target, n_classes)
    answered = part.present.astype(float)
    if weights == "caruana":
        w = _caruana(q, answered, rounds)
    elif weights == "stacking":
        w = _stacking(q, answered)
    else:
        w = np.full(len(read.models), 1.0 / len(read.models))
    pooled = score_part(scaled, "weighted_mean", w, "residual", 1e-6, 60.0, n_classes)
    beta = _fit_pooled_beta(scaled, pooled, target, n_classes) if pooled_temperature else 1.0
    equal = score_part(
        part, "soft_vote", np.ones(len(read.models)), "residual", 1e-6, 60, n_classes
    )
    after = sharpen(scaled, pooled, beta, n_classes)
    return Calibration(
        models={
            m: {"temperature": float(1.0 / b), "weight": float(x)}
            for m, b, x in zip(read.models, betas, w, strict=True)
        },
        temperature=float(1.0 / beta),
        num_classes=int(n_classes),
        weights_fit=weights,
        fitted_on=len(read.inputs),
        log_loss={
            "equal_weights": _log_loss(part, equal, target),
            "calibrated": _log_loss(part, after, target),
        },
    )


# --------------------------------------------------------------------------- applying


def scale_part(part: Part, betas: np.ndarray, num_classes: int) -> Part:
    """Each model's list raised to ``betas[m]`` and renormalised over ``num_classes`` classes,
    the unlisted ones sharing the residual; the new residual is their share."""
    n_models = len(part.models)
    beta_slot = np.tile(betas, len(part.inputs))  # per slot, input-major
    length = part.length.ravel()
    room = np.maximum(num_classes - length, 0)
    unlisted = np.where(room > 0, part.residual.ravel() / np.maximum(room, 1), 0.0)
    raised = _power(part.prob, beta_slot[part.slot])
    rest = room * _power(unlisted, beta_slot)
    total = np.bincount(part.slot, raised, length.size) + rest
    safe = np.where(total > 0, total, 1.0)
    prob = raised / safe[part.slot]
    residual = np.where(part.present.ravel(), rest / safe, 0.0)
    shape = (len(part.inputs), n_models)
    return replace(part, prob=prob, residual=residual.reshape(shape))


def sharpen(part: Part, scores: Scores, beta: float, num_classes: int) -> Scores:
    """The pooled scores raised to ``beta`` and renormalised over ``num_classes`` classes."""
    ci = part.cand_input
    counts = np.bincount(ci, minlength=len(part.inputs))
    raised, rest = _power(scores.score, beta), _power(scores.unlisted, beta)
    total = np.bincount(ci, raised, len(part.inputs)) + (num_classes - counts) * rest
    safe = np.where(total > 0, total, 1.0)
    return replace(scores, score=raised / safe[ci], unlisted=rest / safe)


def _power(x: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    """``x ** beta`` with ``0 ** beta = 0``."""
    out = np.zeros_like(x)
    np.power(x, beta, out=out, where=x > 0)
    return out


# --------------------------------------------------------------------------- fitting


def _truth_ids(part: Part, labels: Sequence[str]) -> np.ndarray:
    """Per input, the label id of its true label (-1: a label no model listed in the batch)."""
    ids = {label_key(shown): n for n, shown in enumerate(part.display)}
    return np.array([ids.get(label_key(str(label)), -1) for label in labels], np.int64)


def _truth_probabilities(part: Part, target: np.ndarray, num_classes: int) -> np.ndarray:
    """``(inputs, models)``: what each model gives the true label (0 where it did not answer)."""
    n_models = part.present.shape[1]
    room = np.maximum(num_classes - part.length, 0)
    q = np.where(room > 0, part.residual / np.maximum(room, 1), 0.0)
    hit = part.cand_label[part.cand] == target[part.slot // n_models]
    q.ravel()[part.slot[hit]] = part.prob[hit]
    return np.where(part.present, q, 0.0)


def _fit_model_beta(part: Part, target: np.ndarray, num_classes: int, m: int) -> float:
    """``1/T`` of model ``m``: its lists (and unlisted classes) as groups, one per slot."""
    n_models = len(part.models)
    slots = np.flatnonzero(part.present[:, m]) * n_models + m
    if not slots.size:
        return 1.0
    mine = np.isin(part.slot, slots)
    group = np.searchsorted(slots, part.slot[mine])
    length = part.length.ravel()[slots]
    room = np.maximum(num_classes - length, 0).astype(float)
    unlisted = np.where(room > 0, part.residual.ravel()[slots] / np.maximum(room, 1), 0.0)
    truth = _truth_probabilities(part, target, num_classes).ravel()[slots]
    values = np.concatenate((part.prob[mine], unlisted))
    weight = np.concatenate((np.ones(int(mine.sum())), room))
    groups = np.concatenate((group, np.arange(slots.size)))
    return _fit_beta(values, weight, groups, truth)


def _fit_pooled_beta(part: Part, scores: Scores, target: np.ndarray, num_classes: int) -> float:
    """``1/T`` of the pooled vector: each input's candidates and unlisted classes as a group."""
    ci = part.cand_input
    n_inputs = len(part.inputs)
    counts = np.bincount(ci, minlength=n_inputs)
    truth = _pooled_truth(part, scores, target)
    values = np.concatenate((scores.score, scores.unlisted))
    weight = np.concatenate((np.ones(ci.size), (num_classes - counts).astype(float)))
    groups = np.concatenate((ci, np.arange(n_inputs)))
    return _fit_beta(values, weight, groups, truth)


def _pooled_truth(part: Part, scores: Scores, target: np.ndarray) -> np.ndarray:
    """Per input, the pooled score of its true label."""
    truth = scores.unlisted.copy()
    hit = part.cand_label == target[part.cand_input]
    truth[part.cand_input[hit]] = scores.score[hit]
    return truth


def _fit_beta(
    values: np.ndarray, weight: np.ndarray, group: np.ndarray, truth: np.ndarray
) -> float:
    """The ``beta`` minimising ``Σ_g log Σ_{j in g} weight_j values_j^beta - beta log truth_g``.

    Groups whose true label has probability 0 are left out (no temperature changes that), as are
    zero values (0 at any temperature). Convex in ``beta``: golden-section search on its log.
    """
    fits = truth > 0
    keep = (values > 0) & (weight > 0) & fits[group]
    if not fits.any():
        return 1.0
    order = np.argsort(group[keep], kind="stable")
    logv = np.log(values[keep])[order]
    logw = np.log(weight[keep])[order]
    g = group[keep][order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, logv.size])
    log_truth = float(np.log(truth[fits]).sum())

    def loss(x: float) -> float:
        a = math.exp(x) * logv + logw
        top = np.maximum.reduceat(a, starts)
        lse = top + np.log(np.add.reduceat(np.exp(a - np.repeat(top, sizes)), starts))
        return float(lse.sum() - math.exp(x) * log_truth)

    lo, hi = _BETA_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - ratio * (hi - lo)
            fc = loss(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + ratio * (hi - lo)
            fd = loss(d)
    return math.exp((lo + hi) / 2)


def _mixture(q: np.ndarray, answered: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per input, the weighted mean of ``q`` over the models that answered (0 if none weighs)."""
    total = answered @ w
    return np.where(total > 0, (q @ w) / np.where(total > 0, total, 1.0), 0.0)


def _nll(p: np.ndarray) -> float:
    return float(-np.log(np.maximum(p, LOG_FLOOR)).mean())


def _caruana(q: np.ndarray, answered: np.ndarray, rounds: int) -> np.ndarray:
    """Greedy selection with replacement: ``rounds`` picks, each the model whose addition most
    lowers the log loss (ties: the first model), starting from the best single model."""
    n_models = q.shape[1]
    counts = np.zeros(n_models)
    eye = np.eye(n_models)
    for _ in range(rounds):
        losses = [_nll(_mixture(q, answered, counts + eye[m])) for m in range(n_models)]
        counts[int(np.argmin(losses))] += 1
    return counts / counts.sum()


def _stacking(q: np.ndarray, answered: np.ndarray, steps: int = 2000) -> np.ndarray:
    """Weights on the simplex minimising the log loss of the mixture: exponentiated gradient."""
    n_models = q.shape[1]
    w = np.full(n_models, 1.0 / n_models)
    rate = 1.0
    for _ in range(steps):
        total = answered @ w
        p = np.maximum((q @ w) / np.where(total > 0, total, 1.0), LOG_FLOOR)
        grad = -((q / p[:, None] - answered) / np.where(total > 0, total, 1.0)[:, None]).mean(0)
        step = w * np.exp(-rate * (grad - grad.min()))
        new = step / step.sum()
        if np.abs(new - w).max() < 1e-10:
            return new
        w = new
    return w


def _log_loss(part: Part, scores: Scores, target: np.ndarray) -> float:
    return _nll(_pooled_truth(part, scores, target))
