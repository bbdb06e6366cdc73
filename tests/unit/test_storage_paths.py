"""How storage paths split into bucket and key."""

from __future__ import annotations

import pytest

from airflow_provider_oscar.errors import OscarApiError
from airflow_provider_oscar.hooks.storage import split_path


def test_a_path_splits_at_its_first_slash() -> None:
    assert split_path("plants/in/leaf.png") == ("plants", "in/leaf.png")
    assert split_path("/plants/in/leaf.png") == ("plants", "in/leaf.png")


def test_a_folder_keeps_its_trailing_slash_so_it_lists_only_that_folder() -> None:
    assert split_path("plants/in/") == ("plants", "in/")
    assert split_path("plants") == ("plants", "")


def test_a_path_without_a_bucket_is_refused() -> None:
    with pytest.raises(OscarApiError, match="names no bucket"):
        split_path("/")
