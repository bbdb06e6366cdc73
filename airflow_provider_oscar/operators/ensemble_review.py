"""``OscarEnsembleReviewOperator``: a person settles the inputs the ensemble abstained on.

Built on Airflow's human-in-the-loop operator (``HITLOperator`` of the standard provider, Airflow
3.1+): one request lists every doubtful input with each model's answer and the consensus, and
asks for a label per input (a form field each, ``abstain`` by default). The answer, given in the
Required Actions page or through the REST API (``PATCH .../taskInstances/{task}/{map_index}/
hitlDetails``), is recorded in the task's result and in the ensemble's report object; a request
nobody answers within ``review_timeout_seconds`` takes the defaults, so every doubt stays
abstained. On Airflow 3.3+ the task waits in the ``awaiting_input`` state and the scheduler
enforces the timeout; before, it defers to ``HITLTrigger``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.definitions.param import ParamsDict

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook

KEEP = "abstain"  # a form field's default: the input stays abstained
RECORD = "Record these labels"


class OscarEnsembleReviewOperator(HITLOperator):
    """Ask a person for the label of each input an ensemble report abstained on.

    :param report: the ``OscarEnsembleOperator`` report (its XCom).
    :param review_timeout_seconds: how long to wait for an answer (templated: e.g.
        ``"{{ params.review_timeout_seconds }}"``); then every doubt stays abstained.
    :param max_inputs: at most this many doubts per request (the most doubtful first, by margin).

    Returns ``{"asked", "reviewed", "timed_out", "responded_by", "reviews": {input: {"label",
    "status": "reviewed" | "abstained", "by", "at"}}}`` and adds ``reviews`` (and each input's
    ``review``) to the report object when the report has one.
    """

    template_fields = (*HITLOperator.template_fields, "report", "review_timeout_seconds")

    def __init__(
        self,
        *,
        report: Any,
        review_timeout_seconds: float | str = 3600,
        max_inputs: int = 50,
        oscar_conn_id: str = OscarHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Inputs the ensemble could not decide")
        super().__init__(options=[RECORD], defaults=[RECORD], **kwargs)
        self.report = report
        self.review_timeout_seconds = review_timeout_seconds
        self.max_inputs = max_inputs
        self.oscar_conn_id = oscar_conn_id

    def execute(self, context: Any) -> Any:
        doubts = self._doubts()
        if not doubts:
            self.log.info("the ensemble abstained on no input: nothing to review")
            return _outcome({}, 0, timed_out=False, by=None)
        try:
            seconds = float(self.review_timeout_seconds)
        except (TypeError, ValueError):
            raise AirflowFailException(
                f"review_timeout_seconds must be a number, got {self.review_timeout_seconds!r}"
            ) from None
        self.response_timeout = timedelta(seconds=seconds)
        self.subject = f"{len(doubts)} input(s) the ensemble could not decide"
        self.body = _body(doubts, self._models())
        self.params = ParamsDict(_form(doubts))
        self.log.info("asking for %d label(s), waiting up to %s s", len(doubts), seconds)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context, event)
        by = answer.get("responded_by_user")
        at = answer["responded_at"].isoformat() if answer.get("responded_at") else None
        reviews = {}
        for item in self._doubts():
            label = (answer.get("params_input") or {}).get(item["input"], KEEP)
            chosen = label not in (None, "", KEEP)
            reviews[item["input"]] = {
                "label": label if chosen else None,
                "status": "reviewed" if chosen else "abstained",
                "by": (by or {}).get("name") if chosen and by else None,
                "at": at if chosen else None,
            }
        timed_out = bool(event.get("timedout")) or by is None
        outcome = _outcome(reviews, len(reviews), timed_out=timed_out, by=by)
        self._record(outcome)
        return outcome

    def _doubts(self) -> list[Mapping[str, Any]]:
        report = self.report if isinstance(self.report, Mapping) else {}
        doubts = [i for i in report.get("inputs") or () if i.get("abstained")]
        doubts.sort(key=lambda item: item.get("margin") or 0.0)
        return doubts[: self.max_inputs]

    def _models(self) -> list[str]:
        report = self.report if isinstance(self.report, Mapping) else {}
        return [str(m) for m in report.get("models") or ()]

    def _record(self, outcome: dict[str, Any]) -> None:
        """Add the reviews to the ensemble's report object, if it wrote one."""
        report = self.report if isinstance(self.report, Mapping) else {}
        key = report.get("report_object")
        if not key:
            return
        with task_outcome():
            storage = OscarStorageHook(self.oscar_conn_id)
            saved = json.loads(storage.download_bytes(key))
            saved["reviews"] = outcome
            for item in saved.get("inputs") or ():
                if item["input"] in outcome["reviews"]:
                    item["review"] = outcome["reviews"][item["input"]]
            storage.upload_bytes(
                key, json.dumps(saved, indent=2).encode(), content_type="application/json"
            )
        outcome["report_object"] = key


def _outcome(reviews: dict[str, Any], asked: int, *, timed_out: bool, by: Any) -> dict[str, Any]:
    return {
        "asked": asked,
        "reviewed": sum(r["status"] == "reviewed" for r in reviews.values()),
        "timed_out": timed_out,
        "responded_by": (by or {}).get("name") if by else None,
        "reviews": reviews,
    }


def _form(doubts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A form field per doubtful input: its candidate labels, or ``abstain``."""
    from airflow.sdk import Param

    fields = {}
    for item in doubts:
        labels = list(item.get("top_k", {}).get("labels") or [])
        for own in item.get("provenance") or ():
            labels += [x for x in own.get("labels") or () if x not in labels]
        fields[str(item["input"])] = Param(
            KEEP,
            type="string",
            enum=[KEEP, *labels],
            title=str(item["input"]),
            description=f"consensus {item.get('winner')} (margin {item.get('margin', 0):.3f})",
        )
    return fields


def _body(doubts: list[Mapping[str, Any]], models: list[str]) -> str:
    """A Markdown table: each doubtful input, each model's top answer, the consensus."""
    header = ["input", *models, "consensus", "why"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for item in doubts:
        own = {p["model"]: p for p in item.get("provenance") or ()}
        cells = [str(item["input"])]
        for model in models:
            answer = own.get(model) or {}
            if answer.get("labels"):
                cells.append(f"{answer['labels'][0]} ({answer['probabilities'][0]:.2f})")
            else:
                cells.append(str(answer.get("status") or "missing"))
        scores = item.get("top_k", {}).get("scores") or [0.0]
        cells += [f"{item.get('winner')} ({scores[0]:.2f})", ", ".join(item["abstain_reasons"])]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "The ensemble abstained on these inputs. Pick each one's label, or leave "
        f"`{KEEP}`.\n\n" + "\n".join(lines)
    )
