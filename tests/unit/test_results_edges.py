"""Edges of result decoding: exact error messages, boundaries, and what is kept or dropped.

Complements test_results.py: each test pins one thing a user sees (the decoded prediction, the
message naming what was wrong, the log lines stripped from a body) at the edge where it changes.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest

from airflow_provider_oscar.errors import OscarResultError
from airflow_provider_oscar.prediction import EXCERPT_CHARS, excerpt
from airflow_provider_oscar.results import (
    Prediction,
    decode_prediction,
    decode_run_body,
    normalise_prediction,
    parse_document,
)

FLAT = {"status": "OK", "labels": ["Rosa canina", "Hedera helix"], "probabilities": [0.7, 0.2]}
RECORD = "2026-05-04 09:36:53,123 - supervisor - INFO - Creating response"
MIB = 1 << 20


def error_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(OscarResultError) as error:
        call(*args, **kwargs)
    return str(error.value)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data) + b"\n"


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# --- the Prediction constructor names the broken invariant ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": (1,), "probabilities": (0.5,)}, "labels must be a tuple of strings"),
        ({"labels": ("a",), "probabilities": (1,)}, "probabilities must be a tuple of floats"),
        ({"labels": ("a",), "probabilities": [0.5]}, "probabilities must be a tuple of floats"),
        ({"labels": ("a", "b"), "probabilities": (0.5,)}, "2 labels but 1 probabilities"),
        (
            {"labels": ("a",), "probabilities": (0.5,), "status": "error"},
            "a prediction with status 'error' has no labels",
        ),
        ({"labels": (), "probabilities": ()}, "no labels in a prediction with status 'ok'"),
    ],
    ids=["label-type", "int-probability", "list-of-probabilities", "lengths", "error", "empty"],
)
def test_prediction_constructor_says_exactly_which_invariant_fails(
    kwargs: dict[str, Any], message: str
) -> None:
    assert error_of(Prediction, **kwargs) == message


def test_a_probability_or_a_sum_of_exactly_one_plus_the_tolerance_is_accepted() -> None:
    # float32 scores rounded up by one millionth are still probabilities.
    top = 1.0 + 1e-6

    assert Prediction(("Rosa canina",), (top,)).probabilities == (top,)


# --- normalise_prediction: which shape was wrong, and where ------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"labels": ["a"], "probabilities": [1.0]}, "document has no string 'status'"),
        (
            {"status": "OK", "probabilities": [1.0]},
            "document needs both 'labels' and 'probabilities'",
        ),
        (
            {"status": "OK", "labels": "Rosa canina", "probabilities": [1.0]},
            "'labels' must be a list, not str",
        ),
        (
            {"status": "OK", "labels": ["Rosa canina"], "probabilities": 1.0},
            "'probabilities' must be a list, not float",
        ),
        (
            {"status": "OK", "predictions": {"labels": ["a"], "probabilities": 1.0}},
            "'predictions' 'probabilities' must be a list, not float",
        ),
        (
            {"status": "OK"},
            "document has neither 'labels' and 'probabilities' nor a 'predictions' dict or list",
        ),
        (
            {"status": "OK", "labels": ["a", 7], "probabilities": [0.5, 0.2]},
            "label 1 must be a string, not int",
        ),
        (
            {"status": "OK", "labels": ["a", "b"], "probabilities": [0.5, "high"]},
            "probability 1 must be a number, not str",
        ),
        (
            {"status": "OK", "labels": ["a"], "probabilities": [json.loads("1" + "0" * 400)]},
            "probability 0 is outside [0, 1]",
        ),
    ],
    ids=[
        "no-status",
        "probabilities-only",
        "labels-str",
        "probabilities-float",
        "nested-probabilities-float",
        "no-lists",
        "label-int",
        "probability-str",
        "probability-overflow",
    ],
)
def test_malformed_document_error_starts_with_the_exact_problem(
    document: dict[str, Any], message: str
) -> None:
    error = error_of(normalise_prediction, document)

    assert error.startswith(f"{message}: {{")  # then an excerpt of the document


def test_a_message_next_to_an_ok_prediction_is_kept() -> None:
    document = {**FLAT, "message": "2 of 1081 classes shown"}

    assert normalise_prediction(document).message == "2 of 1081 classes shown"


def test_a_message_nested_too_deeply_to_show_is_named_by_its_type() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]

    prediction = normalise_prediction({"status": "error", "message": deep})

    assert prediction.message == "<list nested too deeply to show>"


# --- Prediction.from_dict ----------------------------------------------------------------------


def test_from_dict_with_unknown_keys_shows_the_data() -> None:
    data = {"status": "ok", "labels": ["a"], "probabilities": [1.0], "colour": "red"}

    error = error_of(Prediction.from_dict, data)

    assert error.endswith(f": {excerpt(data)}")
    assert "'colour': 'red'" in error


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("labels", "Rosa canina", "'labels' must be a list, not str"),
        ("probabilities", [0.5, "0.2"], "probability 1 must be a number, not str"),
    ],
)
def test_from_dict_names_the_malformed_field(field: str, value: Any, message: str) -> None:
    data = {"status": "ok", "labels": ["a", "b"], "probabilities": [0.5, 0.2], field: value}

    assert error_of(Prediction.from_dict, data) == message


# --- excerpts in error messages ----------------------------------------------------------------


def test_an_excerpt_keeps_a_text_of_the_limit_whole_and_cuts_a_longer_one() -> None:
    text = "".join(f"{index:04d}" for index in range(100))  # 400 distinct-looking characters

    assert excerpt(text[:EXCERPT_CHARS]) == repr(text[:EXCERPT_CHARS])
    # 120 characters of head, 77 of tail: 200 in all with the separator.
    assert excerpt(text) == repr(f"{text[:120]} … {text[-77:]}")


# --- decode_run_body: what is stripped -------------------------------------------------------


def test_a_body_of_log_records_only_is_empty_console_text() -> None:
    for body in (RECORD, RECORD + "\n", f"\n{RECORD}\n{RECORD}"):
        output = decode_run_body(body)

        assert (output.kind, output.text) == ("text", "")


@pytest.mark.parametrize("prefix", [" ", "\t", "X", "> "])
def test_a_log_like_line_not_at_the_start_of_the_body_is_console_output(prefix: str) -> None:
    body = f"{prefix}{RECORD}\nDone\n"

    assert decode_run_body(body).text == body.removesuffix("\n")


# --- parse_document: exact problems ------------------------------------------------------------


def test_an_empty_document_is_named_so() -> None:
    assert error_of(parse_document, b"\xef\xbb\xbf \n") == "empty document"


def test_undecodable_bytes_are_shown_in_the_error() -> None:
    data = b'{"status": "\xff"}'

    error = error_of(parse_document, data)

    assert error == f"document is not UTF-8 text (invalid start byte at byte 12): {excerpt(data)}"


def test_a_byte_order_mark_before_a_document_of_the_whole_text_is_dropped() -> None:
    # Braces inside strings only parse when the document is the whole text: the BOM is not text.
    document = {"status": "error", "message": "bad {input} }"}

    assert parse_document("\ufeff" + json.dumps(document)) == document


def test_the_error_quotes_the_text_as_given() -> None:
    error = error_of(parse_document, "XLA compilation failed\n")

    assert error == "no {...} document found: 'XLA compilation failed'"


def test_a_text_with_an_unclosed_brace_only_says_no_complete_document() -> None:
    error = error_of(parse_document, "config {top_K: 5")

    assert error == (
        "no complete {...} document found; unbalanced braces, the text looks truncated: "
        "'config {top_K: 5'"
    )


def test_a_dict_without_the_required_key_is_named_as_such() -> None:
    error = error_of(decode_prediction, "{'top_K': 5}\n")

    assert error.startswith("no {...} in the text parses as a document (a dict without 'status')")


def test_a_long_json_error_is_cut_to_eighty_characters_in_the_reason() -> None:
    text = "{" + " " * 100_000 + "status: OK}"
    reason = "Expecting property name enclosed in double quotes: line 1 column 100002 (char 100001)"

    error = error_of(parse_document, text)

    assert f"(not JSON: {reason[:80]}; not a Python literal: " in error


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    # 100,000 unary minus signs exhaust the Python parser, which raises a bare MemoryError.
    error = error_of(parse_document, "{'status': " + "-" * 100_000 + "1}")

    assert "; not a Python literal: MemoryError)" in error


@pytest.mark.parametrize("quote", ['"', "'"], ids=["json", "literal"])
def test_a_document_of_exactly_one_mebibyte_is_parsed(quote: str) -> None:
    head = f"{{{quote}status{quote}: {quote}error{quote}, {quote}message{quote}: {quote}"
    tail = f"{quote}}}"
    text = head + "x" * (MIB - len(head) - len(tail)) + tail
    assert len(text) == MIB

    assert parse_document(text)["status"] == "error"


def test_the_whole_text_is_read_as_a_literal_once() -> None:
    # 600 KiB that is neither JSON nor a literal: read once, it leaves budget for nothing else.
    text = "{'status': OK, 'pad': '" + "x" * 600_000 + "'}"

    error = error_of(parse_document, text)

    assert "candidates were not read" not in error
    assert error.startswith("no {...} in the text parses as a document (not JSON: ")


def test_a_skipped_candidate_is_added_to_the_problem_not_put_in_its_place() -> None:
    junk = "{'status': OK, 'pad': '" + "x" * 600_000 + "'}"

    error = error_of(parse_document, f"first {junk}\nsecond {junk}\n")

    assert error.startswith("no {...} in the text parses as a document (not JSON: ")
    assert f"; 1 candidates were not read as Python literals: a text gets {MIB} characters" in error


# --- tracebacks named in the error -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ending"),
    [
        (
            "Traceback (most recent call last):\n  File \"predict.py\", line 3\nKeyError: 'x'",
            "KeyError: 'x'",
        ),
        (
            "Traceback (most recent call last):\n\tFile predict.py, line 3\nValueError: bad",
            "ValueError: bad",
        ),
        (
            "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n",
            "RuntimeError: CUDA out of memory",
        ),
        (
            "Traceback (most recent call last):\n  File a.py\nOSError: first\n"
            "retrying\nTraceback (most recent call last):\n  File b.py\nMemoryError: second\n",
            "MemoryError: second",
        ),
    ],
    ids=["at-start", "tab-indented-frames", "no-frames", "last-of-two"],
)
def test_the_traceback_named_is_the_last_one_and_its_exception_line(text: str, ending: str) -> None:
    error = error_of(parse_document, text)

    assert error.startswith(
        f"no {{...}} document found; the output holds a Python traceback ending {ending!r}: "
    )


def test_a_traceback_cut_before_its_exception_is_not_named() -> None:
    text = 'Loading model\nTraceback (most recent call last):\n  File "predict.py", line 3'

    error = error_of(parse_document, text)

    assert error.startswith("no {...} document found: ")
    assert "holds a Python traceback" not in error


# --- decode_prediction: source and the names of zipped files -----------------------------------


def test_the_source_given_names_a_prediction_from_a_single_file_or_a_zip_member() -> None:
    document = json.dumps(FLAT).encode()
    single = b64(document)
    archive = b64(zipped({"out.json": document, "plot.png": b"\x89PNG"}))

    assert decode_prediction(single, source="rose.jpg").source == "rose.jpg"
    assert decode_prediction(archive, source="rose.jpg").source == "rose.jpg"
    assert decode_prediction(archive).source == "out.json"


def test_a_zip_without_exactly_one_json_file_lists_its_files() -> None:
    body = b64(zipped({"plot.png": b"\x89PNG", "labels.txt": b"Rosa canina"}))

    error = error_of(decode_prediction, body)

    assert error == (
        "expected exactly one .json file in the zipped output, found 0: ['labels.txt', 'plot.png']"
    )
