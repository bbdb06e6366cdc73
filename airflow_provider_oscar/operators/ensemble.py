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

    :param results: the upstream results (e.g. ``classify.output`` of a mapped
        :class:`~airflow_provider_oscar.operators.invoke.OscarRunServiceOperator`); each needs
        ``service``, ``input`` and ``prediction`` (``cluster`` too for several clusters). Failed
        upstream tasks leave no result: their models count as missing for that input.
    :param method: ``soft_vote``, ``weighted_mean``, ``geometric_mean``, ``max``,
        ``majority_vote``, ``borda`` or ``rrf``.
    :param weights: per model name, or per cluster id (applies to all that cluster's models).
    :param min_models: inputs answered by fewer models fail the task; others are aggregated and
        the missing models recorded.
    :param abstain: thresholds ``{"min_margin", "min_vote_share", "min_top_score"}``.
    :param truth: known label per input: per-model and ensemble accuracy are reported.
    :param report_object: also write the full JSON report to this ``bucket/key``.
    """

    template_fields = ("results", "weights", "truth", "report_object", "oscar_conn_id")
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
        truth: Mapping[str, str] | None = None,
        report_object: str | None = None,
        oscar_conn_id: str = OscarHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        self.report_object = report_object
        self.oscar_conn_id = oscar_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_oscar.ensemble import AbstainRule, EnsembleError, aggregate  # numpy

        results = [r for r in _flatten(self.results) if r]
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
        try:
            consensus = aggregate(
                by_input,
                method=self.method,
                models=models,
                weights=self._weights(results, names),
                top_k=self.top_k,
                missing=self.missing,
                floor=self.floor,
                rrf_k=self.rrf_k,
                num_classes=self.num_classes,
                min_models=self.min_models,
                abstain=AbstainRule(**self.abstain),
            )
        except (EnsembleError, TypeError) as exc:
            raise AirflowFailException(f"aggregation failed: {exc}") from exc
        report = self._report(consensus, models)
        self._log_summary(report)
        if self.report_object:
            with task_outcome():
                OscarStorageHook(self.oscar_conn_id).upload_bytes(
                    self.report_object,
                    json.dumps(report, indent=2).encode(),
                    content_type="application/json",
                    create_bucket=True,
                )
            report["report_object"] = self.report_object
        return report

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

    def _report(self, consensus: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
        method = consensus[0]["method"] if consensus else {}
        inputs = [{k: v for k, v in r.items() if k != "method"} for r in consensus]
        report: dict[str, Any] = {
            "method": method,
            "models": models,
            "inputs": inputs,
            "abstained": sum(r["abstained"] for r in consensus),
            "incomplete": sum(bool(r["missing_models"]) for r in consensus),
        }
        if self.truth:
            from airflow_provider_oscar.ensemble import accuracy

            report["truth"] = dict(self.truth)
            report["accuracy"] = accuracy(consensus, self.truth)
        return report

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
        if "accuracy" in report:
            self.log.info("accuracy: %s", report["accuracy"])


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
