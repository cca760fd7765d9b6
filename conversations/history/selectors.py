"""
Queries over stored conversations, shared by the history pages, the admin and the live socket.

Every list here is built so that its query count does not grow with the number of rows:
counts and excerpts are annotations (correlated subqueries), transcript search is an
`EXISTS` subquery (no join, no duplicate rows, no DISTINCT).
"""

import uuid
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from django.db.models import (
    Count,
    DecimalField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from conversations.models import (
    Conversation,
    Event,
    RealtimeCall,
    Recording,
    Source,
    TranscriptionUsage,
    Utterance,
)


def owned_by(user) -> QuerySet[Conversation]:
    """The user's own conversations (lists; one conversation is fetched through `access`)."""
    return Conversation.objects.filter(user=user)


def find_by_ids(conversation_ids: Iterable[uuid.UUID]) -> tuple[list[Conversation], list[uuid.UUID]]:
    """
    The conversations with these public ids, in the order given and once each (only pk and uuid
    loaded), and the ids that match none — for the commands that take `--conversation UUID`.
    """
    wanted = list(dict.fromkeys(conversation_ids))
    found = {c.uuid: c for c in Conversation.objects.filter(uuid__in=wanted).only("pk", "uuid")}
    return [found[u] for u in wanted if u in found], [u for u in wanted if u not in found]


def with_turns(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate `turns`: how many utterances each conversation holds."""
    # A correlated subquery rather than Count() over a join, so that it composes with other
    # annotations and filters without GROUP BY over every column.
    turns = (
        Utterance.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return conversations.annotate(turns=Coalesce(Subquery(turns), 0))


def with_verified(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate `verified_lines`: how many of its lines the server's witness saw end itself."""
    return conversations.annotate(
        verified_lines=_count(Utterance.objects.filter(conversation=OuterRef("pk"), verified=True))
    )


def _count(rows: QuerySet) -> Coalesce:
    return Coalesce(Subquery(rows.order_by().values("conversation").annotate(n=Count("pk")).values("n")), 0)


def with_witness(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate what its calls' witnesses did: `call_count`, `calls_attached` (calls whose witness
    is, or was until the call ended, attached) and `witness_state`, the latest call's (None
    without a call). Three correlated subqueries on the calls' conversation index, per row."""
    calls = RealtimeCall.objects.filter(conversation=OuterRef("pk"))
    latest = calls.order_by("-created_at", "-pk").values("witness_state")[:1]
    return conversations.annotate(
        call_count=_count(calls),
        calls_attached=_count(calls.filter(witness_state=RealtimeCall.WitnessState.ATTACHED)),
        witness_state=Subquery(latest),
    )


TRANSCRIPTION_PREFIX = "transcription_usage_"


def transcription_sums() -> dict:
    """Aggregates of the `TranscriptionUsage` fields, for `.aggregate()` or grouped `.annotate()`
    (what `pricing.transcription_cost` prices)."""
    return {name: Sum(name) for name in TranscriptionUsage.USAGE_FIELDS}


def with_transcription_usage(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate the sums of its input transcription usage, named with TRANSCRIPTION_PREFIX (for
    `pricing.conversation_cost`): one correlated subquery per field on the usage's conversation
    index, per row."""
    rows = TranscriptionUsage.objects.filter(conversation=OuterRef("pk")).order_by().values("conversation")
    return conversations.annotate(
        **{
            TRANSCRIPTION_PREFIX + name: Subquery(
                rows.annotate(total=Sum(name)).values("total"),
                output_field=DecimalField() if name == "seconds" else None,
            )
            for name in TranscriptionUsage.USAGE_FIELDS
        }
    )


def witnessed() -> Exists:
    """An EXISTS condition: the server's witness journaled events of the conversation (one probe of
    the journal's (conversation, source, seq) index)."""
    return Exists(Event.objects.filter(conversation=OuterRef("pk"), source=Source.SERVER))


def with_duration(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate `duration_value` (the `duration` property, in SQL) so that lists can sort by it."""
    return conversations.annotate(
        duration_value=ExpressionWrapper(
            F("last_activity_at") - F("started_at"), output_field=DurationField()
        )
    )


def with_first_line(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate `first_line`: the first thing said, to name untitled conversations."""
    first = (
        Utterance.objects.filter(conversation=OuterRef("pk"))
        .exclude(text="")
        .order_by("position")
        .values("text")[:1]
    )
    return conversations.annotate(first_line=Subquery(first))


def display_title(conversation: Conversation, length: int = 70) -> str:
    """Its title; else the first thing said (with `with_first_line`); else "Untitled conversation"."""
    if conversation.title:
        return conversation.title
    first_line = " ".join((getattr(conversation, "first_line", None) or "").split())
    if first_line:
        return first_line if len(first_line) <= length else first_line[: length - 1].rstrip() + "…"
    return "Untitled conversation"


def transcript_contains(text: str) -> Exists:
    """An EXISTS condition: some utterance of the conversation contains `text` (any case)."""
    return Exists(Utterance.objects.filter(conversation=OuterRef("pk"), text__icontains=text))


def matches_title_or_user(text: str) -> Q:
    """The conversation's title or its owner's username contains `text` (any case)."""
    return Q(title__icontains=text) | Q(user__username__icontains=text)


def search(conversations: QuerySet[Conversation], text: str) -> QuerySet[Conversation]:
    """
    Conversations whose transcript contains `text`, with `match` annotated: the first line that
    contains it, to show in the results.
    """
    text = text.strip()
    if not text:
        return conversations
    first_match = (
        Utterance.objects.filter(conversation=OuterRef("pk"), text__icontains=text)
        .order_by("position")
        .values("text")[:1]
    )
    return conversations.filter(transcript_contains(text)).annotate(match=Subquery(first_match))


def has_utterance_status(status: str) -> Exists:
    """An EXISTS condition: some utterance of the conversation has that status (failed, …)."""
    return Exists(Utterance.objects.filter(conversation=OuterRef("pk"), status=status))


def created_between(
    conversations: QuerySet[Conversation], start: date | None = None, end: date | None = None
) -> QuerySet[Conversation]:
    """Conversations created on the days from `start` to `end`, both included (current time zone)."""
    # Compare with the bounds of the days rather than with created_at__date, so that the
    # (user, -created_at) index serves the range.
    if start:
        conversations = conversations.filter(created_at__gte=start_of_day(start))
    if end:
        conversations = conversations.filter(created_at__lt=start_of_day(end + timedelta(days=1)))
    return conversations


def start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def history_list(user, *, text: str = "", start: date | None = None, end: date | None = None):
    """The history page's list: the user's conversations, newest first, ready to display."""
    conversations = created_between(owned_by(user), start, end)
    conversations = search(conversations, text)
    return with_first_line(with_turns(conversations)).order_by("-created_at", "-pk")


def transcript(conversation: Conversation) -> QuerySet[Utterance]:
    """The conversation's utterances in the order their items entered the conversation."""
    return conversation.utterances.order_by("position")


def live_path(conversation: Conversation) -> str:
    """
    The read-only socket of a transcript page (routing.py, history_consumer.py); "" once the
    conversation has ended, as only an active conversation changes while the page is open.
    """
    if conversation.status != Conversation.Status.ACTIVE:
        return ""
    return f"/ws/conversations/{conversation.uuid}/live/"


def transcript_labels(user_label: str = "You") -> dict:
    """
    The words a transcript shows for roles and statuses, for the templates and live.js alike.
    `user_label` names the user's side: "You" for the owner, their username for a reviewer.
    """
    return {
        "roles": {Utterance.Role.USER: user_label, Utterance.Role.ASSISTANT: "Assistant"},
        # live: a reply still being spoken, on the voice page (never stored)
        "statuses": {**dict(Utterance.Status.choices), "live": "Speaking"},
        "kinds": dict(Utterance.Kind.choices),
        "conversation": dict(Conversation.Status.choices),
        # The small mark of a line the server's witness saw end itself (Utterance.verified).
        "verified": {"mark": "✓", "title": "Verified: the server heard this itself"},
    }


def recordings_for(conversation: Conversation) -> list[dict]:
    """
    The conversation's recordings in session order, for the players of the transcript page and
    the admin: where to fetch each (`url`, and `download_url`), how long it is and when it
    started (ISO, server clock), so that a line said at `created_at` is at
    created_at - started_at in it.
    """
    rows = Recording.objects.filter(conversation=conversation).order_by("segment")
    return [
        {
            "segment": recording.segment,
            "url": reverse("conversations:recording_segment", args=[conversation.uuid, recording.segment]),
            "download_url": reverse("conversations:recording_segment", args=[conversation.uuid, recording.segment])
            + "?download=1",
            "duration_ms": recording.duration_ms,
            "started_at": recording.started_at.isoformat(),
            "mime_type": recording.mime_type,
            "bytes": recording.bytes,
        }
        for recording in rows.only("segment", "duration_ms", "started_at", "mime_type", "bytes")
    ]
