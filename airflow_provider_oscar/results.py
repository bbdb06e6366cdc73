"""Decode OSCAR outputs into files, documents and normalised predictions.

Pure functions over bytes and text, no Airflow and no I/O:

* :func:`decode_run_body` turns the body of a synchronous ``POST /run`` into a :class:`RunOutput`
  (one file, several files from a zip, or console text), dropping supervisor log lines;
* :func:`parse_document` reads one model document from text: strict JSON, a Python-literal dict
  (``deepaas-cli`` prints the ``repr`` with single quotes), or either embedded in console output;
* :func:`normalise_prediction` maps the DEEPaaS plant-classification shapes (flat, nested dict of
  lists, nested list of dicts, ``status: error``) onto one :class:`Prediction`
  (:mod:`~airflow_provider_oscar.prediction`);
* :func:`decode_prediction` and :func:`decode_predictions` chain the above for a sync body, or for
  output files downloaded from a bucket.

Malformed input raises :class:`~airflow_provider_oscar.errors.OscarResultError`, and nothing else.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_oscar.archives import unzip
from airflow_provider_oscar.errors import OscarResultError
from airflow_provider_oscar.prediction import (
    EXCERPT_CHARS,
    Prediction,
    PredictionStatus,
    excerpt,
    kind_of,
    normalise,
)

__all__ = [
    "Prediction",
    "PredictionStatus",
    "RunOutput",
    "decode_prediction",
    "decode_predictions",
    "decode_run_body",
    "normalise_prediction",
    "parse_document",
]


_MAX_DOCUMENT_CHARS = 1 << 20  # larger candidates are not parsed
_MAX_CANDIDATES = 64  # embedded {...} spans tried per text, last first
# ast.literal_eval takes about 2-4 s of CPU per MiB: per text, candidates share this budget.
_LITERAL_BUDGET_CHARS = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_BRACE = re.compile(r"[{}]")
# One record of the supervisor's logging format '%(asctime)s - %(name)s - %(levelname)s - ...'.
_LOG_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - supervisor - [A-Z]+ -(?: |\r?$)", re.MULTILINE
)
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class RunOutput:
    """The decoded body of a synchronous run; exactly one of ``data`` and ``text`` is set.

    ``data`` is the decoded base64 payload: the script's single output file (OSCAR sends no name
    for it) or the zip archive of several files, whose members are then in ``files`` by relative
    name. ``text`` is the console output of a script that left no file, without the supervisor's
    log lines and final newline.
    """

    data: bytes | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)
    text: str | None = None

    @property
    def kind(self) -> Literal["file", "archive", "text"]:
        """``"file"``, ``"archive"`` (several files) or ``"text"`` (console output)."""
        if self.text is not None:
            return "text"
        return "archive" if self.files else "file"


def decode_run_body(body: bytes | str) -> RunOutput:
    """Decode the body of a synchronous ``POST /run`` as OSCAR's supervisor builds it.

    The supervisor answers with base64 of the single output file, base64 of a zip when the script
    left several files, or the console output when it left none; unless the service logs at
    ``CRITICAL``, its log records precede that payload. The decision rule:

    1. If the body starts with a supervisor log record (``<time> - supervisor - <LEVEL> - ...``),
       everything up to the end of the last such record's first line is dropped, including the
       continuation lines of multi-line records in between.
    2. The rest, stripped of surrounding whitespace, is the base64 payload if it is non-empty,
       uses only the standard alphabet with correct ``=`` padding and no inner whitespace, and is
       exactly what ``base64.b64encode`` gives for the bytes it decodes to (canonical form).
       Otherwise it is console text (with the supervisor's final newline removed).
    3. Decoded bytes that start with the zip signature ``PK\\x03\\x04`` are unpacked into
       :attr:`RunOutput.files`; any other bytes are the single output file.

    Text containing a space, punctuation other than ``+/=`` or a line break is never taken for
    base64, so a document (``{...}``) always stays text. Two ambiguities are inherent to the
    protocol: console output that is a single base64-looking token whose length is a multiple of
    4 (``"Done"``) decodes as a file, and ``base64.b64encode(output.data)`` recovers it; a single
    output file that is itself a zip (``.zip``, ``.npz``, ``.docx``) is unpacked, and
    :attr:`RunOutput.data` still holds its bytes.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = _strip_supervisor_logs(text)
    data = _strict_base64(text.strip())
    if data is None:
        return RunOutput(text=text.removesuffix("\n"))
    if data.startswith(_ZIP_MAGIC):
        return RunOutput(data=data, files=unzip(data))
    return RunOutput(data=data)


def parse_document(data: bytes | str, *, required_key: str | None = None) -> dict[str, Any]:
    """Parse one model document (a dict with string keys) from text or UTF-8 bytes.

    The whole text is tried first; otherwise the outermost balanced ``{...}`` spans found in it
    (console output around the document, e.g. ``deepaas-cli predict`` logs) are tried from the
    last one backwards, and the first that parses (and has ``required_key``, when given) wins:
    DEEPaaS 2.x logs the model's answer as ``return: {...}`` among its other log lines and the
    model's own prints (ai4os/DEEPaaS v2.6.0 ``deepaas/cmd/cli.py`` ``main``), and the hub's
    service script prints the command line after it. Each candidate is read as strict JSON,
    then as a Python literal with :func:`ast.literal_eval` (quotes are never rewritten, so species
    names with apostrophes survive). Candidates over 1 MiB are not parsed, only the last 64
    spans are tried, and the candidates of one text get 1 MiB of Python-literal parsing between
    them (it is the slow part). Braces inside string values are only handled when the document
    is the whole text. A text holding a Python traceback and no document names the traceback's
    last line in the error.
    """
    text = _decode_utf8(data).lstrip("\ufeff").strip()
    if not text:
        raise OscarResultError("empty document")
    reasons: list[str] = []
    budget = _Search(required_key=required_key)
    if text.startswith("{"):
        document = _parse_candidate(text, reasons, budget)
        if document is not None:
            return document
    spans, unbalanced = _outermost_brace_spans(text)
    for start, end in reversed(spans[-_MAX_CANDIDATES:]):
        if (start, end) != (0, len(text)):
            document = _parse_candidate(text[start:end], reasons, budget)
            if document is not None:
                return document
    if not spans and "{" not in text:
        problem = "no {...} document found"
    elif not reasons:
        problem = "no complete {...} document found"
    else:
        problem = f"no {{...}} in the text parses as a document ({reasons[0]})"
    if unbalanced:
        problem += "; unbalanced braces, the text looks truncated"
    if budget.skipped:
        problem += (
            f"; {budget.skipped} candidates were not read as Python literals: a text gets "
            f"{_LITERAL_BUDGET_CHARS} characters of those"
        )
    traceback = _traceback_end(text)
    if traceback:
        problem += f"; the output holds a Python traceback ending {traceback!r}"
    raise OscarResultError(f"{problem}: {excerpt(text)}")


def normalise_prediction(document: Mapping[str, Any], *, source: str | None = None) -> Prediction:
    """Map one DEEPaaS classification document onto a :class:`Prediction`.

    Accepted shapes (``status`` compared case-insensitively):

    * flat, current: ``{"status": "OK", "labels": [...], "probabilities": [...]}``;
    * legacy nested dict of lists: ``{"status": "OK", "predictions": {"labels": [...],
      "probabilities": [...], "labels_info": ..., "links": ...}}``;
    * older nested list of dicts: ``{"status": "ok", "predictions": [{"label_id": ...,
      "label": ..., "probability": ..., "info": ...}, ...]}`` (``"probabilities"`` also accepted);
    * failure: ``{"status": "error", "message": ...}``, returned as a prediction with status
      ``"error"`` (call :meth:`Prediction.raise_for_status` to turn it into an exception).

    Labels are whitespace-normalised and pairs are sorted by descending probability; extra keys
    (``labels_info``, ``links``, ``info``, ``label_id``) are dropped.
    """
    try:
        return normalise(document, source)
    except OscarResultError as exc:
        raise OscarResultError(f"{exc}: {excerpt(document)}") from None


def decode_prediction(body: bytes | str, *, source: str | None = None) -> Prediction:
    """Decode a synchronous ``/run`` body holding one classification document.

    The document is the single output file, the only ``.json`` member of a zipped output, or the
    console text. ``source`` defaults to that member's name for zips. The result may have status
    ``"error"``; chain :meth:`Prediction.raise_for_status` to fail on it.
    """
    output = decode_run_body(body)
    if output.text is not None:
        document = parse_document(output.text, required_key="status")
        return normalise_prediction(document, source=source)
    if output.files:
        names = [name for name in output.files if name.lower().endswith(".json")]
        if len(names) != 1:
            raise OscarResultError(
                f"expected exactly one .json file in the zipped output, found {len(names)}: "
                f"{excerpt(sorted(output.files))}"
            )
        name = names[0]
        return _decode_file(name, output.files[name], name if source is None else source)
    assert output.data is not None  # a RunOutput without text has data
    return normalise_prediction(parse_document(output.data), source=source)


def decode_predictions(files: Mapping[str, bytes | str]) -> dict[str, Prediction]:
    """Decode several output files (zip members or bucket objects) into predictions by name.

    Each file must hold one document; its name becomes the prediction's ``source``. Errors name
    the file they come from.
    """
    return {name: _decode_file(name, content, name) for name, content in files.items()}


def _decode_file(name: str, content: bytes | str, source: str | None) -> Prediction:
    try:
        return normalise_prediction(parse_document(content), source=source)
    except OscarResultError as exc:
        raise OscarResultError(f"{name}: {exc}") from None


def _strip_supervisor_logs(text: str) -> str:
    """Drop the supervisor's log records that precede the payload (see decode_run_body)."""
    head = text.lstrip("\r\n")
    if not _LOG_RECORD.match(head):
        return text
    *_, last = _LOG_RECORD.finditer(head)
    newline = head.find("\n", last.end())
    return "" if newline < 0 else head[newline + 1 :]


def _strict_base64(payload: str) -> bytes | None:
    """Decode canonical, unwrapped standard base64, or return ``None``."""
    if not payload or len(payload) % 4 or not _BASE64.fullmatch(payload):
        return None
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    return data if base64.b64encode(data).decode("ascii") == payload else None


def _decode_utf8(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OscarResultError(
            f"document is not UTF-8 text ({exc.reason} at byte {exc.start}): {excerpt(data)}"
        ) from None


@dataclass
class _Search:
    """What one text has left of Python-literal parsing, in characters, and the key a
    document must have to count."""

    chars: int = _LITERAL_BUDGET_CHARS
    skipped: int = 0  # candidates left unread for want of it
    required_key: str | None = None


def _parse_candidate(candidate: str, reasons: list[str], budget: _Search) -> dict[str, Any] | None:
    """Parse one candidate as JSON, then as a Python literal; note why it failed in ``reasons``.

    Python-literal parsing spends from the text's ``budget``.
    """
    if len(candidate) > _MAX_DOCUMENT_CHARS:
        reasons.append(f"{len(candidate)} characters, over the {_MAX_DOCUMENT_CHARS} limit")
        return None
    value: Any
    try:
        value = json.loads(candidate)
    except (ValueError, RecursionError) as json_error:
        if len(candidate) > budget.chars:
            budget.skipped += 1
            reasons.append(f"not JSON: {_one_line(json_error)}; not read as a Python literal")
            return None
        budget.chars -= len(candidate)
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as literal_error:
            reasons.append(
                f"not JSON: {_one_line(json_error)}; not a Python literal: "
                f"{_one_line(literal_error)}"
            )
            return None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        reasons.append(f"parses to {kind_of(value)}, not a dict with string keys")
        return None
    if budget.required_key is not None and budget.required_key not in value:
        reasons.append(f"a dict without {budget.required_key!r}")
        return None
    return value


def _traceback_end(text: str) -> str | None:
    """The last line of the last Python traceback in ``text`` (the exception), if any."""
    start = text.rfind(_TRACEBACK)
    if start < 0:
        return None
    lines = text[start:].splitlines()[1:]
    ends = [line for line in lines if line.strip() and not line.startswith((" ", "\t"))]
    return ends[0].strip()[:EXCERPT_CHARS] if ends else None


def _outermost_brace_spans(text: str) -> tuple[list[tuple[int, int]], bool]:
    """Return the ``[start, end)`` spans of balanced ``{...}`` not nested in another, in order,
    and whether some ``{`` is never closed. String literals are not tracked."""
    spans: list[tuple[int, int]] = []
    open_at: list[int] = []
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            open_at.append(match.start())
        elif open_at:
            start = open_at.pop()
            while spans and spans[-1][0] > start:  # drop spans nested in this one
                spans.pop()
            spans.append((start, match.end()))
    return spans, bool(open_at)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:80] or type(error).__name__
