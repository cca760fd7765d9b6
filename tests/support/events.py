"""The recorded Realtime event streams (tests/fixtures/realtime/) and small event builders."""

import copy
import json
from pathlib import Path

from conversations.transcript.forwarded import forwarded_types
from tests.realtime_standin.scripts import place

FIXTURES = Path(__file__).parents[1] / "fixtures" / "realtime"
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.json"))


def forwarded(events: list) -> list:
    """What the server receives of a stream: the forwarded events, in order."""
    types = set(forwarded_types())
    return [e for e in events if isinstance(e, dict) and e.get("type") in types]


def load_scenario(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def expected_usage(scenario: dict) -> dict:
    return scenario["expected"]["usage"]


# --- builders (GA spellings unless said otherwise) --------------------------------------------


def user_audio(item_id, event="conversation.item.added"):
    return {
        "type": event,
        "item": {"id": item_id, "type": "message", "status": "completed", "role": "user",
                 "content": [{"type": "input_audio", "transcript": None}]},
    }  # fmt: skip


def user_text(item_id, text, event="conversation.item.added"):
    return {
        "type": event,
        "item": {"id": item_id, "type": "message", "status": "completed", "role": "user",
                 "content": [{"type": "input_text", "text": text}]},
    }  # fmt: skip


def assistant(item_id, status="in_progress", transcript=None, event="conversation.item.added"):
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "type": event,
        "item": {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content},
    }


def transcribed(item_id, transcript, tokens=None):
    event = {"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
             "content_index": 0, "transcript": transcript}  # fmt: skip
    if tokens is not None:
        event["usage"] = {"type": "tokens", "total_tokens": tokens, "input_tokens": tokens, "output_tokens": 0}
    return event


def transcription_failed(item_id, message="Audio is unintelligible.", code="audio_unintelligible"):
    return {"type": "conversation.item.input_audio_transcription.failed", "item_id": item_id, "content_index": 0,
            "error": {"type": "transcription_error", "code": code, "message": message}}  # fmt: skip


def audio_done(item_id, response_id, transcript, beta=False):
    kind = "response.audio_transcript.done" if beta else "response.output_audio_transcript.done"
    return {"type": kind, "response_id": response_id, "item_id": item_id, "output_index": 0,
            "content_index": 0, "transcript": transcript}  # fmt: skip


def text_done(item_id, response_id, text, beta=False):
    kind = "response.text.done" if beta else "response.output_text.done"
    return {"type": kind, "response_id": response_id, "item_id": item_id, "output_index": 0,
            "content_index": 0, "text": text}  # fmt: skip


def response_done(response_id, status="completed", output=(), input_tokens=10, output_tokens=20, usage=True):
    response = {"object": "realtime.response", "id": response_id, "status": status, "status_details": None,
                "output": list(output)}  # fmt: skip
    if usage:
        both = isinstance(input_tokens, int) and isinstance(output_tokens, int)
        response["usage"] = {
            "total_tokens": input_tokens + output_tokens if both else None, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 0, "audio_tokens": output_tokens},
        }  # fmt: skip
    if status == "cancelled":
        response["status_details"] = {"type": "cancelled", "reason": "turn_detected"}
    return {"type": "response.done", "response": response}


def output_item(item_id, transcript, status="completed"):
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_audio", "transcript": transcript}]}  # fmt: skip


def turn_events(n_turns, prefix=""):
    """A realistic stream: per turn 6 events, the user transcript after the reply."""
    events = []
    for t in range(n_turns):
        u, a, r = f"{prefix}u{t}", f"{prefix}a{t}", f"{prefix}r{t}"
        events += [user_audio(u), assistant(a), audio_done(a, r, f"answer {t}"), response_done(r, input_tokens=2,
                   output_tokens=3), {"type": "output_audio_buffer.stopped", "response_id": r},
                   transcribed(u, f"question {t}", tokens=1)]  # fmt: skip
    return events


def linked(events: list) -> list:
    """Copies of the events with the `previous_item_id` OpenAI gives them (as the stand-in does)."""
    items: list[str] = []
    out = []
    for event in events:
        event = copy.deepcopy(event)
        place(items, event)
        out.append(event)
    return out
