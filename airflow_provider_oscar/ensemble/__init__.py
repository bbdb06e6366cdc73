"""Combine the top-k predictions of several models per input (pure numpy, no Airflow).

Each input (an image, a specimen) has at most one prediction per model: labels in the model's own
order, their probabilities and a status. :func:`aggregate` merges them over a label vocabulary built
on the fly and returns JSON-plain results, small enough for XCom; :func:`aggregate_arrays` does the
same for predictions already held as arrays (label indices into a vocabulary, probabilities). The
rules, after ``reference/ensembles.md``:

* **Labels** are keyed by ``" ".join(label.split()).casefold()``; each keeps the first form seen in
  the batch (inputs in order, models in order, list order), with whitespace collapsed.
* **Answered or missing.** A prediction whose status is ``ok`` (any case; no status means ok)
  answered. Any other status (``error``), or no entry at all, is *missing*: it contributes nothing,
  and the input lists it in ``missing_models``.
* **Scores** per label ``c``; ``w_m`` are the weights of the models that answered the input (1 by
  default), renormalised over them; ``v_m(c)`` is ``p_m(c)`` if model ``m`` listed ``c``, otherwise
  the missing-label value below; ``k_m`` is the length of its list:

  ================  ===================================================================
  soft_vote         ``Σ w_m v_m(c) / Σ w_m``  (weights optional)
  weighted_mean     the same rule; weights required
  geometric_mean    ``exp(Σ w_m log max(v_m(c), floor) / Σ w_m)``, not renormalised
  max               ``max_m v_m(c)``  (no weights)
  majority_vote     ``Σ w_m [c is m's top-1] / Σ w_m``; ties broken by the soft-vote score
  borda             ``Σ w_m (k_m - rank_m(c) + 1)``; unlisted labels get 0 points
  rrf               ``Σ w_m / (rrf_k + rank_m(c))``; unlisted labels get 0
  ================  ===================================================================

* **Missing labels** (the probability methods, and the majority vote's tie-break):
  ``missing="zero"`` uses 0; ``missing="residual"`` spreads each model's residual mass
  ``r_m = 1 - Σ p_m`` evenly over the classes it did not list, ``r_m / (C - k_m)``. ``C`` is
  ``num_classes`` and has no default: the labels seen in a batch are only a lower bound on the
  model's class count (a top-5 service over ~10,000 classes would get ~25), which would inflate the
  spread by orders of magnitude and make one input's scores depend on the other inputs. Lists are
  never renormalised to sum to 1.
* **Ranking** over the labels listed for the input: score, then (majority vote) soft-vote score,
  then support, then the normalised label alphabetically. Scores equal to about 12 significant
  digits count as tied, so the order never hangs on floating-point summation order, nor on which
  other inputs share the batch.
* **Entropy** (nats) is of the ensemble vector renormalised to sum 1: the listed labels and, when
  ``num_classes`` is given, the ``C - n`` unlisted classes at the unlisted-label score (non-zero
  only with residual spreading or the geometric floor).
* **Provenance** (each model's own list, residual, status, message and source, per input) is on by
  default. ``provenance=False`` leaves it out: for large batches it is most of the output (five
  copies of the input for five models) and most of the time spent building it, and the caller
  already holds it. ``missing_models`` still names the models that failed or gave nothing.

The work is one pass over the input mappings into flat arrays (none for :func:`aggregate_arrays`),
then array operations over the listed entries and their candidates, where the candidates are the
labels listed for each input: the memory grows with the number of listed labels, never with inputs
times vocabulary. The array work goes a chunk of inputs at a time (about 16,000 listed labels), so
that its arrays stay small and their memory is reused. Only the results are Python objects, built
from whole columns at once.

Beyond fixed rules: :func:`fit` learns temperatures and weights from labelled inputs (a
:class:`Calibration` that ``aggregate(calibration=...)`` applies), :func:`cross_validate` scores
each fold with a fit on the others, ``method="dawid_skene"`` (:func:`dawid_skene`) weighs the
models without labels, and :func:`evaluate` measures accuracy, log loss, Brier score and
calibration error with bootstrap intervals. The modules: ``reading`` (predictions into arrays),
``parts`` (a chunk's entries and candidates), ``scoring`` (the combiners and the ranking),
``output`` (the result dicts), ``aggregation`` (the two entry points), ``calibration`` and
``log_linear`` (the fit), ``crossval``, ``dawid_skene`` and ``metrics``.
"""

from airflow_provider_oscar.ensemble.aggregation import aggregate, aggregate_arrays
from airflow_provider_oscar.ensemble.base import METHODS, MISSING, AbstainRule, EnsembleError
from airflow_provider_oscar.ensemble.calibration import Calibration, fit
from airflow_provider_oscar.ensemble.crossval import cross_validate
from airflow_provider_oscar.ensemble.dawid_skene import DawidSkeneFit, dawid_skene
from airflow_provider_oscar.ensemble.metrics import accuracy, evaluate

__all__ = [
    "METHODS",
    "MISSING",
    "AbstainRule",
    "Calibration",
    "DawidSkeneFit",
    "EnsembleError",
    "accuracy",
    "aggregate",
    "aggregate_arrays",
    "cross_validate",
    "dawid_skene",
    "evaluate",
    "fit",
]
