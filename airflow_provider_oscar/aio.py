"""Running a coroutine to its end from the blocking code of an operator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_coroutine"]


def run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` to its end, even when an event loop already runs in this thread
    (then in a thread of its own, as ``dag.test()`` runs tasks inside a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_call(factory))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_call(factory))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="oscar-coroutine")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
