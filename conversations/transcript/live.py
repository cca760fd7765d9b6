"""
Live updates of a conversation over the channel layer (in-memory, or Redis across processes).

Public API — whoever shows a conversation live (the history page's read-only socket) joins
`group_name(conversation.uuid)` and handles these messages (Channels calls the consumer method
named after `type` with dots as underscores: `transcript_changed`, `conversation_ended`, …):

    {"type": "transcript.changed", "conversation": "<uuid>",
     "utterances": [serialize_utterance(u), …]}      # the new or changed ones, by position
    {"type": "conversation.ended", "conversation": "<uuid>", "ended_at": "<ISO 8601>"}
    {"type": "conversation.deleted", "conversation": "<uuid>"}    # nothing more will come
    {"type": "conversation.reviewed", "conversation": "<uuid>", "reviewed": bool, "flagged": bool}
                                                     # staff's review state: for reviewers only

Who sends them: the transcript socket (changes), and conversations/actions.py (end, delete,
review), which writes and then publishes.

An utterance is sent whole (not a diff), so a receiver simply replaces the line with that
item_id, or inserts it at its position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from channels.layers import get_channel_layer

from conversations.models import Utterance

logger = logging.getLogger(__name__)

CHANGED = "transcript.changed"
ENDED = "conversation.ended"
DELETED = "conversation.deleted"
REVIEWED = "conversation.reviewed"


def group_name(conversation_uuid: UUID | str) -> str:
    """The channel-layer group of one conversation, e.g. "conversation.6f1c…" (32 hex digits)."""
    return f"conversation.{UUID(str(conversation_uuid)).hex}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def serialize_utterance(u) -> dict:
    """One utterance as JSON-ready data; `u` is an `Utterance` row or a reducer `UtteranceState`."""
    data = {name: getattr(u, name) for name in Utterance.FIELDS}
    for name in Utterance.DATETIME_FIELDS:
        data[name] = _iso(data[name])
    return data


def changed_message(conversation_uuid, utterances: Iterable) -> dict:
    return {
        "type": CHANGED,
        "conversation": str(conversation_uuid),
        "utterances": [serialize_utterance(u) for u in utterances],
    }


def ended_message(conversation_uuid, ended_at: datetime | None) -> dict:
    return {"type": ENDED, "conversation": str(conversation_uuid), "ended_at": _iso(ended_at)}


def deleted_message(conversation_uuid) -> dict:
    return {"type": DELETED, "conversation": str(conversation_uuid)}


def reviewed_message(conversation_uuid, *, reviewed: bool, flagged: bool) -> dict:
    return {"type": REVIEWED, "conversation": str(conversation_uuid), "reviewed": reviewed, "flagged": flagged}


async def publish(conversation_uuid, message: dict) -> None:
    """Send a message to the conversation's group. Best effort: the data is stored either way,
    and a page that missed an update gets the whole transcript when it (re)loads."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group_name(conversation_uuid), message)
    except Exception:
        logger.exception("Could not publish a live update of conversation %s", conversation_uuid)
