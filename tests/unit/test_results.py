"""Decoding OSCAR sync bodies, model documents and DEEPaaS plant-classification shapes."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import pickle
import re
import zipfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_oscar import archives, results
from airflow_provider_oscar.errors import OscarModelError, OscarResultError
from airflow_provider_oscar.results import (
    Prediction,
    decode_prediction,
    decode_predictions,
    decode_run_body,
    normalise_prediction,
    parse_document,
)

# --- realistic outputs -------------------------------------------------------------------------

SPECIES = [
    "Hedera helix 'Goldchild'",
    "Pieris japonica 'Forest Flame'",
    "Hedera helix",
    "Rosa canina",
    "Bellis perennis",
]
PROBABILITIES = [0.62, 0.21, 0.08, 0.03, 0.01]
EXPECTED = Prediction(labels=tuple(SPECIES), probabilities=tuple(PROBABILITIES))

FLAT = {"status": "OK", "labels": SPECIES, "probabilities": PROBABILITIES}
LEGACY_NESTED_DICT = {
    "status": "OK",
    "predictions": {
        "labels": SPECIES,
        "probabilities": PROBABILITIES,
        "labels_info": ["", "", "", "", ""],
        "links": {
            "Google Images": [f"https://www.google.es/search?tbm=isch&q={s}" for s in SPECIES],
            "Wikipedia": [f"https://en.wikipedia.org/wiki/{s}" for s in SPECIES],
        },
    },
}
OLDER_NESTED_LIST = {
    "status": "ok",
    "predictions": [
        {
            "label_id": index,
            "label": label,
            "probability": probability,
            "info": {
                "links": {"Google images": "https://images.example/", "Wikipedia": "https://w/"},
                "metadata": "",
            },
        }
        for index, (label, probability) in enumerate(zip(SPECIES, PROBABILITIES, strict=True))
    ],
}
MODEL_ERROR = {"status": "error", "message": "Unsupported image format: image/gif"}

LOG_TIME = "2026-05-04 09:36:53,123"
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def log_record(message: str, level: str = "INFO") -> str:
    return f"{LOG_TIME} - supervisor - {level} - {message}\n"


def supervisor_logs(level: str, console: str = "") -> str:
    """The records OSCAR's supervisor writes on stderr before its response, at ``level``."""
    event = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
    records = [
        ("DEBUG", f"EVENT received: {event}"),
        ("INFO", "SUPERVISOR: Initializing Binary supervisor"),
        ("INFO", "INPUT_FILE_PATH variable set to '/tmp/tmpk2x/event-file-0c6e7a'"),
        ("INFO", "Script file found in '/oscar/config/script.sh'"),
        ("DEBUG", "CONTAINER OUTPUT:\n "),
        *[("DEBUG", line) for line in console.splitlines()],
        ("INFO", "Creating response"),
    ]
    threshold = LEVELS.index(level)
    return "".join(log_record(msg, lvl) for lvl, msg in records if LEVELS.index(lvl) >= threshold)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def run_body(files: dict[str, bytes], console: str = "", log_level: str = "CRITICAL") -> bytes:
    """A ``/run`` body built like ``BinarySupervisor.create_response`` and the classic watchdog."""
    if len(files) == 1:
        payload = base64.b64encode(next(iter(files.values()))).decode()
    elif files:
        payload = base64.b64encode(zip_bytes(files)).decode()
    else:
        payload = console
    return (supervisor_logs(log_level, console) + payload + "\n").encode()


DEEPAAS_CONSOLE = (
    "2026-05-04 09:36:55.101: I tensorflow/core/platform/cpu_feature_guard.cc:193] This "
    "TensorFlow binary is optimized to use available CPU instructions {AVX2 FMA}\n"
    "INFO:deepaas:Loading model 'plants' (config {'top_K': 5\n"
    "WARNING:root:Model's warm-up skipped\n"
    f"{FLAT!r}\n"
    "Finished in 3.2 s\n"
)


# --- decode_run_body ---------------------------------------------------------------------------


def test_run_body_base64_of_one_file_decodes_to_that_file() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    output = decode_run_body(run_body({"plot.png": png}))

    assert output == results.RunOutput(data=png)
    assert output.kind == "file"


def test_run_body_base64_zip_decodes_into_files() -> None:
    files = {"output_a.json": json.dumps(FLAT).encode(), "plots/a.png": b"\x89PNG..."}

    output = decode_run_body(run_body(files))

    assert output.files == files
    assert output.kind == "archive"


def test_run_body_zip_keeps_the_archive_bytes_for_a_single_zip_file_output() -> None:
    archive = zip_bytes({"weights.npy": b"\x93NUMPY"})

    output = decode_run_body(base64.b64encode(archive) + b"\n")

    assert output.data == archive


def test_run_body_zip_directory_entries_are_skipped() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("plots/", b"")
        archive.writestr("plots/a.txt", b"a")

    output = decode_run_body(base64.b64encode(buffer.getvalue()))

    assert output.files == {"plots/a.txt": b"a"}


def test_run_body_plain_text_decodes_to_console_output() -> None:
    console = " _______\n< hello >\n -------\n        \\   ^__^\n"

    output = decode_run_body(run_body({}, console=console))

    assert output == results.RunOutput(text=console)
    assert output.kind == "text"


def test_run_body_is_accepted_as_str_as_well_as_bytes() -> None:
    body = run_body({"out.json": b"{}"})

    assert decode_run_body(body.decode()) == decode_run_body(body)


@pytest.mark.parametrize("level", LEVELS)
def test_run_body_supervisor_log_records_of_any_level_are_stripped(level: str) -> None:
    body = log_record("Something happened", level) + base64.b64encode(b"result").decode() + "\n"

    assert decode_run_body(body).data == b"result"


def test_run_body_debug_logs_with_multiline_records_and_script_lines_are_stripped() -> None:
    console = "Renaming input\nRunning deepaas-cli predict\n"

    body = run_body({"output.json": b'{"status": "OK"}'}, console=console, log_level="DEBUG")

    assert body.decode().startswith(f"{LOG_TIME} - supervisor - DEBUG - EVENT received")
    assert decode_run_body(body).data == b'{"status": "OK"}'


def test_run_body_info_logs_before_console_text_are_stripped() -> None:
    body = run_body({}, console="no output files\n", log_level="INFO")

    assert decode_run_body(body).text == "no output files\n"


def test_run_body_text_not_starting_with_a_log_record_is_kept_whole() -> None:
    console = "copying logs\n" + log_record("Creating response")

    assert decode_run_body(run_body({}, console=console)).text == console


@pytest.mark.parametrize(
    "text",
    ["All done", "QR==", "abc", "{'status': 'OK'}", "AAAA\nAAAA", "-_-_"],
    ids=[
        "words",
        "non-canonical-padding",
        "length-not-multiple-of-4",
        "dict",
        "wrapped",
        "urlsafe",
    ],
)
def test_run_body_that_is_not_strict_canonical_base64_stays_text(text: str) -> None:
    assert decode_run_body(text + "\n").text == text


def test_run_body_single_base64_looking_word_decodes_as_a_file_and_round_trips() -> None:
    output = decode_run_body(run_body({}, console="Done"))

    assert output.data is not None
    assert base64.b64encode(output.data) == b"Done"


def test_run_body_empty_is_empty_text() -> None:
    assert decode_run_body(b"\n") == results.RunOutput(text="")


def test_run_body_corrupt_zip_raises_result_error() -> None:
    corrupt = zip_bytes({"a.json": b"{}", "b.json": b"{}"})[:40]

    with pytest.raises(OscarResultError, match="zip archive but cannot be read"):
        decode_run_body(base64.b64encode(corrupt))


def test_run_body_zip_unpacking_beyond_the_limit_raises_result_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 100)
    body = run_body({"a.bin": bytes(80), "b.bin": bytes(80)})

    with pytest.raises(OscarResultError, match="unpacks to 160 bytes, over the 100-byte limit"):
        decode_run_body(body)


def test_a_zip_bomb_is_refused_before_any_member_is_inflated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("a.json", "b.json"):
            with archive.open(name, "w") as member:
                for _ in range(50):
                    member.write(bytes(1 << 20))  # 100 MiB of zeros in all
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    inflated: list[str] = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(
        zipfile.ZipFile,
        "read",
        lambda self, name, pwd=None: inflated.append(str(name)) or real_read(self, name, pwd),
    )
    with pytest.raises(OscarResultError, match=r"unpacks to 104857600 bytes, over 100 times"):
        decode_run_body(base64.b64encode(bomb))
    assert inflated == []


def test_a_stored_zip_of_many_megabytes_as_oscar_makes_them_is_accepted() -> None:
    files = {"a.bin": bytes(3 << 20), "b.json": b"{}"}  # ZIP_STORED, as the supervisor writes
    assert decode_run_body(run_body(files)).files == files


def test_a_zip_of_more_than_ten_thousand_files_is_refused() -> None:
    body = base64.b64encode(zip_bytes({f"f{i}": b"" for i in range(10_001)}))
    with pytest.raises(OscarResultError, match="holds 10001 files, over the limit of 10000"):
        decode_run_body(body)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "the name is empty"),
        (".", "'.' or '..' segment"),
        ("..", "'.' or '..' segment"),
        ("../escape.json", "'.' or '..' segment"),
        ("out/../../escape.json", "'.' or '..' segment"),
        ("./a.json", "'.' or '..' segment"),
        ("out//a.json", "empty, '.' or '..' segment"),
        ("/etc/cron.d/job", "absolute path"),
        ("C:/Windows/a.json", "absolute path"),
    ],
)
def test_zip_entries_that_name_no_file_to_save_are_refused_naming_them(
    name: str, problem: str
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok.json", b"{}")
        archive.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(OscarResultError, match="cannot be saved") as caught:
        decode_run_body(base64.b64encode(buffer.getvalue()))
    assert f"entry {name!r} cannot be saved" in str(caught.value)
    assert problem in str(caught.value)


def test_zip_entries_given_twice_or_as_file_and_folder_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.json", b"{}")
        archive.writestr("a.json", b"[]")
    with pytest.raises(OscarResultError, match=r"'a\.json' cannot be saved: it is in the archive"):
        decode_run_body(base64.b64encode(buffer.getvalue()))
    body = base64.b64encode(zip_bytes({"out": b"1", "out/a.json": b"{}"}))
    with pytest.raises(OscarResultError, match="'out' cannot be saved: it is a file and a folder"):
        decode_run_body(body)


# --- parse_document ----------------------------------------------------------------------------


def test_document_finder_reads_at_most_one_mebibyte_of_python_literals_per_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 64 spans of 256 KiB that are neither JSON nor Python literals: parsing each as a literal
    # costs about a second of CPU per MiB, so a text gets 1 MiB of that between its spans.
    junk = "{'k': [" + "1, " * 87_000 + "] 'not a literal'}"
    read: list[int] = []
    real_literal_eval = results.ast.literal_eval

    def counted(text: str) -> Any:
        read.append(len(text))
        return real_literal_eval(text)

    monkeypatch.setattr(results.ast, "literal_eval", counted)
    with pytest.raises(OscarResultError, match=r"; 60 candidates were not read as Python lit"):
        parse_document("\n".join([junk] * 64))
    assert 0 < sum(read) <= 1 << 20
    read.clear()
    assert parse_document("\n".join([junk] * 64 + [repr(FLAT)])) == FLAT  # the last span


def test_document_in_strict_json_parses() -> None:
    assert parse_document(json.dumps(FLAT)) == FLAT


def test_document_as_python_repr_keeps_apostrophes_in_species_names() -> None:
    text = repr(FLAT)
    assert "\"Hedera helix 'Goldchild'\"" in text and "'status': 'OK'" in text

    assert parse_document(text) == FLAT


def test_document_as_utf8_bytes_with_bom_parses() -> None:
    document = {"status": "OK", "labels": ["Lamium galeobdolon 'Florentinum'"], "message": "é"}

    assert parse_document(b"\xef\xbb\xbf" + json.dumps(document).encode()) == document


def test_document_embedded_in_deepaas_console_output_is_found() -> None:
    assert parse_document(DEEPAAS_CONSOLE) == FLAT


def test_document_after_an_unclosed_brace_in_a_log_line_is_found() -> None:
    assert parse_document("config {top_K: 5\n" + json.dumps(FLAT) + "\n") == FLAT


def test_document_last_of_several_embedded_documents_wins() -> None:
    text = f"{MODEL_ERROR!r}\nretrying\n{FLAT!r}\n"

    assert parse_document(text) == FLAT


def test_document_with_braces_inside_strings_parses_when_it_is_the_whole_text() -> None:
    document = {"status": "error", "message": "bad {input} }"}

    assert parse_document(json.dumps(document)) == document


def test_truncated_json_raises_result_error_saying_it_looks_truncated() -> None:
    text = '{"status": "OK", "labels": ["Rosa canina"'

    with pytest.raises(OscarResultError, match="unbalanced braces, the text looks truncated") as e:
        parse_document(text)
    assert "not JSON: Expecting ',' delimiter" in str(e.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty document"),
        ("Segmentation fault (core dumped)", "no {...} document found: 'Segmentation fault"),
        ("[0.1, 0.2]", "no {...} document found"),
        ("{1, 2}", "parses to set, not a dict with string keys"),
        ("{1: 'a'}", "parses to dict, not a dict with string keys"),
        ("{'status': OK}", "not a Python literal: malformed node"),
    ],
    ids=["empty", "no-braces", "list", "set", "int-keys", "bare-name"],
)
def test_text_without_a_document_raises_result_error_naming_the_problem(
    text: str, problem: str
) -> None:
    with pytest.raises(OscarResultError) as error:
        parse_document(text)

    assert problem in str(error.value)


def test_invalid_utf8_raises_result_error() -> None:
    with pytest.raises(OscarResultError, match=r"not UTF-8 text .* at byte 12"):
        parse_document(b'{"status": "\xff"}')


def test_document_over_one_mebibyte_is_not_parsed() -> None:
    text = "{'status': 'OK', 'message': '" + "x" * (1 << 20) + "'}"

    with pytest.raises(OscarResultError, match="over the 1048576 limit"):
        parse_document(text)


@pytest.mark.parametrize(
    "text",
    ["{'a': " + "-" * 100_000 + "1}", "{'a': " + "1+" * 100_000 + "1}", "{'a': " + "[" * 500 + "}"],
    ids=["memory-error", "recursion-error", "too-deep"],
)
def test_pathological_literal_raises_result_error(text: str) -> None:
    with pytest.raises(OscarResultError):
        parse_document(text)


def test_error_message_excerpt_stays_short() -> None:
    with pytest.raises(OscarResultError) as error:
        parse_document("x" * 10_000)

    assert len(str(error.value)) < 300


# --- normalise_prediction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [FLAT, LEGACY_NESTED_DICT, OLDER_NESTED_LIST],
    ids=["flat", "legacy-nested-dict", "older-nested-list"],
)
def test_every_deepaas_shape_normalises_to_the_same_prediction(document: dict[str, Any]) -> None:
    assert normalise_prediction(document) == EXPECTED


def test_older_nested_list_accepts_a_probabilities_key_per_item() -> None:
    items = [{"label": "Rosa canina", "probabilities": 0.9}]

    prediction = normalise_prediction({"status": "ok", "predictions": items})

    assert prediction == Prediction(("Rosa canina",), (0.9,))


@pytest.mark.parametrize("status", ["OK", "ok", "Ok", " ok "])
def test_status_is_compared_case_insensitively(status: str) -> None:
    assert normalise_prediction({**FLAT, "status": status}).ok


@pytest.mark.parametrize("status", ["error", "ERROR", "Error"])
def test_error_status_in_any_case_gives_an_error_prediction_with_the_message(status: str) -> None:
    prediction = normalise_prediction({**MODEL_ERROR, "status": status}, source="out.json")

    assert prediction == Prediction(
        (), (), "error", "Unsupported image format: image/gif", "out.json"
    )
    assert not prediction.ok


def test_error_prediction_raise_for_status_raises_model_error_with_the_message() -> None:
    prediction = normalise_prediction(MODEL_ERROR, source="output_x.json")

    with pytest.raises(OscarModelError, match=r"image/gif \[output_x.json\]") as error:
        prediction.raise_for_status()
    assert error.value.message == "Unsupported image format: image/gif"
    assert error.value.source == "output_x.json"


def test_ok_prediction_raise_for_status_returns_itself() -> None:
    assert EXPECTED.raise_for_status() is EXPECTED


def test_model_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(OscarModelError("out of memory", "a.json")))

    assert (error.message, error.source, str(error)) == (
        "out of memory",
        "a.json",
        "model returned status 'error': out of memory [a.json]",
    )


def test_unsorted_probabilities_are_sorted_descending_with_their_labels() -> None:
    document = {"status": "OK", "labels": ["b", "a", "c"], "probabilities": [0.1, 0.7, 0.1]}

    prediction = normalise_prediction(document)

    assert prediction.labels == ("a", "b", "c")
    assert prediction.probabilities == (0.7, 0.1, 0.1)


def test_label_whitespace_is_normalised() -> None:
    document = {"status": "OK", "labels": ["  Rosa \t canina\n"], "probabilities": [1]}

    assert normalise_prediction(document) == Prediction(("Rosa canina",), (1.0,))


@pytest.mark.parametrize(
    ("probabilities", "problem"),
    [
        ([0.7, 0.3 + 0.9e-6], None),  # float32 rounding: a sum just inside the 1e-6 tolerance
        ([0.7, 0.3 + 1.1e-6], "probabilities sum to 1.0000011"),  # just outside it
        ([1 + 0.9e-6], None),
        ([1 + 1.1e-6], "probability 1.0000011 of 'a' is outside [0, 1]"),
    ],
)
def test_the_tolerance_on_probabilities_ends_at_one_millionth(
    probabilities: list[float], problem: str | None
) -> None:
    document = {"status": "ok", "labels": ["a", "b"][: len(probabilities)]}
    document["probabilities"] = probabilities
    if problem is None:
        assert normalise_prediction(document).probabilities == tuple(probabilities)
    else:
        with pytest.raises(OscarResultError, match=re.escape(problem)):
            normalise_prediction(document)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({**FLAT, "probabilities": [0.5]}, "5 labels but 1 probabilities"),
        ({**FLAT, "labels": "Rosa canina"}, "'labels' must be a list, not str"),
        ({"status": "OK", "labels": ["a"]}, "needs both 'labels' and 'probabilities'"),
        ({"status": "OK", "labels": [3], "probabilities": [0.5]}, "label 0 must be a string"),
        ({"status": "OK", "labels": ["a"], "probabilities": ["0.5"]}, "must be a number, not str"),
        ({"status": "OK", "labels": ["a"], "probabilities": [True]}, "must be a number, not bool"),
        ({"status": "OK", "labels": ["a"], "probabilities": [1.5]}, "1.5 of 'a' is outside [0, 1]"),
        ({"status": "OK", "labels": ["a"], "probabilities": [-0.1]}, "is outside [0, 1]"),
        ({"status": "OK", "labels": ["a"], "probabilities": [float("nan")]}, "nan of 'a'"),
        ({"status": "OK", "labels": ["a", "b"], "probabilities": [0.6, 0.5]}, "sum to 1.1"),
        ({"status": "OK", "labels": ["a", " a"], "probabilities": [0.5, 0.4]}, "duplicate"),
        ({"status": "OK", "labels": [" "], "probabilities": [0.5]}, "'' is empty"),
        ({"status": "OK", "labels": [], "probabilities": []}, "no labels"),
        ({"labels": ["a"], "probabilities": [0.5]}, "no string 'status'"),
        ({**FLAT, "status": "pending"}, "unknown status 'pending'"),
        ({"status": "OK", "result": {}}, "neither 'labels' and 'probabilities' nor"),
        ({"status": "OK", "predictions": [{"probability": 0.5}]}, "item 0 is not a dict with"),
        ({"status": "OK", "predictions": [{"label": "a"}]}, "item 0 has no 'probability'"),
        ({"status": "OK", "predictions": {"labels": ["a"]}}, "'predictions' document needs"),
        ([FLAT], "a document must be a dict, not list"),
    ],
    ids=lambda value: None if isinstance(value, (dict, list)) else value,
)
def test_malformed_document_raises_result_error_naming_the_problem(
    document: Any, problem: str
) -> None:
    with pytest.raises(OscarResultError) as error:
        normalise_prediction(document)

    assert problem in str(error.value)
    assert repr(document)[:20] in str(error.value)  # with an excerpt of the document


# --- Prediction --------------------------------------------------------------------------------


def test_prediction_to_dict_is_json_plain_and_round_trips() -> None:
    prediction = normalise_prediction(FLAT, source="plants/output/output_rose.json")

    data = json.loads(json.dumps(prediction.to_dict()))

    assert data == {
        "status": "ok",
        "labels": SPECIES,
        "probabilities": PROBABILITIES,
        "message": None,
        "source": "plants/output/output_rose.json",
    }
    assert Prediction.from_dict(data) == prediction


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({**EXPECTED.to_dict(), "extra": 1}, "unknown keys ['extra']"),
        ({"status": "ok", "labels": []}, "missing keys ['probabilities']"),
        ({**EXPECTED.to_dict(), "status": "OK"}, "status must be 'ok' or 'error', not 'OK'"),
        ({**EXPECTED.to_dict(), "labels": [1, 2, 3, 4, 5]}, "labels must be a tuple of strings"),
        ({**EXPECTED.to_dict(), "probabilities": "0.5"}, "'probabilities' must be a list"),
        ({**EXPECTED.to_dict(), "source": 3}, "source must be a string or None"),
        ("ok", "must be a mapping, not str"),
    ],
    ids=["unknown-key", "missing-key", "raw-status", "label-type", "list-type", "source", "str"],
)
def test_prediction_from_dict_rejects_malformed_data(data: Any, problem: str) -> None:
    with pytest.raises(OscarResultError) as error:
        Prediction.from_dict(data)

    assert problem in str(error.value)


def test_prediction_constructor_rejects_unsorted_probabilities() -> None:
    with pytest.raises(OscarResultError, match="not in descending order"):
        Prediction(("a", "b"), (0.1, 0.2))


# --- decode_prediction / decode_predictions ----------------------------------------------------


def test_prediction_decodes_from_base64_of_one_json_file() -> None:
    body = run_body({"event-file-0c6e7a.json": json.dumps(LEGACY_NESTED_DICT).encode()})

    assert decode_prediction(body) == EXPECTED


def test_prediction_decodes_from_base64_of_one_python_repr_file_after_info_logs() -> None:
    body = run_body({"output_rose.json": repr(FLAT).encode()}, log_level="INFO")

    assert decode_prediction(body) == EXPECTED


def test_prediction_decodes_from_the_only_json_member_of_a_zip() -> None:
    body = run_body({"output_rose.json": repr(FLAT).encode(), "plot.png": b"\x89PNG"})

    prediction = decode_prediction(body)

    assert prediction.labels == EXPECTED.labels
    assert prediction.source == "output_rose.json"


def test_prediction_from_a_zip_with_two_json_members_raises_result_error() -> None:
    body = run_body({"a.json": json.dumps(FLAT).encode(), "b.JSON": json.dumps(FLAT).encode()})

    with pytest.raises(OscarResultError, match=r"exactly one \.json file .* found 2"):
        decode_prediction(body)


def test_prediction_decodes_from_console_text_after_debug_logs() -> None:
    body = run_body({}, console=DEEPAAS_CONSOLE, log_level="DEBUG")

    assert decode_prediction(body, source="plants-classification") == Prediction(
        EXPECTED.labels, EXPECTED.probabilities, source="plants-classification"
    )


def test_prediction_decoding_returns_a_model_error_as_an_error_prediction() -> None:
    body = run_body({"output.json": repr({**MODEL_ERROR, "status": "ERROR"}).encode()})

    prediction = decode_prediction(body)

    assert prediction.status == "error"
    with pytest.raises(OscarModelError, match="Unsupported image format"):
        prediction.raise_for_status()


def test_prediction_decoding_of_an_undecodable_member_names_it() -> None:
    body = run_body({"output.json": b'{"status": "OK", "labels": [', "log.txt": b"done"})

    with pytest.raises(OscarResultError, match=r"^output\.json: .*truncated"):
        decode_prediction(body)


def test_predictions_decode_each_file_with_its_name_as_source() -> None:
    files = {
        "out/output_rose.json": repr(FLAT).encode(),
        "out/output_ivy.json": json.dumps(MODEL_ERROR).encode(),
    }

    predictions = decode_predictions(files)

    assert predictions["out/output_rose.json"].source == "out/output_rose.json"
    assert predictions["out/output_rose.json"].labels == EXPECTED.labels
    assert predictions["out/output_ivy.json"].status == "error"


def test_predictions_error_names_the_file() -> None:
    files = {"out/ok.json": json.dumps(FLAT).encode(), "out/bad.json": b"Traceback (most recent"}

    with pytest.raises(OscarResultError, match=r"^out/bad\.json: no \{\.\.\.\} document found"):
        decode_predictions(files)


# --- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
documents = st.fixed_dictionaries(
    {"status": st.sampled_from(["OK", "ok", "error", "ERROR", "weird"]) | json_values},
    optional={
        "labels": st.lists(st.text(max_size=12) | json_values, max_size=6),
        "probabilities": st.lists(st.floats(0, 1) | json_values, max_size=6),
        "predictions": json_values
        | st.lists(
            st.fixed_dictionaries(
                {}, optional={"label": st.text(max_size=12), "probability": st.floats(0, 0.2)}
            ),
            max_size=6,
        ),
        "message": json_values,
    },
)
bodies = st.one_of(
    st.text(),
    st.binary(),
    st.text(alphabet="{}[]()'\":,.-+e0123456789 \n\\aoksOKtu"),
    documents.map(repr),
    documents.map(json.dumps),
    st.binary().map(base64.b64encode),
    st.binary().map(lambda data: base64.b64encode(b"PK\x03\x04" + data)),
    st.dictionaries(
        st.from_regex(r"[a-z/]{1,6}(\.json|\.png)?", fullmatch=True),
        st.binary(max_size=20) | documents.map(lambda document: repr(document).encode()),
        min_size=2,
    ).map(lambda files: base64.b64encode(zip_bytes(files))),
)


@settings(deadline=None)
@given(level=st.sampled_from(LEVELS), body=bodies, with_logs=st.booleans())
def test_prediction_decoding_of_any_body_raises_only_result_errors(
    level: str, body: str | bytes, with_logs: bool
) -> None:
    if with_logs:
        prefix = log_record("Creating response", level)
        body = prefix + body if isinstance(body, str) else prefix.encode() + body
    with contextlib.suppress(OscarResultError):
        decode_prediction(body)


@settings(deadline=None)
@given(data=bodies)
def test_document_parsing_of_any_input_raises_only_result_errors(data: str | bytes) -> None:
    try:
        document = parse_document(data)
    except OscarResultError:
        return
    with contextlib.suppress(OscarResultError, OscarModelError):
        normalise_prediction(document).raise_for_status()


@st.composite
def predictions(draw: st.DrawFn) -> Prediction:
    size = draw(st.integers(0, 6))
    status = "ok" if size else "error"
    words = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
    labels = draw(
        st.lists(
            words.map(lambda text: " ".join(text.split())).filter(bool),
            min_size=size,
            max_size=size,
            unique=True,
        )
    )
    probabilities = draw(st.lists(st.floats(0, 1 / 6), min_size=size, max_size=size))
    return Prediction(
        labels=tuple(labels),
        probabilities=tuple(sorted(probabilities, reverse=True)),
        status=status,
        message=draw(st.none() | st.text()),
        source=draw(st.none() | st.text()),
    )


@given(prediction=predictions())
def test_prediction_round_trips_through_json_plain_dict(prediction: Prediction) -> None:
    assert Prediction.from_dict(json.loads(json.dumps(prediction.to_dict()))) == prediction


# --- the console of an AI4OS dashboard deployment (DEEPaaS 2.x) ----------------------------------

# What a dashboard deployment answers a synchronous call with: its script's version lines, the
# input's name, deepaas-cli's oslo_log lines with "return: {...}", the model's own prints, then
# the script's buffered prints, the command line last (here with a dict-valued argument).
PAPI_CONSOLE = (
    "[*] Using DEEPaaS version 2.6.0\n"
    "[*] Using Python version Python 3.10.12\n"
    "event-file-0b9c4a7e-2d35-4f0b-9a77-5d1b2c3e4f50\n"
    "2026-05-04 09:36:55.101 17 INFO deepaas.cmd.cli [-] predict was called.\n"
    "2026-05-04 09:36:58.310 17 WARNING py.warnings [-] UserWarning: {'crop_num': 10}\n"
    f"2026-05-04 09:37:01.442 17 INFO deepaas.cmd.cli [-] return: {FLAT!r}\n"
    "['/tmp/tmpk2j3_x']\n"
    "before predicting\n"
    "(5,) (5,)\n"
    "[*] Processing file:  tmp-file-qwert.jpg\n"
    "[*] Final command: deepaas-cli predict --files tmp-file-qwert.jpg --conf {'top_K': 5}\n"
)


def test_the_deepaas_answer_is_found_in_a_dashboard_deployments_console() -> None:
    prediction = decode_prediction(run_body({}, console=PAPI_CONSOLE))

    assert prediction == EXPECTED


def test_a_dict_without_status_after_the_answer_does_not_hide_it() -> None:
    assert parse_document(PAPI_CONSOLE) == {"top_K": 5}  # the plain parser takes the last dict
    assert parse_document(PAPI_CONSOLE, required_key="status") == FLAT


def test_a_model_error_in_the_console_fails_with_the_models_message() -> None:
    error = {"status": "error", "message": "Local image format error: not png/jpg/jpeg"}
    console = PAPI_CONSOLE.replace(repr(FLAT), repr(error))

    prediction = decode_prediction(run_body({}, console=console), source="ai4papi-x")

    assert prediction.status == "error"
    with pytest.raises(OscarModelError, match="Local image format error") as raised:
        prediction.raise_for_status()
    assert raised.value.source == "ai4papi-x"


def test_a_console_ending_in_a_traceback_names_the_exception() -> None:
    console = (
        "[*] Using DEEPaaS version 2.6.0\n"
        "Traceback (most recent call last):\n"
        '  File "<stdin>", line 39, in <module>\n'
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0x89 in position 0\n"
    )

    with pytest.raises(OscarResultError, match="traceback ending \"UnicodeDecodeError: 'utf-8'"):
        decode_prediction(run_body({}, console=console))
