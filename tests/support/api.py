"""Helpers for tests of the JSON API."""

import json

SESSIONS_URL = "/api/realtime/sessions"


def post_session(client, body=None, **extra):
    """POST /api/realtime/sessions with `body` (a dict as JSON; str/bytes as they are; None: empty)."""
    if body is None:
        data = b""
    elif isinstance(body, (str, bytes)):
        data = body
    else:
        data = json.dumps(body)
    extra.setdefault("content_type", "application/json")
    return client.post(SESSIONS_URL, data=data, **extra)


def error_of(response) -> dict:
    """The contract's error object, checking the envelope on the way."""
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"].strip()
    return body["error"]

