"""How the provider's errors become Airflow task outcomes.

Refusals that a retry cannot fix (4xx, invalid definitions or inputs, a model answering
``status: error``) and synchronous runs cut without an answer (they may have run: a retry must
not repeat them) fail the task at once with :class:`AirflowFailException`; everything else
(the cluster unreachable after the hook's own retries, 5xx) raises :class:`AirflowException`,
so the task's ``retries`` apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.errors import PERMANENT, OscarError


@contextmanager
def task_outcome() -> Iterator[None]:
    """Translate provider errors raised inside the block into Airflow's exceptions."""
    try:
        yield
    except PERMANENT as exc:
        raise AirflowFailException(str(exc)) from exc
    except OscarError as exc:
        raise AirflowException(str(exc)) from exc
