"""
An offline stand-in for OpenAI's Realtime API, for tests and development without the internet.

    python -m tests.realtime_standin --port 8765
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sk-standin-local-development-key …

In tests: the `realtime_standin` fixture (tests/conftest.py), a `RealtimeStandIn` running in a
background thread. `POST /v1/realtime/calls` (WebRTC, calls.py) answers with an aiortc peer
that plays a script of server events (scripts.py); `standin.calls` controls it.
"""

from .server import DEFAULT_API_KEY, RealtimeStandIn, RecordedRequest, StandIn

__all__ = ["DEFAULT_API_KEY", "RealtimeStandIn", "RecordedRequest", "StandIn"]
