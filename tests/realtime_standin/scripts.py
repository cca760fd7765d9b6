"""
What the stand-in's peer says on the `oai-events` channel: scripts as data.

A script is a list of steps, each a plain dict, played in order once the channel is open
(after `session.created`, which the peer always sends first):

    {"send": {...event...}}        send a server event (an `event_id` is added when missing)
    {"wait": "response.create"}    wait until the browser has sent one more event of that type
                                   (counted per type since the start of the call)
    {"gate": "name"}               wait until the test calls `call.release("name")`
    {"sleep": 0.2}                 pause, seconds
    {"close": "channel"}           close the data channel ("peer": the whole connection)
    {"loop": [steps…]}             repeat the steps until the call ends
    {"reply": {}}                  answer what the browser just asked for: its typed message
                                   (`conversation.item.create`) or committed audio, then a
                                   spoken reply (the default script's conversation)
    {"listen": true}               from now on, a crude energy detector on the microphone plays
                                   the part of server VAD (hands-free use by a person)

The builders below produce the event sequences OpenAI's GA API sends (docs/realtime.md §3), so
test scripts read like conversations: `voice_turn(...)`, `barge_in(...)`, … Every builder returns
a list of steps; concatenate them. The call fills in each item's `previous_item_id` as OpenAI
does (calls.py); a script that sets one itself places its item there.
"""

from __future__ import annotations

import itertools

USAGE = {
    "total_tokens": 253,
    "input_tokens": 132,
    "output_tokens": 121,
    "input_token_details": {"text_tokens": 119, "audio_tokens": 13, "cached_tokens": 64},
    "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
}


# The server events that place an item in the conversation, and so carry its previous_item_id.
PLACING_EVENTS = frozenset(
    {"input_audio_buffer.committed", "conversation.item.added", "conversation.item.done", "conversation.item.created"}
)


def place(items: list[str], event: dict) -> None:
    """Keep a conversation's item ids in order (`items`, updated) and give an event that places
    an item its `previous_item_id` as OpenAI does: the item before it (null for the first). An
    event that already names one puts a new item after that one."""
    kind = event.get("type")
    if kind == "conversation.item.deleted" and event.get("item_id") in items:
        items.remove(event["item_id"])
    if kind not in PLACING_EVENTS:
        return
    item_id = event.get("item_id") if kind == "input_audio_buffer.committed" else (event.get("item") or {}).get("id")
    if not isinstance(item_id, str):
        return
    if item_id not in items:
        after = event.get("previous_item_id", items[-1] if items else None)
        items.insert(items.index(after) + 1 if after in items else len(items), item_id)
    index = items.index(item_id)
    event.setdefault("previous_item_id", items[index - 1] if index else None)


def send(event: dict) -> dict:
    return {"send": event}


def _words(text: str, size: int = 3) -> list[str]:
    """The text in small pieces, as transcript deltas arrive."""
    words = text.split(" ")
    return [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]


def user_audio_item(item_id: str, *, vad: bool = True) -> list[dict]:
    """The user spoke and the turn was committed: the item enters the conversation, untranscribed."""
    steps = []
    if vad:
        steps += [
            send({"type": "input_audio_buffer.speech_started", "item_id": item_id, "audio_start_ms": 100}),
            send({"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": 1500}),
        ]
    steps += [
        send({"type": "input_audio_buffer.committed", "item_id": item_id}),
        send(
            {
                "type": "conversation.item.added",
                "item": {
                    "id": item_id,
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            }
        ),
    ]
    return steps


def user_transcript(item_id: str, text: str, *, deltas: bool = True) -> list[dict]:
    steps = []
    if deltas:
        steps += [
            send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id, "content_index": 0, "delta": piece})
            for piece in _words(text)
        ]
    steps.append(
        send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "tokens", "total_tokens": 20, "input_tokens": 14, "output_tokens": 6},
            }
        )
    )
    return steps


def transcription_failed(item_id: str, message: str = "Audio was unintelligible") -> list[dict]:
    return [
        send(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item_id,
                "content_index": 0,
                "error": {"type": "transcription_error", "code": "audio_unintelligible", "message": message},
            }
        )
    ]


def typed_user_item(item_id: str, text: str) -> list[dict]:
    item = {"id": item_id, "type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": text}]}
    return [
        send({"type": "conversation.item.added", "item": item}),
        send({"type": "conversation.item.done", "item": item}),
    ]


def assistant_start(item_id: str, response_id: str) -> list[dict]:
    """A response begins and its item enters the conversation; the voice starts playing."""
    return [
        send({"type": "response.created", "response": {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}}),
        send(
            {
                "type": "conversation.item.added",
                "item": {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []},
            }
        ),
        send({"type": "output_audio_buffer.started", "response_id": response_id}),
    ]


def assistant_deltas(item_id: str, response_id: str, text: str) -> list[dict]:
    return [
        send({"type": "response.output_audio_transcript.delta", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece})
        for piece in _words(text)
    ]


def assistant_finish(item_id: str, response_id: str, text: str, *, status: str = "completed") -> list[dict]:
    """The transcript is final, the item done, the response over (`cancelled` after a barge-in)."""
    item = {"id": item_id, "type": "message", "role": "assistant", "status": "completed" if status == "completed" else "incomplete",
            "content": [{"type": "output_audio", "transcript": text}]}
    details = None if status == "completed" else {"type": status, "reason": "turn_detected" if status == "cancelled" else "max_output_tokens"}
    return [
        send({"type": "response.output_audio_transcript.done", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "transcript": text}),
        send({"type": "conversation.item.done", "item": item}),
        send({"type": "output_audio_buffer.stopped" if status == "completed" else "output_audio_buffer.cleared", "response_id": response_id}),
        send({"type": "response.done", "response": {"id": response_id, "object": "realtime.response", "status": status, "status_details": details,
                                                    "output": [item], "usage": USAGE}}),
    ]


def assistant_turn(item_id: str, response_id: str, text: str) -> list[dict]:
    return (
        assistant_start(item_id, response_id)
        + assistant_deltas(item_id, response_id, text)
        + assistant_finish(item_id, response_id, text)
    )


def voice_turn(n: int, user: str, reply: str, *, late_transcript: bool = True) -> list[dict]:
    """One spoken exchange. With late_transcript the user's transcript arrives after the whole
    reply — as it often does — and must still be shown and stored above it."""
    user_id, reply_id, response_id = f"item_user_{n}", f"item_reply_{n}", f"resp_{n}"
    steps = user_audio_item(user_id)
    if not late_transcript:
        steps += user_transcript(user_id, user)
    steps += assistant_turn(reply_id, response_id, reply)
    if late_transcript:
        steps += user_transcript(user_id, user)
    return steps


def session_expired() -> list[dict]:
    return [send({"type": "error", "error": {"type": "invalid_request_error", "code": "session_expired",
                                             "message": "Your session hit the maximum duration of 60 minutes.", "param": None}})]


# --- Scenarios ------------------------------------------------------------------------------------

def conversation(turns: int = 3, first: int = 1) -> list[dict]:
    """Spoken turns numbered from `first`: turn 1 (mod 3) has a late user transcript, turn 2 an
    on-time one, turn 3 a failed transcription."""
    steps: list[dict] = []
    for n in range(first, first + turns):
        tag = str(n)
        if n % 3 == 0:
            steps += user_audio_item(f"item_user_{tag}")
            steps += assistant_turn(f"item_reply_{tag}", f"resp_{tag}", f"Sorry, I did not catch that ({tag}).")
            steps += transcription_failed(f"item_user_{tag}")
        else:
            steps += voice_turn(tag, f"Question number {tag}, please?", f"Here is answer number {tag}.", late_transcript=n % 3 == 1)
    return steps


def barge_in(n: int = 1) -> list[dict]:
    """The assistant starts a long answer, then stops when the browser interrupts it."""
    item_id, response_id = f"item_reply_{n}", f"resp_{n}"
    said = "Once upon a time, in a land far away, there lived"
    return (
        assistant_start(item_id, response_id)
        + assistant_deltas(item_id, response_id, said)
        + [{"wait": "response.cancel"}]
        + [send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": 1800})]
        + assistant_finish(item_id, response_id, said, status="cancelled")
    )


GREETING = "Hi! I'm the offline Realtime stand-in. Speak and pause, type a message, or hold the Talk button in push-to-talk mode, and I'll answer."


def default_script() -> list[dict]:
    """For a person clicking through the app offline: a greeting, then an answer to each request."""
    return [
        *assistant_turn("item_greeting", "resp_greeting", GREETING),
        {"listen": True},
        {"loop": [{"wait": "response.create"}, {"reply": {}}]},
    ]


_REPLIES = itertools.cycle(
    [
        "Got it. This is the stand-in answering; a real model would have something clever to say.",
        "Thanks! Everything you and I say here is saved to your history.",
        "Still here. Try interrupting me, switching modes, or stopping and opening your history.",
    ]
)


def next_reply() -> str:
    return next(_REPLIES)


def reply_to(request: dict | None, n: int) -> list[dict]:
    """The steps of the `reply` step: echo what the browser sent (typed text or audio), answer."""
    user_id, reply_id, response_id = f"item_user_r{n}", f"item_reply_r{n}", f"resp_r{n}"
    steps: list[dict] = []
    if request and request.get("type") == "conversation.item.create":
        content = (request.get("item") or {}).get("content") or [{}]
        text = str(content[0].get("text") or "")
        steps += typed_user_item(user_id, text)
        answer = f'You wrote: "{text[:200]}". {next_reply()}'
    elif request and request.get("type") == "input_audio_buffer.commit":
        steps += user_audio_item(user_id, vad=False)
        steps += user_transcript(user_id, "(something you said)")
        answer = next_reply()
    else:
        answer = next_reply()
    steps += assistant_turn(reply_id, response_id, answer)
    return steps
