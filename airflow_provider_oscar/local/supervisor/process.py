"""Running the user script as the binary supervisor does, and ending all it started.

Source: faassupervisor/faas/binary/supervisor.py ``BinarySupervisor.execute_function``
(faas-supervisor 1.6.2): ``Popen(['/bin/sh', script], stdout=PIPE, stderr=STDOUT,
encoding='utf-8', errors='ignore')`` read line by line to end of file; each line is logged at
DEBUG (stripped) and kept for the answer; the exit code is never looked at. Reading in text
mode drops bytes that are not UTF-8 and turns ``\\r\\n`` and ``\\r`` into ``\\n``.

On the host the script runs under :mod:`.reaper`, so that when the run ends (end of output,
time limit, cancellation) nothing it started survives, not even what left its session: in a
pod the container's end does that.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

REAPER = Path(__file__).with_name("reaper.py")
CONSOLE_LIMIT = 16 * 1024 * 1024  # the embedded OSCAR keeps at most this much console text
_END_GRACE = 10.0


class ConsoleReader:
    """Lines as Python's text-mode pipe yields them (UTF-8, errors ignored, universal newlines)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._decoder = io.IncrementalNewlineDecoder(decoder, translate=True)
        self._pending = ""
        self._on_line = on_line
        self._size = 0
        self.text: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        self._pending += self._decoder.decode(data, final=final)
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line + "\n")
        if final and self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, line: str) -> None:
        if self._size >= CONSOLE_LIMIT:
            return
        self._size += len(line)
        self.text.append(line)
        self._on_line(line)


async def run_script(
    script: Path,
    workdir: Path,
    env: dict[str, str],
    timeout: float | None,
    console: ConsoleReader,
) -> bool:
    """Run ``/bin/sh script`` in ``workdir`` until its output ends; True if it timed out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        str(REAPER),
        "/bin/sh",
        str(script),
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            console.feed(chunk)
        console.feed(b"", final=True)

    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        return True
    finally:
        await _end(proc)
    return False


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Tell the reaper to kill what the script left (it exits when done)."""
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), _END_GRACE)
    except asyncio.TimeoutError:  # a reaper that does not finish: end its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
