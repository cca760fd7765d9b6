"""
The server's own connection to a running call (OpenAI's "sideband"):

    GET {OPENAI_BASE_URL}/realtime?call_id=rtc_…   (scheme ws/wss)   Authorization: Bearer <real key>

It receives the call's server events (the data channel's stream, from the moment it attaches; no
`session.created`) and may send client events. Nothing else is sent: no OpenAI-Beta header.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus

# Bounds per connection: the largest event accepted, and how many may wait unread. A witness is
# one per live call, so its buffers are what a process holds per call.
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_QUEUE = 16
OPEN_TIMEOUT = 10.0


class AttachRefused(Exception):
    """OpenAI answered the handshake with an HTTP error: `status`, and its `code` when it sent one
    (404 `call_id_not_found`: no such call, or it has ended)."""

    def __init__(self, status: int, code: str | None):
        super().__init__(f"sideband refused: {status} {code or ''}".strip())
        self.status = status
        self.code = code


class Dropped(Exception):
    """The connection was lost (no close frame, a network error, a timeout)."""


def sideband_url(call_id: str, base_url: str | None = None) -> str:
    base = (base_url or settings.OPENAI_BASE_URL).rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/realtime?call_id={quote(call_id, safe='')}"


def _error_code(body: bytes | None) -> str | None:
    try:
        return json.loads(body or b"")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class Sideband:
    """One attached connection: `async with Sideband.open(call_id) as sideband`, then
    `async for event, text in sideband.events()` until the call's stream ends."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def open(cls, call_id: str, *, key: str | None = None, base_url: str | None = None) -> Sideband:
        """Raises AttachRefused (an HTTP answer instead of the upgrade) or Dropped (no answer)."""
        try:
            ws = await connect(
                sideband_url(call_id, base_url),
                additional_headers={"Authorization": f"Bearer {key or settings.OPENAI_API_KEY}"},
                open_timeout=OPEN_TIMEOUT,
                max_size=MAX_EVENT_BYTES,
                max_queue=MAX_QUEUE,
                compression=None,  # small JSON events; deflate would cost ~64 KB per connection
                proxy=None,
                user_agent_header=None,
            )
        except InvalidStatus as error:
            raise AttachRefused(error.response.status_code, _error_code(error.response.body)) from None
        except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as error:  # or a 200 with a body
            raise Dropped(f"{type(error).__name__}: {error}") from None
        return cls(ws)

    async def __aenter__(self) -> Sideband:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[tuple[dict, str]]:
        """The server events, each with the text it came in (what the witness journals: it is not
        written out again). Ends when OpenAI closes the connection properly (the call is over);
        raises Dropped when it was lost."""
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    continue
                try:
                    event = json.loads(message)
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("type"), str):
                    yield event, message
        except ConnectionClosedOK:
            return
        except ConnectionClosed as error:
            raise Dropped(f"closed: {error}") from None
        except OSError as error:
            raise Dropped(str(error)) from None
        # The iterator ends quietly on a normal close; an abnormal one (1006: no close frame) is a drop.
        if self.ws.close_code not in (1000, 1001):
            raise Dropped(f"closed with {self.ws.close_code}")

    async def send(self, event: dict) -> None:
        try:
            await self.ws.send(json.dumps(event))
        except ConnectionClosed as error:
            raise Dropped(f"closed: {error}") from None

    async def close(self) -> None:
        await self.ws.close()
