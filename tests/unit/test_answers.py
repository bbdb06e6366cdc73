"""What an OSCAR answer becomes in a task's result, for each ``decode`` mode."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest

from airflow_provider_oscar.answers import (
    DECODES,
    TEXT_LIMIT,
    UnexpectedOutput,
    kept_inline,
    read_answer,
)
from airflow_provider_oscar.errors import OscarModelError, OscarResultError

DOCUMENT = {"status": "ok", "labels": ["Rosa canina", "Hedera helix"], "probabilities": [0.7, 0.3]}
PREDICTION = {**DOCUMENT, "message": None}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- auto ------------------------------------------------------------------------------------


def test_auto_reads_a_prediction_from_console_text_and_keeps_no_file() -> None:
    answer = read_answer(json.dumps(DOCUMENT), "auto", source="plants")
    assert answer.fields == {"prediction": {**PREDICTION, "source": "plants"}}
    assert answer.files == {"output.txt": json.dumps(DOCUMENT).encode()}
    assert answer.several is False


def test_auto_reads_a_prediction_from_a_single_output_file() -> None:
    raw = json.dumps(DOCUMENT).encode()
    answer = read_answer(b64(raw).encode(), "auto")
    assert answer.fields["prediction"]["labels"] == DOCUMENT["labels"]
    assert answer.files == {"output": raw}
    assert answer.several is False


def test_auto_keeps_console_text_that_is_no_prediction_as_text() -> None:
    answer = read_answer("model loaded\ndone in 3 s", "auto")
    assert answer.fields == {"text": "model loaded\ndone in 3 s", "truncated": False}
    assert answer.files == {}
    assert answer.several is False


def test_auto_lists_a_binary_output_file_by_size_and_keeps_its_bytes() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\x01"
    answer = read_answer(b64(data), "auto")
    assert answer.fields == {"files": {"output": len(data)}}
    assert answer.files == {"output": data}
    assert answer.several is False


def test_auto_lists_the_members_of_a_zip_answer_with_their_relative_names() -> None:
    members = {"masks/leaf.png": b"\x00\x01\x02", "summary.csv": b"a,b\n1,2\n"}
    answer = read_answer(b64(zipped(members)), "auto")
    assert answer.fields == {"files": {"masks/leaf.png": 3, "summary.csv": 8}}
    assert answer.files == members
    assert answer.several is True


def test_a_model_error_status_raises_with_the_models_message() -> None:
    body = json.dumps({"status": "error", "message": "CUDA out of memory"})
    with pytest.raises(OscarModelError, match="CUDA out of memory"):
        read_answer(body, "auto")


# --- prediction ------------------------------------------------------------------------------


def test_prediction_mode_refuses_other_output_and_hands_over_the_raw_files() -> None:
    data = b"\x00\x01 not a document"
    with pytest.raises(UnexpectedOutput) as caught:
        read_answer(b64(data), "prediction")
    assert str(caught.value).startswith(
        "expected a prediction document (status, labels, probabilities): "
    )
    assert isinstance(caught.value, OscarResultError)
    assert caught.value.files == {"output": data}
    assert caught.value.several is False


def test_prediction_mode_refusing_a_zip_marks_its_files_as_several() -> None:
    members = {"a.txt": b"alpha", "b/c.txt": b"gamma"}
    with pytest.raises(UnexpectedOutput) as caught:
        read_answer(b64(zipped(members)), "prediction")
    assert caught.value.files == members
    assert caught.value.several is True


def test_prediction_mode_returns_the_prediction() -> None:
    answer = read_answer(json.dumps(DOCUMENT), "prediction")
    assert answer.fields == {"prediction": {**PREDICTION, "source": None}}


# --- text, files, none -----------------------------------------------------------------------


def test_text_mode_gives_a_prediction_document_as_text() -> None:
    answer = read_answer(json.dumps(DOCUMENT), "text")
    assert answer.fields == {"text": json.dumps(DOCUMENT), "truncated": False}
    assert answer.files == {}


def test_text_mode_decodes_an_output_file_and_keeps_the_file() -> None:
    data = "Rosa canina: 0.7 ✓".encode()
    answer = read_answer(b64(data), "text")
    assert answer.fields == {"text": "Rosa canina: 0.7 ✓", "truncated": False}
    assert answer.files == {"output": data}


def test_text_mode_replaces_bytes_that_are_not_utf8_instead_of_failing() -> None:
    answer = read_answer(b64(b"ok \xff\xfe end"), "text")
    assert answer.fields["text"] == "ok \ufffd\ufffd end"


def test_text_is_cut_at_the_limit_and_marked_truncated() -> None:
    exact = read_answer(b64(b"x" * TEXT_LIMIT), "text")
    assert exact.fields == {"text": "x" * TEXT_LIMIT, "truncated": False}
    longer = read_answer(b64(b"x" * (TEXT_LIMIT + 1)), "text")
    assert longer.fields == {"text": "x" * TEXT_LIMIT, "truncated": True}
    assert longer.files == {"output": b"x" * (TEXT_LIMIT + 1)}  # nothing is lost


def test_files_mode_lists_console_text_as_output_txt() -> None:
    answer = read_answer(json.dumps(DOCUMENT), "files")
    size = len(json.dumps(DOCUMENT))
    assert answer.fields == {"files": {"output.txt": size}}
    assert answer.files == {"output.txt": json.dumps(DOCUMENT).encode()}


def test_none_mode_keeps_nothing() -> None:
    answer = read_answer(json.dumps(DOCUMENT), "none")
    assert answer.fields == {}
    assert answer.files == {}
    assert answer.several is False


def test_an_unknown_decode_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError) as caught:
        read_answer("anything", "json")
    assert str(caught.value) == (f"decode must be one of {', '.join(DECODES)}, not 'json'")
    assert DECODES == ("auto", "prediction", "text", "files", "none")


def test_files_kept_inline_are_base64_text() -> None:
    assert kept_inline({"output": b"\x00\xff", "a/b.txt": b"hi"}) == {
        "output": "AP8=",
        "a/b.txt": "aGk=",
    }


def test_an_empty_answer_is_empty_text_and_an_empty_output_txt() -> None:
    assert read_answer("", "auto").fields == {"text": "", "truncated": False}
    answer = read_answer("", "files")
    assert answer.fields == {"files": {"output.txt": 0}}
    assert answer.files == {"output.txt": b""}


def test_a_prediction_inside_a_zip_keeps_every_member_as_one_of_several_files() -> None:
    members = {"prediction.json": json.dumps(DOCUMENT).encode(), "masks/leaf.png": b"\x00\x01"}
    answer = read_answer(b64(zipped(members)), "auto")
    assert answer.fields["prediction"]["labels"] == DOCUMENT["labels"]
    assert answer.fields["prediction"]["source"] == "prediction.json"
    assert answer.files == members
    assert answer.several is True


def test_text_mode_of_a_zip_answer_keeps_its_members_as_several_files() -> None:
    members = {"a.txt": b"alpha", "b/c.txt": b"gamma"}
    answer = read_answer(b64(zipped(members)), "text")
    assert answer.fields["text"].startswith("PK\x03\x04")
    assert answer.files == members
    assert answer.several is True
