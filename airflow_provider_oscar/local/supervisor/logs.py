"""The supervisor's console: its log records, what it prints, and how it ends with status 1.

faas-supervisor 1.6.2 logs through ``logging.getLogger('supervisor')`` with the format
``'%(asctime)s - %(name)s - %(levelname)s - %(message)s'`` on stderr (faassupervisor/logger.py
``configure_logger``), at the level ``log_level`` names; a ``LOG_LEVEL`` variable in the
container overrides the service's ``log_level`` (utils.py ``ConfigUtils.read_cfg_var``). Its
``print`` calls go to stdout, which Python buffers on a pipe, so they reach the console after
every record, when the process exits.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime


class SupervisorExit(Exception):
    """The supervisor process ended with exit status 1; the log holds what it wrote."""


class SupervisorLog:
    """Records at or above one level, and printed lines, in the order a pod log shows them."""

    def __init__(self, level: int) -> None:
        # A logger set to NOTSET (0) defers to the root logger, which is at WARNING.
        self.level = level or logging.WARNING
        self._stderr: list[str] = []
        self._stdout: list[str] = []

    def debug(self, message: str) -> None:
        self._record(logging.DEBUG, message)

    def info(self, message: str) -> None:
        self._record(logging.INFO, message)

    def warning(self, message: str) -> None:
        self._record(logging.WARNING, message)

    def error(self, message: str) -> None:
        self._record(logging.ERROR, message)

    def print(self, text: str) -> None:
        """Python's ``print``: the text and a newline on stdout."""
        self._stdout.append(f"{text}\n")

    def write_stderr(self, text: str) -> None:
        self._stderr.append(text)

    def text(self) -> str:
        """The console of the finished process: stderr as written, then the flushed stdout."""
        return "".join(self._stderr) + "".join(self._stdout)

    def _record(self, level: int, message: str) -> None:
        if level >= self.level:
            now = datetime.now()
            stamp = now.strftime("%Y-%m-%d %H:%M:%S") + f",{now.microsecond // 1000:03d}"
            name = logging.getLevelName(level)
            self._stderr.append(f"{stamp} - supervisor - {name} - {message}\n")

    # the three ways the supervisor ends with status 1 ----------------------------------------

    def crash(self, error: BaseException, module: str, function: str) -> SupervisorExit:
        """An exception nothing catches: Python prints a traceback (abbreviated here)."""
        self._stderr.append(
            "Traceback (most recent call last):\n"
            f'  File "faassupervisor/{module}", in {function}\n'
            + "".join(traceback.format_exception_only(type(error), error))
        )
        return SupervisorExit(str(error))

    def fatal(self, message: str) -> SupervisorExit:
        """A ``FaasSupervisorError`` caught by the ``@exception()`` decorator: logged, exit 1."""
        self.error(message)
        return SupervisorExit(message)

    def client_error(
        self, function: str, code: str, message: str, operation: str
    ) -> SupervisorExit:
        """A botocore ``ClientError`` caught by ``@exception()``: two prints, a record, exit 1."""
        self.print(f"There was an exception in {function}")
        self.print(message)
        return self.fatal(
            f"An error occurred ({code}) when calling the {operation} operation: {message}"
        )


@contextmanager
def uncaught(log: SupervisorLog, module: str, function: str) -> Iterator[None]:
    """Turn any error raised inside into the crash the real code would have there."""
    try:
        yield
    except SupervisorExit:
        raise
    except Exception as exc:
        raise log.crash(exc, module, function) from None


def resolve_level(log_level: str, environment: Mapping[str, str]) -> int:
    """The logger level: ``LOG_LEVEL`` from the environment, else ``log_level``, else INFO.

    ``logging.getLevelName`` maps a known name to its number and anything else to the text
    ``"Level <name>"``, which ``Logger.setLevel`` refuses: the supervisor then dies at start.
    """
    name = environment.get("LOG_LEVEL") or log_level
    if not name:
        return logging.INFO
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ValueError(f"Unknown level: {level!r}")
    return level
