"""A fork server that runs each service script under its own child subreaper.

Started once per embedded OSCAR process as ``python -I -S reaper.py`` (standard library only:
it runs without site-packages) with a Unix socket on its stdin. Each request on that socket
is a length-prefixed JSON document ``{"argv", "env", "cwd"}`` carrying two descriptors: the
write end of the pipe that collects the script's output, and one end of a control socket. For
each request the server forks a *run process*, which

1. starts its own session, becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``, Linux >= 3.4)
   and sends its pid on the control socket;
2. spawns the command with stdin on ``/dev/null`` and stdout and stderr on the pipe, then drops
   its own copy of the pipe, so the reader sees end of file exactly when the command and
   everything it started have closed theirs;
3. waits for end of file on the control socket (the embedded OSCAR is done with the run, timed
   it out, cancelled it, or died), kills every process left below it, and exits, which closes
   the control socket and tells the embedded OSCAR the run is over.

Why a subreaper: a pod ends every process of its container, but on the host a script can leave
its process group and session (``setsid``) and, once its parent exits, be adopted by init, out
of reach. Under a subreaper, orphans are adopted by the run process instead and stay its
children: the kill loop finds them by walking ``/proc`` (no ``CONFIG_PROC_CHILDREN`` needed),
kills and reaps them, and repeats until ``waitpid`` reports no child at all, catching what was
forked meanwhile. SIGCHLD is blocked during the loop, so no pid is reaped (and reusable)
between being read and being killed. Where the call is not available, the run process kills
its own process group instead.

Forking a running interpreter costs about a millisecond; starting one per run costs twenty.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
HEADER = struct.Struct("!I")  # the length of the JSON request that follows
PID = struct.Struct("!q")  # what a run process sends first on its control socket
_MAX_ROUNDS = 10_000  # each round kills at least one process


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded once by the server, inherited by every run process


def become_subreaper() -> bool:
    try:
        return _LIBC is not None and _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except AttributeError:  # no prctl: not Linux
        return False


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``, read from ``/proc/<pid>/stat``."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry))
    return found


def kill_descendants() -> bool:
    """Kill and reap every process below this one (all of them, under a subreaper).

    False when some child is left that ``/proc`` does not show (no ``/proc``).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    me = os.getpid()
    for _ in range(_MAX_ROUNDS):
        try:
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue  # reaped one: look again
        except ChildProcessError:
            return True  # no child left, adopted orphans included
        found = children(me)
        if not found:
            return False
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-1, 0)  # until one of them is gone
    return False


def _reap(_signum: int, _frame: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _run(request: dict[str, Any], output: int, control: socket.socket) -> None:
    """The run process: spawn the command, wait for the end of the run, leave nothing."""
    os.setsid()
    subreaper = become_subreaper()
    try:
        control.sendall(PID.pack(os.getpid()))
        _spawn(request, output)
        os.close(output)
        while control.recv(4096):
            pass
    except OSError:  # e.g. ECONNRESET: the embedded OSCAR died with unread data
        pass
    finally:
        if not (kill_descendants() and subreaper):
            os.killpg(0, signal.SIGKILL)  # this process's group, itself included


def _spawn(request: dict[str, Any], output: int) -> None:
    """The command, stdin on ``/dev/null``, stdout and stderr on ``output``, in ``cwd``."""
    argv = request["argv"]
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.chdir(request["cwd"])
        os.posix_spawn(
            argv[0],
            argv,
            request["env"],
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, output, 1),
                (os.POSIX_SPAWN_DUP2, output, 2),
            ],
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # ignored by Python, not by scripts
        )
    except OSError as exc:
        os.write(output, f"{argv[0]}: {exc.strerror}\n".encode())
    finally:
        os.close(devnull)


def _receive(channel: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One request and its descriptors, or ``None`` once the embedded OSCAR is gone."""
    data, fds, _flags, _address = socket.recv_fds(channel, HEADER.size, 2)
    for fd in fds:  # never inherited by the command
        os.set_inheritable(fd, False)
    while data and len(data) < HEADER.size:
        data += channel.recv(HEADER.size - len(data))
    if len(data) < HEADER.size:
        return None
    (size,) = HEADER.unpack(data)
    body = b""
    while len(body) < size:
        chunk = channel.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), fds


def serve(channel: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, _reap)
    while received := _receive(channel):
        request, fds = received
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            status = 1
            try:
                channel.close()
                _run(request, fds[0], socket.socket(fileno=fds[1]))
                status = 0
            finally:
                os._exit(status)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    serve(socket.socket(fileno=sys.stdin.fileno()))
