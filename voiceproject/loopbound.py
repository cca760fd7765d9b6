"""
One shared object per running event loop, closed when its loop shuts down.

asyncio network clients (httpx.AsyncClient, redis-py's asyncio pool) hold connections that
belong to the loop that opened them; using them from another loop fails ("attached to a
different loop", "Event loop is closed"). Under daphne there is one loop per process, so a
single shared client is reused by every request. Elsewhere a loop may live for one call only:
async views behind Django's test client or a WSGI server each run in a fresh loop through
async_to_sync, and pytest-asyncio opens one per test. So objects are kept per loop, keyed by
the loop object itself (never id(loop), which a new loop can reuse).

Clean-up: an object with an `aclose()` coroutine method is closed inside its loop when that loop
shuts down — asyncio.run, async_to_sync and pytest-asyncio all call `loop.shutdown_asyncgens()`
before closing a loop, which finalises the loop's live async generators; each object is watched
by one. Objects of loops closed without that step are dropped (and garbage-collected) the next
time an object is created.
"""

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def detached_task(coro, *, name: str | None = None) -> asyncio.Task:
    """A task of the running loop that outlives whoever started it, in a context of its own.

    A plain create_task copies the caller's context variables. Started from an async view that
    Django runs through async_to_sync (a sync middleware in the chain), the copy holds that call's
    CurrentThreadExecutor: once the view has returned, every sync_to_async in the task fails
    ("CurrentThreadExecutor already quit or is broken"). Shared background loops (the journal
    writer, the witness supervisor) serve everyone, so they start with an empty context.
    """
    return asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())


class PerLoop(Generic[T]):
    """`PerLoop(factory).get()` returns this loop's object, creating it on first use."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        # loop -> (object, the async generator that closes it when the loop shuts down)
        self._objects: dict[asyncio.AbstractEventLoop, tuple[T, object]] = {}
        self._lock = threading.Lock()  # loops in other threads (async_to_sync) may race us

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self._objects.get(loop)
        if entry is None:
            with self._lock:
                entry = self._objects.get(loop)
                if entry is None:
                    obj = self._factory()
                    live = {lp: e for lp, e in self._objects.items() if not lp.is_closed()}
                    entry = live[loop] = (obj, self._watch(loop, obj))
                    self._objects = live
        return entry[0]

    def _watch(self, loop: asyncio.AbstractEventLoop, obj: T):
        async def closer():
            try:
                yield
            finally:
                with self._lock:
                    if self._objects.get(loop, (None,))[0] is obj:
                        self._objects = {lp: e for lp, e in self._objects.items() if lp is not loop}
                aclose = getattr(obj, "aclose", None)
                if aclose is not None:
                    await aclose()

        watcher = closer()
        # Run it to its `yield` now, synchronously: the first step registers it with the running
        # loop (the loop's async-generator hooks) and nothing else happens until the loop closes
        # it. The reference kept in _objects stops it from being finalised any earlier.
        try:
            watcher.asend(None).send(None)
        except StopIteration:
            pass
        return watcher

    def clear(self) -> None:
        with self._lock:
            self._objects = {}

    def __len__(self) -> int:
        return len(self._objects)
