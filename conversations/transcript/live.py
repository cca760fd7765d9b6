"""
Live updates of a conversation over the channel layer (in-memory, or Redis across processes).

Public API — whoever shows a conversation live (the history page's read-only socket) joins
`group_name(conversation.uuid)` and handles these messages (Channels calls the consumer method
named after `type` with dots as underscores: `transcript_changed`, `conversation_ended`):

    {"type": "transcript.changed", "conversation": "<uuid>",
     "utterances": [serialize_utterance(u), …]}      # the new or changed ones, by position
    {"type": "conversation.ended", "conversation": "<uuid>", "ended_at": "<ISO 8601>"}

An utterance is sent whole (not a diff), so a receiver simply replaces the line with that
item_id, or inserts it at its position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

CHANGED = "transcript.changed"
ENDED = "conversation.ended"


def group_name(conversation_uuid: UUID | str) -> str:
    """The channel-layer group of one conversation, e.g. "conversation.6f1c…" (32 hex digits)."""
    return f"conversation.{UUID(str(conversation_uuid)).hex}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def serialize_utterance(u) -> dict:
    """One utterance as JSON-ready data; `u` is an `Utterance` row or a reducer `UtteranceState`."""
    return {
        "item_id": u.item_id,
        "role": u.role,
        "kind": u.kind,
        "text": u.text,
        "status": u.status,
        "error": u.error,
        "response_id": u.response_id,
        "position": u.position,
        "created_at": _iso(u.created_at),
        "completed_at": _iso(u.completed_at),
    }


def changed_message(conversation_uuid, utterances: Iterable) -> dict:
    return {
        "type": CHANGED,
        "conversation": str(conversation_uuid),
        "utterances": [serialize_utterance(u) for u in utterances],
    }


def ended_message(conversation_uuid, ended_at: datetime | None) -> dict:
    return {"type": ENDED, "conversation": str(conversation_uuid), "ended_at": _iso(ended_at)}


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
