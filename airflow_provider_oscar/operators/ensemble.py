"""``OscarEnsembleOperator``: combine the predictions of several models (and clusters) per input."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook


def model_names(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """A model name per result: its service, or ``cluster/service`` when clusters share names."""
    clusters: dict[str, set[str]] = {}
    for result in results:
        clusters.setdefault(result["service"], set()).add(result.get("cluster") or "")
    return [
        f"{r.get('cluster')}/{r['service']}" if len(clusters[r["service"]]) > 1 else r["service"]
        for r in results
    ]


class OscarEnsembleOperator(BaseOperator):
    """Aggregate the XCom results of upstream OSCAR invocations into a consensus per input.

    :param results: the upstream results: ``classify.output`` of a mapped
        :class:`~airflow_provider_oscar.operators.invoke.OscarRunServiceOperator` (each result
        needs ``service``, ``input`` and ``prediction``; ``cluster`` too for several clusters),
        or of :class:`~airflow_provider_oscar.operators.batch.OscarBatchInvokeOperator` tasks
        (their ``results``, or the JSON lines of their ``results_object``). Failed calls leave no
        prediction: their models count as missing for that input.
    :param method: ``soft_vote``, ``weighted_mean``, ``geometric_mean``, ``max``,
        ``majority_vote``, ``borda``, ``rrf`` or ``dawid_skene`` (no labels needed: each model's
        reliability is estimated from the batch and reported).
    :param weights: per model name, or per cluster id (applies to all that cluster's models).
    :param min_models: inputs answered by fewer models fail the task; others are aggregated and
        the missing models recorded.
    :param abstain: thresholds ``{"min_margin", "min_vote_share", "min_top_score"}``.
    :param truth: known label per input (a mapping, or a ``bucket/key`` JSON object): the report
        gets each model's and the ensemble's accuracy, log loss, Brier score, calibration error
        and abstention figures with bootstrap intervals (``evaluation``).
    :param fit_on: labelled inputs to fit a calibration on (temperatures, weights: see
        :func:`~airflow_provider_oscar.ensemble.fit`): input id → label, inline, from XCom or a
        ``bucket/key`` JSON object; their predictions come from ``results``.
    :param fit_options: keyword arguments of the fit: ``pool`` (``linear`` or ``log_linear``),
        ``weights`` (``caruana``, ``stacking``, ``equal``), ``rounds``.
    :param folds: input id → fold (or a ``bucket/key`` JSON object): with ``fit_on``, each
        fold's inputs are aggregated with a calibration fitted on the other folds only, so the
        evaluation is cross-validated; the calibration saved is fitted on all of ``fit_on``.
    :param calibration: a calibration saved by an earlier run (``bucket/key``) or its JSON, to
        apply instead of fitting.
    :param calibration_object: write the fitted calibration to this ``bucket/key``.
    :param report_object: also write the full JSON report to this ``bucket/key``.
    """

    template_fields = (
        "results",
        "weights",
        "truth",
        "fit_on",
        "folds",
        "calibration",
        "calibration_object",
        "report_object",
        "oscar_conn_id",
    )
    ui_color = "#e8f5d0"

    def __init__(
        self,
        *,
        results: Any,
        method: str = "soft_vote",
        weights: Mapping[str, float] | None = None,
        top_k: int = 5,
        missing: str = "zero",
        floor: float = 1e-6,
        rrf_k: float = 60.0,
        num_classes: int | None = None,
        min_models: int = 1,
        abstain: Mapping[str, float] | None = None,
        truth: Mapping[str, str] | str | None = None,
        fit_on: Mapping[str, str] | str | None = None,
        fit_options: Mapping[str, Any] | None = None,
        folds: Mapping[str, Any] | str | None = None,
        calibration: Mapping[str, Any] | str | None = None,
        calibration_object: str | None = None,
        report_object: str | None = None,
        oscar_conn_id: str = OscarHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fit_on is not None and calibration is not None:
            raise ValueError("give fit_on (fit a calibration) or calibration (load one), not both")
        if folds is not None and fit_on is None:
            raise ValueError("folds cross-validate a fit: give fit_on too")
        self.results = results
        self.method = method
        self.weights = weights
        self.top_k = top_k
        self.missing = missing
        self.floor = floor
        self.rrf_k = rrf_k
        self.num_classes = num_classes
        self.min_models = min_models
        self.abstain = dict(abstain or {})
        self.truth = truth
        self.fit_on = fit_on
        self.fit_options = dict(fit_options or {})
        self.folds = folds
        self.calibration = calibration
        self.calibration_object = calibration_object
        self.report_object = report_object
        self.oscar_conn_id = oscar_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_oscar import ensemble  # numpy: not at parse time

        results = [r for r in self._flatten_all(self.results) if r]
        if not results:
            raise AirflowFailException("no upstream result arrived: nothing to aggregate")
        names = model_names(results)
        by_input: dict[str, dict[str, Any]] = {}
        for name, result in zip(names, results, strict=True):
            if "prediction" not in result or "input" not in result:
                raise AirflowFailException(
                    f"result of {name} has no 'prediction' or 'input': {sorted(result)}"
                )
            by_input.setdefault(str(result["input"]), {})[name] = result["prediction"]
        models = list(dict.fromkeys(names))
        truth = self._mapping(self.truth, "truth")
        options: dict[str, Any] = {
            "models": models,
            "top_k": self.top_k,
            "min_models": self.min_models,
            "abstain": ensemble.AbstainRule(**self.abstain),
        }
        try:
            plain = ensemble.aggregate(
                by_input,
                method=self.method,
                weights=self._weights(results, names),
                missing=self.missing,
                floor=self.floor,
                rrf_k=self.rrf_k,
                num_classes=self.num_classes,
                **options,
            )
            consensus, calibration = self._calibrated(ensemble, by_input, options)
        except (ensemble.EnsembleError, TypeError) as exc:
            raise AirflowFailException(f"aggregation failed: {exc}") from exc
        report = self._report(consensus or plain, models, truth, calibration)
        if consensus and truth:
            report["baseline"] = self._evaluate(ensemble, plain, truth)["ensemble"]
        self._log_summary(report)
        self._save(report)
        return report

    # calibration ----------------------------------------------------------------------------

    def _calibrated(
        self, ensemble: Any, by_input: dict[str, dict[str, Any]], options: dict[str, Any]
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """The calibrated results and what the report says of the calibration (or Nones)."""
        if self.calibration is not None:
            source = self.calibration
            saved = self._mapping(source, "calibration")
            results = ensemble.aggregate(by_input, calibration=saved, **options)
            where = source if isinstance(source, str) else None
            return results, {"source": "loaded", "object": where, **_summary(saved)}
        if self.fit_on is None:
            return None, None
        labelled = self._mapping(self.fit_on, "fit_on")
        unknown = sorted(set(labelled) - set(by_input))
        if unknown:
            raise ensemble.EnsembleError(
                f"fit_on names inputs no model answered: {', '.join(unknown[:5])}"
            )
        fit_options = {"num_classes": self.num_classes, **self.fit_options}
        fitted = ensemble.fit(
            {i: by_input[i] for i in labelled}, labelled, models=options["models"], **fit_options
        ).to_json()
        described: dict[str, Any] = {"source": "fitted", "object": self.calibration_object}
        if self.folds is None:
            results = ensemble.aggregate(by_input, calibration=fitted, **options)
            return results, {**described, "in_sample": True, **_summary(fitted)}
        folds = self._mapping(self.folds, "folds")
        crossed = ensemble.cross_validate(
            by_input, labelled, folds, num_classes=self.num_classes, **self.fit_options, **options
        )
        for result in crossed["results"]:
            result["fold"] = result["method"].pop("fold")
        described["folds"] = {f: _summary(c) for f, c in crossed["calibrations"].items()}
        return crossed["results"], {**described, "in_sample": False, **_summary(fitted)}

    def _mapping(self, value: Any, what: str) -> dict[str, Any]:
        """A mapping given inline or from XCom, or read from a ``bucket/key`` JSON object."""
        if value is None:
            return {}
        if isinstance(value, str):
            with task_outcome():
                data = OscarStorageHook(self.oscar_conn_id).download_bytes(value)
            try:
                value = json.loads(data)
            except ValueError as exc:
                raise AirflowFailException(f"{what} object {value} is not JSON: {exc}") from exc
        if not isinstance(value, Mapping):
            raise AirflowFailException(f"{what} must be a JSON object, not {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    # report ---------------------------------------------------------------------------------

    def _weights(
        self, results: list[Mapping[str, Any]], names: list[str]
    ) -> dict[str, float] | None:
        if not self.weights:
            return None
        clusters = {name: r.get("cluster") for name, r in zip(names, results, strict=True)}
        unknown = set(self.weights) - set(names) - {c for c in clusters.values() if c}
        if unknown:
            raise AirflowFailException(
                f"weights name unknown models or clusters {sorted(unknown)}; "
                f"models are {sorted(set(names))}"
            )
        return {
            name: float(self.weights.get(name, self.weights.get(clusters[name] or "", 1.0)))
            for name in dict.fromkeys(names)
        }

    def _report(
        self,
        consensus: list[dict[str, Any]],
        models: list[str],
        truth: dict[str, Any],
        calibration: dict[str, Any] | None,
    ) -> dict[str, Any]:
        from airflow_provider_oscar import ensemble

        method = dict(consensus[0]["method"]) if consensus else {}
        method.pop("calibration", None)
        inputs = [{k: v for k, v in r.items() if k != "method"} for r in consensus]
        report: dict[str, Any] = {
            "method": method,
            "models": models,
            "inputs": inputs,
            "abstained": sum(r["abstained"] for r in consensus),
            "incomplete": sum(bool(r["missing_models"]) for r in consensus),
        }
        if calibration is not None:
            report["calibration"] = calibration
        if truth:
            report["truth"] = {k: str(v) for k, v in truth.items()}
            report["accuracy"] = ensemble.accuracy(consensus, report["truth"])
            report["evaluation"] = self._evaluate(ensemble, consensus, report["truth"])
        return report

    def _evaluate(
        self, ensemble: Any, results: list[dict[str, Any]], truth: dict[str, str]
    ) -> dict[str, Any]:
        """The evaluation, with every candidate in view (the top-k may hide the true label)."""
        listed = [r for r in results if r["input"] in truth]
        if not listed:
            return {}
        try:
            return ensemble.evaluate(listed, truth, num_classes=self.num_classes)
        except ensemble.EnsembleError as exc:
            self.log.warning("no evaluation: %s", exc)
            return {}

    def _save(self, report: dict[str, Any]) -> None:
        calibration = report.get("calibration") or {}
        with task_outcome():
            storage = OscarStorageHook(self.oscar_conn_id)
            if self.calibration_object and calibration.get("source") == "fitted":
                storage.upload_bytes(
                    self.calibration_object,
                    json.dumps(calibration["fit"], indent=2).encode(),
                    content_type="application/json",
                    create_bucket=True,
                )
            if self.report_object:
                report["report_object"] = self.report_object
                storage.upload_bytes(
                    self.report_object,
                    json.dumps(report, indent=2).encode(),
                    content_type="application/json",
                    create_bucket=True,
                )

    def _log_summary(self, report: dict[str, Any]) -> None:
        winners = Counter(r["winner"] for r in report["inputs"])
        self.log.info(
            "aggregated %d inputs from %d models with %s: %s; %d abstained, %d incomplete",
            len(report["inputs"]),
            len(report["models"]),
            report["method"].get("combiner"),
            dict(winners),
            report["abstained"],
            report["incomplete"],
        )
        if "calibration" in report:
            fit = report["calibration"]["fit"]
            self.log.info(
                "calibration %s (%s pool): %s",
                report["calibration"]["source"],
                fit.get("pool"),
                {m: round(v["weight"], 3) for m, v in fit["models"].items()},
            )
        if "accuracy" in report:
            self.log.info("accuracy: %s", report["accuracy"])

    # upstream results -------------------------------------------------------------------------

    def _flatten_all(self, results: Any) -> Iterable[Mapping[str, Any]]:
        """Per-call results, and the records of batch results (read from storage if need be)."""
        for item in _flatten(results):
            if "service" in item and ("results" in item or "results_object" in item):
                yield from self._batch_records(item)
            else:
                yield item

    def _batch_records(self, batch: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
        records: Iterable[Any] = batch.get("results") or ()
        if "results_object" in batch:
            with task_outcome():
                text = OscarStorageHook(self.oscar_conn_id).download_bytes(batch["results_object"])
            records = (json.loads(line) for line in text.decode().splitlines() if line.strip())
        for record in records:
            if record.get("prediction") is not None:
                yield {
                    "service": batch["service"],
                    "input": record["input"],
                    "prediction": record["prediction"],
                }


def _summary(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """What a report shows of a calibration: the fit itself (JSON-plain) and its pool."""
    return {"pool": calibration.get("pool", "linear"), "fit": dict(calibration)}


def _flatten(results: Any) -> Iterable[Mapping[str, Any]]:
    """Upstream results: a list (of lists, for several mapped tasks) of result dicts."""
    if isinstance(results, Mapping):
        yield results
        return
    if results is None:
        return
    # Index instead of iterating: a lazy XCom sequence finds its end by a failing lookup.
    for item in (results[i] for i in range(len(results))):
        if isinstance(item, Mapping) or item is None:
            yield item or {}
        else:
            yield from _flatten(item)
