"""How a refused name is shown in the error: whole when short, cut at 80 characters when long."""

from __future__ import annotations

import pytest

from airflow_provider_oscar.hooks import names


def test_a_refused_key_of_up_to_80_characters_is_shown_whole() -> None:
    key = "a/" + "b" * 76 + "/."  # 80 characters
    with pytest.raises(names.InvalidName) as error:
        names.key(key)
    assert str(error.value) == f"invalid object key {key!r}: '.' and '..' segments are refused"


def test_a_longer_refused_key_is_cut_at_80_characters() -> None:
    key = "a/" + "b" * 77 + "/."  # 81 characters
    with pytest.raises(names.InvalidName) as error:
        names.key(key)
    shown = repr(key[:80] + "...")
    assert str(error.value) == f"invalid object key {shown}: '.' and '..' segments are refused"
