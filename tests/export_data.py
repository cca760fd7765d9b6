"""Conversations with everything that hangs off them, for the export, import and purge tests."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

from conversations.models import Event, ResponseUsage, Utterance
from tests.factories import make_conversation

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def make_full_conversation(user, *, utterances=4, events=3, at=T0, **extra):
    """A conversation with `utterances` alternating user/assistant, a usage per reply, a journal.

    Rows are created out of position order, as the socket does when a transcript arrives late.
    """
    extra.setdefault("title", f"Talk of {user.username} at {at:%Y-%m-%d}")
    extra.setdefault("status", "ended")
    conversation = make_conversation(
        user,
        created_at=at,
        started_at=at + datetime.timedelta(seconds=1),
        last_activity_at=at + datetime.timedelta(minutes=5),
        ended_at=at + datetime.timedelta(minutes=5),
        segments=1,
        input_tokens=120,
        output_tokens=340,
        cached_tokens=20,
        transcription_tokens=17,
        **extra,
    )
    for position in reversed(range(utterances)):
        role = "user" if position % 2 == 0 else "assistant"
        Utterance.objects.create(
            conversation=conversation,
            item_id=f"item_{conversation.pk}_{position}",
            role=role,
            kind="audio",
            text=f'{role} says «{position}», with a comma, a "quote"\nand a new line',
            status="completed",
            response_id="" if role == "user" else f"resp_{conversation.pk}_{position}",
            position=position,
            created_at=at + datetime.timedelta(seconds=position),
            completed_at=at + datetime.timedelta(seconds=position, microseconds=500),
        )
        if role == "assistant":
            ResponseUsage.objects.create(
                conversation=conversation,
                response_id=f"resp_{conversation.pk}_{position}",
                status="completed",
                input_tokens=10 * position,
                output_tokens=20 * position,
                output_audio_tokens=15 * position,
                created_at=at + datetime.timedelta(seconds=position, milliseconds=700),
            )
    for seq in range(1, events + 1):
        Event.objects.create(
            conversation=conversation,
            seq=seq,
            type="conversation.item.added",
            payload={"type": "conversation.item.added", "event_id": f"evt_{seq}", "n": [1, 2.5, None, True]},
            received_at=at + datetime.timedelta(seconds=seq),
        )
    return conversation


def database_url() -> str:
    """The test database, for a `manage.py` run in another process (committed data only)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def run_manage(*args, database=False, **kwargs):
    """`manage.py` in a fresh interpreter with the test settings; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if database:
        env["DATABASE_URL"] = database_url()
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        **kwargs,
    )
