"""
Starting a voice session (one ephemeral key, one OpenAI Realtime session): may the caller start
one now, which conversation it belongs to, how it is configured, and what is recorded.

The key view runs these in this order: charge the limits, find the conversation to continue,
mint the key, record. So a failed mint leaves nothing behind — a new conversation is created
only once OpenAI has handed out a key, and a continued one is not touched until then. The
alternative (create first, delete or mark it failed when the mint fails) leaves an "active"
orphan whenever the clean-up does not run, e.g. when a client that hangs up cancels the view
in the middle of the upstream call. A key minted for a request that then fails to record just
expires unused (REALTIME_KEY_TTL).
"""

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F

from conversations.models import Conversation
from conversations.realtime import upstream
from voiceproject import ratelimit


@dataclass(frozen=True)
class SessionRequest:
    """What the caller asked for; None means "choose for me"."""

    voice: str | None = None
    turn_detection: str | None = None
    conversation: uuid.UUID | None = None  # continue this conversation of the caller's


@dataclass(frozen=True)
class SessionPlan:
    """How the new OpenAI session is configured."""

    model: str
    voice: str
    turn_detection: str


def plan_session(request: SessionRequest, conversation: Conversation | None = None) -> SessionPlan:
    """
    What was asked for; otherwise, when continuing, what the conversation used so far (a new
    segment should sound like the old one); otherwise the server's defaults. The model is the
    server's choice: a conversation keeps its model while that is still allowed.
    """
    model, voice, turn_detection = settings.REALTIME_MODEL, settings.REALTIME_VOICE, upstream.SERVER_VAD
    if conversation is not None:
        if conversation.model in settings.REALTIME_MODELS:
            model = conversation.model
        if conversation.voice in upstream.VOICES:
            voice = conversation.voice
        if conversation.turn_detection in upstream.TURN_DETECTION_MODES:
            turn_detection = conversation.turn_detection
    return SessionPlan(
        model=model,
        voice=request.voice or voice,
        turn_detection=request.turn_detection or turn_detection,
    )


# --- rate limits ------------------------------------------------------------------------------

USER_BURST, USER_DAILY, ADDRESS_BURST, SITE_DAILY = "user", "user-daily", "address", "site-daily"


def key_limit_rules(user, address: str) -> list[ratelimit.Rule]:
    """
    The limits on minting keys: a burst limit per user and per client address (ratelimit.client_ip:
    an IPv6 /64 counts as one address), a daily cap per user and one for the whole site.
    """
    user_id = str(user.pk)
    return [
        ratelimit.Rule(USER_BURST, settings.KEY_RATE_LIMIT_PER_USER, ("realtime-key-user", user_id)),
        ratelimit.Rule(USER_DAILY, settings.KEY_DAILY_LIMIT_PER_USER, ("realtime-key-user-day", user_id)),
        ratelimit.Rule(ADDRESS_BURST, settings.KEY_RATE_LIMIT_PER_IP, ("realtime-key-ip", address)),
        ratelimit.Rule(SITE_DAILY, settings.KEY_DAILY_LIMIT_SITE, ("realtime-key-site-day", "all")),
    ]


async def acharge_key(user, address: str) -> ratelimit.Verdict:
    """Count one key for `user` at `address`, unless a limit refuses it (then count nothing)."""
    return await ratelimit.aconsume(*key_limit_rules(user, address))


def limit_message(verdict: ratelimit.Verdict) -> str:
    wait = ratelimit.format_wait(verdict.retry_after)
    if verdict.refused_by == SITE_DAILY:
        return (
            "This site has started as many voice sessions today as it allows for all its users together. "
            f"Please try again in {wait}."
        )
    if verdict.refused_by == USER_DAILY:
        return f"You have started as many voice sessions as allowed for one day. Please try again in {wait}."
    if verdict.refused_by == ADDRESS_BURST:
        return (
            "Too many voice sessions were started from your network just now. "
            f"Please wait {wait} and try again."
        )
    return f"You are starting voice sessions too quickly. Please wait {wait} and try again."


# --- the conversation -------------------------------------------------------------------------


async def aget_own_conversation(user, conversation_id: uuid.UUID) -> Conversation:
    """The caller's conversation; Conversation.DoesNotExist for an unknown or someone else's."""
    return await Conversation.objects.aget(uuid=conversation_id, user=user)


async def arecord_session(user, plan: SessionPlan, conversation: Conversation | None = None) -> Conversation:
    """
    Record a session that has its key: a new conversation, or one more segment of `conversation`
    (which becomes active again if it had ended). One query either way.
    """
    if conversation is None:
        return await Conversation.objects.acreate(
            user=user,
            model=plan.model,
            voice=plan.voice,
            turn_detection=plan.turn_detection,
            status=Conversation.Status.ACTIVE,
            segments=1,
        )
    changes = {
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "status": Conversation.Status.ACTIVE,
        "ended_at": None,
    }
    # F(): two segments started at once both count.
    updated = await Conversation.objects.filter(pk=conversation.pk, user=user).aupdate(
        segments=F("segments") + 1, **changes
    )
    if not updated:  # deleted meanwhile
        raise Conversation.DoesNotExist
    for name, value in changes.items():
        setattr(conversation, name, value)
    conversation.segments += 1
    return conversation
