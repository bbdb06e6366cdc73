"""Exceptions raised by the OSCAR provider.

Every error the provider raises on purpose derives from :class:`OscarError`, so callers can catch
the provider's failures with one ``except`` clause and let anything else propagate.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OscarApiError",
    "OscarClientError",
    "OscarDefinitionError",
    "OscarError",
    "OscarModelError",
    "OscarResultError",
    "OscarRunCutError",
]


class OscarError(Exception):
    """Base class of the provider's exceptions."""


class OscarResultError(OscarError, ValueError):
    """An OSCAR output cannot be decoded, or its content does not have the expected shape."""


class OscarModelError(OscarError):
    """A model answered ``{"status": "error"}``: the inference failed, not the infrastructure.

    ``message`` is the model's own explanation (``None`` when it gave none); ``source`` names the
    output it came from (a file name or object key), when known.
    """

    def __init__(self, message: str | None, source: str | None = None) -> None:
        self.message = message
        self.source = source
        text = f"model returned status 'error': {message or '(no message)'}"
        super().__init__(f"{text} [{source}]" if source else text)

    def __reduce__(self) -> tuple[type[OscarModelError], tuple[str | None, str | None]]:
        """Pickle by constructor arguments, so ``message`` and ``source`` survive."""
        return type(self), (self.message, self.source)


class OscarDefinitionError(OscarError, ValueError):
    """A service definition (FDL file, YAML text or mapping) is invalid; the message says where."""


class OscarApiError(OscarError):
    """OSCAR answered a request with an error (after retries, for transient ones).

    ``status_code`` is the HTTP status (``None`` when no answer came); ``service`` the service
    the request was about, when there was one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, service: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.service = service

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_api_error, (type(self), str(self), self.status_code, self.service)


class OscarClientError(OscarApiError):
    """A request OSCAR refused (4xx) or that cannot be made: retrying will not help."""


class OscarRunCutError(OscarApiError):
    """A synchronous run ended without an answer (the connection closed, or no answer came in
    time): it may have run, so it is reported instead of sent again."""


def _rebuild_api_error(
    kind: type[OscarApiError], message: str, status_code: int | None, service: str | None
) -> OscarApiError:
    return kind(message, status_code=status_code, service=service)


#: Errors another attempt cannot fix, or must not repeat: refusals (4xx), invalid definitions,
#: model errors, undecodable outputs, and runs cut without an answer (they may have run).
PERMANENT: tuple[type[OscarError], ...] = (
    OscarClientError,
    OscarDefinitionError,
    OscarModelError,
    OscarResultError,
    OscarRunCutError,
)
