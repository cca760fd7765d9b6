"""Conversations with transcripts, journal and usage, for the history and admin tests."""

from datetime import timedelta

from django.utils import timezone

from conversations.models import Event, ResponseUsage, Utterance
from tests.factories import make_conversation


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
