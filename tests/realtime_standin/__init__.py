"""
An offline stand-in for OpenAI's Realtime API, for tests and development without the internet.

    python -m tests.realtime_standin --port 8765
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sk-standin-local-development-key …

In tests: the `realtime_standin` fixture (tests/conftest.py), a `RealtimeStandIn` running in a
background thread. `POST /v1/realtime/calls` (WebRTC, calls.py) answers with an aiortc peer
that plays a script of server events (scripts.py); `standin.calls` controls it. With the real
key a server can make the call itself (multipart `sdp` + `session`), watch it over the sideband
WebSocket `/v1/realtime?call_id=…` (sideband.py) and hang it up. clients.py has a browser-like
peer and a sideband client for Python tests.
"""

from .server import DEFAULT_API_KEY, RealtimeStandIn, RecordedRequest, StandIn

__all__ = ["DEFAULT_API_KEY", "RealtimeStandIn", "RecordedRequest", "StandIn"]
