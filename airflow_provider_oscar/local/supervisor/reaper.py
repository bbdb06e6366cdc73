"""Run one command as a child subreaper and, when told, end every process it left behind.

Usage: ``python -I -S reaper.py PROGRAM [ARG ...]`` (standard library only: it runs without
site-packages). The command inherits this process's stdout and stderr and reads ``/dev/null``;
this process then drops its own copies of stdout and stderr, so the reader sees end of file
when the command and whatever it started have closed theirs, and waits for end of file on its
stdin. At that point (the embedded OSCAR is done with the run, timed it out, cancelled it, or
died) it kills every process below it and exits.

Why a subreaper: a pod ends every process of its container, but on the host a script can leave
its process group and session (``setsid``) and, once its parent exits, be adopted by init, out
of reach. With ``PR_SET_CHILD_SUBREAPER`` (Linux >= 3.4) orphans are adopted by this process
instead, so they stay its children; the kill loop below finds them by walking ``/proc`` (no
``CONFIG_PROC_CHILDREN`` needed), kills them, reaps them, and repeats until none are left,
catching what was forked meanwhile. SIGCHLD is blocked during the loop, so no pid is reaped
(and reusable) between the moment it is read and the moment it is killed. Where the call is
not available the embedded OSCAR still kills the process group this process leads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36
_MAX_ROUNDS = 10_000  # each round kills at least one process; a fork bomb is finite too


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
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


def kill_descendants() -> None:
    """Kill and reap every process below this one (all of them, with a subreaper)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    me = os.getpid()
    for _ in range(_MAX_ROUNDS):
        found = children(me)
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in found:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _reap(_signum: int, _frame: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str]) -> int:
    subreaper = become_subreaper()
    signal.signal(signal.SIGCHLD, _reap)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0)],
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # ignored by Python, not by scripts
        )
    except OSError as exc:
        print(f"{argv[0]}: {exc.strerror}", flush=True)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    while os.read(0, 65536):
        pass
    kill_descendants()
    if not subreaper:
        os.killpg(0, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
