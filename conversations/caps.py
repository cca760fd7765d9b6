"""
The session-length cap, REALTIME_MAX_SESSION_SECONDS: how it is said, and the rule for the calls
the server cannot hang up.

With a witness (witness.enabled()) every call whose id the server knows is hung up at the cap by
the supervisors' sweep (witness/hangup.py), and the page may continue the conversation in a new
session. Without one (REALTIME_WITNESS=false, no OPENAI_API_KEY for the sideband, or the page never
reported its call id) the server cannot end a call: the page's own timer ends the session at the
cap, and the server refuses a new session for a conversation that began more than the cap ago
(`session_limit_reached`, 409), so a conversation the server cannot see is bounded to one cap's
worth of time from its start; a new conversation starts afresh.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from conversations import witness
from conversations.models import Conversation, RealtimeCall


def cap_words(seconds: int | None = None) -> str:
    """1800 -> "30-minute", 90 -> "90-second" (as in "its 30-minute limit")."""
    seconds = settings.REALTIME_MAX_SESSION_SECONDS if seconds is None else seconds
    return f"{seconds // 60}-minute" if seconds % 60 == 0 else f"{seconds}-second"


def unwatched_past_cap(conversation: Conversation, *, now=None) -> bool:
    """True when a new session of `conversation` must be refused: it began more than the cap ago
    and the server could not have hung its calls up (no witness, or no call id known)."""
    now = now or timezone.now()
    if conversation.created_at > now - timedelta(seconds=settings.REALTIME_MAX_SESSION_SECONDS):
        return False
    return not (witness.enabled() and RealtimeCall.objects.filter(conversation_id=conversation.pk).exists())
