"""
The server ends a call: at the session-length cap (the supervisor's sweep) or when the witness
sees its user's daily budget crossed.

    await request(call_pk, "session_cap")       # or "budget"

1. Claim: ONE conditional UPDATE sets hangup_reason and hangup_requested_at where they are unset
   and the call has not ended, so of any number of processes (or a sweep and a witness) asking at
   once exactly one gets rowcount 1 and goes on; the others return False. A claimed hang-up is
   never tried again by anyone: the retries below are its only ones, so a call OpenAI will not
   hang up cannot make every process retry it forever.
2. `upstream.hangup()` with the real key, up to ATTEMPTS tries with exponential backoff. A 404 is
   success (the call is gone already). The outcome is recorded on the row: hung_up_at (confirmed),
   hangup_attempts, hangup_error (the last error, when every try failed).
3. Whatever OpenAI said, if this call is its conversation's latest one: the conversation ends
   (actions), its budget hold is released (budget.release) and its page is told why
   (`call_ended` on the transcript socket, through the channel layer, so whichever process holds
   the page's socket). An older call of a conversation that has moved on to a newer one (the page
   continued after a lost connection) is hung up quietly: its conversation is still talking.

Nothing here raises: failures are logged, and the caller (the supervisor's loop, a witness) goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from conversations import actions, budget, caps
from conversations.models import Conversation, RealtimeCall
from conversations.realtime import upstream
from conversations.transcript import sockets
from conversations.witness.leases import CALL_MAX_AGE

log = logging.getLogger(__name__)

SESSION_CAP = RealtimeCall.HangupReason.SESSION_CAP
BUDGET = RealtimeCall.HangupReason.BUDGET
# Tries of upstream.hangup() per claimed hang-up, and the wait before the second (doubled after).
# Three tries over about 1.5 s ride out a blip; OpenAI down for longer is logged and recorded,
# and the call ends by itself at OpenAI's 60 minutes (the conversation has ended already).
ATTEMPTS = 3
BACKOFF = 0.5


@dataclass(frozen=True)
class Target:
    pk: int
    call_id: str
    conversation_id: int
    conversation_uuid: object
    user_id: int
    latest: bool  # no newer call in its conversation


def claim(call_pk: int, reason: str) -> Target | None:
    """Take the hang-up of a live call for this process; None when another has it (or it ended)."""
    now = timezone.now()
    won = RealtimeCall.objects.filter(
        pk=call_pk, hangup_requested_at__isnull=True, ended_at__isnull=True
    ).update(hangup_reason=reason, hangup_requested_at=now)
    if not won:
        return None
    newer = RealtimeCall.objects.filter(
        conversation_id=OuterRef("conversation_id"), created_at__gt=OuterRef("created_at")
    )
    row = (
        RealtimeCall.objects.filter(pk=call_pk)
        .annotate(newer=Exists(newer))
        .values_list("call_id", "conversation_id", "conversation__uuid", "conversation__user_id", "newer")
        .first()
    )
    if row is None:  # deleted with its conversation meanwhile
        return None
    call_id, conversation_id, conversation_uuid, user_id, has_newer = row
    return Target(call_pk, call_id, conversation_id, conversation_uuid, user_id, latest=not has_newer)


def record(call_pk: int, *, attempts: int, done: bool, error: str = "") -> None:
    fields = {"hangup_attempts": attempts, "hangup_error": error[:500]}
    if done:
        fields["hung_up_at"] = timezone.now()
    RealtimeCall.objects.filter(pk=call_pk).update(**fields)
    if done:
        # An unwitnessed call is over now (a witnessed one is ended by its witness, which sees the
        # sideband close: ending it here would look to the witness like a lost lease).
        RealtimeCall.objects.filter(pk=call_pk, witness_holder="", ended_at__isnull=True).update(
            ended_at=timezone.now()
        )


def message(reason: str, user_id: int) -> dict:
    """The `call_ended` frame for the page (docs/socket.md)."""
    if reason == SESSION_CAP:
        words = f"This session reached its {caps.cap_words()} limit."
        return {"type": "call_ended", "reason": str(reason), "message": words}
    standing = budget.standing(user_id)
    limit = f" (${standing.limit:.2f})" if standing.limit is not None else ""
    words = f"You have used today's voice budget{limit}. The call was ended."
    if standing.frees_at is not None:
        words += f" It frees up at {budget.frees_at_words(standing.frees_at)}."
    return {"type": "call_ended", "reason": str(reason), "message": words, "budget": budget.as_json(standing)}


async def request(call_pk: int, reason: str, *, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> bool:
    """Hang the call up for `reason` if no one else is; True when this process did it."""
    try:
        target = await sync_to_async(claim)(call_pk, reason)
    except Exception:
        log.exception("Claiming the hang-up of call %s failed", call_pk)
        return False
    if target is None:
        return False
    log.info("Hanging up call %s (%s)", target.call_id, reason)
    done, error, tries = False, "", 0
    for tries in range(1, attempts + 1):
        try:
            await upstream.hangup(target.call_id)
            done = True
            break
        except (upstream.RealtimeError, ValueError) as exc:
            error = str(exc)
            log.warning(
                "Hang-up of call %s failed (try %s of %s): %s", target.call_id, tries, attempts, error
            )
        except Exception as exc:  # never into the supervisor's loop
            error = f"{type(exc).__name__}"
            log.exception("Hang-up of call %s failed (try %s of %s)", target.call_id, tries, attempts)
        if tries < attempts:
            await asyncio.sleep(backoff * 2 ** (tries - 1))
    if not done:
        log.error("Call %s could not be hung up after %s tries: %s", target.call_id, tries, error)
    try:
        await sync_to_async(record)(call_pk, attempts=tries, done=done, error="" if done else error)
    except Exception:
        log.exception("Recording the hang-up of call %s failed", target.call_id)
    if target.latest:
        await _conclude(target, reason)
    return True


async def _conclude(target: Target, reason: str) -> None:
    """The conversation ends, its hold is released, its page is told: each step on its own."""
    try:
        conversation = Conversation(pk=target.conversation_id, uuid=target.conversation_uuid)
        await actions.aend_conversation(conversation)
    except Exception:
        log.exception("Ending conversation %s after a hang-up failed", target.conversation_uuid)
    try:
        await sync_to_async(budget.release)(target.conversation_id)
    except Exception:
        log.exception("Releasing the budget hold of conversation %s failed", target.conversation_uuid)
    try:
        frame = await sync_to_async(message)(reason, target.user_id)
        await sockets.tell_conversation(target.user_id, target.conversation_uuid, frame)
    except Exception:
        log.exception("Telling the page of conversation %s failed", target.conversation_uuid)


# --- the session cap: which calls are due ------------------------------------------------------------


def overdue(limit: int) -> list[int]:
    """Live calls older than REALTIME_MAX_SESSION_SECONDS, not yet hung up, oldest first: one query
    on the partial index `call_cap_sweep` (it holds only the calls that are not over)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.REALTIME_MAX_SESSION_SECONDS)
    return list(
        RealtimeCall.objects.filter(
            ended_at__isnull=True,
            hangup_requested_at__isnull=True,
            created_at__lt=cutoff,
            created_at__gte=now - CALL_MAX_AGE,  # OpenAI has ended it anyway
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def owner(conversation_id: int) -> int | None:
    return Conversation.objects.filter(pk=conversation_id).values_list("user_id", flat=True).first()
