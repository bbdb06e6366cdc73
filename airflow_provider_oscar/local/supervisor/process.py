"""Running the user script as the binary supervisor does, and ending all it started.

Source: faassupervisor/faas/binary/supervisor.py ``BinarySupervisor.execute_function``
(faas-supervisor 1.6.2): ``Popen(['/bin/sh', script], stdout=PIPE, stderr=STDOUT,
encoding='utf-8', errors='ignore')`` read line by line to end of file; each line is logged at
DEBUG (stripped) and kept for the answer; the exit code is never looked at. Reading in text
mode drops bytes that are not UTF-8 and turns ``\\r\\n`` and ``\\r`` into ``\\n``.

On the host the script runs under a run process of the :mod:`.reaper` fork server, so that
when the run ends (end of output, time limit, cancellation) nothing it started survives, not
even what left its session: in a pod the container's end does that.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from airflow_provider_oscar.local.supervisor import reaper

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


class _ForkServer:
    """The :mod:`.reaper` fork server of this process, started on first use.

    Requests are small and the server reads them at once, so they are sent from the event
    loop; a lock keeps the messages of concurrent runs (several loops) apart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0  # the pid that started it: a forked copy of this process starts its own

    def start_run(
        self, argv: list[str], env: dict[str, str], cwd: Path
    ) -> tuple[int, socket.socket]:
        """Hand a command to a new run process: the read end of its output, its control."""
        payload = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode()
        message = reaper.HEADER.pack(len(payload)) + payload
        read_end, write_end = os.pipe()
        control, theirs = socket.socketpair()
        try:
            with self._lock:
                try:
                    self._send(message, [write_end, theirs.fileno()])
                except OSError:  # the server died: start another one
                    self.stop()
                    self._send(message, [write_end, theirs.fileno()])
        except BaseException:
            os.close(read_end)
            control.close()
            raise
        finally:
            os.close(write_end)
            theirs.close()
        return read_end, control

    def stop(self) -> None:
        """Close the channel (the server then exits) and reap the server."""
        if self._channel is not None and self._owner == os.getpid():
            self._channel.close()
            assert self._process is not None
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._channel = self._process = None

    def _send(self, message: bytes, fds: list[int]) -> None:
        if self._owner != os.getpid():
            self._channel = self._process = None
        channel = self._channel or self._start()
        sent = socket.send_fds(channel, [message], fds)
        channel.sendall(message[sent:])

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(REAPER)],
                stdin=theirs.fileno(),
                start_new_session=True,
            )
        self._channel, self._owner = ours, os.getpid()
        return ours


_SERVER = _ForkServer()
atexit.register(_SERVER.stop)


async def run_script(
    script: Path,
    workdir: Path,
    env: dict[str, str],
    timeout: float | None,
    console: ConsoleReader,
    argv: list[str] | None = None,
) -> bool:
    """Run ``/bin/sh script`` (or ``argv``, which runs it) in ``workdir`` until its output
    ends; True if it timed out."""
    loop = asyncio.get_running_loop()
    argv = argv or ["/bin/sh", str(script)]
    read_end, control = _SERVER.start_run(argv, env, workdir)
    control.setblocking(False)
    reader = asyncio.StreamReader(limit=2**20)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb", 0)
        )
    except BaseException:
        control.close()
        raise

    async def collect() -> None:
        while chunk := await reader.read(65536):
            console.feed(chunk)
        console.feed(b"", final=True)

    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        return True
    finally:
        transport.close()
        await _end(control)
    return False


async def _end(control: socket.socket) -> None:
    """Tell the run process to kill what the script left, and wait until it has."""
    loop = asyncio.get_running_loop()
    received = bytearray()

    async def drain() -> None:
        while chunk := await loop.sock_recv(control, 4096):
            received.extend(chunk)

    try:
        control.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(drain(), _END_GRACE)
    except (OSError, asyncio.TimeoutError):  # stuck: end its whole process group
        if len(received) >= reaper.PID.size:
            (pid,) = reaper.PID.unpack_from(received)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    finally:
        control.close()
