"""What an OSCAR answer becomes in a task's result, by ``decode`` mode; nothing is lost.

The answer is a synchronous body or a job's log (which ends with the same answer): base64 of
one output file or of a zip of several, or the console text (see
:func:`~airflow_provider_oscar.results.decode_run_body`).

* ``"auto"`` (the default): a prediction when the answer parses as one; otherwise the console
  text; otherwise the output files (saved where the operator says, or kept in the result);
* ``"prediction"``: the answer must be a prediction; when it is not, the error names what was
  expected and carries the raw output, which the operator saves before failing;
* ``"text"``: the output (file or console) as text; ``"files"``: the files; ``"none"``: nothing.

A model answering ``{"status": "error"}`` parsed as a prediction: it raises
:class:`~airflow_provider_oscar.errors.OscarModelError` with the model's message.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_oscar.errors import OscarResultError
from airflow_provider_oscar.results import RunOutput, decode_prediction, decode_run_body

__all__ = ["DECODES", "Answer", "Decode", "UnexpectedOutput", "files_of", "read_answer"]

Decode = Literal["auto", "prediction", "text", "files", "none"]
DECODES: tuple[str, ...] = ("auto", "prediction", "text", "files", "none")
TEXT_LIMIT = 1 << 20  # characters of text kept in a result (larger ones are marked truncated)


class UnexpectedOutput(OscarResultError):
    """The answer is not what ``decode`` expected; ``files`` is the raw output, to be saved."""

    def __init__(self, message: str, files: Mapping[str, bytes], several: bool) -> None:
        super().__init__(message)
        self.files = dict(files)
        self.several = several


@dataclass
class Answer:
    """The result's fields, and the output files the operator should save."""

    fields: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    several: bool = False  # the files came in a zip (they keep their relative names)


def files_of(output: RunOutput) -> dict[str, bytes]:
    """The output as named files (``output`` for one file, ``output.txt`` for console text)."""
    if output.kind == "archive":
        return dict(output.files)
    if output.kind == "file":
        return {"output": output.data or b""}
    return {"output.txt": (output.text or "").encode()}


def read_answer(body: bytes | str, decode: str, source: str | None = None) -> Answer:
    """Decode an answer as ``decode`` says (see the module)."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {', '.join(DECODES)}, not {decode!r}")
    if decode == "none":
        return Answer({})
    output = decode_run_body(body)
    files, several = files_of(output), output.kind == "archive"
    if decode in ("auto", "prediction"):
        try:
            prediction = decode_prediction(body, source=source)
        except OscarResultError as exc:
            if decode == "prediction":
                raise UnexpectedOutput(
                    f"expected a prediction document (status, labels, probabilities): {exc}",
                    files,
                    several,
                ) from None
        else:
            fields: dict[str, Any] = {"prediction": prediction.raise_for_status().to_dict()}
            return Answer(fields, files, several)
    if decode == "text" or (decode == "auto" and output.kind == "text"):
        text = (
            output.text
            if output.text is not None
            else (output.data or b"").decode("utf-8", "replace")
        )
        kept = {} if output.kind == "text" else files
        fields = {"text": text[:TEXT_LIMIT], "truncated": len(text) > TEXT_LIMIT}
        return Answer(fields, kept, several)
    return Answer({"files": {name: len(data) for name, data in files.items()}}, files, several)


def kept_inline(files: Mapping[str, bytes]) -> dict[str, str]:
    """Files no location was given for, as base64 text (so the result holds them)."""
    return {name: base64.b64encode(data).decode() for name, data in files.items()}
