"""What every OSCAR operator shares: the connection, the hook and the deferrable default."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_oscar.compat import conf
from airflow_provider_oscar.hooks.oscar import OscarHook


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (read when an operator is created)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class OscarBaseOperator(BaseOperator):
    """Base of the OSCAR operators: ``oscar_conn_id`` and a lazily built :class:`OscarHook`."""

    ui_color = "#d6ecff"

    def __init__(self, *, oscar_conn_id: str = OscarHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.oscar_conn_id = oscar_conn_id

    @cached_property
    def hook(self) -> OscarHook:
        return OscarHook(self.oscar_conn_id)
