"""Witness tests against the Realtime stand-in: a call as the server makes it, its row, and
waiting for what the supervisors do in the background."""

import asyncio
import contextlib
import time

from channels.db import database_sync_to_async

# Supervisor timings for tests: scans, heartbeats and lease expiry within a second or two.
FAST = {"scan_every": 0.2, "heartbeat_every": 0.3, "lease_seconds": 1.5, "backoff": 0.1, "backoff_max": 0.5}


@contextlib.asynccontextmanager
async def live_call(standin, script=()):
    """A call as the server makes it (unified interface); the script waits for the gate "go"."""
    from conversations.realtime import upstream
    from tests.realtime_standin.clients import BrowserPeer

    standin.calls.script_next([{"gate": "go"}, *script])
    session = upstream.session_config(model="gpt-realtime-2.1", voice="marin")
    async with BrowserPeer() as browser:
        answer = await browser.call(standin.url, standin.api_key, session=session)
        assert answer.status == 201, answer.body
        assert (await browser.next_event())["type"] == "session.created"
        yield browser, standin.calls.find(answer.call_id)


@database_sync_to_async
def record(conversation, call_id):
    """The call's row, as the page's report of it makes it."""
    from conversations.models import RealtimeCall

    return RealtimeCall.objects.create(conversation=conversation, call_id=call_id, source="server")


async def eventually(check, timeout=10.0, every=0.05):
    """Poll an async `check` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s (last: {value!r})")
        await asyncio.sleep(every)


async def attached_to(call, count=1):
    """Wait until `count` witness connections have announced themselves (their session.update)."""

    async def seen():
        return len(call.received_from("sideband")) >= count

    await eventually(seen)


async def send(call, event):
    """Send a server event on the stand-in's call (outside its script)."""
    await asyncio.to_thread(call.send, event)
