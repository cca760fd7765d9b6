"""One meaning of the transcript: the page's reducer (static/voice/transcript.js, run with node)
and the server's (conversations/transcript/reducer.py) end every stream with the same lines.

The page sees every event of a stream, deltas included; the server sees only what the page
forwards (`FORWARDED_TYPES` in static/voice/outbox.js, read by both the page and these tests).
What the page shows at the end must be what is stored: roles, order, kinds, texts, statuses and
errors, and the conflicts both count.
"""

import json
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conversations.transcript import order, reducer
from tests.support.events import (
    SCENARIOS,
    assistant,
    audio_done,
    forwarded,
    forwarded_types,
    load_scenario,
    output_item,
    response_done,
    text_done,
    transcribed,
    transcription_failed,
    user_audio,
    user_text,
)

NODE = shutil.which("node")
REPLAY = Path(__file__).parent / "js" / "replay.mjs"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIELDS = ("item_id", "role", "kind", "status", "text", "error", "response_id")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: the page's reducer cannot run")


def page(streams: list[list]) -> list[dict]:
    """Each stream through the page's TranscriptModel (one node process for all of them)."""
    result = subprocess.run(
        [NODE, str(REPLAY)], input=json.dumps(streams), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def server(events: list) -> dict:
    """What the server stores of a stream: the forwarded events folded by the reducer."""
    state = reducer.TranscriptState()
    changes = reducer.fold(state, [(e, T0 + timedelta(seconds=i)) for i, e in enumerate(forwarded(events))])
    lines = sorted(order.placed(state.utterances).values(), key=lambda u: u.position)  # as stored
    return {"lines": [{k: getattr(u, k) for k in FIELDS} for u in lines], "conflicts": changes.conflicts}


@pytest.fixture(scope="module")
def on_page():
    if NODE is None:
        pytest.skip("node is not installed: the page's reducer cannot run")
    return dict(zip(SCENARIOS, page([load_scenario(name)["events"] for name in SCENARIOS])))


@needs_node
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_page_shows_what_is_stored(name, on_page):
    scenario = load_scenario(name)
    stored = server(scenario["events"])
    assert stored["lines"] == scenario["expected"]["utterances"]
    assert on_page[name] == stored
    assert stored["conflicts"] == 0  # honest recordings contradict nothing


def test_the_fixtures_hold_the_cases_the_reducers_disagreed_on():
    types = {name: {e["type"] for e in load_scenario(name)["events"]} for name in SCENARIOS}
    assert "conversation.item.truncated" in types["truncated_reply"]
    assert "conversation.item.deleted" in types["deleted_items"]
    failed = [e for e in load_scenario("failed_response")["events"] if e["type"] == "response.done"]
    assert failed[0]["response"]["status"] == "failed"
    # What each case means, on both sides (see the reducer's docstring).
    statuses = {
        name: [u["status"] for u in load_scenario(name)["expected"]["utterances"]]
        for name in ("failed_response", "truncated_reply", "deleted_items")
    }
    assert statuses["failed_response"][1] == "interrupted"
    assert statuses["truncated_reply"][1] == "interrupted"
    assert statuses["deleted_items"][2:4] == ["deleted", "deleted"]


def test_every_event_the_reducer_reads_is_forwarded_and_no_delta():
    read = (
        reducer.ITEM_EVENTS - {"conversation.item.retrieved"}  # only ever sent on the client's request
        | reducer.AUDIO_TRANSCRIPT_DONE | reducer.TEXT_DONE
        | {reducer.TRANSCRIPTION_COMPLETED, reducer.TRANSCRIPTION_FAILED, reducer.RESPONSE_DONE,
           reducer.ITEM_TRUNCATED, reducer.ITEM_DELETED, reducer.BUFFER_COMMITTED}
    )  # fmt: skip
    assert read <= set(forwarded_types())
    assert not any(t.endswith(".delta") for t in forwarded_types())


# --- any stream, honest or not: the same lines on both sides ------------------------------------------

ITEMS = ["i1", "i2", "i3", "i4"]
TEXTS = ["", "yes", "no", "yes\nno"]
STATUSES = ["completed", "cancelled", "incomplete", "failed", "in_progress", None]


def random_event(rnd: random.Random):
    item, text, rid = rnd.choice(ITEMS), rnd.choice(TEXTS), rnd.choice(["r1", "r2", "r3"])
    role = rnd.choice(["user", "assistant"])
    choices = [
        lambda: user_audio(item, rnd.choice(["conversation.item.added", "conversation.item.done"])),
        lambda: user_text(item, text, rnd.choice(["conversation.item.added", "conversation.item.created"])),
        lambda: assistant(item, rnd.choice(["in_progress", "completed", "incomplete"]), rnd.choice([None, text]),
                          rnd.choice(["conversation.item.added", "conversation.item.done"])),
        lambda: {"type": "conversation.item.done", "item": {"id": item, "type": "message", "role": role,
                 "status": "completed", "content": [{"type": rnd.choice(["input_text", "output_text", "audio"]),
                                                     "text": text, "transcript": text}]}},
        lambda: transcribed(item, text, rnd.choice([None, 3])),
        lambda: transcription_failed(item, rnd.choice(["", "Unintelligible."])),
        lambda: audio_done(item, rid, text, beta=rnd.random() < 0.3),
        lambda: text_done(item, rid, text, beta=rnd.random() < 0.3),
        lambda: response_done(rid, rnd.choice(STATUSES), [
            {**output_item(rnd.choice(ITEMS), rnd.choice([None, *TEXTS]), rnd.choice(["completed", "incomplete"])),
             "role": rnd.choice(["assistant", "assistant", "user"])} for _ in range(rnd.randint(0, 2))
        ]),
        lambda: {"type": "conversation.item.truncated", "item_id": item, "content_index": 0, "audio_end_ms": 900},
        lambda: {"type": "conversation.item.deleted", "item_id": item},
        lambda: {"type": "input_audio_buffer.committed", "item_id": item},
        lambda: rnd.choice([{"type": "response.done", "response": None}, {"type": "conversation.item.added"},
                            {"type": "conversation.item.deleted", "item_id": 7}, {"type": "error"}]),
    ]
    event = rnd.choice(choices)()
    if event["type"] == "response.done" and event["response"] and rnd.random() < 0.3:
        event["response"]["status_details"] = {"error": rnd.choice([{}, {"code": "server_error"}, {"message": "Boom"}])}
    return event


@needs_node
def test_random_streams_end_the_same_on_the_page_and_in_the_database():
    rnd = random.Random(20261120)
    streams = [[random_event(rnd) for _ in range(rnd.randint(1, 25))] for _ in range(600)]
    stored = [server(events) for events in streams]
    shown = page(streams)
    for events, s, p in zip(streams, stored, shown):
        assert p == s, json.dumps(events)
    # The comparison meant something: the streams did contradict and delete lines.
    assert sum(s["conflicts"] for s in stored) > 50
    assert sum(u["status"] == "deleted" for s in stored for u in s["lines"]) > 50
