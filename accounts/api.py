"""
POST /api/preferences/record-audio — the voice page's "Record audio" switch: {"record_audio":
true|false} saved in the user's preferences (remembered for their next visit, on any device).
"""

import json

from accounts import consent, preferences
from voiceproject.api import api_view, error_response, json_response

MAX_BODY_BYTES = 256  # {"record_audio": false} is 23 bytes


def parse_switch(body: bytes) -> bool:
    """The boolean of {"record_audio": <bool>}; ValueError with a message for a person otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError("The request body is too large.")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if (
        not isinstance(data, dict)
        or set(data) != {"record_audio"}
        or not isinstance(data["record_audio"], bool)
    ):
        raise ValueError('Send {"record_audio": true} or {"record_audio": false}.')
    return data["record_audio"]


@api_view("POST")
async def record_audio(request):
    if not consent.is_optional():
        state = "off" if consent.mode() == consent.OFF else "always on"
        return error_response(
            409,
            "not_optional",
            f"Recording is {state} on this server (RECORDINGS): there is nothing to choose.",
        )
    try:
        wanted = parse_switch(request.body)
    except ValueError as exc:
        return error_response(400, "invalid_request", str(exc))
    chosen = await preferences.afor_user(request.user)
    chosen.record_audio = wanted
    await chosen.asave()
    return json_response({"preferences": {"record_audio": wanted}})
