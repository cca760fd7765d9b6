"""Real rows for tests (no mocking of the ORM): users, signed-in clients, conversations, and
conversations with everything that hangs off them (transcripts, usage, journal)."""

import datetime
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Event, ResponseUsage, Utterance

PASSWORD = "correct-horse-battery-staple"
T0 = datetime.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def make_user(username="alice", password=PASSWORD, **extra):
    return get_user_model().objects.create_user(username=username, password=password, **extra)


def make_superuser(username="reviewer", **extra):
    """Staff with every permission, as the admin tests' reviewer."""
    return make_user(username, is_staff=True, is_superuser=True, **extra)


def signed_in(user, **client_options) -> Client:
    """A test client with a real session for `user` (`client_options`: e.g. enforce_csrf_checks)."""
    client = Client(**client_options)
    client.force_login(user)
    return client


def make_conversation(user, **extra):
    extra.setdefault("model", "gpt-realtime-2.1")
    extra.setdefault("voice", "marin")
    return Conversation.objects.create(user=user, **extra)


# --- conversations with transcripts, journal and usage (history and admin tests) ----------------

def make_talk(
    user, lines=(("user", "Hello there"), ("assistant", "Hi! How can I help?")), *, when=None, **extra
):
    """
    A conversation of `user` holding `lines` — (role, text) or (role, text, status) — with one
    journal event per line and one usage record per assistant line, totals summed.
    """
    when = when or timezone.now()
    extra.setdefault("created_at", when)
    extra.setdefault("started_at", when)
    extra.setdefault("last_activity_at", when + timedelta(seconds=5 * len(lines) + 7))
    conversation = make_conversation(user, **extra)
    usages = []
    for position, line in enumerate(lines):
        role, text, status = (*line, "completed") if len(line) == 2 else line
        Utterance.objects.create(
            conversation=conversation,
            item_id=f"item_{position}",
            role=role,
            text=text,
            status=status,
            error="audio_unintelligible" if status == "failed" else "",
            position=position,
            created_at=when + timedelta(seconds=5 * position),
        )
        Event.objects.create(
            conversation=conversation,
            seq=position + 1,
            type="conversation.item.added",
            payload={"type": "conversation.item.added", "item": {"id": f"item_{position}", "role": role}},
        )
        if role == "assistant":
            usages.append(
                ResponseUsage.objects.create(
                    conversation=conversation,
                    response_id=f"resp_{position}",
                    status="completed",
                    input_tokens=1000,
                    input_text_tokens=400,
                    input_audio_tokens=600,
                    cached_tokens=200,
                    output_tokens=500,
                    output_text_tokens=100,
                    output_audio_tokens=400,
                )
            )
    for name in ResponseUsage.USAGE_FIELDS:
        setattr(conversation, name, sum(getattr(u, name) for u in usages))
    conversation.save()
    return conversation


# --- full conversations, timed from T0 (export, import and purge tests) ---------------------------


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
